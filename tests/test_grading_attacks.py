"""The hostile-submission catalogue: every attack is graded in ONE sandboxed batch, then checked.

Each entry is a notebook of exercise 01 (the blank or the solution) with attack cells added,
and the score an honest grader gives it. For every entry the test asserts the honest score,
that its feedback leaks nothing of the grader (hidden checks, environment, repository path),
and, for the whole batch: neighbours untouched (files and scores), every notebook graded,
no process left behind. Controls: every solution full marks, every blank zero. The same
batch grades the mistake catalogue of ``tests/mistakes.py`` (a few notebooks per exercise,
each with one wrong answer to every question): every mistake must lose its question; a
notebook that replays another run's answers scores nothing on the hidden checks; student
folders named with bytes that are not UTF-8, or with a newline, are graded.

Two attacks get batches of their own, because they measure the grader itself: replies that
try to exhaust its memory (its peak RSS is read), and a submission that fills every writable
place it can find (what it managed to write is counted).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import subprocess
import textwrap
import time
from pathlib import Path

import nbformat
import pytest

from dlstudio_lite.grading import checks, grader, report, sandbox
from dlstudio_lite.grading.exercises import REPO_ROOT
from mistakes import MISTAKES, check_cells, count, definitions, mistake_notebook

pytestmark = pytest.mark.skipif(sandbox.bwrap_problem() is not None,
                                reason=f"no sandbox here: {sandbox.bwrap_problem()}")

EX = "ex01_codebook"
HIDDEN = REPO_ROOT / "instructor" / "hidden_tests"
NAMES = sorted(p.stem for p in HIDDEN.glob("*.json"))
SECRET_ENV = "DLSL_GRADER_SECRET"
SECRET_VALUE = "grader-secret-7f3a9c"
# Text that exists only in the hidden checks (grader side): it must never reach a student.
LEAK_MARKERS = ("def verdict(r, z_e, codebook, shape, K)", "g = rng(11)", "Trusted: runs in the grader only",
                SECRET_VALUE)
WEIRD_ID = "=1+1 " + "é" * 115 + ".."
ODD_FOLDERS = {b"\xff\xfe-not-utf8": "\\xff\\xfe-not-utf8", b"new\nline": "new\\nline"}  # folder -> graded id
SEED = 27   # the batch's seed of the hidden inputs
LIMITS = sandbox.Limits(notebook_s=20, cell_s=8, probe_s=10, memory_bytes=4 * 2**30,
                        output_bytes=200_000, output_chars=20_000, processes=48, scratch_bytes=32 * 2**20)

def _notebook(kind: str, name: str = EX, *extra: str) -> nbformat.NotebookNode:
    nb = nbformat.read(REPO_ROOT / kind / f"{name}.ipynb", as_version=4)
    nb.cells += [nbformat.v4.new_code_cell(textwrap.dedent(s).strip()) for s in extra]
    return nb


def _catalogue(batch_dir: Path, out_dir: Path) -> dict[str, tuple[nbformat.NotebookNode, int]]:
    """Attack name -> (notebook, honest score out of 5)."""
    neighbour = batch_dir / "solution_ex01_codebook" / f"{EX}.ipynb"
    grades = out_dir / "grades.csv"
    blank = lambda *cells: (_notebook("exercises", EX, *cells), 0)      # noqa: E731
    solved = lambda *cells: (_notebook("solutions", EX, *cells), 5)     # noqa: E731
    wrong_answer = "def nearest_code(z_e, codebook):\n    return torch.zeros(1), z_e\n"
    return {
        # wrap_exec, wrap_compile, replace_import, patch_abs_math, ipython_hooks
        "rewrite_builtins": blank("""
            import builtins
            real = builtins.exec
            def exec(*a, **k):
                try:
                    return real(*a, **k)
                except BaseException:
                    return None
            builtins.exec = exec""", """
            import builtins
            real = builtins.compile
            builtins.compile = lambda src, name, mode, *a, **k: real("pass", name, mode)""", """
            import builtins
            real = builtins.__import__
            def fake(name, *a, **k):
                mod = real(name, *a, **k)
                if name == "torch":
                    mod.equal = lambda *x: True
                    mod.allclose = lambda *x, **y: True
                return mod
            builtins.__import__ = fake""", """
            import builtins, math
            builtins.abs = lambda x: 0.0
            math.isfinite = lambda x: True
            math.exp = lambda x: 1.0""", """
            ip = get_ipython()
            ip.input_transformers_post.append(lambda lines: ["pass\\n"])
            ip.events.register("post_run_cell", lambda result: setattr(result, "error_in_exec", None))"""),
        "patch_torch": blank(wrong_answer, """
            import torch
            torch.Tensor.argmin = lambda self, *a, **k: torch.zeros((), dtype=torch.long)
            torch.equal = lambda *a: True
            torch.allclose = lambda *a, **k: True
            torch.Tensor.__eq__ = lambda self, other: True"""),
        "read_expected_from_frames": blank("""
            import sys, torch
            def nearest_code(z_e, codebook):
                f = sys._getframe(1)
                while f is not None:
                    for key in ("expected", "best", "ref_idx"):
                        if key in f.f_locals:
                            return f.f_locals[key], z_e
                    f = f.f_back
                return torch.zeros(1), z_e"""),
        # tensor_subclass_return, pickle_smuggling, huge_return
        "smuggle_objects": blank("""
            import os, torch
            class Liar(torch.Tensor):               # a tensor subclass that says yes to every comparison
                def __eq__(self, other): return True
                def equal(self, other): return True
            class Evil:                              # an object whose unpickling would run a command
                def __reduce__(self):
                    return (os.system, ("touch /tmp/dlsl-pwned",))
            def nearest_code(z_e, codebook):
                B, D, h, w = z_e.shape
                return torch.zeros(B, h, w, dtype=torch.long).as_subclass(Liar), z_e.as_subclass(Liar)
            def perplexity(indices, num_codes):     # an unpicklable object and a 4 GB view
                return Evil(), torch.zeros(1).expand(10**9)"""),
        "forged_result_frames": blank("""
            import io, json, os, struct, sys, torch
            fd = int(sys.argv[2])
            def frame(meta, t):
                buf = io.BytesIO(); torch.save({"meta": json.dumps(meta), "t": t}, buf)
                data = buf.getvalue(); os.write(fd, struct.pack(">Q", len(data)) + data)
            frame({"kind": "question", "id": "perplexity", "results": [{"out": {"float": "8.0"}}] * 3}, {})
            frame({"kind": "question", "id": "nearest_code", "results": [{"raised": None, "out": {"py": 1}}]}, {})
            os.write(fd, struct.pack(">Q", 0))
            os._exit(0)"""),
        # audit_hook_and_settrace, update_display_leak
        "trace_and_display": blank("""
            import sys
            seen = []
            sys.addaudithook(lambda event, args: seen.append((event, str(args)[:300])))
            sys.settrace(lambda frame, event, arg: seen.append(frame.f_code.co_filename) or None)
            import atexit
            atexit.register(lambda: print("SEEN", seen[-2000:]))""", """
            from IPython.display import display, update_display
            display("x", display_id="leak")
            update_display(open(__file__).read(), display_id="leak")"""),
        # proc_of_the_grader, env_and_cmdline, hidden_files_by_path, hard_link_and_dir_fd, kernel_connection_files, dev_shm_dropping
        "snoop": blank(r"""
            import os
            for pid in os.listdir("/proc"):
                if pid.isdigit():
                    for what in ("cmdline", "environ"):
                        try:
                            print(pid, what, open(f"/proc/{pid}/{what}", "rb").read()[:2000])
                        except OSError as err:
                            print(pid, what, "refused", err)
            try:
                with open(f"/proc/{os.getppid()}/mem", "rb") as f:
                    print(f.read(100))
            except OSError as err:
                print("mem refused", err)""", """
            import os, sys
            print(dict(os.environ)); print(sys.argv); print(open("/proc/self/cmdline").read())
            print(open("/proc/1/cmdline").read())""", f"""
            import glob, os
            for pattern in ({str(HIDDEN / '*.json')!r}, {str(REPO_ROOT / 'instructor' / '**')!r},
                            {str(REPO_ROOT / 'solutions' / '*')!r}, "/run/**", "/home/**", "/tmp/**"):
                for path in glob.glob(pattern, recursive=True):
                    try:
                        print(path, open(path, errors="replace").read()[:3000])
                    except OSError as err:
                        print(path, err)""", f"""
            import os
            for src in ({str(HIDDEN / 'ex01_codebook.json')!r}, {str(REPO_ROOT / 'solutions' / 'ex01_codebook.py')!r}):
                try:
                    os.link(src, "stolen"); print(open("stolen").read())
                except OSError as err:
                    print("link refused", err)
            for folder in ("/", "/run/dlstudio-lite", {str(REPO_ROOT)!r}):
                try:
                    fd = os.open(folder, os.O_RDONLY)
                    print(os.listdir(fd))
                    print(open(os.open("instructor/hidden_tests/ex01_codebook.json", os.O_RDONLY, dir_fd=fd)).read())
                except OSError as err:
                    print("dir_fd refused", err)""", """
            import glob, os
            for pattern in ("/root/.local/share/jupyter/runtime/*", os.path.expanduser("~/.local/share/jupyter/runtime/*"),
                            "/tmp/**/*.json", "/run/user/**/*.json"):
                for path in glob.glob(pattern, recursive=True):
                    print(path, open(path, errors="replace").read())""", """
            open("/dev/shm/dlsl-dropping", "w").write("left behind")
            open("/tmp/dlsl-dropping", "w").write("left behind")"""),
        # overwrite_neighbour, redirect_feedback, fills_the_disk
        "write_outside": blank(f"""
            for path in ({str(neighbour)!r}, {str(grades)!r}):
                try:
                    open(path, "w").write("{{}}")
                except OSError as err:
                    print("refused", err)""", f"""
            import os
            for target in ({str(out_dir)!r}, {str(out_dir / 'feedback')!r}, {str(out_dir / 'feedback' / EX)!r}):
                try:
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    os.symlink("/tmp", target)
                except OSError as err:
                    print("refused", err)""", """
            with open("big", "wb") as f:
                for _ in range(10_000):
                    f.write(b"x" * 2**20)"""),
        "daemon_rewrites_grades": blank(f"""
            import _posixsubprocess, os, sys
            script = "import time\\nfor _ in range(600):\\n    time.sleep(0.1)\\n    try:\\n        open({str(grades)!r}, 'w').write('alice,100')\\n    except OSError:\\n        pass\\n"
            r, w = os.pipe()
            try:
                _posixsubprocess.fork_exec([sys.executable, "-c", script, "dlsl-daemon-marker"], [sys.executable.encode()],
                    True, (), None, None, -1, -1, -1, -1, -1, -1, r, w, True, True, 0, None, None, None, -1, None)
            except Exception as err:
                print("fork_exec:", err)
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    os.execv(sys.executable, [sys.executable, "-c", script, "dlsl-daemon-marker"])
                os._exit(0)"""),
        "kill_the_grader": blank("""
            import os, signal
            for pid in (os.getppid(), 1, -1):
                try:
                    os.kill(pid, signal.SIGTERM)
                except OSError as err:
                    print("kill refused", err)
            os.system("kill -TERM $PPID")"""),
        "memory_bomb": solved("""
            def bomb():
                hog = []
                while True:
                    hog.append(bytearray(256 * 2**20))
            bomb()""", "x = bytearray(10**12)"),
        "output_flood": solved("""
            while True:
                print("spam " * 20_000)"""),
        "top_level_infinite_loop": solved("while True:\n    pass"),
        "loop_that_swallows_the_timeout": blank("""
            while True:
                try:
                    while True:
                        pass
                except BaseException:
                    pass"""),
        "fork_bomb": blank("""
            import os, time
            for _ in range(10_000):
                if os.fork() == 0:
                    time.sleep(60)
                    os._exit(0)"""),
        "exits_the_process": blank("import os\nos._exit(3)"),
    }


def _replay_notebook(seed: int) -> nbformat.NotebookNode:
    """The blank exercise 01 plus a cell that answers every probe of run ``seed`` from a table
    (the solution's answers to that run's inputs): a perfect memory of that run's feedback."""
    exam = checks.Exam(checks.load_hidden_checks()[EX], seed)
    ns = definitions(EX, _notebook("solutions"))
    codes, usage = {}, {}
    for p in exam.probes["nearest_code"]:
        idx, z_q = ns["nearest_code"](*p.call.args)
        codes[tuple(p.call.args[0].shape)] = (idx.tolist(), z_q.tolist())
    for p in exam.probes["perplexity"]:
        indices, K = p.call.args
        usage[(tuple(indices.shape), K)] = float(ns["perplexity"](indices, K))
    return _notebook("exercises", EX, f"""
        import torch
        CODES, USAGE = {codes!r}, {usage!r}
        def nearest_code(z_e, codebook):
            idx, z_q = CODES[tuple(z_e.shape)]
            return torch.tensor(idx), torch.tensor(z_q)
        def perplexity(indices, num_codes):
            return torch.tensor(USAGE[(tuple(indices.shape), num_codes)])""")


