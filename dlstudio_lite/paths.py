"""Where the course keeps its files, with their environment overrides (one place for all).

``DLSTUDIO_LITE_DATA`` moves the data folder (default: ``data/`` of the repository), where
datasets are downloaded and the generated cache lives; ``DLSTUDIO_LITE_CHECKPOINTS`` points
at another folder of trained checkpoints (default: the ones shipped in ``data/checkpoints``).
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path

DATA_ENV = "DLSTUDIO_LITE_DATA"
CHECKPOINTS_ENV = "DLSTUDIO_LITE_CHECKPOINTS"

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_ROOT = Path(os.environ.get(DATA_ENV) or REPO_ROOT / "data")
CACHE = DATA_ROOT / "cache"            # generated datasets (not committed)
# The small trained models that ship with the course (see data/checkpoints/README.md).
CHECKPOINTS = Path(os.environ.get(CHECKPOINTS_ENV) or REPO_ROOT / "data" / "checkpoints")


def atomic_write(path: str | os.PathLike, write) -> Path:
    """Create ``path`` through ``write(file_object)`` atomically and return it.

    The bytes go to a temporary file in the same folder, which is fsynced and moved into
    place with ``os.replace`` (atomic within one file system): a crash or Ctrl-C leaves
    the previous file untouched, never half a file, and never a stray temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open(tmp, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # also on KeyboardInterrupt
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path
