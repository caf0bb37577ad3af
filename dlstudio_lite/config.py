"""Run-wide settings, each stated once: the quick-mode switch, ``TrainConfig``, and
``hparams`` recorded from a constructor's signature.

``DLSTUDIO_LITE_QUICK=1`` switches the course (notebooks, command line, tests) into
*quick mode*. What it shrinks is derived in one place, ``recipes.quick_variant``, and
applied at the entry points only (the command line, the notebooks, through the named
recipes): library constructors never read the environment, so ``ShapesDataset()`` or
``VQGAN()`` mean the same thing everywhere.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import os
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

QUICK_ENV = "DLSTUDIO_LITE_QUICK"
DEVICE_ENV = "DLSTUDIO_LITE_DEVICE"

_TRUE = {"1", "true", "yes", "on"}
T = TypeVar("T")


def quick_mode() -> bool:
    """True when ``DLSTUDIO_LITE_QUICK`` is set to 1/true/yes/on (case-insensitive)."""
    return os.environ.get(QUICK_ENV, "").strip().lower() in _TRUE


def pick(normal: T, quick: T) -> T:
    """Return ``quick`` in quick mode and ``normal`` otherwise: for what a notebook *shows*
    (how many images, points or trials), never for a training run (those are recipes).

    Example: ``n_show = pick(normal=64, quick=16)``.
    """
    return quick if quick_mode() else normal


# --- training options ------------------------------------------------------------------------

def _option(default, help: str, **kw):
    return field(default=default, metadata={"help": help}, **kw)


@dataclass
class TrainConfig:
    """Everything that shapes a run, in plain types (saved in checkpoints and config.json).
    The command line's flags and their help are generated from these fields."""
    steps: int | None = _option(None, "optimizer steps in total (--epochs clears it)")
    epochs: int | None = _option(None, "epochs, when steps is not given (default: 1 epoch)")
    batch_size: int = _option(48, "images per step and process")
    lr: float = _option(1e-4, "learning rate")
    optimizer: str | None = _option(None, "adam, adamw, rmsprop or sgd (default: the model's "
                                    "choice; Adam, AdamW for the prior)")
    weight_decay: float = _option(0.0, "weight decay")
    betas: tuple[float, float] | None = _option(None, "Adam(W) betas (default: the model's; "
                                                "the VQGAN's are 0.5 0.9)")
    momentum: float = _option(0.9, "SGD / RMSprop momentum")
    scheduler: str | None = _option(None, "lr schedule stepped every step: steplr, "
                                    "exponentiallr, cosineannealinglr or none")
    scheduler_kwargs: dict = field(default_factory=dict, metadata={
        "help": "extra scheduler argument KEY=VALUE, e.g. gamma=0.5 (repeatable)"})
    grad_clip: float | None = _option(None, "max global gradient norm per optimizer")
    amp: str = _option("auto", "mixed precision: auto (bf16 or fp16 on CUDA, off on CPU), "
                       "bf16, fp16, off")
    channels_last: bool | None = _option(None, "channels_last memory format (default: on CUDA)")
    compile: bool = _option(False, "torch.compile the loss computation")
    seed: int = _option(0, "seeds the data order (epoch e is shuffled with seed + e)")
    device: str | None = _option(None, "cpu, cuda, cuda:1, mps (default: the best available)")
    num_workers: int = _option(0, "DataLoader worker processes (0: load in the main process)")
    log_every: int = _option(25, "steps between host syncs of the logs")
    eval_every: int | None = _option(None, "steps between test evaluations (default: at the end)")
    eval_batches: int | None = _option(None, "test batches per evaluation (default: all)")
    sample_every: int | None = _option(None, "steps between reconstruction grids "
                                       "recon_stepN.png (needs an output folder)")
    checkpoint_every: int | None = _option(None, "steps between checkpoints (one is always "
                                           "written at the end)")
    progress: bool = _option(True, "show a progress bar (rank 0 only)")

    def __post_init__(self):
        for name in ("steps", "epochs", "eval_every", "eval_batches", "sample_every",
                     "checkpoint_every"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
        for name in ("batch_size", "log_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.amp not in ("auto", "bf16", "fp16", "off"):
            raise ValueError(f"amp must be one of auto, bf16, fp16, off; got {self.amp!r}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"grad_clip must be positive or None, got {self.grad_clip!r}")
        if self.betas is not None:
            self.betas = tuple(float(b) for b in self.betas)
        if str(self.scheduler).lower() in ("none", ""):
            self.scheduler = None
        self.scheduler_kwargs = dict(self.scheduler_kwargs or {})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --- constructor arguments recorded once -----------------------------------------------------

def records_hparams(init):
    """Decorate a model's ``__init__`` so that ``self.hparams`` holds its call arguments.

    Every argument, defaults included, is bound against the signature and stored as a plain
    dict (``**kwargs`` merged in), so ``type(model)(**model.hparams)`` rebuilds the model and
    a checkpoint needs nothing else. In a subclass the outermost ``__init__`` wins.
    """
    signature = inspect.signature(init)

    @functools.wraps(init)
    def wrapper(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        hparams: dict[str, Any] = {}
        for name, value in list(bound.arguments.items())[1:]:
            kind = signature.parameters[name].kind
            if kind is inspect.Parameter.VAR_KEYWORD:
                hparams.update(value)
            elif kind is not inspect.Parameter.VAR_POSITIONAL:
                hparams[name] = list(value) if isinstance(value, tuple) else value
        init(self, *args, **kwargs)
        # Set last and merged: in a subclass, the base's complete record comes first and
        # the subclass's own arguments (its **kwargs went to the base) are added on top.
        self.hparams = {**self.__dict__.get("hparams", {}), **hparams}
    wrapper.__signature__ = signature
    return wrapper


def parameters(cls) -> dict[str, inspect.Parameter]:
    """Constructor parameters of ``cls``, following ``**kwargs`` into the base classes
    (a ``VQGAN``'s are its own and then its ``VQVAE``'s)."""
    out: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        init = inspect.unwrap(klass.__dict__.get("__init__", object.__init__))
        if init is object.__init__:
            break
        params = list(inspect.signature(init).parameters.values())[1:]
        hints = typing.get_type_hints(init)
        for p in params:
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in out:
                out[p.name] = p.replace(annotation=hints.get(p.name, p.annotation))
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return out
