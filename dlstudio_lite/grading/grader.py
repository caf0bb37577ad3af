"""Grade a batch of submitted notebooks: one sandbox each, verdicts computed here.

For every submission the grader (this process, trusted)

1. reads the notebook as data (``.ipynb`` JSON or jupytext ``py:percent``), refusing
   symlinks, non-regular files and files that are not notebooks;
2. writes a job file: the student's code cells and the inputs of the exercise's probes
   (never a check, an expected value or a reference implementation);
3. runs it in a fresh sandbox (:mod:`.sandbox`): the student's cells, then the probes;
4. reads the answers back (:mod:`.reply`: each frame checked against its question's budget
   before any tensor is built) and runs each question's verdicts on them.

The hidden probes' inputs are drawn from a seed the grader picks for each run (``Batch.seed``,
written to ``seed.txt`` by :mod:`.report`), so values learnt from one run's feedback do not
answer the next run's probes. Student ids are display names (:func:`display_name`): any byte
sequence a folder or file may be named with becomes a printable, unambiguous id.

A question earns its points when every verdict of its probes passes. Nothing a submission
does can stop the batch: every failure becomes a note on that submission.
"""
from __future__ import annotations

import os
import secrets
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from . import reply
from .checks import HIDDEN_TESTS_DIR, Exam, HiddenChecks, QuestionResult, load_hidden_checks
from .exercises import _HEADING, RENAMED, current_name
from .sandbox import RUN_DIR, Limits, SandboxUnavailable, bwrap_problem, run_sandboxed

MAX_NOTEBOOK_BYTES = 20 * 2**20
NOTEBOOK_SUFFIXES = (".ipynb", ".py")


