"""Build student exercises, solutions and hidden tests from one instructor source.

Each exercise is written once, as a jupytext ``py:percent`` notebook under
``instructor/source/``. Inside it:

* ``### BEGIN SOLUTION`` / ``### END SOLUTION`` lines mark the lines a student writes.
  In ``exercises/`` each region becomes ``# YOUR CODE HERE`` + ``raise NotImplementedError(
  "Question N is not answered yet: fill in NAME() and delete this raise")`` (at the region's
  indentation; N from the question's heading, NAME the enclosing function); in ``solutions/``
  only the two marker lines disappear.
* A code cell tagged ``hidden-tests`` with metadata ``question="id" points=N`` holds the
  grader's check for one question: trusted Python that registers probes and verdicts
  (:mod:`.probes`). It is removed from both notebooks and written to
  ``instructor/hidden_tests/<name>.json`` together with the solution's definitions
  (``reference``) for :mod:`.checks`. It runs in the grader only, never in a sandbox.
* A code cell tagged ``check`` is a student-facing check; one tagged ``uses-answers``
  calls the student's functions to show a result. In ``exercises/`` both (and any cell
  whose solution region is top-level code) are tagged ``raises-exception``, so that
  ``pytest --nbval-lax exercises/`` accepts the ``NotImplementedError`` they raise.

``build_all()`` (``dlstudio-lite exercises build``) writes every output; ``stale_outputs()``
(``dlstudio-lite exercises build --check``) lists the generated files that differ from a
fresh build, which is how a test catches a source edited without a rebuild.
"""
from __future__ import annotations

import copy
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the notebook tools are imported where they are used
    import nbformat

REPO_ROOT = Path(__file__).resolve().parents[2]
SOURCE_DIR = REPO_ROOT / "instructor" / "source"
HIDDEN_TESTS_SUBDIR = Path("instructor") / "hidden_tests"

SOLUTION_BEGIN = "### BEGIN SOLUTION"
SOLUTION_END = "### END SOLUTION"
HIDDEN_TAG = "hidden-tests"
CHECK_TAG = "check"
USES_ANSWERS_TAG = "uses-answers"
RAISES_TAG = "raises-exception"
_BUILD_TAGS = {HIDDEN_TAG, CHECK_TAG, USES_ANSWERS_TAG}
_QUESTION_ID = re.compile(r"^[a-z][a-z0-9_]*$")

# Exercise names are ``exNN_topic`` (NN: the lecture's number), so that an exercise's tab in
# JupyterLab never reads like its lecture's. The grader still accepts the names they had
# before (notebook metadata, file names, ``--exercise``): old name -> current name.
RENAMED = {"01_codebook": "ex01_codebook", "02_elbo": "ex02_elbo", "03_autoencoder": "ex03_autoencoder",
           "04_vae": "ex04_vae", "05_vqvae": "ex05_vqvae", "06_vqgan": "ex06_vqgan",
           "07_pixelcnn": "ex09_pixelcnn"}


def current_name(name: str) -> str:
    """The exercise's name today, for a name it may have had before (see ``RENAMED``)."""
    return RENAMED.get(name, name)

# What the generated notebooks carry in their metadata. The filter keeps the jupytext
# version out of the .py header, so a newer jupytext does not make every file "stale".
_JUPYTEXT_META = {
    "formats": "ipynb,py:percent",
    "notebook_metadata_filter": "dlstudio_lite,-jupytext.text_representation",
}
_KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


# "## Question 2 (3 points): the straight-through estimator" names the question in feedback.
_HEADING = re.compile(r"^#+\s*Question\s+(?P<n>\d+)\s*(?:\([^)]*\))?\s*:\s*(?P<title>.+)$", re.MULTILINE)


@dataclass
class Question:
    """One graded question: its id, its points and the hidden check's code (grader-only)."""

    id: str
    points: int
    code: str
    title: str = ""   # "Question 2: the straight-through estimator", from the markdown heading above


@dataclass
class BuiltExercise:
    """Everything generated from one source notebook."""

    name: str
    title: str
    exercise: nbformat.NotebookNode
    solution: nbformat.NotebookNode
    questions: list[Question]
    reference: str = ""

    def hidden_tests(self) -> dict:
        """The JSON document the grader reads (``instructor/hidden_tests/<name>.json``)."""
        return {
            "format": "dlstudio-lite-hidden-checks/2",
            "exercise": self.name,
            "title": self.title,
            "reference": self.reference,
            "questions": [{"id": q.id, "title": q.title, "points": q.points, "code": q.code}
                          for q in self.questions],
        }


