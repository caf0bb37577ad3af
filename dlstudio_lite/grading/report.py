"""Grade sheets and feedback, written only by the grader into a folder it creates.

``write_report(batch, out)`` creates ``out`` (it must not exist) and writes, each file with
exclusive creation and without following symlinks:

* ``grades.csv``: long format, one row per student and question
  (``student, exercise, question, points, max``);
* ``gradebook.csv``: one row per student, per exercise its points and its maximum
  (``01_codebook``, ``01_codebook max``), then ``total`` and ``total max``;
* ``rejected.csv``: files that were not graded and why (symlinks, duplicates, non-notebooks);
* ``seed.txt``: the seed of this run's hidden inputs (``grade --seed`` repeats the run);
* ``feedback/<exercise>/<name>.md`` and ``.ipynb``: what each student gets back: per
  question its points, why it failed, and the cells under it that raised (quoted by their
  first line).

The three sheets are written first and always: student ids are already printable
(:func:`.grader.display_name`), and any text that could not be encoded is written with
backslash escapes rather than stopping the batch.

File names come from the student id, made safe and unique: the readable part keeps
``[A-Za-z0-9_-]`` (up to 60 characters) and a hash of the full id follows it, so two ids
never share a file, whatever characters or length they have. Cells that a spreadsheet
would read as a formula (starting with ``= + - @``, a tab/CR, or ``'`` itself) are prefixed with ``'``.
"""
from __future__ import annotations

import csv
import hashlib
import io
import os
import re
from pathlib import Path

from .grader import Batch, GradeResult

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value) -> str | int:
    """``value`` for a CSV cell that spreadsheets and LMS imports read as text, not a formula."""
    if isinstance(value, int):
        return value
    text = str(value).replace("\0", "")
    # A leading quote is doubled too, so that "=x" and "'=x" stay two different cells.
    return "'" + text if text.startswith(_FORMULA_START + ("'",)) else text


def safe_name(student: str) -> str:
    """A file name for any id: readable part + hash of the whole id (no collisions, no dots)."""
    readable = re.sub(r"[^A-Za-z0-9_-]+", "_", student).strip("_")[:60] or "student"
    digest = hashlib.sha256(student.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{readable}-{digest}"


class _Folder:
    """A folder the grader created; files inside are created exclusively, relative to its fd."""

    def __init__(self, path: Path, create_parents: bool = False):
        if create_parents:
            path.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(path, 0o755)  # FileExistsError if it exists: never write into someone else's folder
        self.path = path
        self.fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)

    def sub(self, name: str) -> "_Folder":
        os.mkdir(name, 0o755, dir_fd=self.fd)
        child = _Folder.__new__(_Folder)
        child.path = self.path / name
        child.fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=self.fd)
        return child

    def write(self, name: str, text: str) -> Path:
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=self.fd)
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace", newline="") as f:
            f.write(text)
        return self.path / name

    def close(self) -> None:
        os.close(self.fd)


