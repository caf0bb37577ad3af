"""The exercise build: markers, generated notebooks, hidden tests, and staleness."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest

from dlstudio_lite.grading import exercises as ex
from dlstudio_lite.cli import main

ROOT = ex.REPO_ROOT
SOURCES = sorted(ex.SOURCE_DIR.glob("*.py"))
NAMES = [p.stem for p in SOURCES]


def _lecture_of(name: str) -> Path | None:
    """The lecture's .py of exercise ``name`` (``exNN_...`` -> ``lectures/NN_*.py``), or None."""
    return next((ROOT / "lectures").glob(f"{name[2:5]}*.py"), None)


def test_course_has_its_exercises_in_order():
    """One exercise per lecture 01-06, then appendix lecture 09's (PixelCNN's masked convolution)
    and appendix lecture 10's (finite scalar quantization).
    ``exNN_``: the number is the lecture's, and the tab never reads like the lecture's."""
    assert NAMES == ["ex01_codebook", "ex02_elbo", "ex03_autoencoder", "ex04_vae", "ex05_vqvae", "ex06_vqgan",
                     "ex09_pixelcnn", "ex10_fsq"]
    lectures = {p.stem for p in (ROOT / "lectures").glob("*.ipynb")}
    for name in NAMES:
        assert any(n.startswith(name[2:5]) for n in lectures), \
            f"{name}: there is no lecture {name[2:4]}"
    assert not set(NAMES) & lectures


def test_old_exercise_names_still_grade():
    """Submissions made before the renaming (metadata or file name 01_codebook) still find their exercise."""
    from dlstudio_lite.grading.grader import _exercise_of

    known = {name: None for name in NAMES}
    assert set(ex.RENAMED.values()) <= set(NAMES) and ex.current_name("07_pixelcnn") == "ex09_pixelcnn"
    assert ex.current_name("ex10_fsq") == "ex10_fsq"  # born with its ex name: nothing to rename
    for old, new in ex.RENAMED.items():
        assert _exercise_of({"dlstudio_lite": {"exercise": old}}, Path("x.ipynb"), known) == new
        assert _exercise_of({}, Path(f"{old}.ipynb"), known) == new
        assert _exercise_of({}, Path(f"{new}.ipynb"), known) == new
        assert _exercise_of({}, Path(f"alice_{old} (1).py"), known) == new
    assert _exercise_of({}, Path("homework.ipynb"), known) is None


def test_unanswered_questions_say_so():
    """An unanswered question raises NotImplementedError naming the question and the function."""
    assert ex.strip_solutions(
        "class A:\n    def f(self):\n        ### BEGIN SOLUTION\n        return 1\n        ### END SOLUTION\n",
        question=2)[0].split("\n")[3] == \
        '        raise NotImplementedError("Question 2 is not answered yet: fill in A.f() and delete this raise")'
    for name in NAMES:
        text = (ROOT / "exercises" / f"{name}.py").read_text()
        stubs = [line.strip() for line in text.split("\n") if "raise NotImplementedError" in line and not line.startswith("#")]
        assert stubs and all(s.startswith('raise NotImplementedError("Question ') and "not answered yet: fill in " in s
                             for s in stubs), stubs


def test_generated_files_are_up_to_date(tmp_path):
    """Rebuild into a temporary folder and compare: a source edited without a rebuild fails here."""
    fresh = ex.build_all(root=tmp_path)
    assert fresh, "the build wrote nothing"
    stale = [p.relative_to(tmp_path) for p in fresh
             if not (ROOT / p.relative_to(tmp_path)).is_file()
             or (ROOT / p.relative_to(tmp_path)).read_text(encoding="utf-8") != p.read_text(encoding="utf-8")]
    assert not stale, f"stale generated files (run `dlstudio-lite exercises build`): {stale}"
    assert ex.stale_outputs() == []


def test_check_flag_reports_stale_output(tmp_path, capsys):
    assert main(["exercises", "build", "--root", str(tmp_path)]) == 0
    assert main(["exercises", "build", "--check", "--root", str(tmp_path)]) == 0
    victim = tmp_path / "exercises" / "ex01_codebook.py"
    victim.write_text(victim.read_text() + "\n# edited by hand\n")
    assert main(["exercises", "build", "--check", "--root", str(tmp_path)]) == 1
    assert "ex01_codebook.py" in capsys.readouterr().out