@dataclass
class GradeResult:
    """The grade of one submission."""

    student: str
    exercise: str
    path: str
    questions: list[QuestionResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float | None = None  # the sandbox's CPU time, where cgroups can tell
    cells: list[dict] = field(default_factory=list)   # per code cell: source, output, error, section
    title: str = ""

    @property
    def total(self) -> int:
        return sum(q.points for q in self.questions)

    @property
    def max_total(self) -> int:
        return sum(q.max_points for q in self.questions)

    def points(self) -> dict[str, int]:
        return {q.id: q.points for q in self.questions}


@dataclass
class Rejected:
    """A file that was not graded, and why."""

    path: str
    reason: str


@dataclass
class Batch:
    results: list[GradeResult]
    rejected: list[Rejected]
    seconds: float = 0.0
    seed: int | None = None  # the run's seed of the hidden probes' inputs
    max_points: dict[str, int] = field(default_factory=dict)  # exercise -> its points


def display_name(raw: str) -> str:
    """A printable, one-line id for any file name, and a different one for every different name.

    Bytes that were not UTF-8 (``os.fsdecode``'s surrogates) become ``\\xNN``, control and
    other unprintable characters ``\\n``, ``\\u200b``..., and a backslash ``\\\\``, so
    that no two names share a display name.
    """
    out = []
    for ch in raw:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch == "\\":
            out.append("\\\\")
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape", "backslashreplace").decode("ascii"))
    return "".join(out)


# ----------------------------------------------------------------------------- reading submissions


def _read_regular(path: Path) -> bytes:
    """A file's bytes, refusing symlinks, FIFOs, devices and oversized files."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("not a regular file")
        if st.st_size > MAX_NOTEBOOK_BYTES:
            raise ValueError(f"larger than {MAX_NOTEBOOK_BYTES // 2**20} MiB")
        chunks, size = [], 0
        while size <= MAX_NOTEBOOK_BYTES:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_cells(path: Path) -> tuple[list[str], dict, list[str]]:
    """The code cells' sources, the notebook metadata, and for each code cell the question it
    sits under ("Question 2: perplexity", from the markdown headings; "" before the first)."""
    import nbformat

    text = _read_regular(path).decode("utf-8")
    if path.suffix == ".ipynb":
        nb = nbformat.reads(text, as_version=4)
    elif path.suffix == ".py":
        import jupytext
        nb = jupytext.reads(text, fmt="py:percent")
    else:
        raise ValueError(f"expected a .ipynb or jupytext .py notebook, got {path.suffix!r}")
    cells, sections, section = [], [], ""
    for c in nb.cells:
        if c.cell_type == "code":
            cells.append(str(c.source))
            sections.append(section)
        elif (found := _HEADING.search(str(c.source))):
            section = f"Question {found['n']}: {found['title'].strip()}"
    return cells, dict(nb.metadata), sections


def find_submissions(paths: list[str | Path]) -> tuple[list[tuple[Path, str]], list[Rejected]]:
    """(file, student id) for each notebook among ``paths``, and the files that were refused.

    A file given directly is graded under its name (``alice.ipynb`` -> ``alice``). Inside a
    folder, every notebook in a sub-folder belongs to that sub-folder's student, whatever
    the file is called (``subs/alice/bob.ipynb`` is alice's work, never bob's); a notebook
    directly in the folder is graded under its name. Symlinks are never followed.
    """
    found: list[tuple[Path, str]] = []
    rejected: list[Rejected] = []
    for root in map(Path, paths):
        if os.path.islink(root):
            rejected.append(Rejected(display_name(str(root)), "a symlink, not a notebook file"))
            continue
        if root.is_file():
            if root.suffix in NOTEBOOK_SUFFIXES:
                found.append((root, display_name(root.stem)))
            else:
                rejected.append(Rejected(display_name(str(root)), f"not a notebook ({display_name(root.suffix) or 'no suffix'})"))
            continue
        if not root.is_dir():
            raise FileNotFoundError(f"submission not found: {display_name(str(root))}")
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            here = Path(dirpath)
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__pycache__")
            rel = here.relative_to(root).parts
            for link in [d for d in dirnames if os.path.islink(here / d)]:
                rejected.append(Rejected(display_name(str(here / link)), "a symlinked folder (not followed)"))
                dirnames.remove(link)
            for name in sorted(filenames):
                p = here / name
                if name.startswith("."):
                    continue
                if os.path.islink(p):
                    rejected.append(Rejected(display_name(str(p)), "a symlink, not a notebook file"))
                elif p.suffix not in NOTEBOOK_SUFFIXES:
                    rejected.append(Rejected(display_name(str(p)), f"not a notebook ({display_name(p.suffix) or 'no suffix'})"))
                else:
                    found.append((p, display_name(rel[0] if rel else p.stem)))
    return found, rejected


def _exercise_of(meta: dict, path: Path, known: dict[str, HiddenChecks]) -> str | None:
    name = (meta.get("dlstudio_lite") or {}).get("exercise") if isinstance(meta.get("dlstudio_lite"), dict) else None
    if isinstance(name, str) and current_name(name) in known:
        return current_name(name)
    # The file name, under the exercise's current or an earlier name (ex01_codebook, 01_codebook).
    matches = {current_name(n) for n in [*known, *RENAMED] if n in path.name} & set(known)
    return matches.pop() if len(matches) == 1 else None


# ----------------------------------------------------------------------------- grading


def _grade_one(path: Path, student: str, cells: list[str], sections: list[str], exam: Exam, limits: Limits,
               sandbox: bool) -> GradeResult:
    start = time.monotonic()
    checks = exam.checks
    result = GradeResult(student, checks.exercise, display_name(str(path)), title=checks.title)
    marker = "@@dlstudio-lite-cell-" + secrets.token_hex(8)
    job = exam.job(cells, limits, marker, [f"{RUN_DIR}/pkg"] if sandbox else [str(Path(__file__).resolve().parents[2])])
    run = run_sandboxed(job, limits, sandbox=sandbox)
    result.notes += run.problems
    result.cpu_seconds = run.cpu_seconds
    cell_report, answers = _read_replies(run.frames, exam, len(cells), result.notes)
    outputs = _split_output(run.output, marker, len(cells))
    for i, source in enumerate(cells):
        entry = cell_report[i] if i < len(cell_report) and isinstance(cell_report[i], dict) else {}
        error = entry.get("error") if isinstance(entry.get("error"), str) else None
        result.cells.append({"source": source, "output": outputs[i], "error": error, "section": sections[i]})
    why_missing = run.problems[0] if run.problems else "the notebook stopped before this question was tested"
    for q in checks.questions:
        answer = answers.get(q.id)
        if answer is None:
            verdict = f"not tested: {why_missing}"
        elif isinstance(answer, str):
            verdict = answer
        else:
            try:
                verdict = exam.judge(q.id, *answer)
            except Exception as err:  # a verdict bug must not stop the batch; the student keeps a note
                verdict = f"not tested: the check failed ({type(err).__name__})"
        result.questions.append(QuestionResult(q.id, q.points if verdict == "passed" else 0, q.points, verdict, q.title))
    result.seconds = time.monotonic() - start
    return result


def _read_replies(frames: list[bytes], exam: Exam, n_cells: int, notes: list[str]) -> tuple[list, dict]:
    """The runner's cell report, and {question: (records, tensors) or "malformed reply: why"}."""
    cell_report, answers = [], {}
    cells_budget = reply.Budget(0, 0, min(65536 + 4096 * n_cells, reply.MAX_HEADER_BYTES))
    for frame in frames:
        try:
            meta, descriptors, start = reply.header(frame)
            kind, qid = meta.get("kind"), meta.get("id")
            if kind == "cells" and not cell_report:
                reply.tensors(frame, descriptors, start, cells_budget)   # nothing but the header
                cell_report = meta["cells"] if isinstance(meta.get("cells"), list) else []
            elif kind == "question" and qid in exam.probes and qid not in answers:
                try:
                    answers[qid] = (meta.get("results"), reply.tensors(frame, descriptors, start, exam.budgets[qid]))
                except reply.MalformedReply as err:
                    answers[qid] = f"malformed reply: {err}"
        except reply.MalformedReply as err:
            notes.append(f"the notebook sent a reply the grader could not read ({err})")
    return cell_report, answers


def _split_output(text: str, marker: str, n: int) -> list[str]:
    parts = [""] * n
    current = None
    for line in text.split("\n"):
        if line.startswith(marker + " "):
            tag = line[len(marker) + 1:]
            current = int(tag) if tag.isdigit() and int(tag) < n else None
            continue
        if current is not None:
            parts[current] += line + "\n"
    return [p.strip("\n") for p in parts]


def grade_submissions(paths: list[str | Path], *, exercise: str | None = None,
                      tests_dir: str | Path = HIDDEN_TESTS_DIR, jobs: int | None = None,
                      limits: Limits | None = None, trust_submissions: bool = False,
                      progress: bool = False, seed: int | None = None) -> Batch:
    """Grade notebooks (files, or folders of per-student folders); see the module docstring.

    ``seed`` draws the hidden probes' inputs; by default a new random one per call, so that
    every grading run asks different questions (pass the seed of ``seed.txt`` to repeat a run).

    Raises :class:`SandboxUnavailable` when bubblewrap cannot sandbox here, unless
    ``trust_submissions`` (then each notebook runs as a plain process with the same limits).
    """
    start = time.monotonic()
    limits = limits or Limits()
    seed = secrets.randbits(63) if seed is None else int(seed)
    sandbox = True
    problem = bwrap_problem()
    if problem:
        if not trust_submissions:
            raise SandboxUnavailable(f"refusing to run untrusted notebooks without a sandbox: {problem}. "
                                     "Pass --trust-submissions only to grade work you trust, unisolated")
        sandbox = False
    known = load_hidden_checks(tests_dir)
    exercise = current_name(exercise) if exercise is not None else None
    if exercise is not None and exercise not in known:
        raise ValueError(f"unknown exercise {exercise!r}: expected one of {sorted(known)}")
    found, rejected = find_submissions(paths)
    if not found and not rejected:
        raise ValueError(f"no notebooks to grade in {[str(p) for p in paths]}")
    if jobs is None:
        jobs = os.cpu_count() or 1
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")

    work, seen = [], {}
    for path, student in found:
        shown = display_name(str(path))
        try:
            cells, meta, sections = read_cells(path)
        except Exception as err:
            rejected.append(Rejected(shown, f"could not be read as a notebook ({type(err).__name__}: "
                                     f"{display_name(str(err))[:200]})"))
            continue
        name = exercise or _exercise_of(meta, path, known)
        if name is None:
            rejected.append(Rejected(shown, "could not tell which exercise this is (pass --exercise)"))
            continue
        key = (student, name)
        if key in seen:
            rejected.append(Rejected(shown, f"a second submission of {student} for {name} (graded: {seen[key]})"))
            continue
        seen[key] = shown
        work.append((path, student, cells, sections, name))

    exams = {name: Exam(known[name], seed) for name in sorted({w[-1] for w in work})}

    def one(item) -> GradeResult:
        path, student, cells, sections, name = item
        try:
            return _grade_one(path, student, cells, sections, exams[name], limits, sandbox)
        except Exception as err:  # the grader's own failure on one submission stays with it
            r = GradeResult(student, name, display_name(str(path)), title=known[name].title)
            r.notes.append(f"grading failed ({type(err).__name__}: {str(err)[:300]})")
            r.questions = [QuestionResult(q.id, 0, q.points, "not tested: grading failed", q.title)
                           for q in known[name].questions]
            return r

    from tqdm.auto import tqdm
    bar = tqdm(total=len(work), desc="grading", unit="notebook", disable=not progress)
    results = []
    with ThreadPoolExecutor(max(1, min(jobs, len(work) or 1))) as pool:
        for r in pool.map(one, work):
            results.append(r)
            bar.update(1)
    bar.close()
    return Batch(results, rejected, time.monotonic() - start, seed,
                 {name: known[name].max_points for name in sorted({r.exercise for r in results})})
