"""Settings for every pytest run of the course (unit tests and nbval notebooks alike).

Notebook kernels inherit this process's environment, so the thread limit reaches them too:
with pytest-xdist, each worker (and its kernels) gets one torch thread instead of fighting
the other workers for the same cores, which made training steps ~10x slower on 2 cores.
Set OMP_NUM_THREADS yourself to override.
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
