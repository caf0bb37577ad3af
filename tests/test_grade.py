"""Instructor grading: full marks, zero marks, one lost question per wrong answer, containment.

Kernels are expensive, so every notebook that needs one is graded in a single batch (two at
a time) inside ``test_grading_batch``, which then checks all of it and reports every failed
expectation at once. The other tests start at most a few kernels of their own.
"""
from __future__ import annotations

import csv
import json
import shutil
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

from dlstudio_lite import grade
from dlstudio_lite.cli import main
from dlstudio_lite.exercises import REPO_ROOT

HIDDEN = REPO_ROOT / "instructor" / "hidden_tests"
NAMES = sorted(p.stem for p in HIDDEN.glob("*.json"))

# One plausible wrong answer per question: (exercise, text in the solution, replacement).
MUTANTS = {
    "nearest_code": ("01_codebook", "torch.cdist(flat, codebook).argmin(dim=1)",
                     "torch.cdist(flat, codebook).argmax(dim=1)"),
    "perplexity": ("01_codebook", "probs = counts / counts.sum()", "probs = counts / indices.shape[0]"),
    "kl_closed_form": ("02_elbo", "terms = logvar_p - logvar_q + (var_q + (mu_q - mu_p) ** 2) / var_p - 1.0",
                       "terms = logvar_q - logvar_p + (var_p + (mu_q - mu_p) ** 2) / var_q - 1.0"),
    "kl_monte_carlo": ("02_elbo", "z = mu_q + torch.exp(0.5 * logvar_q) * eps", "z = mu_q + torch.exp(logvar_q) * eps"),
    "conv_output_size": ("03_autoencoder", "return (size + 2 * padding - kernel_size) // stride + 1",
                         "return (size + 2 * padding - kernel_size) // stride"),
    "skip_block": ("03_autoencoder", "return out + identity", "return out"),
    "reparameterize": ("04_vae", "return mu + torch.exp(0.5 * logvar) * eps", "return mu + torch.exp(logvar) * eps"),
    "vae_loss": ("04_vae", "kl = -0.5 * torch.sum(", "kl = 0.5 * torch.sum("),
    "vq_losses": ("05_vqvae", "codebook_loss = F.mse_loss(z_q, z_e.detach())", "codebook_loss = F.mse_loss(z_q, z_e)"),
    "straight_through": ("05_vqvae", "return z_e + (z_q - z_e).detach()", "return z_e + (z_q - z_e)"),
    "fix_quantizer": ("05_vqvae", "indices = distances.argmin(dim=1)", "indices = distances.argmax(dim=1)"),
    "adaptive_lambda": ("06_vqgan", "rec_grad = torch.autograd.grad(rec_loss, last_layer_weight, retain_graph=True)[0]",
                        "rec_grad = torch.autograd.grad(rec_loss, last_layer_weight)[0]"),
    "hinge_losses": ("06_vqgan", "F.relu(1.0 + logits_fake)", "F.relu(1.0 - logits_fake)"),
    "top_k_sampling": ("06_vqgan", "logits = logits / temperature", "logits = logits * temperature"),
}

LIMITS = grade.Limits(notebook_s=90, cell_s=15, test_s=15, probe_s=3, output_chars=20_000)
SECRET = "manual_seed(11)"  # a line of the hidden test of nearest_code, not in any notebook


def _questions(name: str) -> dict[str, int]:
    return {q["id"]: q["points"] for q in json.loads((HIDDEN / f"{name}.json").read_text())["questions"]}


def _solution(name: str) -> nbformat.NotebookNode:
    return nbformat.read(REPO_ROOT / "solutions" / f"{name}.ipynb", as_version=4)


def _with_cells(name: str, *sources: str, after: str | None = None) -> nbformat.NotebookNode:
    """The solution of ``name`` with code cells added at the end (or after the cell defining ``after``)."""
    nb = _solution(name)
    cells = [nbformat.v4.new_code_cell(textwrap.dedent(s)) for s in sources]
    at = len(nb.cells)
    if after is not None:
        at = 1 + next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and f"def {after}(" in c.source)
    nb.cells[at:at] = cells
    return nb


def _mutant(qid: str) -> nbformat.NotebookNode:
    name, old, new = MUTANTS[qid]
    nb = _solution(name)
    hits = [c for c in nb.cells if c.cell_type == "code" and old in c.source]
    assert len(hits) == 1 and hits[0].source.count(old) == 1, f"mutant of {qid}: {old!r} must occur once"
    hits[0].source = hits[0].source.replace(old, new)
    return nb


