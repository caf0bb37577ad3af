"""Notebooks are jupytext pairs (py:percent + ipynb), committed without outputs."""
from pathlib import Path

import jupytext
import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("lectures", "exercises", "solutions")
NOTEBOOKS = sorted(p for folder in FOLDERS for p in (ROOT / folder).glob("*.ipynb"))
SCRIPTS = sorted(p for folder in FOLDERS for p in (ROOT / folder).glob("*.py") if p.stem != "__init__")


def cells_of(notebook):
    return [(c.cell_type, c.source.strip()) for c in notebook.cells]


def pair_problems(ipynb: Path) -> list[str]:
    """What is wrong with one notebook pair (empty when fine)."""
    py = ipynb.with_suffix(".py")
    if not py.exists():
        return [f"{ipynb.name} has no paired {py.name}"]
    problems = []
    stored = nbformat.read(ipynb, as_version=4)
    if cells_of(jupytext.read(py)) != cells_of(stored):
        problems.append(f"{ipynb.name} and {py.name} are out of sync: run `jupytext --sync {py}`")
    for i, cell in enumerate(stored.cells):
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None):
            problems.append(f"{ipynb.name} cell {i} carries outputs: clear them before committing")
    return problems


def test_there_are_notebooks_to_check():
    assert any(p.parent.name == "lectures" for p in NOTEBOOKS)


@pytest.mark.parametrize("ipynb", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_notebook_pair_in_sync_and_without_outputs(ipynb):
    assert pair_problems(ipynb) == []


@pytest.mark.parametrize("py", SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_script_has_its_notebook(py):
    assert py.with_suffix(".ipynb").exists(), f"{py} has no paired .ipynb: run `jupytext --sync {py}`"


def test_checker_catches_desync_and_outputs(tmp_path):
    py = tmp_path / "nb.py"
    py.write_text("# %% [markdown]\n# Title\n\n# %%\nx = 1\n")
    nb = jupytext.read(py)
    ipynb = tmp_path / "nb.ipynb"
    nbformat.write(nb, ipynb)
    assert pair_problems(ipynb) == []
    py.write_text("# %% [markdown]\n# Title\n\n# %%\nx = 2\n")
    assert any("out of sync" in p for p in pair_problems(ipynb))
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="1\n")]
    nbformat.write(nb, ipynb)
    py.write_text("# %% [markdown]\n# Title\n\n# %%\nx = 1\n")
    assert any("carries outputs" in p for p in pair_problems(ipynb))


# ---- a newcomer's plain commands and clean notebooks -----------------------------------

import importlib.util  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402


def load_module(path: Path):
    spec = importlib.util.spec_from_file_location(f"_course_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


course = load_module(ROOT / "course.py")
metadata_tool = load_module(ROOT / "tools" / "notebook_metadata.py")
root_conftest = load_module(ROOT / "conftest.py")


def tracked_notebooks() -> list[Path]:
    try:
        listed = subprocess.run(["git", "ls-files", "*.ipynb"], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: what pytest would collect
        return NOTEBOOKS
    return sorted(ROOT / name for name in listed)


def subprocess_env(**changes) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DLSTUDIO_LITE_QUICK"))}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(changes)
    return env


def test_plain_pytest_nbval_at_the_root_collects_every_notebook():
    listed = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "--nbval",
                             "-p", "no:cacheprovider", "-p", "no:xdist"],
                            cwd=ROOT, capture_output=True, text=True, env=subprocess_env(), timeout=300)
    assert listed.returncode == 0, listed.stdout[-3000:] + listed.stderr[-3000:]
    collected = {line.split("::")[0] for line in listed.stdout.splitlines() if "::" in line}
    expected = {str(p.relative_to(ROOT)) for p in tracked_notebooks()}
    assert expected and expected <= collected, f"not collected: {sorted(expected - collected)}"
    assert "tests/test_notebooks.py" in collected


def test_every_tracked_notebook_stores_the_kernelspec_jupyterlab_writes():
    found = []
    for ipynb in tracked_notebooks():
        found += metadata_tool.problems(ipynb)
        if ipynb.with_suffix(".py").exists():
            found += metadata_tool.problems(ipynb.with_suffix(".py"))
    assert found == [], "run `python tools/notebook_metadata.py`\n" + "\n".join(found)


