"""Instructor autograding: run each submitted notebook, then the hidden tests.

``dlstudio-lite grade SUBMISSIONS... --out grades.csv`` grades a batch of notebooks:

1. Every submission runs in its **own kernel** (nbclient) whose working folder is a fresh
   temporary folder holding nothing but what the student's code writes there.
2. Before the first student cell, a small *guard* is installed in the kernel: a Python audit
   hook that refuses to open, list or change files of the instructor (hidden tests, solutions,
   grade sheet, other students' folders) and refuses to start processes or open sockets.
3. The student's code cells run one by one with a per-cell and a per-notebook time limit;
   a cell that raises is recorded and the next one runs, a cell that times out is interrupted,
   and a kernel that ignores the interrupt is killed. Stored output is capped.
4. Only then are the hidden tests sent to the kernel, one question at a time, each with its
   own time limit. They never exist as a file the student's code could find. A question scores
   its points when its test runs to the end without raising, and zero otherwise.
5. One CSV row per student (points per question, total) and one feedback file per student
   (per question: passed, or what went wrong; plus the student's cells that raised).

Several notebooks are graded at once (one kernel each, ``jobs`` at a time), and nothing one
submission does changes another's result: results travel back over the kernel protocol, not
through files. The guard is defence in depth against careless or curious code, not a security
boundary: code that loads C libraries or writes through torch's C++ file writer can get past
it. Grade untrusted work inside a container or as a separate user when that matters.
"""
from __future__ import annotations

import asyncio
import csv
import inspect
import json
import math
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the notebook tools are imported where they are used
    import nbformat

from .exercises import HIDDEN_TESTS_SUBDIR, REPO_ROOT, Question

HIDDEN_TESTS_DIR = REPO_ROOT / HIDDEN_TESTS_SUBDIR
# Folders whose content a student's code must not read while it is graded.
INSTRUCTOR_DIRS = (REPO_ROOT / "instructor", REPO_ROOT / "solutions")
_FORMAT = "dlstudio-lite-hidden-tests/1"


@dataclass(frozen=True)
class Limits:
    """Time (seconds) and size limits of one graded notebook."""

    notebook_s: float = 120.0   # all of the student's cells together
    cell_s: float = 60.0        # one student cell
    test_s: float = 30.0        # one hidden test
    startup_s: float = 60.0     # starting the kernel
    probe_s: float = 5.0        # after a timeout: how long an interrupted kernel gets to answer
    output_chars: int = 100_000  # output kept from the student's cells (the rest is dropped)

    def __post_init__(self):
        for name in ("notebook_s", "cell_s", "test_s", "startup_s", "probe_s"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"Limits.{name} must be a positive number of seconds, got {value!r}")
        if self.output_chars < 0:
            raise ValueError(f"Limits.output_chars must be >= 0, got {self.output_chars!r}")


@dataclass
class HiddenTests:
    """The grader's tests for one exercise (``instructor/hidden_tests/<exercise>.json``)."""

    exercise: str
    title: str
    questions: list[Question]

    @property
    def max_points(self) -> int:
        return sum(q.points for q in self.questions)

    @classmethod
    def load(cls, path: str | Path) -> "HiddenTests":
        path = Path(path)
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != _FORMAT:
            raise ValueError(f"{path}: expected format {_FORMAT!r}, got {data.get('format')!r}")
        return cls(data["exercise"], data.get("title", data["exercise"]),
                   [Question(q["id"], int(q["points"]), q["code"]) for q in data["questions"]])


def load_hidden_tests(tests_dir: str | Path = HIDDEN_TESTS_DIR) -> dict[str, HiddenTests]:
    """All hidden tests in ``tests_dir``, by exercise name."""
    tests_dir = Path(tests_dir)
    found = {p.stem: HiddenTests.load(p) for p in sorted(tests_dir.glob("*.json"))}
    if not found:
        raise FileNotFoundError(f"no hidden tests (*.json) in {tests_dir}; "
                                f"run `dlstudio-lite exercises build` first")
    return found


@dataclass
class QuestionResult:
    id: str
    points: int
    max_points: int
    message: str  # "passed", or why not

    @property
    def passed(self) -> bool:
        return self.points == self.max_points


