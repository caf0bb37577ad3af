#!/usr/bin/env python3
"""Set up the course and run it, in one command each.

    python3 course.py lab     # set up (.venv + packages) and open your copy of the course
    python3 course.py test    # set up if needed and run every test and notebook (quick mode)
    python3 course.py test --normal   # every lecture in normal mode, its claims checked, timed
                                      # (add lecture numbers, e.g. 03 05, to run only those)

Set-up is idempotent: it creates ``.venv`` next to this file on first use and reinstalls
only when ``pyproject.toml`` changed. ``lab`` works in ``my-work/`` (ignored by git), a
copy of the start page, lectures and exercises that it brings up to date on every start,
so the repository itself never changes and ``git pull`` always applies course updates.
Only the Python standard library is used here, so this works before anything is
installed (Linux, macOS and Windows).

Instructors use the same set-up; these run the ``dlstudio-lite`` command of ``.venv``:

    python3 course.py build --check            # dlstudio-lite exercises build --check
    python3 course.py release ../course-2026   # dlstudio-lite exercises release ../course-2026
    python3 course.py grade SUBMISSIONS --out GRADES   # dlstudio-lite grade SUBMISSIONS --out GRADES
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".dlstudio-lite-setup"
EXTRAS = "course"
# The student's copy of the course, and what goes into it.
WORKSPACE = ROOT / "my-work"
START_PAGE = "START_HERE.md"
# docs/ERRATA.md: the lectures link to it relatively, so it sits beside them in the copy too.
STUDENT_FILES = [START_PAGE, "lectures/*.ipynb", "exercises/*.ipynb", "docs/ERRATA.md"]
# Where the workspace remembers which course version each copy started from.
MANIFEST = ".course-versions.json"
# JupyterLab settings of the course: no news pop-up, Markdown opens rendered, full names.
LAB_SETTINGS = ROOT / ".jupyter" / "lab" / "settings"


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def venv_command(name: str) -> Path:
    """A console script that the package installed into ``.venv``."""
    return VENV / ("Scripts" if os.name == "nt" else "bin") / (f"{name}.exe" if os.name == "nt" else name)


def run(cmd: list[str], **kwargs) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, **kwargs)


def setup() -> Path:
    """Create the virtual environment and install the package with its course tools."""
    if sys.version_info < (3, 10):
        sys.exit(f"dlstudio-lite needs Python 3.10 or newer; this is {sys.version.split()[0]}")
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + EXTRAS.encode()).hexdigest()
    python = venv_python()
    if python.exists() and STAMP.exists() and STAMP.read_text().strip() == wanted:
        return python
    start = time.perf_counter()
    if not python.exists():
        print(f"Creating the virtual environment in {VENV} ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    # torch and torchvision come from ranges in pyproject.toml, so the resolver picks a matching
    # pair. uv (from PyPI) installs them in about half of pip's time: it downloads the CUDA wheels
    # in parallel and compiles the bytecode on every core (compiled here, because the grading
    # sandbox mounts the environment read-only). Plain pip is the fallback.
    try:
        run([python, "-m", "pip", "install", "-q", "uv"])
        run([python, "-m", "uv", "pip", "install", "--python", python, "--compile-bytecode",
             "-e", f".[{EXTRAS}]"], cwd=ROOT)
    except subprocess.CalledProcessError:
        print("uv could not install the environment; falling back to pip.", flush=True)
        run([python, "-m", "pip", "install", "-e", f".[{EXTRAS}]"], cwd=ROOT)
    STAMP.write_text(wanted)
    print(f"Set-up finished in {time.perf_counter() - start:.0f} s.", flush=True)
    return python


def _language_info(python_version: str) -> dict:
    """What ipykernel reports and JupyterLab stores on opening: stored up front, a lecture
    opens without the unsaved-changes mark."""
    return {"codemirror_mode": {"name": "ipython", "version": 3}, "file_extension": ".py",
            "mimetype": "text/x-python", "name": "python", "nbconvert_exporter": "python",
            "pygments_lexer": "ipython3", "version": python_version}


def _student_copy(path: Path, python_version: str) -> bytes:
    """The file as a student gets it: a notebook loses its jupytext pairing (saving it
    writes no ``.py`` twin) and gains the kernel's language_info."""
    if path.suffix != ".ipynb":
        return path.read_bytes()
    nb = json.loads(path.read_text(encoding="utf-8"))
    nb.setdefault("metadata", {}).pop("jupytext", None)
    nb["metadata"]["language_info"] = _language_info(python_version)
    return (json.dumps(nb, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


def kernel_python_version(python: Path | None = None) -> str:
    """The Python version the notebooks' kernel runs (the virtual environment's)."""
    if python is not None and Path(python).exists():
        found = subprocess.run([str(python), "-c", "import platform; print(platform.python_version())"],
                               capture_output=True, text=True)
        if found.returncode == 0:
            return found.stdout.strip()
    return platform.python_version()


def _content_key(data: bytes, suffix: str) -> str:
    """A hash of what a student may edit: a notebook's cell sources, not its outputs."""
    if suffix == ".ipynb":
        cells = json.loads(data.decode("utf-8")).get("cells", [])
        data = json.dumps([[c.get("cell_type"), "".join(c.get("source", ""))] for c in cells]).encode()
    return hashlib.sha256(data).hexdigest()


def sync_workspace(root: Path = ROOT, workspace: Path = WORKSPACE, python_version: str | None = None) -> list[str]:
    """Bring the student's copy up to date with the course; returns what changed, in words.

    A missing file is copied. A file the student has not edited (outputs of runs do not
    count) is replaced by a newer course version. An edited one is kept, and the newer
    course version is put next to it as ``NAME (course update).ipynb``. A copy of a file the
    course no longer has (an exercise renamed to ``exNN_...``) is kept, with a note, once.
    """
    python_version = python_version or platform.python_version()
    manifest_path = workspace / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    notes, current = [], set()
    for pattern in STUDENT_FILES:
        for source in sorted(root.glob(pattern)):
            rel = source.relative_to(root).as_posix()
            target = workspace / rel
            data = _student_copy(source, python_version)
            new = _content_key(data, source.suffix)
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                target.write_bytes(data)
                notes.append(f"copied {rel}")
            elif manifest.get(rel) != new:
                mine = _content_key(target.read_bytes(), source.suffix)
                if mine in (manifest.get(rel), new):
                    target.write_bytes(data)
                    notes.append(f"updated {rel}")
                else:
                    beside = target.with_name(f"{target.stem} (course update){target.suffix}")
                    beside.write_bytes(data)
                    notes.append(f"kept your edited {rel}; the course's new version is {beside.name}")
            manifest[rel] = new
            current.add(rel)
    # A file the course renamed or dropped (exercises/01_codebook.ipynb became ex01_codebook):
    # the student's copy stays, said once.
    for rel in sorted(set(manifest) - current):
        if (workspace / rel).exists():
            notes.append(f"kept {rel}, which the course no longer has (renamed or removed)")
        del manifest[rel]
    manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return notes


def lab_arguments(workspace: Path = WORKSPACE) -> list[str]:
    """JupyterLab options of the course: the workspace, opened on the start page."""
    return [f"--ServerApp.root_dir={workspace}", f"--LabApp.default_url=/lab/tree/{START_PAGE}",
            f"--LabApp.app_settings_dir={LAB_SETTINGS}"]


def lab(extra: list[str]) -> int:
    python = setup()
    for note in sync_workspace(python_version=kernel_python_version(python)):
        print(f"my-work: {note}", flush=True)
    cmd = [python, "-m", "jupyterlab", *lab_arguments(), *extra]
    if hasattr(os, "geteuid") and os.geteuid() == 0 and "--allow-root" not in extra:
        cmd.append("--allow-root")  # containers and cloud notebooks often run as root
    print("+", " ".join(map(str, cmd)), flush=True)
    return subprocess.call([str(c) for c in cmd], cwd=ROOT)


def test(extra: list[str]) -> int:
    python = setup()
    workers = "2" if (os.cpu_count() or 1) >= 2 else "0"
    # One thread per worker: two workers with several torch threads each fight over the
    # cores and run many times slower than with one thread each.
    env = dict(os.environ, DLSTUDIO_LITE_QUICK="1", MPLBACKEND="Agg", PYDEVD_DISABLE_FILE_VALIDATION="1",
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    # No paths: pytest's testpaths (pyproject.toml) are the unit tests and every notebook
    # folder, the same collection as a plain `pytest --nbval-lax` at the root.
    # The long integration tests (marked slow) run with `test --normal` and in CI.
    cmd = [python, "-m", "pytest", "--nbval-lax", "--nbval-cell-timeout=600",
           "-n", workers, "--dist", "loadscope", "-q", "-m", "not slow", *extra]
    print("+", " ".join(map(str, cmd)), flush=True)
    start = time.perf_counter()
    code = subprocess.call([str(c) for c in cmd], cwd=ROOT, env=env)
    print(f"Test suite finished in {time.perf_counter() - start:.0f} s (exit code {code}).", flush=True)
    return code


def test_normal(extra: list[str]) -> int:
    """``course.py test --normal``: every lecture in normal mode, with its claim checks, one at
    a time, then the tests marked ``normal`` (a lecture run against a worse checkpoint must
    fail) and the long integration tests marked ``slow`` (quick mode, as in ``test``); prints
    each step's wall and CPU time. Run it before a change to a lecture, a library default, a
    shipped checkpoint or the grader lands."""
    python = setup()
    # Normal mode, as a student runs it: the package picks the thread count (no limit here).
    env = dict(os.environ, DLSTUDIO_LITE_QUICK="0", MPLBACKEND="Agg", PYDEVD_DISABLE_FILE_VALIDATION="1")
    # `test --normal 03 05` runs only those lectures; other arguments go to pytest.
    chosen = [a for a in extra if len(a) == 2 and a.isdigit()]
    extra = [a for a in extra if a not in chosen]
    lectures = [nb for nb in sorted((ROOT / "lectures").glob("[0-9][0-9]_*.ipynb"))
                if not chosen or nb.name[:2] in chosen]
    rows, failed = [], []

    def timed(cmd: list, run_env: dict = env) -> tuple[int, float, float]:
        cpu_before = _children_cpu_seconds()
        start = time.perf_counter()
        print("+", " ".join(str(c) for c in cmd), flush=True)
        code = subprocess.call([str(c) for c in cmd], cwd=ROOT, env=run_env)
        return code, time.perf_counter() - start, _children_cpu_seconds() - cpu_before

    for notebook in lectures:
        code, wall, cpu = timed([python, "-m", "pytest", "-p", "no:cacheprovider", "--nbval-lax",
                                 "--nbval-cell-timeout=600", "-q", notebook.relative_to(ROOT), *extra])
        rows.append((notebook.stem, wall, cpu, "ok" if code == 0 else f"FAILED ({code})"))
        if code:
            failed.append(notebook.stem)
    code, wall, cpu = timed([python, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-m", "normal",
                             "tests", *extra])
    rows.append(("tests marked normal", wall, cpu, "ok" if code in (0, 5) else f"FAILED ({code})"))
    if code not in (0, 5):  # 5: no test collected
        failed.append("tests marked normal")
    quick_env = dict(env, DLSTUDIO_LITE_QUICK="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    workers = "2" if (os.cpu_count() or 1) >= 2 else "0"
    code, wall, cpu = timed([python, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-m", "slow",
                             "-n", workers, "--dist", "loadscope", "tests", *extra], quick_env)
    rows.append(("tests marked slow", wall, cpu, "ok" if code in (0, 5) else f"FAILED ({code})"))
    if code not in (0, 5):
        failed.append("tests marked slow")
    load = f"{os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "n/a"
    print(f"\nNormal mode (load average now {load}; other work on the cores slows every lecture):")
    print(f"{'':<28} {'wall s':>7} {'CPU s':>7}  result")
    for name, wall, cpu, result in rows:
        cpu_text = f"{cpu:7.0f}" if cpu == cpu else "    n/a"
        print(f"{name:<28} {wall:7.0f} {cpu_text}  {result}{'  (over 2 minutes)' if wall > 120 else ''}")
    print("all passed" if not failed else f"failed: {', '.join(failed)}", flush=True)
    return 1 if failed else 0


def _children_cpu_seconds() -> float:
    """CPU seconds used so far by finished child processes and their kernels (nan on Windows)."""
    try:
        import resource
    except ImportError:
        return float("nan")
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def update(extra: list[str]) -> int:
    notes = sync_workspace(python_version=kernel_python_version(venv_python()))
    print("\n".join(f"my-work: {note}" for note in notes) or "my-work is up to date.")
    return 0


def instructor(*words: str):
    """``course.py grade ...`` etc.: set up if needed, then ``dlstudio-lite WORDS ...`` from ``.venv``,
    so an instructor needs no activated environment either."""
    def forward(extra: list[str]) -> int:
        setup()
        cmd = [venv_command("dlstudio-lite"), *words, *extra]
        print("+", " ".join(map(str, cmd)), flush=True)
        return subprocess.call([str(c) for c in cmd])
    return forward


def main(argv: list[str]) -> int:
    if argv[:2] == ["test", "--normal"]:
        return test_normal(argv[2:])
    commands = {"lab": lab, "test": test, "setup": lambda extra: (setup(), 0)[1],
                "update": update, "build": instructor("exercises", "build"),
                "release": instructor("exercises", "release"), "grade": instructor("grade")}
    if not argv or argv[0] not in commands:
        print(__doc__.strip())
        print("\nAlso: python3 course.py setup    # only set up; extra arguments after lab/test are passed on")
        print("      python3 course.py update   # only bring my-work/ up to date (no set-up needed)")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
