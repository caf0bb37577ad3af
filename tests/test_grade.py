"""Grading without a sandbox run: submissions, ids, outputs, probes, the CLI and the release.

The sandboxed batch (solutions, blanks, wrong answers and the attack catalogue) is in
tests/test_grading_attacks.py; these tests start no sandbox.
"""
from __future__ import annotations

import csv
import io
import json
import os
import struct
import sys
from pathlib import Path

import nbformat
import pytest
import torch

import dlstudio_lite
from dlstudio_lite.cli import main
import mistakes
from dlstudio_lite.grading import checks, grader, probes, release, reply, report, runner, sandbox
from dlstudio_lite.grading.exercises import REPO_ROOT


def _result(student: str, exercise: str = "01_codebook", points=(3, 0)) -> grader.GradeResult:
    r = grader.GradeResult(student, exercise, f"{student}.ipynb", title="Exercise 1")
    r.questions = [checks.QuestionResult("nearest_code", points[0], 3, "passed" if points[0] else "wrong index"),
                   checks.QuestionResult("perplexity", points[1], 2, "passed" if points[1] else "expected 8.0")]
    return r


def test_the_model_package_imports_no_grading_code():
    code = ("import sys, dlstudio_lite; bad = [m for m in sys.modules if m.startswith('dlstudio_lite.grading')"
            " or m in ('nbformat', 'jupytext', 'nbclient')]; print(bad)")
    out = os.popen(f"{sys.executable} -c \"{code}\"").read().strip()
    assert out == "[]", out
    assert not hasattr(dlstudio_lite, "grade_submissions")


def test_safe_names_never_collide_and_stay_short():
    ids = ["alice", "alice.", "al/ice", "al\\ice", "..", "é" * 300, "x" * 250, "x" * 249 + "y", "ali ce", "ali_ce",
           "=cmd|' /C calc'!A0", ""]
    names = [report.safe_name(i) for i in ids]
    assert len(set(names)) == len(ids)
    assert all(len(n) <= 80 and "/" not in n and "." not in n and n for n in names)


def test_spreadsheet_formulas_are_escaped():
    assert report.spreadsheet_safe("=HYPERLINK(\"x\")") == "'=HYPERLINK(\"x\")"
    assert report.spreadsheet_safe("+1") == "'+1" and report.spreadsheet_safe("@x") == "'@x"
    assert report.spreadsheet_safe("alice") == "alice" and report.spreadsheet_safe(3) == 3


def test_report_writes_long_csv_gradebook_and_feedback_exclusively(tmp_path):
    results = [_result("=evil()", points=(3, 2)), _result("bob", points=(0, 2)), _result("bob", "02_elbo", (3, 0))]
    for r in results[2:]:
        r.questions = [checks.QuestionResult("kl_closed_form", 3, 3, "passed")]
    batch = grader.Batch(results, [grader.Rejected("x.txt", "not a notebook (.txt)")])
    paths = report.write_report(batch, tmp_path / "out")
    rows = list(csv.DictReader(paths["grades"].open()))
    assert {(r["student"], r["question"], r["points"], r["max"]) for r in rows} >= {
        ("'=evil()", "nearest_code", "3", "3"), ("bob", "perplexity", "2", "2"), ("bob", "kl_closed_form", "3", "3")}
    book = list(csv.DictReader(paths["gradebook"].open()))
    assert [r["student"] for r in book] == ["'=evil()", "bob"]
    assert book[1] == {"student": "bob", "01_codebook": "2", "01_codebook max": "5", "02_elbo": "3", "02_elbo max": "3",
                       "total": "5", "total max": "8"}
    assert book[0]["02_elbo"] == "" and book[0]["02_elbo max"] == "3"  # no 02 handed in: blank, out of 3
    md = (paths["feedback"] / "01_codebook" / (report.safe_name("bob") + ".md")).read_text()
    assert "Total: 2 / 5" in md and "## Question 1: nearest_code (0 / 3 points)\n\nwrong index\n" in md
    with pytest.raises(FileExistsError):  # an existing folder (or a planted symlink) is never written into
        report.write_report(batch, tmp_path / "out")
    os.symlink(tmp_path / "elsewhere", tmp_path / "link")
    with pytest.raises(FileExistsError):
        report.write_report(batch, tmp_path / "link")
    assert not (tmp_path / "elsewhere").exists()