@dataclass
class GradeResult:
    """The grade of one submission."""

    student: str
    exercise: str
    path: str
    questions: list[QuestionResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    notebook: "nbformat.NotebookNode | None" = None  # the student's notebook as it ran (capped output)

    @property
    def total(self) -> int:
        return sum(q.points for q in self.questions)

    @property
    def max_total(self) -> int:
        return sum(q.max_points for q in self.questions)

    def points(self) -> dict[str, int]:
        return {q.id: q.points for q in self.questions}

    def feedback(self) -> str:
        """The text a student receives (no hidden-test code, only what was checked and what failed)."""
        lines = [f"# {self.exercise}: {self.student}", "",
                 f"Total: {self.total} / {self.max_total} points", "",
                 "| question | points | result |", "| --- | --- | --- |"]
        for q in self.questions:
            result = q.message.replace("|", "\\|").replace("\n", " ")
            lines.append(f"| {q.id} | {q.points} / {q.max_points} | {result} |")
        if self.notes:
            lines += ["", "## While running your notebook", ""]
            lines += [f"- {note}" for note in self.notes]
        return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- kernel side


def _install_guard(own_dir, no_read, write_ok):
    """Runs inside the student's kernel: refuse file and process access outside the rules.

    Audit hooks cannot be removed once added, so the student's later cells cannot switch
    this off by ordinary means. Reads are refused under ``no_read`` (except ``own_dir``);
    writes, deletes and renames are refused outside ``own_dir`` and ``write_ok``.
    """
    import os
    import sys

    realpath, fsdecode, sep, pid = os.path.realpath, os.fsdecode, os.sep, os.getpid()
    own = (realpath(own_dir),)
    no_read = tuple(realpath(p) for p in no_read)
    write_ok = tuple(realpath(p) for p in write_ok) + own
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    denied = {"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
              "os.fork", "os.forkpty", "pty.spawn", "os.killpg", "socket.connect", "socket.bind"}
    changes = {"os.remove": (0,), "os.rmdir": (0,), "shutil.rmtree": (0,), "os.rename": (0, 1),
               "os.truncate": (0,), "os.chmod": (0,), "os.chown": (0,), "os.mkdir": (0,),
               "os.symlink": (1,), "os.link": (1,), "os.utime": (0,), "os.chflags": (0,)}
    listings = {"os.listdir", "os.scandir"}

    def resolve(path):
        if path is None or isinstance(path, int):
            return None  # file descriptors were checked when they were opened
        try:
            return realpath(fsdecode(path))
        except (TypeError, ValueError):
            return None

    def under(path, roots):
        return any(path == root or path.startswith(root + sep) for root in roots)

    def refuse_read(path, event):
        path = resolve(path)
        if path is not None and under(path, no_read) and not under(path, own):
            raise PermissionError(f"{event}: reading {path} is not allowed during grading")

    def refuse_change(path, event):
        path = resolve(path)
        if path is not None and not under(path, write_ok):
            raise PermissionError(f"{event}: changing {path} is not allowed during grading "
                                  f"(only files in the working folder)")

    def hook(event, args):
        if event == "open":
            path, mode, flags = args
            refuse_read(path, event)
            writing = (mode is not None and any(c in mode for c in "wax+")) or bool(flags & write_flags)
            if writing:
                refuse_change(path, event)
        elif event in changes:
            for i in changes[event]:
                refuse_change(args[i], event)
        elif event in listings:
            refuse_read(args[0] if args else ".", event)
        elif event in denied:
            raise PermissionError(f"{event} is not allowed during grading")
        elif event == "os.kill" and args[0] != pid:
            raise PermissionError("os.kill: signalling other processes is not allowed during grading")

    sys.addaudithook(hook)


# ----------------------------------------------------------------------------- grader side


def _output_size(content: dict) -> int:
    if "text" in content:
        return len(content["text"])
    if "data" in content:
        return sum(len(v) if isinstance(v, str) else len(json.dumps(v)) for v in content["data"].values())
    return sum(len(line) for line in content.get("traceback", [])) + len(content.get("evalue", ""))


_CLIENT_CLASS = None


def _client_class():
    """nbclient's executor with a cap on kept output and a record of each execute reply.

    Built on first use, so that importing this module does not need nbclient.
    """
    global _CLIENT_CLASS
    if _CLIENT_CLASS is not None:
        return _CLIENT_CLASS
    from nbclient import NotebookClient

    class _Client(NotebookClient):
        def __init__(self, nb, output_chars: int, **kw):
            super().__init__(nb, **kw)
            self.budget = output_chars
            self.truncated = False
            self.reply: dict | None = None
            self.running = "the setup"  # what the kernel is doing, for the note if it dies
            self.on_cell_executed = self._store_reply

        def _store_reply(self, cell, cell_index, execute_reply):
            self.reply = execute_reply

        def output(self, outs, msg, display_id, cell_index):
            content = msg["content"]
            if msg["msg_type"] == "error":
                # Keep errors (they explain a lost point) but not an unbounded traceback.
                content["evalue"] = str(content.get("evalue", ""))[:2000]
                content["traceback"] = [line[:2000] for line in content.get("traceback", [])[-20:]]
            size = _output_size(content)
            if size > self.budget:
                self.truncated = True
                if msg["msg_type"] == "stream" and self.budget > 0:
                    content["text"] = content["text"][: self.budget]
                    size = self.budget
                elif msg["msg_type"] != "error":
                    return None  # a flood must not fill the grader's memory
            self.budget = max(0, self.budget - size)
            return super().output(outs, msg, display_id, cell_index)

        def handle_comm_msg(self, outs, msg, cell_index):
            return None  # widgets play no part in grading; their state could be made huge

    _CLIENT_CLASS = _Client
    return _Client


@dataclass
class _Job:
    path: Path
    student: str
    tests: HiddenTests | None
    notebook: "nbformat.NotebookNode | None"
    problem: str = ""  # why the submission cannot be run, if it cannot


def _error_text(content: dict) -> str:
    text = f"{content.get('ename', 'Error')}: {content.get('evalue', '')}".strip()
    return text if len(text) <= 400 else text[:397] + "..."


def read_submission(path: str | Path) -> "nbformat.NotebookNode":
    """A submitted notebook: ``.ipynb``, or a jupytext ``py:percent`` ``.py`` file."""
    import nbformat

    path = Path(path)
    if path.suffix == ".ipynb":
        return nbformat.read(path, as_version=4)
    if path.suffix == ".py":
        import jupytext
        return jupytext.read(path, fmt="py:percent")
    raise ValueError(f"{path}: expected a .ipynb or a jupytext .py notebook, got {path.suffix!r}")


def student_id(path: str | Path, exercise: str | None = None) -> str:
    """The student's id: the file name without extension (``alice.ipynb`` -> ``alice``).

    When the file keeps the exercise's own name (``alice/01_codebook.ipynb``), the folder
    name is used instead.
    """
    path = Path(path)
    if exercise and path.stem == exercise and path.parent.name:
        return path.parent.name
    return path.stem


def find_submissions(paths: list[str | Path]) -> list[Path]:
    """Notebook files among ``paths``; a folder contributes every ``*.ipynb`` below it."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(q for q in p.rglob("*.ipynb") if ".ipynb_checkpoints" not in q.parts)
        elif p.is_file():
            found.append(p)
        else:
            raise FileNotFoundError(f"submission not found: {p}")
    if not found:
        raise ValueError(f"no notebooks to grade in {[str(p) for p in paths]}")
    return found


def _exercise_of(nb: "nbformat.NotebookNode | None", path: Path, known: dict[str, HiddenTests]) -> str | None:
    if nb is not None:
        name = nb.metadata.get("dlstudio_lite", {}).get("exercise")
        if name in known:
            return name
    matches = [name for name in known if name in path.name or name == path.parent.name]
    return matches[0] if len(matches) == 1 else None


async def _execute(client, source: str, timeout: float, label: str) -> tuple[dict, "nbformat.NotebookNode"]:
    """Run ``source`` as an extra cell; return the reply content (status ok / error) and the cell."""
    import nbformat

    cell = nbformat.v4.new_code_cell(source)
    client.nb.cells.append(cell)  # nbclient writes the executed cell back at its index
    try:
        return await _run_cell(client, cell, len(client.nb.cells) - 1, timeout, label), cell
    finally:
        client.nb.cells.pop()


async def _run_cell(client, cell, index: int, timeout: float, label: str) -> dict:
    client.timeout = max(1, math.ceil(timeout))
    client.error_on_timeout = {"ename": "TimeoutError", "traceback": [],
                               "evalue": f"{label} did not finish within {client.timeout} s"}
    client.reply = None
    await client.async_execute_cell(cell, index, store_history=False)
    if client.reply is None:
        return {"status": "error", "ename": "RuntimeError", "evalue": f"{label} got no reply"}
    return client.reply["content"]


async def _responsive(client, limits: Limits) -> bool:
    """After a timeout: does the interrupted kernel answer again?"""
    try:
        reply, _ = await _execute(client, "pass", limits.probe_s, "probe")
    except Exception:
        return False
    return reply.get("status") == "ok"


def _kernel_env(own_dir: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONSTARTUP", None)
    env.update({
        "DLSTUDIO_LITE_QUICK": "1",       # exercises are tiny; quick mode keeps any demo tiny too
        "OMP_NUM_THREADS": "1",           # several kernels share the cores
        "MKL_NUM_THREADS": "1",
        "MPLBACKEND": "Agg",
        "TMPDIR": own_dir, "TEMP": own_dir, "TMP": own_dir,  # tempfile writes stay in the sandbox
        "PYTHONDONTWRITEBYTECODE": "1",
    })
    return env


def _write_kernel_spec(folder: Path) -> None:
    """A kernel spec that runs this very Python, so kernels see the grader's torch and package
    (a "python3" spec in the user's Jupyter folders could point at another environment)."""
    spec = folder / "grader"
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "dlstudio-lite grader", "language": "python"}))