def _regions(lines: list[str], where: str) -> list[tuple[int, int]]:
    """(begin, end) line numbers of each solution region; ValueError if unbalanced."""
    regions, begin = [], None
    for i, line in enumerate(lines):
        marker = line.strip()
        if marker == SOLUTION_BEGIN:
            if begin is not None:
                raise ValueError(f"{where}: '{SOLUTION_BEGIN}' on line {i + 1} inside another "
                                 f"region (opened on line {begin + 1})")
            begin = i
        elif marker == SOLUTION_END:
            if begin is None:
                raise ValueError(f"{where}: '{SOLUTION_END}' on line {i + 1} without a "
                                 f"'{SOLUTION_BEGIN}'")
            regions.append((begin, i))
            begin = None
    if begin is not None:
        raise ValueError(f"{where}: '{SOLUTION_BEGIN}' on line {begin + 1} is never closed")
    return regions


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _enclosing_name(lines: list[str], begin: int) -> str | None:
    """``f`` or ``Class.method`` around line ``begin``, found from the ``def``/``class`` lines above."""
    names, depth = [], len(_indent(lines[begin]))
    for line in reversed(lines[:begin]):
        found = re.match(r"(\s*)(?:async\s+)?(def|class)\s+(\w+)", line)
        if found and len(found[1]) < depth:
            if found[2] == "def" and names:
                continue  # a def around a def: keep the innermost function's name
            names.insert(0, found[3])
            depth = len(found[1])
    return ".".join(names) or None


def unanswered_message(question: int | None, name: str | None) -> str:
    """What an unanswered question raises: which question, and what to write."""
    which = f"Question {question}" if question else "This question"
    what = f"fill in {name}()" if name else "write the code of this cell"
    return f"{which} is not answered yet: {what} and delete this raise"


def strip_solutions(source: str, where: str = "cell", question: int | None = None) -> tuple[str, bool]:
    """Replace each solution region by a ``raise NotImplementedError(...)`` stub.

    The stub's message names the ``question`` (its number) and the function to fill in.
    Returns the student's code and whether any region was top-level code (indentation 0),
    which makes the cell itself raise when run.
    """
    lines = source.split("\n")
    out, last, top_level = [], 0, False
    for begin, end in _regions(lines, where):
        indent = _indent(lines[begin])
        top_level |= indent == ""
        message = unanswered_message(question, _enclosing_name(lines, begin))
        out += lines[last:begin] + [f"{indent}# YOUR CODE HERE", f"{indent}raise NotImplementedError({json.dumps(message)})"]
        last = end + 1
    out += lines[last:]
    return "\n".join(out), top_level


def remove_markers(source: str, where: str = "cell") -> str:
    """Drop the marker lines and keep the solution code."""
    lines = source.split("\n")
    marker_lines = {i for region in _regions(lines, where) for i in region}
    return "\n".join(line for i, line in enumerate(lines) if i not in marker_lines)


def _clean_cell(cell: "nbformat.NotebookNode", cell_id: str, extra_tags: list[str]) -> "nbformat.NotebookNode":
    """A copy of ``cell`` with the build's own tags removed and a stable id."""
    cell = copy.deepcopy(cell)
    tags = [t for t in cell.metadata.get("tags", []) if t not in _BUILD_TAGS]
    tags += [t for t in extra_tags if t not in tags]
    cell.metadata.pop("tags", None)
    if tags:
        cell.metadata["tags"] = tags
    cell["id"] = cell_id  # random ids would make every rebuild look stale
    if cell.cell_type == "code":
        cell.outputs, cell.execution_count = [], None
    return cell


def _question(cell: nbformat.NotebookNode, where: str) -> Question:
    qid, points = cell.metadata.get("question"), cell.metadata.get("points")
    if not isinstance(qid, str) or not _QUESTION_ID.match(qid):
        raise ValueError(f"{where}: a '{HIDDEN_TAG}' cell needs metadata question=\"snake_case_id\", "
                         f"got question={qid!r}")
    if not isinstance(points, int) or isinstance(points, bool) or points <= 0:
        raise ValueError(f"{where}: question {qid!r} needs a positive integer 'points', got {points!r}")
    if SOLUTION_BEGIN in cell.source:
        raise ValueError(f"{where}: hidden tests of {qid!r} must not contain solution regions")
    return Question(qid, points, cell.source)


