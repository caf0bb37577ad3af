"""Checkpoints that survive crashes and load safely.

A checkpoint is a plain dict of tensors and Python values (see docs/DESIGN.md)::

    {"format": "dlstudio-lite/1", "model_name", "hparams", "model", "optimizers",
     "schedulers", "step", "epoch", "history", "rng", "config", ...}

The trainer adds ``"batch_in_epoch"`` (the position inside the epoch) and ``"scaler"``
(the fp16 ``GradScaler`` state) so that a resumed run continues exactly where it stopped.

* Saving writes a temporary file in the *same* folder and moves it into place with
  ``os.replace``, which is atomic: a crash (or Ctrl-C) during the write leaves the
  previous checkpoint untouched instead of half a file.
* Loading uses ``torch.load(..., weights_only=True)``, which refuses to unpickle arbitrary
  objects, so opening a downloaded checkpoint cannot run code.
* Anything wrong (missing, truncated, not a torch file, written by another program, missing
  keys) raises :class:`CheckpointError` naming the file and the problem.
"""
from __future__ import annotations

import importlib
import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn as nn

from .paths import CHECKPOINTS, atomic_write  # noqa: F401  (CHECKPOINTS: public name)

FORMAT = "dlstudio-lite/1"
REQUIRED_KEYS = ("format", "model_name", "hparams", "model", "optimizers", "schedulers",
                 "step", "epoch", "history", "rng", "config")


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable, or not a dlstudio-lite checkpoint."""


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` atomically and return the path.

    ``state`` must hold only tensors and plain Python values (dict, list, tuple, str, int,
    float, bool, None) so that it can be read back with ``weights_only=True``. ``"format"``
    is filled in when missing.
    """
    if not isinstance(state, dict):
        raise ValueError(f"a checkpoint must be a dict, got {type(state).__name__}")
    state = {"format": FORMAT, **state}
    return atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu"
                    ) -> dict[str, Any]:
    """Read and validate a checkpoint written by :func:`save_checkpoint`.

    Raises :class:`CheckpointError` when the file is missing, corrupt, not a torch file,
    holds objects that ``weights_only=True`` refuses, or lacks the dlstudio-lite keys.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist (or is not a file)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # zip errors, unpickling errors, EOF: all mean "unreadable"
        raise CheckpointError(
            f"checkpoint {str(path)!r} could not be read: it is truncated, corrupt, not a "
            f"torch file, or holds objects that weights_only=True refuses "
            f"({_reason(err)})") from err
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {str(path)!r} is not a dlstudio-lite checkpoint: it "
                              f"holds a {type(state).__name__}, expected a dict")
    if state.get("format") != FORMAT:
        found = state.get("format", "no 'format' key")
        keys = ", ".join(sorted(map(str, state))[:8])
        raise CheckpointError(f"checkpoint {str(path)!r} is not a dlstudio-lite checkpoint: "
                              f"expected format {FORMAT!r}, found {found!r} (keys: {keys})")
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {str(path)!r} is incomplete: missing key(s) "
                              f"{', '.join(missing)}")
    return upgrade(state)


def upgrade(state: dict[str, Any]) -> dict[str, Any]:
    """Bring a checkpoint written by an earlier version of the package up to date.

    Each model class knows its own history: ``cls.upgrade_hparams(hparams)``, when defined,
    rewrites old constructor arguments (e.g. the VQ models' ``ema=True`` of before the
    quantizer registry); old weight names are renamed by the model when it loads them.
    """
    cls = MODELS[state["model_name"]] if state["model_name"] in MODELS else None
    if hasattr(cls, "upgrade_hparams"):
        state["hparams"] = cls.upgrade_hparams(state["hparams"])
    return state


def _reason(err: Exception) -> str:
    """The informative line of torch.load's (long) error message."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    for line in lines:
        if "Unsupported global" in line:  # weights_only met an arbitrary object
            return line.split(". Please use")[0].replace("WeightsUnpickler error: ", "")
    return lines[0] if lines else type(err).__name__


