"""Choosing a device and making runs repeatable."""
from __future__ import annotations

import os
import random

import numpy as np
import torch

from .config import DEVICE_ENV
from .threads import use_course_threads

# Chosen once, when the package first imports torch's helpers (every notebook and command
# does): see dlstudio_lite/threads.py for why, and benchmarks/bench_threads.py for the numbers.
use_course_threads()

_VALID = ("cuda", "mps", "cpu")


def get_device(prefer: str | None = None) -> torch.device:
    """Pick CUDA, then Apple MPS, then CPU.

    ``prefer`` (or the ``DLSTUDIO_LITE_DEVICE`` environment variable, e.g. ``cpu``
    or ``cuda:1``) overrides the automatic choice; asking for a device that is not
    available raises ``RuntimeError`` rather than silently falling back.
    """
    choice = prefer or os.environ.get(DEVICE_ENV, "").strip() or None
    if choice is not None:
        kind = choice.split(":")[0].lower()
        if kind not in _VALID:
            raise ValueError(f"unknown device {choice!r}: expected one of {', '.join(_VALID)} "
                             f"(optionally with an index, e.g. 'cuda:0')")
        if kind == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {choice!r} was requested but CUDA is not available")
        if kind == "mps" and not _mps_available():
            raise RuntimeError(f"device {choice!r} was requested but Apple MPS is not available")
        return torch.device(choice)
    if torch.cuda.is_available():
        local_rank = os.environ.get("LOCAL_RANK")  # set by torchrun: this process's GPU
        if local_rank:  # (modulo: a scheduler may show each process only its own GPU)
            return torch.device("cuda", int(local_rank) % torch.cuda.device_count())
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def seed_everything(seed: int = 0, deterministic: bool = False) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices); return a seeded CPU ``torch.Generator``.

    CPU runs repeat exactly after this call. ``deterministic=True`` also asks torch for
    deterministic kernels, which GPU runs need to repeat bit for bit (at some speed cost).
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        if torch.backends.cudnn.is_available():
            torch.backends.cudnn.benchmark = False
    return torch.Generator().manual_seed(seed)


def choose_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``amp`` in auto | bf16 | fp16 | off on ``device`` (None: off).
    ``auto`` is bf16 on CUDA when supported, else fp16, and off on other devices."""
    kind = device.type
    if amp == "off" or (amp == "auto" and kind != "cuda"):
        return None
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if amp == "fp16" and kind != "cuda":
        raise ValueError(f"amp='fp16' needs a CUDA device, got {kind}; use 'bf16' or 'off'")
    return torch.bfloat16 if amp == "bf16" else torch.float16
