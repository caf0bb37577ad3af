"""The README's instructor commands, exactly as written, on a fresh clone of the course.

An instructor starts the way a student does: ``python3 course.py ...`` from the clone's root,
with no environment activated. The clone gets this test's own environment as its
``.venv`` (a link; ``course.py`` accepts it when its set-up stamp matches the clone's
``pyproject.toml``), so nothing is installed; ``PYTHONPATH`` points at the clone, so the
commands run the clone's code and data. The clone is of the committed ``HEAD``.
"""
from __future__ import annotations

import csv
import hashlib
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("_course_for_instructors", ROOT / "course.py")
course = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(course)


def readme_instructor_commands(readme: Path) -> list[str]:
    """The lines of the first ``bash`` block of the README's "Exercises and grading" section."""
    section = readme.read_text(encoding="utf-8").split("## Exercises and grading", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "the README's 'Exercises and grading' section has no bash block"
    return [line for line in block[1].splitlines() if line.strip()]


def _python3_ok() -> bool:
    found = shutil.which("python3")
    return bool(found) and subprocess.run([found, "-c", "import sys; sys.exit(sys.version_info < (3, 10))"]).returncode == 0


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    if shutil.which("git") is None or not _python3_ok():
        pytest.skip("needs git and a python3 (3.10 or newer) on PATH, as the README assumes")
    env_root = Path(sys.prefix)
    stamp = env_root / course.STAMP.name
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + course.EXTRAS.encode()).hexdigest()
    if not (stamp.is_file() and stamp.read_text().strip() == wanted):
        pytest.skip(f"the running environment {env_root} was not set up by course.py for this pyproject.toml, "
                    "so a clone would reinstall everything")
    base = tmp_path_factory.mktemp("fresh")
    repo = base / "course"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(repo)], check=True)
    (repo / ".venv").symlink_to(env_root, target_is_directory=True)
    home = base / "home"
    home.mkdir()
    env = dict(os.environ, PYTHONPATH=str(repo), HOME=str(home), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("VIRTUAL_ENV", None)
    return repo, env


def _submissions(line: str, repo: Path, env: dict) -> Path:
    """The folder a README ``grade`` line grades: filled with a solved and an unanswered notebook."""
    words = shlex.split(line, comments=True)
    args = words[words.index("grade") + 1:]
    where = next(a for a in args if not a.startswith("-"))
    folder = Path(env["HOME"] + where[1:] if where.startswith("~") else where)
    folder = folder if folder.is_absolute() else repo / folder
    (folder / "alice").mkdir(parents=True)
    (folder / "bob").mkdir()
    shutil.copy(repo / "solutions" / "ex01_codebook.ipynb", folder / "alice" / "ex01_codebook.ipynb")
    # bob hands in under the exercise's old name, metadata included: still graded as ex01_codebook.
    nb = nbformat.read(repo / "exercises" / "ex01_codebook.ipynb", as_version=4)
    nb.metadata["dlstudio_lite"]["exercise"] = "01_codebook"
    nbformat.write(nb, folder / "bob" / "01_codebook.ipynb")
    return folder


def test_readme_instructor_commands_run_on_a_fresh_clone(clone):
    from dlstudio_lite.grading.sandbox import bwrap_problem

    repo, env = clone
    lines = readme_instructor_commands(repo / "README.md")
    assert lines and all(line.startswith("python3 course.py ") for line in lines), \
        f"the README's instructor commands should start the way students do, with python3 course.py: {lines}"
    ran = set()
    for line in lines:
        command = shlex.split(line, comments=True)[2]
        if command == "grade":
            _submissions(line, repo, env)
        done = subprocess.run(["bash", "-c", line], cwd=repo, env=env, capture_output=True, text=True, timeout=900)
        said = done.stdout + done.stderr
        if command == "grade" and bwrap_problem():   # the README: without a sandbox, grade refuses and says so
            assert done.returncode != 0 and "sandbox" in said, said[-2000:]
            continue
        assert done.returncode == 0, f"`{line}` failed ({done.returncode}):\n{said[-3000:]}"
        ran.add(command)
        if command == "release":
            out = Path(os.path.normpath(repo / shlex.split(line, comments=True)[3]))
            assert (out / "exercises" / "ex01_codebook.ipynb").is_file() and (out / "course.py").is_file()
            assert not (out / "solutions").exists() and not (out / "instructor").exists()
        if command == "grade":
            words = shlex.split(line, comments=True)
            grades = repo / words[words.index("--out") + 1]
            with open(grades / "grades.csv", newline="") as f:
                rows = list(csv.DictReader(f))
            assert {(r["student"], r["exercise"]) for r in rows} == {("alice", "ex01_codebook"), ("bob", "ex01_codebook")}
            for student, share in (("alice", 1), ("bob", 0)):
                mine = [r for r in rows if r["student"] == student]
                assert sum(int(r["points"]) for r in mine) == share * sum(int(r["max"]) for r in mine), rows
    assert {"build", "release"} <= ran
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                            capture_output=True, text=True, check=True).stdout
    assert status == "", f"the instructor commands changed tracked files of the clone:\n{status}"
