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