@pytest.mark.parametrize("name", NAMES)
def test_exercise_and_solution_notebooks(name):
    hidden = json.loads((ROOT / "instructor" / "hidden_tests" / f"{name}.json").read_text())
    questions = hidden["questions"]
    assert 2 <= len(questions) <= 4 and all(q["points"] > 0 for q in questions)
    for folder in ("exercises", "solutions"):
        nb = nbformat.read(ROOT / folder / f"{name}.ipynb", as_version=4)
        nbformat.validate(nb)
        text = (ROOT / folder / f"{name}.py").read_text()
        # The pair holds the same notebook, and it carries no outputs.
        assert [c.source for c in jupytext.reads(text, fmt="py:percent").cells] == [c.source for c in nb.cells]
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
        assert nb.metadata["dlstudio_lite"]["exercise"] == name
        assert nb.metadata["jupytext"]["formats"] == "ipynb,py:percent"
        code = "\n".join(c.source for c in nb.cells)
        assert ex.SOLUTION_BEGIN not in code and ex.SOLUTION_END not in code
        for q in questions:  # hidden tests stay out of both notebooks
            assert q["code"] not in code
        tags = {t for c in nb.cells for t in c.metadata.get("tags", [])}
        assert not tags & {ex.HIDDEN_TAG, ex.CHECK_TAG, ex.USES_ANSWERS_TAG}
    exercise = nbformat.read(ROOT / "exercises" / f"{name}.ipynb", as_version=4)
    solution = nbformat.read(ROOT / "solutions" / f"{name}.ipynb", as_version=4)
    stubs = sum(c.source.count("raise NotImplementedError") for c in exercise.cells if c.cell_type == "code")
    assert stubs >= len(questions)
    assert "raise NotImplementedError" not in "\n".join(c.source for c in solution.cells if c.cell_type == "code")
    # Every cell that runs the student's unfinished code is allowed to raise under nbval.
    for cell in exercise.cells:
        if cell.cell_type == "code" and "raise NotImplementedError" in cell.source.split("\n"):
            assert ex.RAISES_TAG in cell.metadata.get("tags", [])  # top-level stub: the cell raises
    assert any(ex.RAISES_TAG in c.metadata.get("tags", []) for c in exercise.cells)
    assert not any(ex.RAISES_TAG in c.metadata.get("tags", []) for c in solution.cells)


def test_question_ids_are_unique_across_the_course():
    ids = [q["id"] for n in NAMES
           for q in json.loads((ROOT / "instructor" / "hidden_tests" / f"{n}.json").read_text())["questions"]]
    assert len(ids) == len(set(ids))


def test_strip_solutions_keeps_indentation_and_flags_top_level_code():
    src = "def f(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION\n"
    out, top = ex.strip_solutions(src, question=1)
    assert out == ('def f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError('
                   '"Question 1 is not answered yet: fill in f() and delete this raise")\n') and not top
    out, top = ex.strip_solutions("### BEGIN SOLUTION\ny = 3\n### END SOLUTION")
    assert out == ('# YOUR CODE HERE\nraise NotImplementedError('
                   '"This question is not answered yet: write the code of this cell and delete this raise")') and top
    assert ex.remove_markers(src) == "def f(x):\n    return 2 * x\n"