def _csv(rows: list[list]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    for row in rows:
        writer.writerow([spreadsheet_safe(v) for v in row])
    return buf.getvalue()


def long_rows(results: list[GradeResult]) -> list[list]:
    rows = [["student", "exercise", "question", "points", "max"]]
    for r in sorted(results, key=lambda r: (r.student, r.exercise)):
        rows += [[r.student, r.exercise, q.id, q.points, q.max_points] for q in r.questions]
    return rows


def gradebook_rows(results: list[GradeResult]) -> list[list]:
    """One row per student: each exercise's points and maximum, then the total and its maximum."""
    most = {r.exercise: r.max_total for r in results}
    exercises = sorted(most)
    by_student: dict[str, dict[str, int]] = {}
    for r in results:
        by_student.setdefault(r.student, {})[r.exercise] = r.total
    rows = [["student", *(c for e in exercises for c in (e, f"{e} max")), "total", "total max"]]
    for student in sorted(by_student):
        got = by_student[student]
        rows.append([student, *(c for e in exercises for c in (got.get(e, ""), most[e])),
                     sum(got.values()), sum(most.values())])
    return rows


def _failed_cells(r: GradeResult, section: str) -> list[str]:
    """Lines naming the cells under ``section`` that raised: their first line and the error."""
    lines = []
    for cell in r.cells:
        if cell.get("error") and cell.get("section", "") == section:
            first = next((ln.strip() for ln in cell["source"].splitlines() if ln.strip()), "(empty)")
            said, _, more = cell["error"].strip().partition("\n")
            lines.append(f"- the cell starting `{first[:80].replace('`', chr(39))}` raised {said[:300] or 'an error'}")
            if more.strip():  # the rest of a visible check's message (its tensors), kept in a block
                block = more.strip().replace("```", "'''").splitlines()[:20]
                lines += ["", "  ```text", *("  " + ln for ln in block), "  ```", ""]
    return lines


def feedback_markdown(r: GradeResult) -> str:
    """The text a student receives: per question passed or why not; the cells that raised."""
    lines = [f"# {r.title or r.exercise}", "", f"Student: {r.student}", "",
             f"Total: {r.total} / {r.max_total} points", ""]
    for i, q in enumerate(r.questions, 1):
        lines += [f"## {q.title or f'Question {i}: {q.id}'} ({q.points} / {q.max_points} points)", ""]
        if q.passed:
            lines += ["Passed.", ""]
            continue
        # One sentence, then the numbers (tensors keep their layout in a code block).
        sentence, _, numbers = q.message.strip().partition("\n")
        lines += [sentence, ""]
        if numbers.strip():
            lines += ["```text", numbers.strip().replace("```", "'''"), "```", ""]
        if q.title and (cells := _failed_cells(r, q.title)):
            lines += ["In your notebook, under this question:", "", *cells, ""]
    titled = {q.title for q in r.questions}
    elsewhere = [line for section in dict.fromkeys(c.get("section", "") for c in r.cells) if section not in titled
                 for line in _failed_cells(r, section)]
    if r.notes or elsewhere:
        lines += ["", "## While running your notebook", ""]
        lines += ["- " + note.replace("\n", " ") for note in r.notes] + elsewhere
    return "\n".join(lines) + "\n"


def feedback_notebook(r: GradeResult) -> str:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_markdown_cell(feedback_markdown(r)))
    for i, cell in enumerate(r.cells):
        code = nbformat.v4.new_code_cell(cell["source"])
        code.execution_count = i + 1
        if cell["output"]:
            code.outputs.append(nbformat.v4.new_output("stream", name="stdout", text=cell["output"]))
        if cell["error"]:
            ename, _, evalue = cell["error"].partition(": ")
            code.outputs.append(nbformat.v4.new_output("error", ename=ename, evalue=evalue, traceback=[]))
        nb.cells.append(code)
    return nbformat.writes(nb)


def write_report(batch: Batch, out: str | Path) -> dict[str, Path]:
    """Create ``out`` and write the sheets and every feedback file; returns the main paths."""
    root = _Folder(Path(out), create_parents=True)
    try:
        paths = {"grades": root.write("grades.csv", _csv(long_rows(batch.results))),
                 "gradebook": root.write("gradebook.csv", _csv(gradebook_rows(batch.results))),
                 "rejected": root.write("rejected.csv", _csv([["path", "reason"]] + [[x.path, x.reason] for x in batch.rejected]))}
        if batch.seed is not None:
            paths["seed"] = root.write("seed.txt", f"{batch.seed}\n")
        feedback = root.sub("feedback")
        folders: dict[str, _Folder] = {}
        try:
            for r in batch.results:
                if r.exercise not in folders:
                    plain = re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,60}", r.exercise)
                    folders[r.exercise] = feedback.sub(r.exercise if plain else safe_name(r.exercise))
                name = safe_name(r.student)
                folders[r.exercise].write(name + ".md", feedback_markdown(r))
                folders[r.exercise].write(name + ".ipynb", feedback_notebook(r))
        finally:
            for f in folders.values():
                f.close()
            feedback.close()
        paths["feedback"] = feedback.path
    finally:
        root.close()
    return paths
