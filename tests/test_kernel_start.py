"""The root conftest starts notebook kernels one at a time and retries a start that dies."""
import importlib.util
from pathlib import Path

import pytest


def root_conftest():
    """The course's root conftest.py (``import conftest`` finds this folder's own)."""
    spec = importlib.util.spec_from_file_location("root_conftest", Path(__file__).parent.parent / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_kernel_start_that_dies_is_retried_then_reported(tmp_path):
    conftest = root_conftest()
    calls = []

    def dies_twice(*args, **kwargs):
        calls.append((args, kwargs))
        if len(calls) < 3:
            raise RuntimeError("Kernel died before replying to kernel_info")
        return "manager", "client"

    start = conftest._one_kernel_start_at_a_time(dies_twice, tmp_path / "lock")
    assert start(startup_timeout=5) == ("manager", "client")
    assert calls == [((), {"startup_timeout": 5})] * 3

    def always_dies():
        calls.append(None)
        raise RuntimeError("Kernel died before replying to kernel_info")

    calls.clear()
    with pytest.raises(RuntimeError, match="Kernel died"):
        conftest._one_kernel_start_at_a_time(always_dies, tmp_path / "lock", attempts=2)()
    assert len(calls) == 2


def test_nbval_starts_kernels_through_the_lock_once():
    import nbval.kernel
    wrapped = nbval.kernel.start_new_kernel
    assert wrapped.__name__ == "locked_start"
    root_conftest()                                  # loading it again does not wrap it twice
    assert nbval.kernel.start_new_kernel is wrapped
