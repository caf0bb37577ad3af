"""Run-wide settings read from the environment, defined in one place.

``DLSTUDIO_LITE_QUICK=1`` switches the whole course (notebooks, command line,
tests) into *quick mode*: tiny images, few samples and few steps, so that every
notebook runs in well under a minute on a laptop CPU. Normal mode trains for real.
"""
from __future__ import annotations

import os
from typing import TypeVar

QUICK_ENV = "DLSTUDIO_LITE_QUICK"
DEVICE_ENV = "DLSTUDIO_LITE_DEVICE"

_TRUE = {"1", "true", "yes", "on"}
T = TypeVar("T")


def quick_mode() -> bool:
    """True when ``DLSTUDIO_LITE_QUICK`` is set to 1/true/yes/on (case-insensitive)."""
    return os.environ.get(QUICK_ENV, "").strip().lower() in _TRUE


def pick(normal: T, quick: T) -> T:
    """Return ``quick`` in quick mode and ``normal`` otherwise.

    Example: ``steps = pick(normal=5000, quick=20)``.
    """
    return quick if quick_mode() else normal
