"""The student release: what an instructor publishes as the students' own repository.

``dlstudio-lite exercises release OUT`` copies the course's tracked files (``git ls-files``,
so no caches, virtual environments or local experiments) into a new folder ``OUT``, keeping

* ``lectures/``, ``dlstudio_lite/``, ``exercises/``, ``data/`` (the tracked files), ``docs/``,
  ``tests/`` (without the instructor's grading tests), ``README.md``, ``pyproject.toml``,
  ``environment.yml``, ``course.py``, ``conftest.py``, ``.gitignore``, the start page
  ``START_HERE.md``, JupyterLab's course settings ``.jupyter/`` and ``tools/``;

and leaving out ``solutions/``, ``instructor/`` (sources and hidden checks), the grading
tests, ``benchmarks/`` and ``.ci/``. The release is then checked: no file may contain a
solution marker or anything of the hidden checks. (pytest skips the ``solutions``
entry of ``testpaths`` when the folder is missing, so the test command needs no change.)
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .exercises import HIDDEN_TAG, REPO_ROOT, SOLUTION_BEGIN, SOLUTION_END

KEEP_DIRS = ("lectures", "dlstudio_lite", "exercises", "data", "docs", "tests", ".jupyter", "tools")
KEEP_FILES = ("README.md", "pyproject.toml", "environment.yml", "course.py", "conftest.py", ".gitignore",
              "START_HERE.md")
INSTRUCTOR_TESTS = ("tests/test_grade.py", "tests/test_grading_attacks.py", "tests/test_exercises.py",
                    "tests/test_release.py", "tests/mistakes.py",  # mistakes.py quotes every solution line
                    "tests/test_instructor_path.py")
# Text that only the instructor's files hold; finding it in the release means something leaked.
FORBIDDEN = (SOLUTION_BEGIN, SOLUTION_END, f'tags=["{HIDDEN_TAG}"]', "dlstudio-lite-hidden-checks")


def release_files(root: str | Path = REPO_ROOT) -> list[str]:
    """The repository-relative paths that go into the release."""
    root = Path(root)
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True).stdout
        tracked = [p for p in listed.decode().split("\0") if p]
    except (OSError, subprocess.CalledProcessError):
        raise RuntimeError(f"{root} is not a git checkout: the release is built from tracked files only") from None
    keep = []
    for rel in tracked:
        top = rel.split("/", 1)[0]
        if rel in INSTRUCTOR_TESTS or not (rel in KEEP_FILES or top in KEEP_DIRS):
            continue
        if (root / rel).is_file() and not (root / rel).is_symlink():
            keep.append(rel)
    return sorted(keep)


def build_release(out: str | Path, root: str | Path = REPO_ROOT) -> list[Path]:
    """Write the student release into the new folder ``out``; return the written files."""
    out, root = Path(out), Path(root)
    files = release_files(root)
    out.mkdir(parents=True, exist_ok=False)  # never mix the release into an existing folder
    written = []
    for rel in files:
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, target)
        written.append(target)
    problems = check_release(out)
    if problems:
        shutil.rmtree(out)
        raise RuntimeError("the release would leak instructor material: " + "; ".join(problems[:10]))
    return written


def check_release(folder: str | Path) -> list[str]:
    """What in ``folder`` must not be given to students (empty when it is clean)."""
    folder = Path(folder)
    problems = [f"{name}/ is present" for name in ("solutions", "instructor") if (folder / name).exists()]
    for dirpath, _, filenames in os.walk(folder):
        for name in filenames:
            path = Path(dirpath) / name
            rel = path.relative_to(folder).as_posix()
            # The notebooks and data; the builder's own code names the markers it looks for.
            if rel.startswith(("dlstudio_lite/grading/", "tests/")) or path.suffix not in (".py", ".ipynb", ".json"):
                continue
            try:
                text = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            problems += [f"{path.relative_to(folder)} contains {marker!r}" for marker in FORBIDDEN if marker in text]
    return problems
