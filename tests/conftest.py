"""Shared test settings: quick mode on, a private data root, one torch thread per worker."""
import os

import pytest
import torch

os.environ.setdefault("DLSTUDIO_LITE_QUICK", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# Two xdist workers share two cores; more threads per worker only adds contention.
torch.set_num_threads(1)


@pytest.fixture
def quick(monkeypatch):
    monkeypatch.setenv("DLSTUDIO_LITE_QUICK", "1")


@pytest.fixture
def normal(monkeypatch):
    monkeypatch.delenv("DLSTUDIO_LITE_QUICK", raising=False)


def pytest_configure(config):
    # Tests too slow for the quick suite; `python3 course.py test --normal` runs them.
    config.addinivalue_line("markers", "normal: a normal-mode test (python3 course.py test --normal)")
    config.addinivalue_line("markers", "slow: a long integration test (the sandboxed grading batch, "
                            "extra multi-process runs); `python3 course.py test` leaves it out, "
                            "`python3 course.py test --normal` and CI run it")
