"""Settings for every pytest run of the course (unit tests and nbval notebooks alike).

Notebook kernels inherit this process's environment, so whatever is set here before the
first kernel starts reaches every notebook:

* quick mode: ``pytest --nbval`` at the root runs every notebook in quick mode, as
  ``python3 course.py test`` does; ``DLSTUDIO_LITE_QUICK=0 pytest --nbval lectures/`` runs
  the course for real (an explicit setting always wins);
* the thread limit: with pytest-xdist, each worker (and its kernels) gets one torch thread
  instead of fighting the other workers for the same cores, which made training steps ~10x
  slower on 2 cores. Set OMP_NUM_THREADS yourself to override.

Notebook kernels start one at a time across pytest-xdist workers, and a start that fails is
retried: two kernels starting together can pick the same free port, and the loser dies before
it answers ("Kernel died before replying to kernel_info"; jupyter_client issue 487).

It also checks every executed widget cell (a top-level ``interactive(...)`` call): its
output must keep a picture and must not show a stray ``<function ...>`` repr.
"""
import os
import re
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("DLSTUDIO_LITE_QUICK", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# Silences the debugger warning that every kernel start prints under pytest.
os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")



def _one_kernel_start_at_a_time(start, lock_path: Path, attempts: int = 3):
    """``start`` (nbval's ``start_new_kernel``) under an exclusive file lock shared by every
    worker, retried when the kernel dies while starting."""
    try:
        import fcntl
    except ImportError:      # Windows: no lock, the retries remain
        fcntl = None

    def locked_start(*args, **kwargs):
        for attempt in range(1, attempts + 1):
            with open(lock_path, "a") as lock:
                if fcntl is not None:
                    fcntl.flock(lock, fcntl.LOCK_EX)   # released when the file closes
                try:
                    return start(*args, **kwargs)
                except RuntimeError:
                    if attempt == attempts:
                        raise
    return locked_start


try:
    import nbval.kernel
except ImportError:          # nbval is part of the course's set-up; a bare pytest run still works
    pass
else:   # once: a second wrapper would wait for the lock its own caller holds
    if nbval.kernel.start_new_kernel.__name__ != "locked_start":
        nbval.kernel.start_new_kernel = _one_kernel_start_at_a_time(
            nbval.kernel.start_new_kernel, Path(tempfile.gettempdir()) / f"dlstudio_lite_kernel_start_{getattr(os, 'getuid', lambda: 0)()}.lock")

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