def _containment(victim: Path, tests_copy: Path) -> dict[str, nbformat.NotebookNode]:
    ex = "01_codebook"
    return {
        # Cells that raise: graded anyway, the answers defined before and after still count.
        "crash": _with_cells(ex, "1 / 0", "import a_module_that_does_not_exist", after="nearest_code"),
        # The kernel process exits: nothing can be tested, the batch goes on.
        "exiter": _with_cells(ex, "import os\nos._exit(3)"),
        # A top-level infinite loop (interrupted) and an answer that never returns.
        "loop": _with_cells(ex, "while True:\n    pass",
                            "def perplexity(indices, num_codes):\n    while True:\n        pass"),
        # A loop that swallows the interrupt: the kernel is killed.
        "stubborn": _with_cells(ex, """
            import time
            while True:
                try:
                    time.sleep(0.05)
                except KeyboardInterrupt:
                    pass
            """),
        # Tens of megabytes of output.
        "flood": _with_cells(ex, "for _ in range(200):\n    print('spam ' * 20_000)"),
        # Tries to delete and overwrite files outside its folder, other students' folders included.
        "deleter": _with_cells(ex, f"""
            import os, shutil
            attempts = {{
                "remove victim": lambda: os.remove({str(victim / 'keep.txt')!r}),
                "overwrite victim": lambda: open({str(victim / 'keep.txt')!r}, "w").write("gone"),
                "rmtree batch folder": lambda: shutil.rmtree(os.path.dirname(os.getcwd())),
                "remove hidden tests": lambda: os.remove({str(tests_copy / 'hidden' / '01_codebook.json')!r}),
                "rename hidden tests": lambda: os.rename({str(tests_copy / 'hidden')!r}, "stolen"),
            }}
            for what, attempt in attempts.items():
                try:
                    attempt()
                    print(what, "SUCCEEDED")
                except OSError as err:
                    print(what, "refused:", type(err).__name__)
            """),
        # Looks for the hidden tests on disk and in the cells run after its own.
        "snoop": _with_cells(ex, f"""
            import os
            print("my folder:", sorted(os.listdir(".")))
            for path in ({str(tests_copy / 'hidden' / '01_codebook.json')!r},
                         {str(REPO_ROOT / 'instructor' / 'hidden_tests' / '01_codebook.json')!r},
                         {str(REPO_ROOT / 'instructor' / 'source' / '01_codebook.py')!r}):
                try:
                    print(open(path).read())
                except OSError as err:
                    print("refused:", type(err).__name__)
            try:  # the batch folder holds the other students' folders
                print(os.listdir(os.path.dirname(os.getcwd())))
            except OSError as err:
                print("refused:", type(err).__name__)
            get_ipython().events.register("pre_run_cell", lambda info: print("LATER:", info.raw_cell))
            """),
    }


def test_every_question_has_a_wrong_answer():
    every = {q for name in NAMES for q in _questions(name)}
    assert set(MUTANTS) == every, f"add a MUTANTS entry for {sorted(every - set(MUTANTS))}"
    for qid in MUTANTS:
        _mutant(qid)  # the replaced text occurs exactly once in its solution


def _grade_batch(root: Path):
    """Grade every notebook that needs a kernel, in one batch of two kernels at a time."""
    subs, victim, tests_copy = root / "submissions", root / "victim", root / "tests"
    subs.mkdir()
    victim.mkdir()
    (victim / "keep.txt").write_text("precious")
    shutil.copytree(HIDDEN, tests_copy / "hidden")
    notebooks = {}
    for name in NAMES:
        notebooks[f"solution-{name}"] = _solution(name)
        notebooks[f"blank-{name}"] = nbformat.read(REPO_ROOT / "exercises" / f"{name}.ipynb", as_version=4)
    for qid in MUTANTS:
        notebooks[f"wrong-{qid}"] = _mutant(qid)
    notebooks.update(_containment(victim, tests_copy))
    for student, nb in notebooks.items():
        nbformat.write(nb, subs / f"{student}.ipynb")
    results = grade.grade_submissions([subs], tests_dir=tests_copy / "hidden", jobs=2, limits=LIMITS,
                                      protect=[victim], progress=False)
    return {r.student: r for r in results}


