"""Optimizers and learning-rate schedules by name (what a model's ``configure_optimizers``
and the command line's ``--optimizer`` / ``--scheduler`` choose from)."""
from __future__ import annotations

from typing import Any, Iterable

import torch

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
              "rmsprop": torch.optim.RMSprop, "sgd": torch.optim.SGD}
SCHEDULERS = {"steplr": torch.optim.lr_scheduler.StepLR,
              "exponentiallr": torch.optim.lr_scheduler.ExponentialLR,
              "cosineannealinglr": torch.optim.lr_scheduler.CosineAnnealingLR}


def trainable(params: Iterable[torch.nn.Parameter]) -> list[torch.nn.Parameter]:
    """The parameters that require gradients (frozen ones stay out of the optimizer)."""
    return [p for p in params if p.requires_grad]


def make_optimizer(name: str, params, lr: float, weight_decay: float = 0.0,
                   betas: tuple[float, float] | None = None, momentum: float = 0.9
                   ) -> torch.optim.Optimizer:
    """``Adam``, ``AdamW``, ``RMSprop`` or ``SGD`` (case-insensitive) from ``torch.optim``."""
    key = str(name).lower()
    if key not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}: expected one of Adam, AdamW, RMSprop, SGD")
    if not (isinstance(lr, (int, float)) and lr > 0):
        raise ValueError(f"learning rate must be a positive number, got {lr!r}")
    kwargs: dict[str, Any] = {"lr": lr, "weight_decay": weight_decay}
    if key in ("adam", "adamw") and betas is not None:
        kwargs["betas"] = tuple(betas)
    if key in ("sgd", "rmsprop"):
        kwargs["momentum"] = momentum
    return OPTIMIZERS[key](params, **kwargs)


def make_scheduler(name: str | None, optimizer: torch.optim.Optimizer, total_steps: int,
                   **kwargs) -> torch.optim.lr_scheduler.LRScheduler | None:
    """``StepLR``, ``ExponentialLR`` or ``CosineAnnealingLR`` (case-insensitive), stepped once
    per training step. Defaults fit the run length: StepLR divides the lr by 10 every third
    of the run, ExponentialLR decays it 10x over the run, cosine anneals over the run.
    ``None`` or ``"none"`` gives no scheduler."""
    if name is None or str(name).lower() in ("", "none"):
        return None
    key = str(name).lower()
    if key not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}: expected one of StepLR, ExponentialLR, "
                         f"CosineAnnealingLR or none")
    total_steps = max(1, int(total_steps))
    defaults = {"steplr": {"step_size": max(1, total_steps // 3), "gamma": 0.1},
                "exponentiallr": {"gamma": 0.1 ** (1.0 / total_steps)},
                "cosineannealinglr": {"T_max": total_steps}}[key]
    return SCHEDULERS[key](optimizer, **{**defaults, **kwargs})