def test_the_lab_opens_on_the_start_page_with_the_course_settings():
    args = course.lab_arguments(Path("/somewhere"))
    assert f"--LabApp.default_url=/lab/tree/{course.START_PAGE}" in args
    assert any(a.startswith("--ServerApp.root_dir=") and a.endswith("somewhere") for a in args)
    overrides = json.loads((course.LAB_SETTINGS / "overrides.json").read_text())
    assert overrides["@jupyterlab/apputils-extension:notification"]["fetchNews"] == "false"
    start = (ROOT / course.START_PAGE).read_text()
    for lecture in sorted((ROOT / "lectures").glob("*.ipynb")):
        assert f"(lectures/{lecture.name})" in start, f"{course.START_PAGE} does not link {lecture.name}"


def test_metadata_checker_catches_an_old_kernelspec_and_a_versioned_header(tmp_path):
    py = tmp_path / "nb.py"
    py.write_text("# ---\n# jupyter:\n#   jupytext:\n#     text_representation:\n#       extension: .py\n"
                  "#       format_name: percent\n#       jupytext_version: 1.16.0\n#   kernelspec:\n"
                  "#     display_name: Python 3\n#     language: python\n#     name: python3\n# ---\n\n# %%\nx = 1\n")
    found = metadata_tool.problems(py)
    assert len(found) == 2 and "kernelspec" in found[0] and "jupytext version" in found[1]


def test_widget_cell_check_wants_a_picture_and_no_function_repr():
    check = root_conftest.widget_output_problems
    picture = {"output_type": "display_data", "data": {"image/png": "iVBOR", "text/plain": "[figure]"}}
    stray = {"output_type": "execute_result", "data": {"text/plain": "<function __main__.show(K=8)>"}}
    assert check("interactive(show, K=(2, 64, 1, 8))", [picture]) == []
    assert check("x = 1", []) == []
    assert len(check("interactive(show, K=(2, 64, 1, 8))", [])) == 1
    assert len(check("def f():\n    pass\n\ninteractive(f)", [picture, stray])) == 1


def test_nbval_runs_in_quick_mode_and_fails_a_widget_cell_without_a_picture(tmp_path):
    import nbformat

    # (the real helper passes this check in every lecture run; here only a bad widget cell)
    cells = ["import os\nassert os.environ['DLSTUDIO_LITE_QUICK'] == '1', os.environ.get('DLSTUDIO_LITE_QUICK')",
             "def show(k=1):\n    pass\n\n\ninteractive = lambda fn, **controls: fn\ninteractive(show, k=(1, 2, 1, 1))",
             "print('after')"]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nbformat.write(nb, tmp_path / "widgets.ipynb")
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider",
                          "-p", "no:xdist", "--nbval", "-q", "-rfE", str(tmp_path / "widgets.ipynb")],
                         cwd=tmp_path, capture_output=True, text=True, env=subprocess_env(), timeout=300)
    summary = [line for line in run.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
    assert len(summary) == 1 and "Cell 1" in summary[0], run.stdout[-4000:]
    assert "stray <function" in run.stdout and "stores no image" in run.stdout


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout


def save_as_jupyterlab_does(workspace: Path, path: str) -> None:
    """Run-and-save as a student does, through the contents manager JupyterLab saves with
    (jupytext's): outputs, execution counts and the kernel's language_info are written."""
    from jupytext import TextFileContentsManager

    manager = TextFileContentsManager(root_dir=str(workspace))
    nb = manager.get(path)["content"]
    for count, cell in enumerate((c for c in nb.cells if c.cell_type == "code"), start=1):
        cell.execution_count = count
        cell.outputs = [{"output_type": "stream", "name": "stdout", "text": "quick mode: True\n"},
                        {"output_type": "display_data", "data": {"image/png": "iVBORw0KGgo="}, "metadata": {}}]
    nb.metadata["language_info"] = {"name": "python", "version": sys.version.split()[0]}
    manager.save({"type": "notebook", "format": "json", "content": nb}, path)


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_running_and_saving_lectures_in_the_workspace_leaves_git_status_clean(tmp_path):
    repo = tmp_path / "course"
    for name in [".gitignore", course.START_PAGE, "lectures/02_elbo.ipynb", "lectures/02_elbo.py",
                 "exercises/ex02_elbo.ipynb", "exercises/ex02_elbo.py"]:
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, repo / name)
    git(repo, "init", "-q")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "add", ".")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "course")
    workspace = repo / course.WORKSPACE.name

    assert sorted(course.sync_workspace(repo, workspace)) == [
        f"copied {course.START_PAGE}", "copied exercises/ex02_elbo.ipynb", "copied lectures/02_elbo.ipynb"]
    save_as_jupyterlab_does(workspace, "lectures/02_elbo.ipynb")

    saved = json.loads((workspace / "lectures/02_elbo.ipynb").read_text())
    assert any(cell.get("outputs") for cell in saved["cells"]), "the student's copy keeps its outputs"
    assert not list(workspace.rglob("*.py")), "no .py twin appears in the workspace"
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""