def test_submissions_belong_to_their_folder_and_symlinks_are_refused(tmp_path):
    nb = nbformat.v4.new_notebook()
    for rel in ("alice/01_codebook.ipynb", "alice/bob.ipynb", "carol.ipynb", "dave/work/01_codebook.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, tmp_path / rel)
    (tmp_path / "erin").mkdir()
    os.symlink(tmp_path / "carol.ipynb", tmp_path / "erin" / "01_codebook.ipynb")
    os.symlink(tmp_path / "alice", tmp_path / "frank")
    (tmp_path / "readme.txt").write_text("x")
    found, rejected = grader.find_submissions([tmp_path])
    assert sorted((p.relative_to(tmp_path).as_posix(), s) for p, s in found) == [
        ("alice/01_codebook.ipynb", "alice"), ("alice/bob.ipynb", "alice"), ("carol.ipynb", "carol"),
        ("dave/work/01_codebook.py", "dave")]
    reasons = {Path(x.path).name: x.reason for x in rejected}
    assert "symlink" in reasons["01_codebook.ipynb"] and "symlink" in reasons["frank"]
    assert "not a notebook" in reasons["readme.txt"]
    fifo = tmp_path / "pipe.ipynb"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="regular"):
        grader.read_cells(fifo)


ODD_NAMES = [b"\xff\xfe-latin1", b"new\nline", "é".encode() * 127, b"\xff", b"\\xff", b"=x", b"'=x", b"tab\there",
             "\u202etxt.exe".encode(), b"a" * 255]


def test_any_byte_sequence_as_a_name_is_graded_under_its_own_printable_id(tmp_path):
    """Student folders and files named with any bytes: each a distinct printable id, all three sheets written."""
    root = os.fsencode(tmp_path / "subs")
    os.mkdir(root)
    nb = nbformat.writes(nbformat.v4.new_notebook())
    for name in ODD_NAMES:
        os.mkdir(os.path.join(root, name))
        with open(os.path.join(root, name, b"\xe9t\xe9.ipynb"), "w") as f:  # latin-1 file name
            f.write(nb)
    with open(os.path.join(root, b"\xfftop.ipynb"), "w") as f:  # given at the top: the id is the file's stem
        f.write(nb)
    with open(os.path.join(root, b"\xfenotes\n.txt"), "w") as f:
        f.write("x")
    found, rejected = grader.find_submissions([os.fsdecode(root)])
    ids = [student for _, student in found]
    assert len(ids) == len(set(ids)) == len(ODD_NAMES) + 1
    assert all(s.isprintable() for s in ids) and "\\xff\\xfe-latin1" in ids and "new\\nline" in ids and "\\\\xff" in ids
    assert {"\\xff", "\\\\xff"} <= set(ids) and {"=x", "'=x"} <= set(ids)  # colliding looks, distinct ids
    assert len(rejected) == 1 and rejected[0].path.isprintable() and "\\xfenotes\\n.txt" in rejected[0].path
    results = [_result(s) for s in ids]
    for r, (path, _) in zip(results, found):
        r.path = grader.display_name(str(path))
        r.cells = [{"source": "print('\udcff')", "output": "\udcff", "error": None, "section": ""}]
    paths = report.write_report(grader.Batch(results, rejected, seed=7), tmp_path / "out")
    for sheet in ("grades", "gradebook", "rejected"):
        assert paths[sheet].is_file()
    book = list(csv.DictReader(paths["gradebook"].open(encoding="utf-8")))
    assert sorted(row["student"] for row in book) == sorted(report.spreadsheet_safe(s) for s in ids)
    assert len({row["student"] for row in book}) == len(ids)  # "=x" and "'=x" stay apart after the formula escape
    assert [row["path"] for row in csv.DictReader(paths["rejected"].open(encoding="utf-8"))] == [rejected[0].path]
    assert paths["seed"].read_text() == "7\n"
    assert len(list((paths["feedback"] / "01_codebook").glob("*.md"))) == len(ids)