def _kernel_manager(spec_folder: Path):
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    specs = KernelSpecManager(kernel_dirs=[str(spec_folder)], ensure_native_kernel=False)
    return AsyncKernelManager(kernel_name="grader", kernel_spec_manager=specs)


def _write_roots() -> list[str]:
    """Besides the working folder: device files and matplotlib's font cache."""
    home = Path.home()
    roots = ["/dev", str(home / ".cache" / "matplotlib"), str(home / ".config" / "matplotlib")]
    if os.environ.get("MPLCONFIGDIR"):
        roots.append(os.environ["MPLCONFIGDIR"])
    return roots


async def _run_student_cells(client, cells: list, result: GradeResult, limits: Limits) -> str:
    """Run the student's code cells in order; return why the kernel is unusable ('' if it is fine)."""
    deadline = time.monotonic() + limits.notebook_s
    for i, cell in enumerate(cells):
        if not cell.source.strip():
            continue
        left = deadline - time.monotonic()
        if left <= 0:
            result.notes.append(f"the notebook time limit ({limits.notebook_s:g} s) was reached; "
                                f"code cells from number {i + 1} on were not run")
            break
        first = next(line for line in cell.source.splitlines() if line.strip()).strip()
        client.running = f"code cell {i + 1} ({first[:50]!r})"  # the first line helps find the cell
        reply = await _run_cell(client, cell, i, min(limits.cell_s, left), f"code cell {i + 1}")
        if reply.get("status") == "error":
            result.notes.append(f"{client.running} raised {_error_text(reply)}")
            if reply.get("ename") == "TimeoutError" and not await _responsive(client, limits):
                return f"{client.running} ran past the time limit and ignored the interrupt"
    if client.truncated:
        result.notes.append(f"output beyond {limits.output_chars} characters was not kept")
    return ""