def test_workspace_takes_course_updates_without_losing_a_students_edits(tmp_path):
    root, workspace = tmp_path / "course", tmp_path / "work"
    (root / "lectures").mkdir(parents=True)
    for name in (course.START_PAGE, "lectures/01_codebook.ipynb", "lectures/02_elbo.ipynb"):
        shutil.copy2(ROOT / name, root / name)
    course.sync_workspace(root, workspace)
    copied = json.loads((workspace / "lectures/01_codebook.ipynb").read_text())
    original = json.loads((root / "lectures/01_codebook.ipynb").read_text())
    assert "jupytext" not in copied["metadata"] and copied["cells"] == original["cells"]
    assert copied["metadata"]["kernelspec"] == metadata_tool.KERNELSPEC
    # JupyterLab stores language_info on opening; stored up front, the lecture opens clean
    assert copied["metadata"]["language_info"]["version"] == platform.python_version()
    assert course.sync_workspace(root, workspace) == []

    # The student runs lecture 1 (outputs only) and edits a cell of lecture 2.
    save_as_jupyterlab_does(workspace, "lectures/01_codebook.ipynb")
    edited = json.loads((workspace / "lectures/02_elbo.ipynb").read_text())
    edited["cells"][0]["source"] = "# my notes\n"
    (workspace / "lectures/02_elbo.ipynb").write_text(json.dumps(edited))
    # The course then changes both lectures (a git pull).
    for name in ("01_codebook", "02_elbo"):
        nb = json.loads((root / f"lectures/{name}.ipynb").read_text())
        nb["cells"][0]["source"] = ["# Lecture, revised\n"]
        (root / f"lectures/{name}.ipynb").write_text(json.dumps(nb))

    notes = course.sync_workspace(root, workspace)
    assert notes == ["updated lectures/01_codebook.ipynb",
                     "kept your edited lectures/02_elbo.ipynb; the course's new version is "
                     "02_elbo (course update).ipynb"]
    def first_cell(name):
        return "".join(json.loads((workspace / "lectures" / name).read_text())["cells"][0]["source"])

    assert first_cell("01_codebook.ipynb") == "# Lecture, revised\n"
    assert first_cell("02_elbo.ipynb") == "# my notes\n"
    assert first_cell("02_elbo (course update).ipynb") == "# Lecture, revised\n"
    assert course.sync_workspace(root, workspace) == []


def test_relative_links_resolve_in_the_course_and_in_the_students_copy(tmp_path):
    """A link like ``../docs/ERRATA.md#b2`` in a lecture must open from lectures/ and from
    the student's my-work/lectures/ alike."""
    import re
    workspace = tmp_path / "work"
    course.sync_workspace(ROOT, workspace)
    link = re.compile(r"\]\(([^)#\s]+)(?:#[^)\s]*)?\)")
    checked = 0
    for base in (ROOT, workspace):
        pages = [base / course.START_PAGE] + sorted((base / "lectures").glob("*.ipynb")) + \
            sorted((base / "exercises").glob("*.ipynb"))
        for page in pages:
            if page.suffix == ".ipynb":
                text = "\n".join(c.source for c in nbformat.read(page, as_version=4).cells
                                 if c.cell_type == "markdown")
            else:
                text = page.read_text(encoding="utf-8")
            for target in link.findall(text):
                if "://" in target or target.startswith("mailto:"):
                    continue
                checked += 1
                assert (page.parent / target).exists(), f"{page.relative_to(base)} links to missing {target}"
    assert checked > 10
