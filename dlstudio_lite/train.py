"""One training loop for every model of the course (autoencoder, VAE, VQ-VAE, VQGAN).

The trainer only relies on the model protocol of docs/DESIGN.md::

    loss, logs = model.compute_loss(x)          # every model
    model.generator_loss(x, step)               # adversarial models (VQGAN) also define
    model.discriminator_loss(x, x_hat, step)    # these two and get two optimizers

Typical use (a notebook)::

    model = VQVAE(...)
    trainer = Trainer(model, train_set, test_set, steps=2000, lr=1e-4, out_dir="runs/vqvae")
    history = trainer.fit()                     # dict[str, list[(step, value)]]

What it takes care of, so that models stay short:

* device (``get_device``), mixed precision (bf16 autocast on CUDA when supported, else fp16
  with a ``GradScaler``; off on CPU), channels_last on CUDA, optional ``torch.compile``;
* optimizers and lr schedulers by name, gradient clipping;
* cheap logging: logs are summed on the device and read back (one sync) every
  ``log_every`` steps; a tqdm bar shows the running loss (and perplexity for VQ models);
* exact resume: the checkpoint holds model, optimizers, schedulers, scaler, RNG states and
  the position inside the current epoch (each epoch's order comes from ``seed + epoch``);
* a NaN/inf guard that stops with a clear error and never overwrites the last good
  checkpoint; Ctrl-C saves a checkpoint and returns;
* DistributedDataParallel under ``torchrun`` (rank 0 alone logs and writes files).
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import os
import signal
import threading
import time
import warnings
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, DistributedSampler, Sampler

from .checkpoint import (CheckpointError, load_checkpoint, load_model_state, model_from_checkpoint,
                         model_name_of, rng_state, save_checkpoint, set_rng_state)
from .config import quick_mode
from .device import get_device

# ------------------------------------------------------------------------------------------
# Optimizers and schedulers by name
# ------------------------------------------------------------------------------------------

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
              "rmsprop": torch.optim.RMSprop, "sgd": torch.optim.SGD}
SCHEDULERS = {"steplr": torch.optim.lr_scheduler.StepLR,
              "exponentiallr": torch.optim.lr_scheduler.ExponentialLR,
              "cosineannealinglr": torch.optim.lr_scheduler.CosineAnnealingLR}


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


# ------------------------------------------------------------------------------------------
# Configuration
# ------------------------------------------------------------------------------------------

@dataclass
class TrainConfig:
    """Everything that shapes a run, in plain types (saved in checkpoints and config.json)."""
    steps: int | None = None          # total optimizer steps; wins over epochs
    epochs: int | None = None         # used when steps is None (default: 1 epoch)
    batch_size: int = 48              # per process under DDP
    lr: float = 1e-4
    optimizer: str = "adam"
    weight_decay: float = 0.0
    betas: tuple[float, float] | None = None   # Adam(W) betas; None keeps torch's default
    momentum: float = 0.9             # SGD / RMSprop
    scheduler: str | None = None      # StepLR | ExponentialLR | CosineAnnealingLR | None
    scheduler_kwargs: dict = field(default_factory=dict)
    grad_clip: float | None = None    # max global grad norm per optimizer
    amp: str = "auto"                 # auto | bf16 | fp16 | off
    channels_last: bool | None = None  # None: on for CUDA
    compile: bool = False             # torch.compile the loss computation
    seed: int = 0                     # data order (epoch e is shuffled with seed + e)
    device: str | None = None         # None: get_device()
    num_workers: int = 0
    log_every: int = 25               # steps between host syncs of the logs
    eval_every: int | None = None     # steps between test evaluations (None: at the end)
    eval_batches: int | None = None   # cap on test batches per evaluation (None: all)
    sample_every: int | None = None   # steps between reconstruction grids (needs out_dir)
    checkpoint_every: int | None = None  # steps between checkpoints (always at the end)
    progress: bool = True             # tqdm bar (rank 0 only)

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

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; training stopped and the last good checkpoint stays."""


# ------------------------------------------------------------------------------------------
# Distributed helpers
# ------------------------------------------------------------------------------------------

