"""How many CPU threads torch uses for the course's small models, chosen once.

torch starts one thread per core. The course's models are small, so a second thread buys
little on an idle machine; but when anything else runs on the same cores (a second
notebook, a test run, a browser tab busy with JavaScript), every operator of a multi-threaded
torch waits at its end for the thread the scheduler has put aside, and OpenMP's waiting
threads spin on the cores the other process needs. On a 2-core machine with one other busy
process that made the lectures many times slower (``benchmarks/bench_threads.py`` measures
it). Half the cores (at least one, at most four) keeps most of the idle speed and degrades
gracefully under load.
"""
from __future__ import annotations

import os

# An explicit setting of these wins over the course's choice.
THREAD_ENVS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "DLSTUDIO_LITE_THREADS")


def default_threads(cpu_count: int | None = None) -> int:
    """The course's thread count for ``cpu_count`` cores (default: this machine's)."""
    cores = cpu_count if cpu_count is not None else (os.cpu_count() or 1)
    if cores < 1:
        raise ValueError(f"cpu_count must be at least 1, got {cores}")
    return max(1, min(4, cores // 2))


def use_course_threads() -> int:
    """Set torch's intra-op threads to the course's choice unless an environment variable
    (``DLSTUDIO_LITE_THREADS``, ``OMP_NUM_THREADS`` or ``MKL_NUM_THREADS``) sets them;
    returns the number torch uses."""
    import torch

    wanted = os.environ.get("DLSTUDIO_LITE_THREADS", "").strip()
    if wanted:
        if not wanted.isdigit() or int(wanted) < 1:
            raise ValueError(f"DLSTUDIO_LITE_THREADS must be a positive integer, got {wanted!r}")
        torch.set_num_threads(int(wanted))
    elif not any(os.environ.get(name, "").strip() for name in THREAD_ENVS):
        torch.set_num_threads(default_threads())
    return torch.get_num_threads()