async def _run_hidden_tests(client, tests: HiddenTests, result: GradeResult, limits: Limits, dead: str) -> str:
    """Send each question's hidden test to the kernel; a question passes when its test runs to the end."""
    nonce = secrets.token_hex(16)
    for q in tests.questions:
        if dead:
            result.questions.append(QuestionResult(q.id, 0, q.points, f"not tested: {dead}"))
            continue
        client.budget, client.running = 10_000, f"the test of {q.id}"
        # The test runs on a copy of the student's namespace (it sees their functions, and its
        # own names do not overwrite theirs), through `builtins` in case they shadowed `exec`.
        source = ("import builtins as __dlsl_builtins\n"
                  f"__dlsl_builtins.exec(__dlsl_builtins.compile({q.code!r}, '<hidden test {q.id}>', 'exec'), "
                  f"__dlsl_builtins.dict(__dlsl_builtins.globals()))\n{nonce!r}")
        reply, cell = await _execute(client, source, limits.test_s, client.running)
        # Passing needs a clean reply *and* the nonce of the cell's last line, so that a test
        # that did not really run to its end can never count as passed.
        finished = any(nonce in str(o.get("data", {}).get("text/plain", ""))
                       for o in cell.outputs if o.get("output_type") == "execute_result")
        if reply.get("status") == "ok" and finished:
            result.questions.append(QuestionResult(q.id, q.points, q.points, "passed"))
            continue
        why = _error_text(reply) if reply.get("status") == "error" else "the test did not run to its end"
        result.questions.append(QuestionResult(q.id, 0, q.points, f"failed: {why}"))
        if reply.get("ename") == "TimeoutError" and not await _responsive(client, limits):
            dead = f"the test of {q.id} ran past the time limit and the kernel stopped answering"
    return dead