# --- random number generator state --------------------------------------------------------
# Stored as tensors and tuples of ints so that weights_only=True accepts it.

def rng_state() -> dict[str, Any]:
    """Snapshot of the Python, NumPy and torch (CPU and CUDA) random generators."""
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (np_kind, torch.from_numpy(np_keys.astype(np.int64)), int(np_pos),
                  int(np_has_gauss), float(np_gauss)),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore a snapshot made by :func:`rng_state`."""
    random.setstate(_as_tuples(state["python"]))
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state((np_kind, np_keys.numpy().astype(np.uint32), np_pos, np_has_gauss,
                         np_gauss))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = [s.cpu() for s in state["cuda"]]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


def _as_tuples(value):
    # random.setstate needs tuples; be lenient in case a list came back.
    if isinstance(value, (list, tuple)):
        return tuple(_as_tuples(v) for v in value)
    return value


# --- models by name: rebuild a trained model from its checkpoint ---------------------------

_MODEL_SPECS = {  # name -> (module, class); imported on first use
    "autoencoder": ("autoencoder", "Autoencoder"),
    "vae": ("vae", "VAE"),
    "vqvae": ("vqvae", "VQVAE"),
    "vqgan": ("vqgan", "VQGAN"),
    "prior": ("prior", "TransformerPrior"),
    "maskgit": ("masked_prior", "MaskedPrior"),
    "vqvae2": ("vqvae2", "VQVAE2"),
    "pixelcnn": ("pixelcnn", "PixelCNN"),
}


class _ModelRegistry(Mapping):
    """``MODELS[name] -> class``. Modules are imported lazily, so ``train.py`` imports
    (and the command line starts) even when one model module is broken or missing."""

    def __getitem__(self, name: str) -> type[nn.Module]:
        if name not in _MODEL_SPECS:
            raise KeyError(f"unknown model {name!r}: expected one of {', '.join(_MODEL_SPECS)}")
        module, cls = _MODEL_SPECS[name]
        return getattr(importlib.import_module(f"{__package__}.{module}"), cls)

    def __iter__(self) -> Iterator[str]:
        return iter(_MODEL_SPECS)

    def __len__(self) -> int:
        return len(_MODEL_SPECS)


MODELS = _ModelRegistry()


def model_name_of(model: nn.Module) -> str:
    """The registry name of ``model`` (``"vqvae"`` for a ``VQVAE``), else its class name."""
    cls = type(model).__name__
    for name, (_, cls_name) in _MODEL_SPECS.items():
        if cls == cls_name:
            return name
    return cls.lower()


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a trained model from a checkpoint (``MODELS[name](**hparams)``), in eval mode."""
    return model_from_checkpoint(load_checkpoint(path), path).to(device)


def model_from_checkpoint(ckpt: dict[str, Any], source: str | os.PathLike = "checkpoint") -> nn.Module:
    """The model held by an already loaded checkpoint dict, in eval mode, on the CPU."""
    name = ckpt["model_name"]
    if name not in MODELS:
        raise CheckpointError(f"checkpoint {str(source)!r} holds an unknown model {name!r}; "
                              f"known: {', '.join(MODELS)}")
    model = MODELS[name](**ckpt["hparams"])
    load_model_state(model, ckpt["model"], source)
    return model.eval()


def load_model_state(model: nn.Module, state: dict, path) -> None:
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"checkpoint {str(path)!r} does not fit the model "
                              f"{type(model).__name__}: {str(err).splitlines()[0]}") from err


# --- a run's state: everything an exact resume needs -----------------------------------------

def training_state(trainer) -> dict[str, Any]:
    """The checkpoint dict of docs/DESIGN.md for a :class:`~dlstudio_lite.train.Trainer`."""
    return {"model_name": trainer.model_name,
            "hparams": dict(getattr(trainer.model, "hparams", {})),
            "model": trainer.model.state_dict(),
            "optimizers": [o.state_dict() for o in trainer.optimizers],
            "schedulers": [s.state_dict() for s in trainer.schedulers],
            "scaler": trainer.scaler.state_dict() if trainer.scaler is not None else None,
            "step": trainer.step, "epoch": trainer.epoch,
            "batch_in_epoch": trainer.batch_in_epoch,
            "history": {k: list(v) for k, v in trainer.history.items()},
            "rng": rng_state(), "config": trainer.config.to_dict()}