def setup_distributed() -> tuple[int, int, int]:
    """Join the process group that ``torchrun`` describes in the environment.

    Returns ``(rank, world_size, local_rank)``; ``(0, 1, 0)`` for a single process.
    Uses NCCL when CUDA is available, gloo otherwise.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size(), local_rank


def cleanup_distributed() -> None:
    """Leave the process group (call once at the end of a ``torchrun`` job)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class _ResumableBatches(Sampler):
    """Batches of one epoch, skipping the first ``skip`` (to resume mid-epoch).

    The order comes from a ``DistributedSampler`` (also for one process), which shuffles
    with ``seed + epoch``: no global RNG is consumed, so the same epoch always gives the
    same order, and each rank gets its own share of the data.
    """

    def __init__(self, sampler: DistributedSampler, batch_size: int):
        self.sampler = sampler
        # Drop the ragged last batch (constant shapes suit compile and BatchNorm) unless
        # the dataset is smaller than one batch.
        self.batches = BatchSampler(sampler, batch_size, drop_last=len(sampler) >= batch_size)
        self.skip = 0

    def __len__(self) -> int:
        return max(0, len(self.batches) - self.skip)

    def __iter__(self):
        return itertools.islice(iter(self.batches), self.skip, None)


class _LossFn(nn.Module):
    """Routes ``forward`` to the model's loss methods. DDP and ``torch.compile`` wrap
    ``forward`` only, and the protocol's entry points are ``compute_loss`` and friends."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, kind: str, *args):
        if kind == "loss":
            return self.model.compute_loss(*args)
        if kind == "generator":
            return self.model.generator_loss(*args)
        return self.model.discriminator_loss(*args)


def _images(batch) -> torch.Tensor:
    # Datasets yield (image, target); models and the trainer use the image only.
    return batch[0] if isinstance(batch, (tuple, list)) else batch


# ------------------------------------------------------------------------------------------
# The trainer
# ------------------------------------------------------------------------------------------

class Trainer:
    """Train any protocol model; see the module docstring.

    Args:
        model: an ``nn.Module`` following docs/DESIGN.md (``hparams``, ``compute_loss``, ...).
        train_data: a ``Dataset`` yielding ``(image (C, H, W) in [-1, 1], target)``.
        test_data: optional held-out ``Dataset`` for ``evaluate`` and reconstruction grids.
        config: a :class:`TrainConfig`; keyword ``overrides`` replace its fields
            (``Trainer(model, data, steps=100, lr=3e-4)``).
        out_dir: where checkpoints (``checkpoint.pt``) and grids go; ``None`` writes nothing.
        model_name: registry name stored in checkpoints (default: from the class).
    """

    def __init__(self, model: nn.Module, train_data: Dataset, test_data: Dataset | None = None,
                 config: TrainConfig | None = None, *, out_dir: str | os.PathLike | None = None,
                 model_name: str | None = None, **overrides):
        if not hasattr(model, "compute_loss"):
            raise TypeError(f"model {type(model).__name__} does not follow the model protocol: "
                            f"it has no compute_loss(x) method (see docs/DESIGN.md)")
        config = dataclasses.replace(config or TrainConfig(), **overrides)
        self.config = config
        self.model_name = model_name or model_name_of(model)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.checkpoint_path = self.out_dir / "checkpoint.pt" if self.out_dir else None

        # --- processes and device -----------------------------------------------------
        self.rank, self.world_size, local_rank = setup_distributed()
        self.is_main = self.rank == 0
        if self.world_size > 1 and torch.cuda.is_available():
            self.device = torch.device("cuda", local_rank)
        else:
            self.device = get_device(config.device)
        cuda = self.device.type == "cuda"
        self.channels_last = cuda if config.channels_last is None else config.channels_last
        self.amp_dtype = self._choose_amp(config.amp)
        # fp16 has a narrow range: scale the loss so small gradients do not flush to zero.
        self.scaler = (torch.amp.GradScaler(self.device.type)
                       if self.amp_dtype == torch.float16 else None)

        model.to(self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        self.model = model
        self.adversarial = hasattr(model, "discriminator_loss")

        # --- data -----------------------------------------------------------------------
        self.train_data, self.test_data = train_data, test_data
        self._sampler = DistributedSampler(train_data, num_replicas=self.world_size,
                                           rank=self.rank, shuffle=True, seed=config.seed)
        self._batches = _ResumableBatches(self._sampler, config.batch_size)
        if len(self._batches) == 0:
            raise ValueError("the training set is empty")
        # A private generator: creating an iterator then draws no number from the global
        # RNG, which would shift the model's random stream when a run resumes mid-epoch.
        self._loader_gen = torch.Generator()
        self._loader = DataLoader(train_data, batch_sampler=self._batches,
                                  num_workers=config.num_workers, pin_memory=cuda,
                                  generator=self._loader_gen,
                                  persistent_workers=False)
        self.steps_per_epoch = len(self._batches.batches)
        self.total_steps = config.steps or (config.epochs or 1) * self.steps_per_epoch

        # --- optimizers, schedulers -------------------------------------------------------
        if self.adversarial:
            groups = [list(model.generator_parameters()), list(model.discriminator_parameters())]
        else:
            groups = [list(model.parameters())]
        self._params = [[p for p in g if p.requires_grad] for g in groups]
        self.optimizers = [make_optimizer(config.optimizer, ps, config.lr, config.weight_decay,
                                          config.betas, config.momentum) for ps in self._params]
        self.schedulers = [s for s in (make_scheduler(config.scheduler, opt, self.total_steps,
                                                      **config.scheduler_kwargs)
                                       for opt in self.optimizers) if s is not None]

        # --- what runs the forward pass ------------------------------------------------
        engine: nn.Module = _LossFn(model)
        if self.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP
            # The VQGAN's two passes each leave the other network's weights without grads.
            engine = DDP(engine, device_ids=[self.device.index] if cuda else None,
                         find_unused_parameters=self.adversarial)
        if config.compile:
            engine = torch.compile(engine)
        self._engine = engine

        # --- state ----------------------------------------------------------------------
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.history: dict[str, list[tuple[int, float]]] = {}
        self.interrupted = False
        self.images_per_second: float | None = None
        self._acc: dict[str, torch.Tensor | float] = {}
        self._acc_steps = 0
        self._acc_first_step = 1
        self._stop_requested = False
        self._last_good_step: int | None = None

    # --- precision ----------------------------------------------------------------------
    def _choose_amp(self, amp: str) -> torch.dtype | None:
        kind = self.device.type
        if amp == "off" or (amp == "auto" and kind != "cuda"):
            return None
        if amp == "auto":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if amp == "fp16" and kind != "cuda":
            raise ValueError(f"amp='fp16' needs a CUDA device, got {kind}; use 'bf16' or 'off'")
        return torch.bfloat16 if amp == "bf16" else torch.float16

    def autocast(self):
        """Autocast context for the chosen precision (a no-op when AMP is off).
        Quantizers disable it internally: distances in fp16 can go negative or overflow."""
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.dim() == 4:
            return x.to(self.device, non_blocking=True, memory_format=torch.channels_last)
        return x.to(self.device, non_blocking=True)

    # --- one step -------------------------------------------------------------------------
    def _update(self, loss: torch.Tensor, index: int) -> torch.Tensor | None:
        """Backward and optimizer step for optimizer ``index``; returns the grad norm."""
        opt, params = self.optimizers[index], self._params[index]
        opt.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()
        norm = None
        if self.config.grad_clip is not None:
            if self.scaler is not None:
                self.scaler.unscale_(opt)  # clip the true gradients, not the scaled ones
            norm = torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip)
        if self.scaler is not None:
            self.scaler.step(opt)  # skips the step when the scaled grads overflowed
        else:
            opt.step()
        return norm

    def train_step(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """One optimisation step on the batch ``x`` (B, C, H, W); returns detached logs."""
        if not self.adversarial:
            with self.autocast():
                loss, logs = self._engine("loss", x)
            norm = self._update(loss, 0)
            logs = {**logs, "loss": loss.detach()}
            if norm is not None:
                logs["grad_norm"] = norm
        else:
            # Generator (encoder, codebook, decoder) first, then the discriminator on the
            # detached reconstructions of the same batch.
            with self.autocast():
                g_loss, g_logs, x_hat = self._engine("generator", x, self.step)
            self._update(g_loss, 0)
            with self.autocast():
                d_loss, d_logs = self._engine("discriminator", x, x_hat, self.step)
            self._update(d_loss, 1)
            logs = {**g_logs, **d_logs, "loss": g_loss.detach(), "d_loss": d_loss.detach()}
        if self.scaler is not None:
            self.scaler.update()
        for sched in self.schedulers:
            sched.step()
        return logs

    # --- logging --------------------------------------------------------------------------
    def _accumulate(self, logs: Mapping[str, Any]) -> None:
        # Sum on the device: reading a CUDA value back (.item()) would stall the GPU queue.
        for k, v in logs.items():
            v = v.detach().float() if torch.is_tensor(v) else float(v)
            self._acc[k] = self._acc[k] + v if k in self._acc else v
        self._acc_steps += 1

    def _flush_logs(self) -> dict[str, float]:
        """Average the accumulated logs (one host sync), append them to ``history`` and
        raise :class:`NonFiniteLossError` when a loss went NaN/inf since the last flush."""
        if self._acc_steps == 0:
            return {}
        keys = list(self._acc)
        tensors = [k for k in keys if torch.is_tensor(self._acc[k])]
        # One stack + one tolist: a single device-to-host copy for all the logs.
        values = dict(zip(tensors, torch.stack([self._acc[k].reshape(()).to(self.device)
                                                for k in tensors]).tolist())) if tensors else {}
        values.update({k: self._acc[k] for k in keys if k not in values})
        means = {k: values[k] / self._acc_steps for k in keys}
        first, last = self._acc_first_step, self.step
        self._acc, self._acc_steps, self._acc_first_step = {}, 0, self.step + 1
        bad = [k for k in ("loss", "d_loss") if k in means and not math.isfinite(means[k])]
        if bad:
            kept = (f"the last good checkpoint {str(self.checkpoint_path)!r} (step "
                    f"{self._last_good_step}) was kept" if self._last_good_step is not None
                    else "no checkpoint had been written yet")
            raise NonFiniteLossError(
                f"training stopped: {bad[0]} became {means[bad[0]]} between steps {first} and "
                f"{last}; {kept}. Try a lower learning rate (--lr), gradient clipping "
                f"(--grad-clip 1.0) or full precision (--amp off).")
        for k, v in means.items():
            self.history.setdefault(f"train/{k}", []).append((last, v))
        self.history.setdefault("lr", []).append((last, self.optimizers[0].param_groups[0]["lr"]))
        return means

    def _log_eval(self, results: Mapping[str, float]) -> None:
        for k, v in results.items():
            self.history.setdefault(f"test/{k}", []).append((self.step, v))

    # --- evaluation -----------------------------------------------------------------------
    def _test_loader(self) -> DataLoader:
        if self.test_data is None:
            raise ValueError("this trainer has no test_data to evaluate on")
        return DataLoader(self.test_data, batch_size=self.config.batch_size, shuffle=False,
                          num_workers=self.config.num_workers)

    @torch.no_grad()
    def evaluate(self, max_batches: int | None = None) -> dict[str, float]:
        """Mean of the model's logs (and loss) over the test split, weighted by batch size.

        Runs in eval mode under a forked, fixed-seed RNG, so a VAE's sampling noise neither
        changes the training run's random stream nor makes two evaluations differ.
        """
        max_batches = max_batches or self.config.eval_batches
        was_training = self.model.training
        self.model.eval()
        sums: dict[str, torch.Tensor] = {}
        count = 0
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.config.seed)
            for i, batch in enumerate(self._test_loader()):
                if max_batches is not None and i >= max_batches:
                    break
                x = self._to_device(_images(batch))
                with self.autocast():
                    loss, logs = self.model.compute_loss(x)
                for k, v in {**logs, "loss": loss}.items():
                    v = torch.as_tensor(v, device=self.device).detach().float() * x.shape[0]
                    sums[k] = sums[k] + v if k in sums else v
                count += x.shape[0]
        self.model.train(was_training)
        if count == 0:
            return {}
        keys = list(sums)
        values = torch.stack([sums[k].reshape(()) for k in keys]).tolist()
        return {k: v / count for k, v in zip(keys, values)}

    @torch.no_grad()
    def save_reconstructions(self, path: str | os.PathLike, n: int = 8) -> Path:
        """Save a PNG grid: the first ``n`` test images (top row) over their reconstructions."""
        from torchvision.utils import save_image
        data = self.test_data if self.test_data is not None else self.train_data
        x = torch.stack([_images(data[i]) for i in range(min(n, len(data)))])
        was_training = self.model.training
        self.model.eval()
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(self.config.seed)
            with self.autocast():
                x_hat = self.model.reconstruct(self._to_device(x)).float().cpu()
        self.model.train(was_training)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # [-1, 1] -> [0, 1]; save_image clamps what the decoder overshoots.
        save_image((torch.cat([x, x_hat]) + 1) / 2, path, nrow=len(x), padding=2)
        return path

    # --- checkpoints ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The checkpoint dict of docs/DESIGN.md for the current step."""
        return {
            "model_name": self.model_name,
            "hparams": dict(getattr(self.model, "hparams", {})),
            "model": self.model.state_dict(),
            "optimizers": [o.state_dict() for o in self.optimizers],
            "schedulers": [s.state_dict() for s in self.schedulers],
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "history": {k: list(v) for k, v in self.history.items()},
            "rng": rng_state(),
            "config": self.config.to_dict(),
        }

    def save_checkpoint(self, path: str | os.PathLike | None = None) -> Path | None:
        """Write a checkpoint (rank 0 only) after checking that the state is finite."""
        path = path or self.checkpoint_path
        if path is None or not self.is_main:
            return None
        self._flush_logs()  # raises instead of saving when the loss went NaN/inf
        save_checkpoint(self.state_dict(), path)
        if Path(path) == self.checkpoint_path:
            self._last_good_step = self.step
        return Path(path)

    def resume(self, path: str | os.PathLike) -> "Trainer":
        """Load a checkpoint written by this trainer and continue from its step."""
        ckpt = load_checkpoint(path, map_location="cpu")
        hparams = dict(getattr(self.model, "hparams", {}))
        if ckpt["model_name"] != self.model_name or ckpt["hparams"] != hparams:
            raise CheckpointError(
                f"checkpoint {str(path)!r} was written for {ckpt['model_name']} with hparams "
                f"{ckpt['hparams']}, but this trainer trains {self.model_name} with {hparams}")
        if len(ckpt["optimizers"]) != len(self.optimizers):
            raise CheckpointError(f"checkpoint {str(path)!r} holds {len(ckpt['optimizers'])} "
                                  f"optimizer state(s), this model needs {len(self.optimizers)}")
        if len(ckpt["schedulers"]) != len(self.schedulers):
            raise CheckpointError(f"checkpoint {str(path)!r} holds {len(ckpt['schedulers'])} "
                                  f"scheduler state(s), this run configures "
                                  f"{len(self.schedulers)} (--scheduler must match)")
        load_model_state(self.model, ckpt["model"], path)
        try:
            for opt, state in zip(self.optimizers, ckpt["optimizers"]):
                opt.load_state_dict(state)
            for sched, state in zip(self.schedulers, ckpt["schedulers"]):
                sched.load_state_dict(state)
        except (ValueError, KeyError, RuntimeError) as err:
            raise CheckpointError(f"checkpoint {str(path)!r}: optimizer/scheduler state does "
                                  f"not fit this run ({err})") from err
        if self.scaler is not None and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.step, self.epoch = int(ckpt["step"]), int(ckpt["epoch"])
        self.batch_in_epoch = int(ckpt.get("batch_in_epoch", 0))
        self.history = {k: [tuple(e) for e in v] for k, v in ckpt["history"].items()}
        self._acc_first_step = self.step + 1
        set_rng_state(ckpt["rng"])
        if self.checkpoint_path is not None and Path(path).resolve() == \
                self.checkpoint_path.resolve():
            self._last_good_step = self.step
        return self

    # --- the loop -------------------------------------------------------------------------
    def _epoch_iterator(self):
        self._sampler.set_epoch(self.epoch)
        self._batches.skip = self.batch_in_epoch
        self._loader_gen.manual_seed(self.config.seed + self.epoch)  # worker seeds
        return iter(self._loader)

    def fit(self) -> dict[str, list[tuple[int, float]]]:
        """Train until ``total_steps``; returns ``history``.

        Ctrl-C finishes the current step, saves a checkpoint (when ``out_dir`` is set),
        sets ``interrupted`` and returns (a second Ctrl-C stops at once). A NaN/inf loss
        raises :class:`NonFiniteLossError`.
        """
        from tqdm.auto import tqdm
        cfg = self.config
        bar = tqdm(total=self.total_steps, initial=self.step, desc=f"train {self.model_name}",
                   disable=not (cfg.progress and self.is_main), dynamic_ncols=True)
        self.model.train()
        start, start_step = time.perf_counter(), self.step
        batches = self._epoch_iterator()
        previous_handler = self._defer_ctrl_c()
        try:
            while self.step < self.total_steps:
                if self._stop_requested:
                    raise KeyboardInterrupt
                batch = next(batches, None)
                if batch is None:  # end of the epoch
                    self.epoch, self.batch_in_epoch = self.epoch + 1, 0
                    batches = self._epoch_iterator()
                    continue
                logs = self.train_step(self._to_device(_images(batch)))
                self.step += 1
                self.batch_in_epoch += 1
                self._accumulate(logs)
                bar.update(1)
                self._periodic(bar)
            if self._acc_steps:
                self._show(bar, self._flush_logs())
            if self.test_data is not None and self.is_main and not self._evaluated_now():
                self._log_eval(self.evaluate())
            self.save_checkpoint()
        except KeyboardInterrupt:
            self.interrupted = True
            self._flush_logs()  # raises NonFiniteLossError rather than save NaNs
            path = self.save_checkpoint()
            if self.is_main and cfg.progress:
                where = f"; checkpoint saved to {path}" if path else ""
                bar.write(f"interrupted at step {self.step}{where}")
        finally:
            bar.close()
            if previous_handler is not None:
                signal.signal(signal.SIGINT, previous_handler)
        elapsed = time.perf_counter() - start
        done = (self.step - start_step) * cfg.batch_size * self.world_size
        self.images_per_second = done / elapsed if elapsed > 0 and done else None
        return self.history

    def _defer_ctrl_c(self):
        """Make Ctrl-C stop at the next step boundary, so that no half-done step (an EMA
        codebook already updated by the forward pass, one of VQGAN's two optimizers already
        stepped) ends up in the checkpoint. Only in the main thread of a single process:
        DDP ranks would stop at different steps and wait for each other forever."""
        self._stop_requested = False
        if self.world_size > 1 or threading.current_thread() is not threading.main_thread():
            return None

        def request_stop(signum, frame):
            if self._stop_requested:  # pressed twice: stop now
                raise KeyboardInterrupt
            self._stop_requested = True

        previous = signal.getsignal(signal.SIGINT)
        signal.signal(signal.SIGINT, request_stop)
        # getsignal gives None for a handler installed outside Python: restore the default.
        return previous if previous is not None else signal.default_int_handler

    def _evaluated_now(self) -> bool:
        entries = next((v for k, v in self.history.items() if k.startswith("test/")), [])
        return bool(entries) and entries[-1][0] == self.step

    def _periodic(self, bar) -> None:
        cfg, step = self.config, self.step
        if step % cfg.log_every == 0:
            self._show(bar, self._flush_logs())
        if not self.is_main:
            return
        if cfg.eval_every and step % cfg.eval_every == 0 and self.test_data is not None:
            self._log_eval(self.evaluate())
        if cfg.sample_every and step % cfg.sample_every == 0 and self.out_dir is not None:
            self.save_reconstructions(self.out_dir / f"recon_step{step:06d}.png")
        if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
            self.save_checkpoint()

    @staticmethod
    def _show(bar, means: Mapping[str, float]) -> None:
        shown = {k: f"{means[k]:.4g}" for k in ("loss", "recon", "kl", "perplexity", "d_loss")
                 if k in means}
        if shown:
            bar.set_postfix(shown, refresh=False)


def load_or_train(checkpoint: str | os.PathLike | None, make_model, train_data: Dataset,
                  test_data: Dataset | None = None, *, steps: int, **trainer_kwargs):
    """A trained model for a notebook: the shipped one, or one trained here.

    In normal mode the model in ``checkpoint`` is returned when it loads; in quick mode, when
    ``checkpoint`` is None, or when the file is missing or damaged (a warning says why),
    ``make_model()`` is trained for ``steps`` steps with :class:`Trainer` (``trainer_kwargs``
    are its config fields). Returns ``(model in eval mode, history)``.
    """
    device = get_device(trainer_kwargs.get("device"))
    if checkpoint is not None and not quick_mode():
        try:
            ckpt = load_checkpoint(checkpoint)
            return model_from_checkpoint(ckpt, checkpoint).to(device), ckpt["history"]
        except CheckpointError as err:
            warnings.warn(f"{err}; training a new model instead", stacklevel=2)
    model = make_model()
    history = Trainer(model, train_data, test_data, steps=steps, **trainer_kwargs).fit()
    return model.eval(), history