async def _grade_in_kernel(job: _Job, result: GradeResult, limits: Limits, own_dir: str,
                           no_read: list[str]) -> None:
    """Start a kernel in ``own_dir``, guard it, run the student's cells, then the hidden tests."""
    import nbformat

    nb, tests = job.notebook, job.tests
    run_nb = nbformat.v4.new_notebook(cells=[c for c in nb.cells if c.cell_type == "code"])
    for cell in run_nb.cells:
        cell.outputs, cell.execution_count = [], None
    client = _client_class()(
        run_nb, limits.output_chars, allow_errors=True, interrupt_on_timeout=True, iopub_timeout=2,
        startup_timeout=int(limits.startup_s), shutdown_kernel="immediate",
        resources={"metadata": {"path": own_dir}})
    client.km = _kernel_manager(Path(own_dir).parent / "kernels")
    dead = ""  # why the kernel can no longer run tests, once it cannot
    try:
        # The kernel's own stdout/stderr (C-level prints, warnings) must not flood the grader's terminal.
        await client.async_start_new_kernel(cwd=own_dir, env=_kernel_env(own_dir),
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        await client.async_start_new_kernel_client()
        guard = (inspect.getsource(_install_guard)
                 + f"\n_install_guard({own_dir!r}, {no_read!r}, {_write_roots()!r})\ndel _install_guard\n")
        reply, _ = await _execute(client, guard, limits.startup_s, "guard")
        if reply.get("status") != "ok":
            raise RuntimeError(f"could not install the grading guard: {_error_text(reply)}")
        dead = await _run_student_cells(client, run_nb.cells, result, limits)
        dead = await _run_hidden_tests(client, tests, result, limits, dead)
    except Exception as err:  # a dead kernel or any failure of one notebook must not stop the batch
        reason = f"the kernel stopped while running {client.running} ({type(err).__name__}: {err})"
        result.notes.append(reason)
        done = {q.id for q in result.questions}
        result.questions += [QuestionResult(q.id, 0, q.points, f"not tested: {reason}")
                             for q in tests.questions if q.id not in done]
    finally:
        try:
            await client._async_cleanup_kernel()
        except Exception:
            pass
    if dead:
        result.notes.append(dead + "; the kernel was stopped")
    code_cells = iter(run_nb.cells)
    for cell in nb.cells:  # put the (capped) outputs back into the submitted notebook
        if cell.cell_type == "code":
            ran = next(code_cells)
            cell.outputs, cell.execution_count = ran.outputs, ran.get("execution_count")
    result.notebook = nb


async def _grade_one(job: _Job, limits: Limits, work_root: str, no_read: list[str]) -> GradeResult:
    start = time.monotonic()
    result = GradeResult(job.student, job.tests.exercise if job.tests else "unknown", str(job.path))
    if job.problem or job.tests is None:
        problem = job.problem or "could not tell which exercise this is (pass --exercise)"
        result.notes.append(problem)
        if job.tests:
            result.questions = [QuestionResult(q.id, 0, q.points, f"not tested: {problem}")
                                for q in job.tests.questions]
        return result

    own_dir = tempfile.mkdtemp(prefix="nb-", dir=work_root)
    backstop = (limits.startup_s * 2 + limits.notebook_s + limits.probe_s * 3
                + len(job.tests.questions) * (limits.test_s + limits.probe_s) + 30)
    try:
        await asyncio.wait_for(_grade_in_kernel(job, result, limits, own_dir, no_read), backstop)
    except asyncio.TimeoutError:
        result.notes.append(f"grading stopped after {backstop:.0f} s")
        done = {q.id for q in result.questions}
        result.questions += [QuestionResult(q.id, 0, q.points, "not tested: grading ran out of time")
                             for q in job.tests.questions if q.id not in done]
    finally:
        shutil.rmtree(own_dir, ignore_errors=True)
    result.seconds = time.monotonic() - start
    return result


def _jobs(paths: list[Path], known: dict[str, HiddenTests], exercise: str | None) -> list[_Job]:
    jobs = []
    for path in paths:
        nb, problem = None, ""
        try:
            nb = read_submission(path)
        except Exception as err:
            problem = f"the file could not be read as a notebook ({type(err).__name__}: {err})"
        name = exercise or _exercise_of(nb, path, known)
        tests = known.get(name) if name else None
        jobs.append(_Job(path, student_id(path, name), tests, nb, problem))
    seen: dict[tuple[str, str], Path] = {}
    for job in jobs:
        key = (job.student, job.tests.exercise if job.tests else "unknown")
        if key in seen:
            raise ValueError(f"two submissions for student {key[0]!r} and exercise {key[1]!r}: "
                             f"{seen[key]} and {job.path}")
        seen[key] = job.path
    return jobs


def grade_submissions(paths: list[str | Path], *, exercise: str | None = None,
                      tests_dir: str | Path = HIDDEN_TESTS_DIR, jobs: int | None = None,
                      limits: Limits | None = None, protect: list[str | Path] = (),
                      progress: bool = True) -> list[GradeResult]:
    """Grade notebooks (files or folders of ``*.ipynb``); one :class:`GradeResult` each, in order.

    ``exercise`` names the exercise for every submission; by default each notebook's metadata
    (``dlstudio_lite.exercise``, written by the build) or its file name tells. ``jobs`` kernels
    run at once (default: the number of CPU cores). ``protect`` adds files and folders the
    students' code may not read or change (the grade sheet, for example).
    """
    limits = limits or Limits()
    known = load_hidden_tests(tests_dir)
    if exercise is not None and exercise not in known:
        raise ValueError(f"unknown exercise {exercise!r}: expected one of {sorted(known)}")
    submissions = find_submissions(paths)
    work = _jobs(submissions, known, exercise)
    # What the students' code may not read: the tests, the solutions, the grades, each other's work.
    no_read = [str(Path(tests_dir).resolve()), *map(str, INSTRUCTOR_DIRS),
               *(str(p.resolve()) for p in submissions), *(str(Path(p).resolve()) for p in protect)]
    python = Path(sys.prefix).resolve()
    for root in map(Path, no_read):
        if python == root or root in python.parents:
            raise ValueError(f"cannot protect {root}: it holds the Python environment ({python}) "
                             f"that the students' notebooks run in")
    if jobs is None:
        jobs = os.cpu_count() or 1
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    jobs = min(jobs, len(work))
    from tqdm.auto import tqdm

    async def run_all() -> list[GradeResult]:
        work_root = tempfile.mkdtemp(prefix="dlstudio-lite-grade-")
        _write_kernel_spec(Path(work_root) / "kernels")
        gate = asyncio.Semaphore(jobs)
        bar = tqdm(total=len(work), desc="grading", unit="notebook", disable=not progress)

        async def one(job: _Job) -> GradeResult:
            async with gate:
                result = await _grade_one(job, limits, work_root, no_read + [work_root])
            bar.update(1)
            bar.set_postfix_str(f"{result.student}: {result.total}/{result.max_total}")
            return result

        try:
            return list(await asyncio.gather(*(one(job) for job in work)))
        finally:
            bar.close()
            shutil.rmtree(work_root, ignore_errors=True)

    try:
        asyncio.get_running_loop()
    except RuntimeError:  # the usual case: no event loop yet
        return asyncio.run(run_all())
    # Called from a notebook, whose kernel already runs an event loop: use a thread of our own.
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, run_all()).result()


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, delete=False,
                                     suffix=".tmp", newline="") as tmp:
        tmp.write(text)
    os.chmod(tmp.name, 0o644)  # readable like any other file, not private like a temporary one
    Path(tmp.name).replace(path)