def _fingerprint(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("catalogue")
    batch_dir, out_dir = root / "submissions", root / "out"
    entries = _catalogue(batch_dir, out_dir)
    expected: dict[tuple[str, str], int] = {}
    mistakes: dict[tuple[str, str], dict[str, str]] = {}
    for name in NAMES:
        points = {q["id"]: q["points"] for q in json.loads((HIDDEN / f"{name}.json").read_text())["questions"]}
        notebooks = {"solution": (_notebook("solutions", name), sum(points.values())), "blank": (_notebook("exercises", name), 0)}
        for k in range(count(name)):
            nb, applied = mistake_notebook(name, k)
            notebooks[f"mistakes{k}"] = (nb, sum(v for q, v in points.items() if q not in applied))
            mistakes[(f"mistakes{k}_{name}", name)] = applied
        for kind, (nb, score) in notebooks.items():
            folder = batch_dir / f"{kind}_{name}"
            folder.mkdir(parents=True)
            nbformat.write(nb, folder / f"{name}.ipynb")
            expected[(f"{kind}_{name}", name)] = score
    for attack, (nb, score) in entries.items():
        (batch_dir / attack).mkdir()
        nbformat.write(nb, batch_dir / attack / f"{EX}.ipynb")
        expected[(attack, EX)] = score
    # An id with a formula, unicode, dots and ~240 bytes: graded, escaped, its own file.
    (batch_dir / WEIRD_ID).mkdir()
    nbformat.write(_notebook("solutions"), batch_dir / WEIRD_ID / f"{EX}.ipynb")
    expected[(WEIRD_ID, EX)] = 5
    # Answers replayed from another run score nothing on the hidden checks; from this run, all.
    for student, seed, score in (("replay_other_run", SEED + 1, 0), ("replay_this_run", SEED, 5)):
        (batch_dir / student).mkdir()
        nbformat.write(_replay_notebook(seed), batch_dir / student / f"{EX}.ipynb")
        expected[(student, EX)] = score
    # Folders named with bytes that are not UTF-8, or with a newline: graded under escaped ids.
    for folder, student in ODD_FOLDERS.items():
        os.mkdir(os.path.join(os.fsencode(batch_dir), folder))
        nbformat.write(_notebook("solutions"), os.fsdecode(os.path.join(os.fsencode(batch_dir), folder, b"01_codebook.ipynb")))
        expected[(student, EX)] = 5
    # A jupytext .py submission inside a student's folder is graded like a notebook.
    (batch_dir / "py_in_folder").mkdir()
    (batch_dir / "py_in_folder" / "my_answers.py").write_text((REPO_ROOT / "solutions" / f"{EX}.py").read_text())
    expected[("py_in_folder", EX)] = 5
    # Not notebooks, or not this student's: rejected with a note, never graded.
    (batch_dir / "mallory").mkdir()
    os.symlink(REPO_ROOT / "solutions" / f"{EX}.ipynb", batch_dir / "mallory" / f"{EX}.ipynb")
    (batch_dir / "notes.txt").write_text("not a notebook")
    (batch_dir / "solution_ex01_codebook" / "second.ipynb").write_bytes(
        (batch_dir / "blank_ex01_codebook" / f"{EX}.ipynb").read_bytes())
    before = _fingerprint(batch_dir)

    # Secrets in the grader's environment, PATH included, must not reach any sandbox.
    path = os.environ["PATH"]
    os.environ[SECRET_ENV] = SECRET_VALUE
    os.environ["PATH"] = f"/nonexistent/{SECRET_VALUE}:{path}"
    start = time.monotonic()
    try:
        batch = grader.grade_submissions([batch_dir], jobs=2, limits=LIMITS, seed=SEED)
        report.write_report(batch, out_dir)
    finally:
        del os.environ[SECRET_ENV]
        os.environ["PATH"] = path
    seconds = time.monotonic() - start
    time.sleep(1.0)  # a daemon that outlived its sandbox would have written by now
    return {"batch": batch, "expected": expected, "entries": entries, "mistakes": mistakes, "out": out_dir, "seconds": seconds,
            "before": before, "after": _fingerprint(batch_dir), "batch_dir": batch_dir}


def _result(graded, student: str, exercise: str):
    found = [r for r in graded["batch"].results if r.student == student and r.exercise == exercise]
    assert len(found) == 1, f"{student}/{exercise} graded {len(found)} times"
    return found[0]


ATTACKS = list(_catalogue(Path("/x"), Path("/y")))


@pytest.mark.parametrize("attack", ATTACKS)
@pytest.mark.slow  # the 73-notebook sandboxed batch: about a minute of two cores
def test_attack_is_contained(graded, attack):
    r = _result(graded, attack, EX)
    honest = graded["expected"][(attack, EX)]
    assert r.total == honest, f"{attack}: scored {r.total}, honest score {honest}: {[q.message for q in r.questions]}"
    text = (graded["out"] / "feedback" / EX / f"{report.safe_name(attack)}.md").read_text()
    text += (graded["out"] / "feedback" / EX / f"{report.safe_name(attack)}.ipynb").read_text()
    for marker in LEAK_MARKERS:
        assert marker not in text, f"{attack}: its feedback contains {marker!r}"


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.slow  # the 73-notebook sandboxed batch: about a minute of two cores
def test_controls_solutions_full_blanks_zero(graded, name):
    for kind in ("solution", "blank"):
        r = _result(graded, f"{kind}_{name}", name)
        assert r.total == graded["expected"][(f"{kind}_{name}", name)], \
            f"{kind} of {name}: {r.total}/{r.max_total}: {[(q.id, q.message) for q in r.questions]}"


@pytest.mark.slow  # the 73-notebook sandboxed batch: about a minute of two cores
def test_every_catalogued_mistake_loses_its_question_and_most_are_caught_visibly(graded):
    """Hidden layer: every mistake loses its points. Visible layer: the question's check cell raised."""
    lines, kept, visible, total = [], [], 0, 0
    for (student, name), applied in sorted(graded["mistakes"].items()):
        r = _result(graded, student, name)
        cells = check_cells(name)
        for q in r.questions:
            if q.id not in applied:
                continue
            total += 1
            seen = r.cells[cells[q.id]]["error"] is not None
            visible += seen
            if q.points or "not tested" in q.message:
                kept.append(f"{name} {q.id}: {applied[q.id]!r} scored {q.points}/{q.max_points} ({q.message})")
            lines.append(f"{'visible' if seen else 'hidden only':11s}  {q.id:18s} {applied[q.id]}")
    print("\n" + "\n".join(sorted(lines)))
    print(f"mistake catalogue: {total} mistakes in {len(graded['mistakes'])} notebooks; hidden checks catch "
          f"{total - len(kept)}, visible checks {visible} ({visible / total:.0%})")
    assert total == sum(len(m) for _, m in MISTAKES.values())
    assert not kept, "mistakes that kept their points:\n" + "\n".join(kept)
    assert visible * 3 >= 2 * total, f"the visible checks catch only {visible} of {total} mistakes"


@pytest.mark.slow  # the 73-notebook sandboxed batch: about a minute of two cores
def test_batch_completes_and_neighbours_are_untouched(graded):
    batch = graded["batch"]
    assert len(batch.results) == len(graded["expected"])
    assert graded["before"] == graded["after"], "a submission changed files of the batch"
    rows = list(__import__("csv").DictReader((graded["out"] / "gradebook.csv").open()))
    assert {row["student"] for row in rows} == {report.spreadsheet_safe(s) for s, _ in graded["expected"]}
    assert _result(graded, WEIRD_ID, EX).total == 5 and "'" + WEIRD_ID in {row["student"] for row in rows}
    for row in rows:
        points = [int(v) for k, v in row.items() if k not in ("student", "total") and not k.endswith(" max") and v]
        assert int(row["total"]) == sum(points)
        assert int(row["total max"]) == sum(int(v) for k, v in row.items() if k.endswith(" max") and k != "total max")
    for student in ODD_FOLDERS.values():  # one printable id, its own feedback file
        assert (graded["out"] / "feedback" / EX / f"{report.safe_name(student)}.md").is_file()
    assert (graded["out"] / "seed.txt").read_text() == f"{SEED}\n" and (graded["out"] / "rejected.csv").is_file()
    rejected = {Path(x.path).name: x.reason for x in batch.rejected}
    assert "symlink" in rejected[f"{EX}.ipynb"] and "not a notebook" in rejected["notes.txt"]
    assert "second submission" in rejected["second.ipynb"]
    assert not Path("/tmp/dlsl-pwned").exists() and not Path("/dev/shm/dlsl-dropping").exists()
    assert not Path("/tmp/dlsl-dropping").exists()
    leftovers = subprocess.run(["pgrep", "-f", "dlsl-daemon-marker"], capture_output=True, text=True).stdout.split()
    assert leftovers == [], f"processes outlived their sandbox: {leftovers}"
    print(f"\ncatalogue: {len(batch.results)} notebooks graded in {graded['seconds']:.1f} s")


@pytest.mark.slow  # the 73-notebook sandboxed batch: about a minute of two cores
def test_a_replay_of_another_runs_answers_scores_nothing_on_the_hidden_checks(graded):
    other, this = _result(graded, "replay_other_run", EX), _result(graded, "replay_this_run", EX)
    assert this.total == this.max_total, [q.message for q in this.questions]  # the replay works on its own run
    assert other.total == 0 and all(q.points == 0 for q in other.questions), [q.message for q in other.questions]
    said = " ".join(q.message for q in other.questions)
    assert not re.search(r"expected [-0-9.]", said), f"hidden feedback shows values: {said}"


# ----------------------------------------------------------------------------- the grader's own resources


def _status_kib(key: str) -> int:
    return int(re.search(rf"^{key}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M).group(1))


FORGE = """
    import io, json, os, struct, sys, torch
    fd = int(sys.argv[2])
    def send(payload):
        os.write(fd, struct.pack(">Q", len(payload)) + payload)
    def reply(qid, descriptors, data=b""):
        head = json.dumps({"meta": {"kind": "question", "id": qid,
                                    "results": [{"out": {"tensor": "t0"}, "after": {}, "grads": []}] * 3},
                           "tensors": descriptors}).encode()
        send(struct.pack(">I", len(head)) + head + data)
"""


def test_replies_cannot_exhaust_the_graders_memory(tmp_path):
    """Stride-0 views (torch.save frames), tensors that claim more than they store, and large
    honest tensors: the grader's peak RSS stays within the documented bound of 2 x result_bytes
    + 64 MiB above what it held before, and every such reply scores 0."""
    limits = dataclasses.replace(LIMITS, result_bytes=16 * 2**20)
    attacks = {
        "stride_trick": FORGE + """
    for qid in ("nearest_code", "perplexity"):   # 1.6 KB frames holding 2**28 floats viewed from one
        buf = io.BytesIO()
        torch.save({"meta": json.dumps({"kind": "question", "id": qid, "results": [{"out": {"tensor": "t0"}, "after": {}}] * 3}),
                    "t": {"t0": torch.zeros(1).expand(2**28)}}, buf)
        send(buf.getvalue())
    reply("perplexity", {"t0": {"dtype": "float32", "shape": [2**28], "offset": 0}}, b"\\0" * 4)""",
        "honest_but_huge": FORGE + """
    n = 3 * 2**20                                 # 12 MiB of real floats: more than any answer needs
    reply("perplexity", {"t0": {"dtype": "float32", "shape": [n], "offset": 0}}, bytes(4 * n))""",
        "huge_return": """
    import torch
    def perplexity(indices, num_codes):
        return torch.ones(2**24)""",
    }
    subs = tmp_path / "subs"
    for name, cell in attacks.items():
        (subs / name).mkdir(parents=True)
        nbformat.write(_notebook("exercises", EX, cell), subs / name / f"{EX}.ipynb")
    checks.Exam(checks.load_hidden_checks()[EX], 0)   # warm the imports, then measure from here
    Path("/proc/self/clear_refs").write_text("5")      # reset the peak (VmHWM) to the current RSS
    before = _status_kib("VmRSS")
    batch = grader.grade_submissions([subs], jobs=1, limits=limits, seed=SEED)
    peak_mib = (_status_kib("VmHWM") - before) / 1024
    print(f"\ngrader peak RSS above its start: {peak_mib:.0f} MiB")
    assert peak_mib < 2 * limits.result_bytes / 2**20 + 64, f"the grader's peak grew by {peak_mib:.0f} MiB"
    results = {r.student: r for r in batch.results}
    assert set(results) == set(attacks) and all(r.total == 0 for r in results.values())
    perplexity = {name: next(q for q in r.questions if q.id == "perplexity").message for name, r in results.items()}
    assert perplexity["honest_but_huge"].startswith("malformed reply"), perplexity
    assert perplexity["stride_trick"].startswith("malformed reply"), perplexity


def test_a_submission_cannot_write_more_than_its_scratch_space(tmp_path):
    """All the files a submission writes (home, /tmp, /dev/shm, /, /dev, ...) and its output
    together stay within scratch_bytes + output_bytes (+ one pipe buffer)."""
    cap = 2 * LIMITS.scratch_bytes   # per place, so that a place without a limit cannot eat the machine's memory
    fill = f"""
    import os
    total = 0
    for place in (".", "/tmp", "/dev/shm", "/", "/dev", "/run", "/run/dlstudio-lite", "/home", "/proc/self"):
        written = 0
        try:
            fd = os.open(os.path.join(place, "fill"), os.O_WRONLY | os.O_CREAT, 0o600)
            while written < {cap}:
                written += os.write(fd, b"x" * 2**20)
        except OSError:
            pass
        total += written
    try:
        while total < 10 * {cap}:
            total += os.write(1, b"y" * 2**16)     # the output: stdout
    except OSError:
        pass
    raise RuntimeError(f"WROTE {{total}}")"""
    subs = tmp_path / "subs" / "filler"
    subs.mkdir(parents=True)
    nbformat.write(_notebook("solutions", EX, fill), subs / f"{EX}.ipynb")
    (r,) = grader.grade_submissions([subs.parent], jobs=1, limits=LIMITS, seed=SEED).results
    wrote = int(re.search(r"WROTE (\d+)", r.cells[-1]["error"] or "").group(1))
    print(f"\na submission wrote {wrote / 2**20:.1f} MiB in all (scratch {LIMITS.scratch_bytes / 2**20:.0f} MiB, "
          f"output {LIMITS.output_bytes / 2**20:.1f} MB)")
    assert wrote <= LIMITS.scratch_bytes + LIMITS.output_bytes + 2**16 + 2**20, f"wrote {wrote} bytes"
    assert r.total == 5   # the probes still ran: a full disk is the student's problem only