def build_exercise(source_path: str | Path) -> BuiltExercise:
    """Read one instructor source and build its exercise, solution and hidden tests."""
    import jupytext  # the notebook tools come with the optional "course" extra
    import nbformat

    source_path = Path(source_path)
    nb = jupytext.read(source_path, fmt="py:percent")
    name = source_path.stem
    meta = nb.metadata.get("dlstudio_lite", {})
    if meta.get("exercise") != name:
        raise ValueError(f"{source_path}: metadata dlstudio_lite.exercise must be {name!r} "
                         f"(the file name), got {meta.get('exercise')!r}")
    title = meta.get("title") or name

    ex_cells, sol_cells, questions, reference = [], [], [], []
    heading, number = "", None
    for i, cell in enumerate(nb.cells):
        where = f"{source_path.name} cell {i}"
        tags = cell.metadata.get("tags", [])
        if HIDDEN_TAG in tags:
            if cell.cell_type != "code":
                raise ValueError(f"{where}: only code cells can hold hidden tests")
            question = _question(cell, where)
            question.title = heading or question.id
            questions.append(question)
            continue
        if cell.cell_type != "code":
            found = _HEADING.search(cell.source)
            if found:
                heading = f"Question {found['n']}: {found['title'].strip()}"
                number = int(found["n"])
            if SOLUTION_BEGIN in cell.source:
                raise ValueError(f"{where}: solution regions belong in code cells")
            ex_cells.append(_clean_cell(cell, f"c{len(ex_cells):02d}", []))
            sol_cells.append(_clean_cell(cell, f"c{len(sol_cells):02d}", []))
            continue
        student_src, top_level = strip_solutions(cell.source, where, number)
        raises = top_level or CHECK_TAG in tags or USES_ANSWERS_TAG in tags
        ex = _clean_cell(cell, f"c{len(ex_cells):02d}", [RAISES_TAG] if raises else [])
        ex.source = student_src
        sol = _clean_cell(cell, f"c{len(sol_cells):02d}", [])
        sol.source = remove_markers(cell.source, where)
        ex_cells.append(ex)
        sol_cells.append(sol)
        if CHECK_TAG not in tags and USES_ANSWERS_TAG not in tags:
            reference.append(sol.source)  # definitions the hidden checks may use as ref.name

    if not questions:
        raise ValueError(f"{source_path}: no '{HIDDEN_TAG}' cell, so nothing can be graded")
    seen = [q.id for q in questions]
    if len(set(seen)) != len(seen):
        raise ValueError(f"{source_path}: duplicate question ids in {seen}")

    def notebook(cells: list, kind: str) -> nbformat.NotebookNode:
        out = nbformat.v4.new_notebook(cells=cells)
        out.metadata = {
            "dlstudio_lite": {"exercise": name, "kind": kind, "title": title},
            "jupytext": dict(_JUPYTEXT_META),
            "kernelspec": dict(_KERNELSPEC),
        }
        return out

    return BuiltExercise(name, title, notebook(ex_cells, "exercise"),
                         notebook(sol_cells, "solution"), questions, "\n\n".join(reference) + "\n")


def _outputs(built: BuiltExercise, root: Path) -> dict[Path, str]:
    """Every generated file of one exercise, as path -> text."""
    import jupytext

    files: dict[Path, str] = {}
    for folder, nb in (("exercises", built.exercise), ("solutions", built.solution)):
        files[root / folder / f"{built.name}.py"] = jupytext.writes(nb, fmt="py:percent")
        files[root / folder / f"{built.name}.ipynb"] = jupytext.writes(nb, fmt="ipynb")
    files[root / HIDDEN_TESTS_SUBDIR / f"{built.name}.json"] = (
        json.dumps(built.hidden_tests(), indent=1, ensure_ascii=False) + "\n")
    return files


def build_outputs(source_dir: str | Path = SOURCE_DIR, root: str | Path = REPO_ROOT) -> dict[Path, str]:
    """All generated files (path -> text) for the sources in ``source_dir``, unwritten."""
    source_dir, root = Path(source_dir), Path(root)
    sources = sorted(source_dir.glob("*.py"))
    if not sources:
        raise FileNotFoundError(f"no exercise sources (*.py) in {source_dir}")
    files: dict[Path, str] = {}
    owner: dict[str, str] = {}
    for src in sources:
        built = build_exercise(src)
        for q in built.questions:  # ids are grade-sheet columns, so they must be unique
            if q.id in owner:
                raise ValueError(f"question id {q.id!r} is used by both {owner[q.id]} and {built.name}")
            owner[q.id] = built.name
        files.update(_outputs(built, root))
    return files


def build_all(source_dir: str | Path = SOURCE_DIR, root: str | Path = REPO_ROOT) -> list[Path]:
    """Write ``exercises/``, ``solutions/`` and the hidden tests under ``root``; return the paths."""
    files = build_outputs(source_dir, root)
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write to a temporary file and rename, so a notebook open in Jupyter never sees half a file.
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, delete=False,
                                         suffix=".tmp") as tmp:
            tmp.write(text)
        os.chmod(tmp.name, 0o644)  # a normal repository file, not a private temporary one
        Path(tmp.name).replace(path)
    return sorted(files)


def stale_outputs(source_dir: str | Path = SOURCE_DIR, root: str | Path = REPO_ROOT) -> list[Path]:
    """Generated files that are missing or differ from what a fresh build would write."""
    return sorted(path for path, text in build_outputs(source_dir, root).items()
                  if not path.is_file() or path.read_text(encoding="utf-8") != text)
