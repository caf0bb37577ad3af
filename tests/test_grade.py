"""Grading without a sandbox run: submissions, ids, outputs, probes, the CLI and the release.

The sandboxed batch (solutions, blanks, wrong answers and the attack catalogue) is in
tests/test_grading_attacks.py; these tests start no sandbox.
"""
from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

import nbformat
import pytest
import torch

import dlstudio_lite
from dlstudio_lite.cli import main
from dlstudio_lite.grading import checks, grader, probes, release, report, sandbox
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
    assert book[1] == {"student": "bob", "01_codebook": "2", "02_elbo": "3", "total": "5"}
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


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_result_frames_are_loaded_without_unpickling_code(tmp_path):
    import io
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    with pytest.raises(probes.ProtocolError):
        checks.read_frame(pickle.dumps({"meta": "{}", "t": {"x": Evil()}}))
    buf = io.BytesIO()
    torch.save({"meta": "{}", "t": {"x": Evil()}}, buf)
    with pytest.raises(probes.ProtocolError):
        checks.read_frame(buf.getvalue())
    assert not (tmp_path / "pwned").exists()


def test_every_question_has_probes_and_no_check_enters_a_job():
    for name, hidden in checks.load_hidden_checks().items():
        exam = checks.Exam(hidden)
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