@pytest.mark.parametrize("src, message", [
    ("### BEGIN SOLUTION\nx = 1\n", "never closed"),
    ("x = 1\n### END SOLUTION\n", "without"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n", "inside another"),
])
def test_unbalanced_markers_raise(src, message):
    with pytest.raises(ValueError, match=message):
        ex.strip_solutions(src)


def _source(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / f"{name}.py"
    path.write_text("# ---\n# jupyter:\n#   dlstudio_lite:\n#     exercise: " + name
                    + "\n#   kernelspec:\n#     display_name: Python 3\n#     language: python\n"
                    "#     name: python3\n# ---\n\n" + body)
    return path


def test_build_rejects_bad_sources(tmp_path):
    good = ("# %%\ndef f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION\n\n"
            '# %% tags=["hidden-tests"] question="f_one" points=2\nassert f() == 1\n')
    built = ex.build_exercise(_source(tmp_path, "ok", good))
    assert [(q.id, q.points) for q in built.questions] == [("f_one", 2)]
    with pytest.raises(ValueError, match="points"):
        ex.build_exercise(_source(tmp_path, "nopoints", good.replace(" points=2", "")))
    with pytest.raises(ValueError, match="no 'hidden-tests'"):
        ex.build_exercise(_source(tmp_path, "nohidden", good.split("# %% tags")[0]))
    wrong_name = _source(tmp_path, "named", good)
    wrong_name.write_text(wrong_name.read_text().replace("exercise: named", "exercise: other"))
    with pytest.raises(ValueError, match="must be 'named'"):
        ex.build_exercise(wrong_name)
    src_dir = tmp_path / "src"
    src_dir.mkdir()
    for n in ("a_one", "b_two"):  # the same question id in two exercises
        _source(src_dir, n, good)
    with pytest.raises(ValueError, match="used by both"):
        ex.build_outputs(src_dir, tmp_path / "out")


@pytest.mark.parametrize("name", NAMES)
def test_running_an_unanswered_exercise_says_what_is_missing(name, monkeypatch, request):
    """Run All on a handed-out exercise: no traceback, no stray output (such as the Generator
    that ``torch.manual_seed`` returns), and every check says which question is not answered yet."""
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    monkeypatch.setenv("MPLBACKEND", "Agg")
    # The shell is a process-wide singleton that hooks sys: let it go afterwards, or every
    # later test in this worker would believe it runs inside IPython.
    for hook in ("displayhook", "excepthook"):
        monkeypatch.setattr(sys, hook, getattr(sys, hook))
    shell = InteractiveShell.instance()
    shell.reset(new_session=True)
    request.addfinalizer(InteractiveShell.clear_instance)
    nb = nbformat.read(ROOT / "exercises" / f"{name}.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    for i, cell in enumerate(code):
        with capture_output() as out:
            result = shell.run_cell(cell.source)
        printed = out.stdout + out.stderr
        assert result.success, f"{name}, code cell {i} failed:\n{printed[-2000:]}"
        assert not out.outputs and "Out[" not in printed, f"{name}, code cell {i} shows a stray value: {printed!r}"
        if ex.RAISES_TAG in cell.metadata.get("tags", []):   # a check, or a cell using the answers
            assert "is not answered yet: fill in " in printed, f"{name}, code cell {i} printed {printed!r}"
        else:
            assert printed == "", f"{name}, code cell {i} printed {printed!r}"


def test_a_workspace_from_before_the_renaming_keeps_the_old_copy_and_gets_the_new_one(tmp_path):
    """`course.py update` after the renaming: the new exercise arrives, the student's old copy stays, said once."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_course_for_exercises", ROOT / "course.py")
    course = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(course)
    root, workspace = tmp_path / "course", tmp_path / "my-work"
    (root / "exercises").mkdir(parents=True)
    (root / "exercises" / "01_codebook.ipynb").write_bytes((ROOT / "exercises" / "ex01_codebook.ipynb").read_bytes())
    assert course.sync_workspace(root, workspace, "3.11.0") == ["copied exercises/01_codebook.ipynb"]
    (root / "exercises" / "01_codebook.ipynb").rename(root / "exercises" / "ex01_codebook.ipynb")
    assert course.sync_workspace(root, workspace, "3.11.0") == [
        "copied exercises/ex01_codebook.ipynb",
        "kept exercises/01_codebook.ipynb, which the course no longer has (renamed or removed)"]
    assert (workspace / "exercises" / "01_codebook.ipynb").exists()
    assert course.sync_workspace(root, workspace, "3.11.0") == []


def test_start_page_readme_and_lectures_agree_with_the_exercises():
    """The number of questions the documents promise, and a link to every exercise from the
    start page and from its lecture."""
    words = {2: "two", 3: "three", 4: "four"}
    counts = [len(json.loads((ROOT / "instructor" / "hidden_tests" / f"{n}.json").read_text())["questions"]) for n in NAMES]
    promise = f"{words[min(counts)]} to {words[max(counts)]}"
    start, readme = (ROOT / "START_HERE.md").read_text(), (ROOT / "README.md").read_text()
    assert f"{promise} questions" in start and f"{promise} graded questions" in readme, promise
    for name in NAMES:
        assert f"(exercises/{name}.ipynb)" in start, f"START_HERE.md does not link {name}"
        lecture = _lecture_of(name)
        assert lecture is not None, f"{name}: there is no lecture {name[2:4]}"
        assert f"(../exercises/{name}.ipynb)" in lecture.read_text(), f"{lecture.name} does not link {name}"