def test_grading_batch(tmp_path):
    results, root = _grade_batch(tmp_path), tmp_path
    failures = []

    def expect(condition, message):
        if not condition:
            failures.append(message)

    expected = {}
    for name in NAMES:
        full = _questions(name)
        expected[f"solution-{name}"] = full
        expected[f"blank-{name}"] = {q: 0 for q in full}
    for qid, (name, _, _) in MUTANTS.items():
        expected[f"wrong-{qid}"] = {q: (0 if q == qid else p) for q, p in _questions(name).items()}
    full = _questions("01_codebook")
    zero = {q: 0 for q in full}
    expected.update(crash=full, flood=full, deleter=full, snoop=full, exiter=zero, stubborn=zero,
                    loop={**full, "perplexity": 0})
    expect(set(results) == set(expected), f"graded {sorted(results)}, expected {sorted(expected)}")
    for student, points in expected.items():
        r = results.get(student)
        if r is not None:
            expect(r.points() == points, f"{student}: expected {points}, got {r.points()}; "
                   f"{[q.message for q in r.questions if not q.passed]} notes {r.notes}")

    for name in NAMES:  # the solution notebooks run clean, their own check cells included
        r = results.get(f"solution-{name}")
        expect(r is None or not r.notes, f"solution-{name}: {r.notes if r else ''}")

    def notes(student):
        return " ".join(results[student].notes) if student in results else ""

    expect("ZeroDivisionError" in notes("crash") and "ModuleNotFoundError" in notes("crash"),
           f"crash: its errors are not reported: {notes('crash')}")
    expect("did not finish" in results["loop"].questions[1].message, f"loop: {results['loop'].questions}")
    expect("TimeoutError" in notes("loop"), f"loop: the top-level loop is not reported: {notes('loop')}")
    expect("ignored the interrupt" in notes("stubborn"), f"stubborn: {notes('stubborn')}")
    expect("stopped while running code cell" in notes("exiter"), f"exiter: {notes('exiter')}")
    expect(results["stubborn"].seconds < LIMITS.cell_s + 4 * LIMITS.probe_s + 60,
           f"stubborn took {results['stubborn'].seconds:.0f} s")
    stored = len(nbformat.writes(results["flood"].notebook))
    expect(stored < 60_000, f"flood: {stored} characters of output were stored")
    expect("not kept" in notes("flood"), f"flood: the truncation is not reported: {notes('flood')}")
    # Nothing outside the students' own folders changed, and no one saw the hidden tests.
    expect((root / "victim" / "keep.txt").read_text() == "precious", "deleter changed a file outside its folder")
    expect((root / "tests" / "hidden" / "01_codebook.json").is_file(), "deleter removed the hidden tests")
    deleter_out = json.dumps(results["deleter"].notebook.cells[-1].outputs)
    expect("SUCCEEDED" not in deleter_out and deleter_out.count("refused: PermissionError") == 5,
           f"deleter: {deleter_out[:1000]}")
    snoop_out = nbformat.writes(results["snoop"].notebook)
    expect(SECRET not in snoop_out and SECRET not in results["snoop"].feedback(),
           "snoop saw the hidden tests")
    expect(snoop_out.count("refused: PermissionError") == 4, f"snoop: {snoop_out[-3000:]}")
    expect("my folder: []" in snoop_out, "the student's folder was not empty")
    feedback = results["wrong-vae_loss"].feedback()
    expect("| vae_loss | 0 / 3 | failed: AssertionError: kl: expected" in feedback, f"feedback: {feedback}")
    expect(all(SECRET not in r.feedback() for r in results.values()), "a feedback shows hidden test code")
    assert not failures, "\n".join(failures)


def test_csv_and_feedback(tmp_path):
    def result(student, exercise, *questions):
        return grade.GradeResult(student, exercise, f"{student}.ipynb",
                                 [grade.QuestionResult(*q) for q in questions], notes=["cell 2 raised X"])

    chosen = [result("zoe", "01_codebook", ("nearest_code", 3, 3, "passed"), ("perplexity", 2, 2, "passed")),
              result("al", "01_codebook", ("nearest_code", 3, 3, "passed"),
                     ("perplexity", 0, 2, "failed: AssertionError: expected 8.0, got 3.0")),
              result("al", "06_vqgan", ("top_k_sampling", 3, 3, "passed"))]
    path = grade.write_grades_csv(chosen, tmp_path / "grades.csv")
    rows = list(csv.DictReader(path.open()))
    assert list(rows[0]) == ["student", "exercise", "nearest_code", "perplexity", "top_k_sampling",
                             "total", "max_total", "notes"]
    assert [(r["student"], r["exercise"]) for r in rows] == [("al", "01_codebook"), ("zoe", "01_codebook"),
                                                             ("al", "06_vqgan")]
    assert (rows[0]["nearest_code"], rows[0]["perplexity"], rows[0]["total"], rows[0]["max_total"]) == ("3", "0", "3", "5")
    assert rows[2]["top_k_sampling"] == "3" and rows[2]["nearest_code"] == "" and rows[2]["notes"] == "cell 2 raised X"
    files = grade.write_feedback(chosen, tmp_path / "feedback")
    assert sorted(p.relative_to(tmp_path / "feedback").as_posix() for p in files) == [
        "01_codebook/al.md", "01_codebook/zoe.md", "06_vqgan/al.md"]
    text = (tmp_path / "feedback" / "01_codebook" / "al.md").read_text()
    assert "Total: 3 / 5" in text and "| perplexity | 0 / 2 | failed: AssertionError: expected 8.0, got 3.0 |" in text
    assert "- cell 2 raised X" in text