def write_grades_csv(results: list[GradeResult], path: str | Path) -> Path:
    """One row per submission: student, exercise, points per question, total, max, notes."""
    columns: list[str] = []
    for r in sorted(results, key=lambda r: r.exercise):
        columns += [q.id for q in r.questions if q.id not in columns]
    import io
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["student", "exercise", *columns, "total", "max_total", "notes"])
    for r in sorted(results, key=lambda r: (r.exercise, r.student)):
        points = r.points()
        writer.writerow([r.student, r.exercise, *(points.get(c, "") for c in columns),
                         r.total, r.max_total, " | ".join(r.notes)[:1000]])
    path = Path(path)
    _atomic_write(path, buf.getvalue())
    return path


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text) or "_"


def write_feedback(results: list[GradeResult], folder: str | Path) -> list[Path]:
    """``folder/<exercise>/<student>.md`` (and the executed notebook beside it) for each result."""
    import nbformat

    written = []
    for r in results:
        base = Path(folder) / _safe_name(r.exercise) / _safe_name(r.student)
        _atomic_write(base.with_suffix(".md"), r.feedback())
        written.append(base.with_suffix(".md"))
        if r.notebook is not None:
            _atomic_write(base.with_suffix(".ipynb"), nbformat.writes(r.notebook))
    return written