def restore_training_state(trainer, ckpt: dict[str, Any], path) -> None:
    """Put a loaded checkpoint back into ``trainer`` (model, optimizers, schedulers, scaler,
    position, history, RNG); :class:`CheckpointError` when it belongs to another run."""
    check_resumable(ckpt, path, trainer.model_name, dict(getattr(trainer.model, "hparams", {})),
                    len(trainer.optimizers), len(trainer.schedulers))
    load_model_state(trainer.model, ckpt["model"], path)
    try:
        for part, state in zip(trainer.optimizers + trainer.schedulers,
                               ckpt["optimizers"] + ckpt["schedulers"]):
            part.load_state_dict(state)
    except (ValueError, KeyError, RuntimeError) as err:
        raise CheckpointError(f"checkpoint {str(path)!r}: optimizer/scheduler state does "
                              f"not fit this run ({err})") from err
    if trainer.scaler is not None and ckpt.get("scaler"):
        trainer.scaler.load_state_dict(ckpt["scaler"])
    trainer.step, trainer.epoch = int(ckpt["step"]), int(ckpt["epoch"])
    trainer.batch_in_epoch = int(ckpt.get("batch_in_epoch", 0))
    trainer.history = {k: [tuple(e) for e in v] for k, v in ckpt["history"].items()}
    set_rng_state(ckpt["rng"])


def slim_checkpoint(path: str | os.PathLike, half: bool = False) -> tuple[int, int]:
    """Drop the optimizer, scheduler and scaler states from the checkpoint at ``path``, in
    place and atomically; returns its size in bytes (before, after).

    For shipped files that are only ever loaded as models: Adam keeps two moments per
    weight, so the states are about two thirds of a checkpoint. A slimmed checkpoint
    still loads with :func:`load_model`, but it can no longer be resumed. With ``half``
    the model's float32 tensors are stored as float16 (half the size again; loading
    casts them back, so the model computes in float32 with weights rounded to about 3
    significant digits: score such a file as shipped, not as trained).
    """
    path = Path(path)
    ckpt = load_checkpoint(path)
    before = path.stat().st_size
    ckpt.update(optimizers=[], schedulers=[], scaler=None, slimmed=True)
    if half:
        ckpt["model"] = {k: v.half() if v.dtype == torch.float32 else v for k, v in ckpt["model"].items()}
        ckpt["stored_as"] = "float16"
    save_checkpoint(ckpt, path)
    return before, path.stat().st_size


def check_resumable(ckpt: dict, path, model_name: str, hparams: dict, n_optimizers: int,
                    n_schedulers: int) -> None:
    """Raise :class:`CheckpointError` unless ``ckpt`` was written for this model and run."""
    if ckpt.get("slimmed"):
        raise CheckpointError(
            f"checkpoint {str(path)!r} was slimmed for shipping (its optimizer states were "
            f"dropped by `dlstudio-lite checkpoint slim`): it loads as a model, but training "
            f"cannot resume from it; start a new run instead")
    if ckpt["model_name"] != model_name or ckpt["hparams"] != hparams:
        raise CheckpointError(
            f"checkpoint {str(path)!r} was written for {ckpt['model_name']} with hparams "
            f"{ckpt['hparams']}, but this trainer trains {model_name} with {hparams}")
    if len(ckpt["optimizers"]) != n_optimizers:
        raise CheckpointError(f"checkpoint {str(path)!r} holds {len(ckpt['optimizers'])} "
                              f"optimizer state(s), this model needs {n_optimizers}")
    if len(ckpt["schedulers"]) != n_schedulers:
        raise CheckpointError(f"checkpoint {str(path)!r} holds {len(ckpt['schedulers'])} "
                              f"scheduler state(s), this run configures {n_schedulers} "
                              f"(--scheduler must match)")


