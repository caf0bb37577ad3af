"""Settings for every pytest run of the course (unit tests and nbval notebooks alike).

Notebook kernels inherit this process's environment, so whatever is set here before the
first kernel starts reaches every notebook:

* quick mode: ``pytest --nbval`` at the root runs every notebook in quick mode, as
  ``python3 course.py test`` does; ``DLSTUDIO_LITE_QUICK=0 pytest --nbval lectures/`` runs
  the course for real (an explicit setting always wins);
* the thread limit: with pytest-xdist, each worker (and its kernels) gets one torch thread
  instead of fighting the other workers for the same cores, which made training steps ~10x
  slower on 2 cores. Set OMP_NUM_THREADS yourself to override.

It also checks every executed widget cell (a top-level ``interactive(...)`` call): its
output must keep a picture and must not show a stray ``<function ...>`` repr.
"""
import os
import re

import pytest

os.environ.setdefault("DLSTUDIO_LITE_QUICK", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# Silences the debugger warning that every kernel start prints under pytest.
os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")

_WIDGET_CALL = re.compile(r"^interactive\(", re.MULTILINE)


def widget_output_problems(source: str, outputs: list) -> list[str]:
    """What is wrong with the stored outputs of one executed cell (empty when fine)."""
    if not _WIDGET_CALL.search(source):
        return []
    problems = []
    if not any("image/png" in out.get("data", {}) for out in outputs):
        problems.append("the widget cell stores no image: exported notebooks would show no figure")
    for out in outputs:
        text = out.get("text", "") or out.get("data", {}).get("text/plain", "")
        if "<function " in ("".join(text) if isinstance(text, list) else text):
            problems.append("the widget cell prints a stray <function ...> repr")
            break
    return problems


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    result = yield
    outputs = getattr(item, "test_outputs", None)  # set by nbval after running a cell
    cell = getattr(item, "cell", None)
    if outputs is not None and cell is not None:
        problems = widget_output_problems(cell.source, outputs)
        if problems:
            raise AssertionError(f"{item.nodeid}: " + "; ".join(problems))
    return result