def test_cli_grades_a_batch_with_a_non_utf8_folder_and_writes_every_sheet(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(sandbox, "_BWRAP_OK", {"answer": "no bubblewrap in this test"})
    root = os.fsencode(tmp_path / "subs")
    os.makedirs(os.path.join(root, b"\xff\xfe"))
    nbformat.write(nbformat.read(REPO_ROOT / "exercises" / "ex01_codebook.ipynb", as_version=4),
                   os.fsdecode(os.path.join(root, b"\xff\xfe", b"01_codebook.ipynb")))
    assert main(["grade", os.fsdecode(root), "--out", str(tmp_path / "out"), "--trust-submissions", "--quiet",
                 "--seed", "5"]) == 0
    assert "ex01_codebook  \\xff\\xfe: 0/5" in capsys.readouterr().out
    for sheet in ("grades.csv", "gradebook.csv", "rejected.csv", "seed.txt"):
        assert (tmp_path / "out" / sheet).is_file(), sheet
    book = list(csv.DictReader((tmp_path / "out" / "gradebook.csv").open()))
    assert [(r["student"], r["ex01_codebook"], r["ex01_codebook max"]) for r in book] == [("\\xff\\xfe", "0", "5")]


def test_feedback_names_the_question_and_quotes_the_failing_cell():
    r = _result("dave", points=(0, 2))
    r.questions[0].title, r.questions[1].title = "Question 1: nearest-code lookup", "Question 2: perplexity"
    r.cells = [{"source": "import torch", "output": "", "error": None, "section": ""},
               {"source": "\n# Check: three codes\ncodes = torch.tensor([[0.0]])\nassert False", "output": "",
                "error": "AssertionError: indices: expected shape (1, 2, 3), got (6,)", "section": "Question 1: nearest-code lookup"},
               {"source": "x = 1 / 0", "output": "", "error": "ZeroDivisionError: division by zero", "section": ""}]
    md = report.feedback_markdown(r)
    q1 = md.index("## Question 1: nearest-code lookup")
    assert md.index("the cell starting `# Check: three codes` raised AssertionError: indices: expected shape", q1) < md.index("## Question 2")
    assert "the cell starting `x = 1 / 0` raised ZeroDivisionError" in md.split("## While running your notebook")[1]
    assert "code cell" not in md


def test_probes_encode_inputs_only_and_decode_plain_data():
    z = torch.randn(2, 3, requires_grad=True)
    op = probes.Op("mul", z, 2.0)
    call = probes.Call("f", z, op, probes.Gen(4), k=float("inf"),
                       grads=[probes.Grad([(probes.Out(0), torch.ones(2, 3))], wrt=[z])])
    tensors: dict = {}
    spec = probes.encode_call(call, tensors)
    sent = probes.json_spec(spec)
    assert set(sent) == {"target", "args", "kwargs", "grads", "nodes"}
    assert [n["kind"] for n in sent["nodes"]] == ["tensor", "op", "tensor"]  # z once, shared by op
    probes.dumps(sent)  # plain JSON
    assert all(type(t) is torch.Tensor and not t.requires_grad for t in tensors.values())
    with pytest.raises(TypeError):
        probes.encode_call(probes.Call("f", object()), {})
    t = {"a": torch.ones(2)}
    assert probes.decode({"tuple": [{"tensor": "a", "rg": True}, {"py": 3}]}, t)[1] == 3
    for bad in ({"tensor": "missing"}, {"py": [1]}, {"eval": "x"}, "x"):
        with pytest.raises(probes.ProtocolError):
            probes.decode(bad, t)


def test_result_frames_are_never_unpickled(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    buf = io.BytesIO()
    torch.save({"meta": "{}", "t": {"x": Evil()}}, buf)
    for frame in (pickle.dumps({"meta": "{}", "t": {"x": Evil()}}), buf.getvalue()):
        with pytest.raises(reply.MalformedReply):
            _, descriptors, start = reply.header(frame)
            reply.tensors(frame, descriptors, start, reply.Budget(10, 10))
    assert not (tmp_path / "pwned").exists()


def _frame(descriptors: dict, data: bytes, meta=None) -> bytes:
    head = json.dumps({"meta": meta or {"kind": "question", "id": "q"}, "tensors": descriptors}).encode()
    return struct.pack(">I", len(head)) + head + data


def _read(frame: bytes, budget: reply.Budget) -> dict:
    _, descriptors, start = reply.header(frame)
    return reply.tensors(frame, descriptors, start, budget)


def test_replies_are_checked_against_the_budget_before_any_tensor_is_built():
    budget = reply.Budget(tensor_elements=1000, total_elements=1500)
    honest = {"a": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.tensor([True, False]),
              "c": torch.zeros(0, 4, dtype=torch.int64), "d": torch.tensor(2.5, dtype=torch.float64)}
    got = _read(runner.frame_bytes({"kind": "question", "id": "q"}, honest), budget)
    assert all(torch.equal(got[k], v) and got[k].dtype == v.dtype for k, v in honest.items())
    one_float = struct.pack("<f", 1.0)
    cases = {  # what a forged reply claims -> refused, before anything is allocated
        "2**28 floats stored as one (the stride-0 trick)": ({"x": {"dtype": "float32", "shape": [2**28], "offset": 0}}, one_float),
        "more elements than the question's answers can need": ({"x": {"dtype": "uint8", "shape": [1001], "offset": 0}}, bytes(1001)),
        "more elements in all than the budget": ({f"x{i}": {"dtype": "uint8", "shape": [600], "offset": 0} for i in range(3)}, bytes(600)),
        "bytes past the end": ({"x": {"dtype": "float32", "shape": [1], "offset": 4}}, one_float),
        "a negative offset": ({"x": {"dtype": "float32", "shape": [1], "offset": -4}}, one_float),
        "an unknown dtype": ({"x": {"dtype": "object", "shape": [1], "offset": 0}}, one_float),
        "a negative size": ({"x": {"dtype": "float32", "shape": [-1], "offset": 0}}, one_float),
        "too many dimensions": ({"x": {"dtype": "float32", "shape": [1] * 40, "offset": 0}}, one_float),
    }
    for why, (descriptors, data) in cases.items():
        with pytest.raises(reply.MalformedReply):
            _read(_frame(descriptors, data), budget)
            pytest.fail(f"accepted {why}")
    for bad in (b"", struct.pack(">I", 2**31) + b"{}", struct.pack(">I", 20_001) + b"[" * 20_000 + b"]",
                struct.pack(">I", 2) + b"[]", struct.pack(">I", 2) + b"\xff\xfe"):
        with pytest.raises(reply.MalformedReply):
            reply.header(bad)
    padded = _frame({}, b"", {"kind": "question", "id": "q", "pad": "x" * 70_000})
    with pytest.raises(reply.MalformedReply, match="header"):
        _read(padded, reply.Budget(10, 10, header_bytes=65536))


def test_each_question_gets_a_budget_from_its_reference_answers():
    exam = checks.Exam(checks.load_hidden_checks()["ex06_vqgan"], seed=0)
    budget = exam.budgets["top_k_sampling"]
    assert 16_000 <= budget.tensor_elements <= 4 * 16_000  # the (4000, 4) logits come back, and at most 4x that
    assert exam.budgets["hinge_losses"].tensor_elements == 4096  # the floor for small answers
    job = torch.load(io.BytesIO(exam.job(["x = 1"], sandbox.Limits(), "@@m", [])), weights_only=True)
    question = next(q for q in json.loads(job["meta"])["questions"] if q["id"] == "top_k_sampling")
    assert question["tensor_elements"] == budget.tensor_elements  # the runner sends no more than the grader takes


def test_hidden_inputs_change_with_the_seed_and_every_mistake_fails_without_values_in_its_feedback():
    """In this process (our own notebooks): each catalogued mistake loses its question under two
    run seeds, and its hidden feedback is the same sentence under both: it names the failed
    property, no number that depends on the run's inputs (which differ between the seeds)."""
    hidden = checks.load_hidden_checks()
    messages: dict[tuple, set] = {}
    for name in mistakes.exercises():
        exams = [checks.Exam(hidden[name], seed) for seed in (101, 202)]
        assert any(not torch.equal(exams[0].tensors[k], exams[1].tensors[k]) for k in exams[0].tensors), name
        for k in range(mistakes.count(name)):
            nb, applied = mistakes.mistake_notebook(name, k)
            ns = mistakes.definitions(name, nb)
            for exam in exams:
                answers = exam.run_locally(ns)
                for qid, mistake in applied.items():
                    messages.setdefault((name, qid, mistake), set()).add(exam.judge(qid, *answers[qid]))
    kept = [key for key, said in messages.items() if "passed" in said]
    assert not kept, f"mistakes that kept their points under some seed: {kept}"
    differ = {key: said for key, said in messages.items() if len(said) > 1}
    assert not differ, f"hidden feedback that changes with the run's inputs (values in it?): {differ}"
    assert len(messages) == sum(len(m) for _, m in mistakes.MISTAKES.values())


def test_every_question_has_probes_and_no_check_enters_a_job():
    for name, hidden in checks.load_hidden_checks().items():
        exam = checks.Exam(hidden, seed=0)
        assert set(exam.probes) == {q.id for q in hidden.questions}
        job = exam.job(["x = 1"], sandbox.Limits(), "@@m", [])
        for q in hidden.questions:  # not one line of a check, not the reference, in the bytes sent
            for line in q.code.splitlines():
                if "assert" in line or line.startswith("def "):
                    assert line.strip().encode() not in job, f"{name}/{q.id}: {line!r} is in the job"


def test_grade_refuses_without_a_sandbox(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(sandbox, "_BWRAP_OK", {"answer": "bubblewrap is not installed: `sudo apt-get install bubblewrap`"})
    nb = tmp_path / "alice.ipynb"
    nbformat.write(nbformat.read(REPO_ROOT / "exercises" / "ex01_codebook.ipynb", as_version=4), nb)
    assert main(["grade", str(nb), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "refusing" in err and "apt-get install bubblewrap" in err and "--trust-submissions" in err
    assert not (tmp_path / "out").exists()


def test_limits_reject_nonsense():
    with pytest.raises(ValueError, match="cell_s"):
        sandbox.Limits(cell_s=0)
    with pytest.raises(ValueError, match="memory_bytes"):
        sandbox.Limits(memory_bytes=-1)


def test_release_has_no_solutions_or_hidden_checks(tmp_path):
    files = release.release_files()
    assert files and not any(f.startswith(("solutions/", "instructor/", "benchmarks/")) for f in files)
    assert "exercises/ex01_codebook.ipynb" in files and "dlstudio_lite/__init__.py" in files
    assert not any(f in release.INSTRUCTOR_TESTS for f in files) and "tests/mistakes.py" not in files
    out = tmp_path / "release"
    release.build_release(out)
    assert release.check_release(out) == []
    assert (out / "START_HERE.md").is_file() and (out / ".jupyter").is_dir()  # the students' first screen
    (out / "exercises" / "leak.py").write_text("### BEGIN SOLUTION\n")
    assert any("leak.py" in p for p in release.check_release(out))
    with pytest.raises(FileExistsError):
        release.build_release(out)


def test_trust_submissions_grades_without_a_sandbox(monkeypatch, tmp_path):
    monkeypatch.setattr(sandbox, "_BWRAP_OK", {"answer": "no bubblewrap in this test"})
    nb = tmp_path / "alice.ipynb"
    nbformat.write(nbformat.read(REPO_ROOT / "solutions" / "ex01_codebook.ipynb", as_version=4), nb)
    batch = grader.grade_submissions([nb], trust_submissions=True, limits=sandbox.Limits(notebook_s=60))
    assert [(r.student, r.total, r.max_total) for r in batch.results] == [("alice", 5, 5)]


def test_feedback_names_questions_by_title_and_puts_numbers_in_a_code_block():
    r = _result("carol", points=(0, 2))
    r.questions[0] = checks.QuestionResult("nearest_code", 0, 3, "indices: expected\ntensor([[1, 2]])\ngot\ntensor([[2, 1]])",
                                           "Question 1: nearest-code lookup")
    md = report.feedback_markdown(r)
    assert "## Question 1: nearest-code lookup (0 / 3 points)\n\nindices: expected\n\n```text\ntensor([[1, 2]])\ngot\n" in md
    assert md.count("```") == 2


def test_a_failed_gradient_is_explained_without_autograd_wording():
    from dlstudio_lite.grading.probes import _gradient_failure

    text = _gradient_failure("straight_through", "RuntimeError: One of the differentiated Tensors appears to not have "
                                                 "been used in the graph. Set allow_unused=True if this is the desired behavior.")
    assert "no gradient flows from what straight_through returned" in text and "allow_unused" not in text
