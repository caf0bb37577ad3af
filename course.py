#!/usr/bin/env python3
"""Set up the course and run it, in one command each.

    python3 course.py lab     # set up (.venv + packages) and open JupyterLab on lectures/
    python3 course.py test    # set up if needed and run every test and notebook (quick mode)

Set-up is idempotent: it creates ``.venv`` next to this file on first use and reinstalls
only when ``pyproject.toml`` changed. Only the Python standard library is used here, so
this works before anything is installed (Linux, macOS and Windows).
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".dlstudio-lite-setup"
EXTRAS = "course"
# Everything the test suite checks; nbval runs every notebook in these folders.
TEST_PATHS = ["tests", "lectures", "solutions", "exercises"]


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


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
    run([python, "-m", "pip", "install", "--upgrade", "pip"])
    # torch and torchvision come from ranges in pyproject.toml, so pip picks a matching pair.
    run([python, "-m", "pip", "install", "-e", f".[{EXTRAS}]"], cwd=ROOT)
    STAMP.write_text(wanted)
    print(f"Set-up finished in {time.perf_counter() - start:.0f} s.", flush=True)
    return python


def lab(extra: list[str]) -> int:
    python = setup()
    cmd = [python, "-m", "jupyterlab", f"--ServerApp.root_dir={ROOT}",
           "--LabApp.default_url=/lab/tree/lectures", *extra]
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
    cmd = [python, "-m", "pytest", *TEST_PATHS, "--nbval-lax", "--nbval-cell-timeout=600",
           "-n", workers, "--dist", "loadscope", "-q", *extra]
    print("+", " ".join(map(str, cmd)), flush=True)
    start = time.perf_counter()
    code = subprocess.call([str(c) for c in cmd], cwd=ROOT, env=env)
    print(f"Test suite finished in {time.perf_counter() - start:.0f} s (exit code {code}).", flush=True)
    return code


def main(argv: list[str]) -> int:
    commands = {"lab": lab, "test": test, "setup": lambda extra: (setup(), 0)[1]}
    if not argv or argv[0] not in commands:
        print(__doc__.strip())
        print("\nAlso: python3 course.py setup   # only set up; extra arguments after lab/test are passed on")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
