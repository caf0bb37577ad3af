import random

import numpy as np
import pytest
import torch

from dlstudio_lite import config, device


@pytest.mark.parametrize("value,expected", [("1", True), ("true", True), ("YES", True), ("on", True),
                                            ("0", False), ("", False), ("no", False)])
def test_quick_mode_reads_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv(config.QUICK_ENV, value)
    assert config.quick_mode() is expected
    assert config.pick(normal="big", quick="small") == ("small" if expected else "big")


def test_quick_mode_is_off_when_unset(normal):
    assert not config.quick_mode()
    assert config.pick(100, 3) == 100


def test_device_override_to_cpu(monkeypatch):
    monkeypatch.setenv(config.DEVICE_ENV, "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # the override must still win
    assert device.get_device() == torch.device("cpu")


def test_device_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.delenv(config.DEVICE_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert device.get_device().type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device, "_mps_available", lambda: True)
    assert device.get_device().type == "mps"
    monkeypatch.setattr(device, "_mps_available", lambda: False)
    assert device.get_device().type == "cpu"


def test_device_argument_beats_environment(monkeypatch):
    monkeypatch.setenv(config.DEVICE_ENV, "mps")
    assert device.get_device("cpu") == torch.device("cpu")


def test_unknown_or_unavailable_device_raises(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        device.get_device("tpu")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        device.get_device("cuda:0")
    monkeypatch.setenv(config.DEVICE_ENV, "cuda")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        device.get_device()


def test_seed_everything_repeats_python_numpy_and_torch():
    def draw():
        return random.random(), np.random.rand(3).tolist(), torch.randn(3).tolist()

    device.seed_everything(123)
    first = draw()
    device.seed_everything(123)
    assert draw() == first
    device.seed_everything(124)
    assert draw() != first


def test_seed_everything_returns_a_seeded_generator():
    a = torch.randn(4, generator=device.seed_everything(5))
    b = torch.randn(4, generator=device.seed_everything(5))
    assert torch.equal(a, b)