# ------------------------------------------------------------------ without the course notebooks

TOY = {"format": "dlstudio-lite-hidden-tests/1", "exercise": "toy", "title": "toy",
       "questions": [{"id": "double", "points": 2, "code": "assert double(3) == 6, 'double(3) should be 6'"},
                     {"id": "half", "points": 1, "code": "assert half(3) == 1.5"}]}


def _toy_notebook(path: Path, *sources: str) -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["dlstudio_lite"] = {"exercise": "toy"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


def test_cli_grades_a_folder_of_students(tmp_path, capsys):
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "toy.json").write_text(json.dumps(TOY))
    _toy_notebook(tmp_path / "subs" / "ada" / "toy.ipynb", "def double(x):\n    return 2 * x",
                  "def half(x):\n    return x / 2")
    _toy_notebook(tmp_path / "subs" / "bob.ipynb", "def double(x):\n    return x + 2")
    (tmp_path / "subs" / "eve.ipynb").write_text("{ not a notebook")
    out = tmp_path / "out" / "grades.csv"
    code = main(["grade", str(tmp_path / "subs"), "--out", str(out), "--tests", str(tests),
                 "--exercise", "toy", "--quiet", "--cell-timeout", "20"])
    assert code == 0
    rows = {r["student"]: r for r in csv.DictReader(out.open())}
    assert (rows["ada"]["double"], rows["ada"]["half"], rows["ada"]["total"]) == ("2", "1", "3")
    assert (rows["bob"]["double"], rows["bob"]["half"], rows["bob"]["total"]) == ("0", "0", "0")
    assert rows["eve"]["total"] == "0" and "could not be read" in rows["eve"]["notes"]
    bob = (tmp_path / "out" / "feedback" / "toy" / "bob.md").read_text()
    assert "double(3) should be 6" in bob and "NameError" in bob
    assert "ada" in capsys.readouterr().out


def test_cli_reports_bad_input(tmp_path, capsys):
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "toy.json").write_text(json.dumps(TOY))
    _toy_notebook(tmp_path / "a.ipynb", "x = 1")
    assert main(["grade", str(tmp_path / "a.ipynb"), "--out", str(tmp_path / "g.csv"), "--tests", str(tests),
                 "--exercise", "nope"]) == 2
    assert "unknown exercise 'nope'" in capsys.readouterr().err
    assert main(["grade", str(tmp_path / "missing.ipynb"), "--out", str(tmp_path / "g.csv"),
                 "--tests", str(tests)]) == 2
    assert main(["grade", str(tmp_path / "a.ipynb"), "--out", str(tmp_path / "g.csv"),
                 "--tests", str(tmp_path / "empty")]) == 2


def test_helpers():
    assert grade.student_id("subs/alice.ipynb", "01_codebook") == "alice"
    assert grade.student_id("subs/alice/01_codebook.ipynb", "01_codebook") == "alice"
    with pytest.raises(ValueError, match="cell_s"):
        grade.Limits(cell_s=0)
    with pytest.raises(ValueError, match="expected a .ipynb"):
        grade.read_submission("notes.txt")
    bad = grade.GradeResult("s", "toy", "p", [grade.QuestionResult("double", 0, 2, "failed: a | b")])
    assert "a \\| b" in bad.feedback() and bad.total == 0 and bad.max_total == 2


def test_bad_batches_are_refused_before_any_kernel_starts(tmp_path):
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "toy.json").write_text(json.dumps(TOY))
    _toy_notebook(tmp_path / "one" / "sam.ipynb", "x = 1")
    _toy_notebook(tmp_path / "two" / "sam.ipynb", "x = 2")
    with pytest.raises(ValueError, match="two submissions for student 'sam'"):
        grade.grade_submissions([tmp_path / "one", tmp_path / "two"], tests_dir=tests, progress=False)
    with pytest.raises(ValueError, match="holds the Python environment"):
        grade.grade_submissions([tmp_path / "one"], tests_dir=tests, protect=[Path(sys.prefix).parent],
                                progress=False)
