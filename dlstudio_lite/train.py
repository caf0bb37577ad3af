"""One training loop for every model of the course; the models own their steps.

Following a step (the whole path from the command line is ``commands/train.py`` -> this
file -> the model's module)::

    Trainer.fit()                          # the loop: data order, logs, evaluation, checkpoints
      -> model.training_step(x, step, runner) # the model's step, or default_training_step
           runner.forward("compute_loss", x)  # through DDP / torch.compile, under autocast
           runner.update(loss, 0)             # backward, clipping, optimizer 0's step

A model needs only ``compute_loss(x) -> (loss, logs)`` (docs/DESIGN.md). It may define
``configure_optimizers(config)`` (default: one optimizer over all its parameters) and
``training_step(x, step, runner)`` (default: one loss, one update); the VQGAN defines both for
its two networks, the prior chooses AdamW. The trainer itself knows no model.

What the trainer keeps: device and mixed precision (bf16 autocast on CUDA when supported,
else fp16 with a ``GradScaler``; off on CPU), channels_last on CUDA, optional
``torch.compile``; DistributedDataParallel under ``torchrun`` (logs averaged over the ranks;
rank 0 alone evaluates, through the unwrapped model, and writes; distributed.py);
exact resume (model, optimizers, schedulers, scaler, every rank's RNG states and the position
inside the epoch, each epoch's order coming from ``seed + epoch``); cheap logging (logs summed on the
device, read back once every ``log_every`` steps); a NaN/inf guard that never overwrites
the last good checkpoint; Ctrl-C that stops at a step boundary and saves. Evaluation and
reconstruction pictures are plain functions of ``evaluate.py``.
"""
from __future__ import annotations

import dataclasses
import math
import os
import signal
import threading
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.data import Dataset

from . import distributed
from .checkpoint import (load_checkpoint, model_name_of, restore_training_state, save_checkpoint,
                         set_rng_state, training_state)
from .config import TrainConfig
from .data import images_of
from .device import choose_amp, get_device, seed_everything
from .distributed import ResumableLoader, cleanup_distributed, setup_distributed  # noqa: F401
from .evaluate import evaluate, save_reconstructions
from .optim import OPTIMIZERS, SCHEDULERS, make_optimizer, make_scheduler, trainable  # noqa: F401


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; training stopped and the last good checkpoint stays."""


# --- the model's side of a step --------------------------------------------------------------

def default_optimizers(model: nn.Module, config: TrainConfig) -> list[torch.optim.Optimizer]:
    """One optimizer (``config.optimizer``, Adam by default) over the trainable parameters."""
    return [make_optimizer(config.optimizer or "adam", trainable(model.parameters()), config.lr,
                           config.weight_decay, config.betas, config.momentum)]


def default_training_step(model: nn.Module, x: torch.Tensor, step: int,
                          runner: "StepRunner") -> dict[str, torch.Tensor]:
    """One loss, one update: what every model without its own ``training_step`` does."""
    loss, logs = runner.forward("compute_loss", x)
    norm = runner.update(loss, 0)
    logs = {**logs, "loss": loss.detach()}
    if norm is not None:
        logs["grad_norm"] = norm
    return logs


class _Forward(nn.Module):
    """Calls a model method by name from ``forward``: DDP and ``torch.compile`` wrap
    ``forward`` only, and the protocol's entry points are ``compute_loss`` and the like."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, method: str, *args):
        return getattr(self.model, method)(*args)


class StepRunner:
    """What a model's ``training_step`` is given: ``forward`` runs a model method the way
    the trainer set up (DDP, compile, autocast); ``update(loss, i)`` is the backward pass
    and the step of optimizer ``i`` (with loss scaling and gradient clipping)."""

    def __init__(self, engine: nn.Module, optimizers, autocast, scaler, grad_clip):
        self.engine, self.optimizers, self.autocast = engine, optimizers, autocast
        self.scaler, self.grad_clip = scaler, grad_clip

    def forward(self, method: str, *args):
        with self.autocast():
            return self.engine(method, *args)

    def update(self, loss: torch.Tensor, index: int = 0) -> torch.Tensor | None:
        """Backward and optimizer step; returns the gradient norm when clipping."""
        opt, scaler = self.optimizers[index], self.scaler
        opt.zero_grad(set_to_none=True)
        (scaler.scale(loss) if scaler is not None else loss).backward()
        norm = None
        if self.grad_clip is not None:
            if scaler is not None:
                scaler.unscale_(opt)  # clip the true gradients, not the scaled ones
            params = [p for group in opt.param_groups for p in group["params"]]
            norm = torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
        if scaler is not None:
            scaler.step(opt)  # skips the step when the scaled grads overflowed
        else:
            opt.step()
        return norm


class RunningLogs:
    """Logs summed on the device step after step and read back (one host sync for all of
    them) when flushed: reading a CUDA value back every step would stall the GPU queue.
    Under DDP the means are averaged over the ranks (``reduce``), so every rank logs the
    whole global batch and stops on the same NaN."""

    def __init__(self, first_step: int = 1, reduce=distributed.average):
        self.sums: dict[str, torch.Tensor] = {}
        self.steps, self.first_step, self.reduce = 0, first_step, reduce

    def add(self, logs: dict[str, torch.Tensor]) -> None:
        for k, v in logs.items():
            v = torch.as_tensor(v).detach().float()
            self.sums[k] = self.sums[k] + v if k in self.sums else v
        self.steps += 1

    def flush(self, step: int) -> dict[str, float]:
        """Means since the last flush (``{}`` if none); raises :class:`NonFiniteLossError`
        naming the steps when a loss went NaN/inf."""
        if self.steps == 0:
            return {}
        keys = sorted(self.sums)  # the same order on every rank
        device = self.sums[keys[0]].device
        values = self.reduce(torch.stack([self.sums[k].to(device).reshape(()) for k in keys])).tolist()
        means = {k: v / self.steps for k, v in zip(keys, values)}
        first = self.first_step
        self.sums, self.steps, self.first_step = {}, 0, step + 1
        bad = [k for k in means if k.endswith("loss") and not math.isfinite(means[k])]
        if bad:
            raise NonFiniteLossError(f"training stopped: {bad[0]} became {means[bad[0]]} "
                                     f"between steps {first} and {step}")
        return means


# --- the trainer ------------------------------------------------------------------------------

class Trainer:
    """Train ``model`` (docs/DESIGN.md's protocol) on ``train_data`` (items ``(image, ...)``);
    ``test_data`` for evaluations and pictures. ``config`` (a :class:`TrainConfig`) with
    keyword ``overrides`` of its fields (``Trainer(model, data, steps=100)``); ``out_dir``
    gets ``checkpoint.pt`` and grids (None: nothing written); ``model_name`` is the registry
    name stored in checkpoints (default: from the class)."""

    def __init__(self, model: nn.Module, train_data: Dataset, test_data: Dataset | None = None,
                 config: TrainConfig | None = None, *, out_dir: str | os.PathLike | None = None,
                 model_name: str | None = None, **overrides):
        if not hasattr(model, "compute_loss"):
            raise TypeError(f"model {type(model).__name__} does not follow the model protocol: "
                            f"it has no compute_loss(x) method (see docs/DESIGN.md)")
        self.config = config = dataclasses.replace(config or TrainConfig(), **overrides)
        self.model_name = model_name or model_name_of(model)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.checkpoint_path = self.out_dir / "checkpoint.pt" if self.out_dir else None
        # processes, device, precision
        self.device = get_device(config.device)  # under torchrun: the local rank's GPU
        self.rank, self.world_size, _ = setup_distributed(self.device)
        self.is_main = self.rank == 0
        if self.device.type == "cuda" and self.device.index is None:  # DDP needs the index
            self.device = torch.device("cuda", torch.cuda.current_device())
        cuda = self.device.type == "cuda"
        self.channels_last = cuda if config.channels_last is None else config.channels_last
        self.amp_dtype = choose_amp(config.amp, self.device)
        # fp16 has a narrow range: scale the loss so small gradients do not flush to zero.
        self.scaler = torch.amp.GradScaler(self.device.type) if self.amp_dtype == torch.float16 else None
        self.model = model.to(self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        self.train_data, self.test_data = train_data, test_data
        self._loader = ResumableLoader(train_data, config.batch_size, config.seed, self.rank,
                                       self.world_size, config.num_workers, pin_memory=cuda)
        self.steps_per_epoch = len(self._loader)
        self.total_steps = config.steps or (config.epochs or 1) * self.steps_per_epoch
        # the model's optimizers and step; the trainer's schedulers
        self.optimizers = getattr(model, "configure_optimizers",
                                  lambda cfg: default_optimizers(model, cfg))(config)
        self.schedulers = [s for s in (make_scheduler(config.scheduler, o, self.total_steps,
                                                      **config.scheduler_kwargs)
                                       for o in self.optimizers) if s is not None]
        engine: nn.Module = _Forward(model)
        if self.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP
            # With several optimizers, each pass leaves the other networks without grads.
            engine = DDP(engine, device_ids=[self.device.index] if cuda else None,
                         find_unused_parameters=len(self.optimizers) > 1)
        if config.compile:
            engine = torch.compile(engine)
        if self.rank > 0:  # the command seeded every rank alike: give each its own noise
            seed_everything(_rank_seed(config.seed, self.rank))
        self._runner = StepRunner(engine, self.optimizers, self.autocast, self.scaler,
                                  config.grad_clip)
        self._training_step = getattr(model, "training_step", None) or (
            lambda x, step, runner: default_training_step(model, x, step, runner))
        # state
        self.step = self.epoch = self.batch_in_epoch = 0
        self.history: dict[str, list[tuple[int, float]]] = {}
        self.interrupted, self.images_per_second = False, None
        self._logs = RunningLogs()
        self._stop_requested, self._last_good_step = False, None

    def autocast(self):
        """Autocast context for the chosen precision (a no-op when AMP is off).
        Quantizers disable it internally: distances in fp16 can go negative or overflow."""
        return nullcontext() if self.amp_dtype is None else torch.autocast(self.device.type,
                                                                           dtype=self.amp_dtype)

    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.dim() == 4:
            return x.to(self.device, non_blocking=True, memory_format=torch.channels_last)
        return x.to(self.device, non_blocking=True)

    def train_step(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """One optimisation step on the batch ``x`` (the model's); returns detached logs."""
        logs = self._training_step(x, self.step, self._runner)
        if self.scaler is not None:
            self.scaler.update()
        for sched in self.schedulers:
            sched.step()
        return logs

    def _flush_logs(self) -> dict[str, float]:
        """Average the pending logs into ``history`` (see :class:`RunningLogs`)."""
        try:
            means = self._logs.flush(self.step)
        except NonFiniteLossError as err:
            kept = (f"the last good checkpoint {str(self.checkpoint_path)!r} (step "
                    f"{self._last_good_step}) was kept" if self._last_good_step is not None
                    else "no checkpoint had been written yet")
            raise NonFiniteLossError(f"{err}; {kept}. Try a lower learning rate (--lr), gradient "
                                     f"clipping (--grad-clip 1.0) or full precision (--amp off).") from None
        for k, v in means.items():
            self.history.setdefault(f"train/{k}", []).append((self.step, v))
        if means:
            self.history.setdefault("lr", []).append((self.step, self.optimizers[0].param_groups[0]["lr"]))
        return means

    def evaluate(self, max_batches: int | None = None) -> dict[str, float]:
        """Mean of the model's logs (and loss) over the test split (``evaluate.evaluate``).
        Through the unwrapped model in eval mode: no collective, so one rank may call it."""
        if self.test_data is None:
            raise ValueError("this trainer has no test_data to evaluate on")
        return evaluate(self.model, self.test_data, batch_size=self.config.batch_size,
                        max_batches=max_batches or self.config.eval_batches, seed=self.config.seed,
                        to_device=self._to_device, autocast=self.autocast)

    def save_reconstructions(self, path: str | os.PathLike, n: int = 8) -> Path:
        """PNG grid of the first ``n`` test images over their reconstructions."""
        data = self.test_data if self.test_data is not None else self.train_data
        return save_reconstructions(self.model, data, path, n, seed=self.config.seed,
                                    to_device=self._to_device, autocast=self.autocast)

    # --- checkpoints (checkpoint.training_state / restore_training_state) ---------------
    def save_checkpoint(self, path: str | os.PathLike | None = None) -> Path | None:
        """Write a checkpoint after checking that the state is finite. Under DDP every rank
        calls it: rank 0 writes, with each rank's random state and weight digest."""
        path = path or self.checkpoint_path
        if path is None:
            return None
        self._flush_logs()  # raises instead of saving when the loss went NaN/inf
        replicas = distributed.replicas(self.model)
        if not self.is_main:
            return None
        save_checkpoint({**training_state(self), **replicas}, path)
        if Path(path) == self.checkpoint_path:
            self._last_good_step = self.step
        return Path(path)

    def resume(self, path: str | os.PathLike) -> "Trainer":
        """Load a checkpoint written by this trainer and continue from its step (under DDP:
        rank 0 reads it, so only rank 0 needs the file, and each rank gets its own RNG back)."""
        ckpt = distributed.on_rank0(load_checkpoint, path, map_location="cpu")
        restore_training_state(self, ckpt, path)
        replicas = ckpt.get("replicas") or {}
        if self.world_size > 1 and replicas.get("world_size") == self.world_size:
            set_rng_state(replicas["rng"][self.rank])
        elif self.rank > 0:  # written by another number of processes: a fresh stream per rank
            seed_everything(_rank_seed(self.config.seed + self.step, self.rank))
        self._logs.first_step = self.step + 1
        if self.checkpoint_path is not None and Path(path).resolve() == self.checkpoint_path.resolve():
            self._last_good_step = self.step
        return self

    # --- the loop -----------------------------------------------------------------------------
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
        batches = self._loader.epoch(self.epoch, self.batch_in_epoch)
        restore_ctrl_c = _defer_ctrl_c(self)
        # A failure here is posted for the other ranks, whose collectives it breaks.
        with distributed.shared_failures():
            try:
                while self.step < self.total_steps:
                    if self._stop_requested:
                        raise KeyboardInterrupt
                    batch = next(batches, None)
                    if batch is None:  # end of the epoch
                        self.epoch, self.batch_in_epoch = self.epoch + 1, 0
                        batches = self._loader.epoch(self.epoch, self.batch_in_epoch)
                        continue
                    logs = self.train_step(self._to_device(images_of(batch)))
                    self.step, self.batch_in_epoch = self.step + 1, self.batch_in_epoch + 1
                    self._logs.add(logs)
                    bar.update(1)
                    self._periodic(bar)
                if self._logs.steps:
                    bar.set_postfix({k: f"{v:.4g}" for k, v in self._flush_logs().items()}, refresh=False)
                if self.test_data is not None and self.is_main:
                    self._log_eval()
                self.save_checkpoint()
            except KeyboardInterrupt:
                self.interrupted = True
                if self.world_size > 1:  # the ranks stopped at different points: no collective
                    raise                # now; the last checkpoint stays
                self._flush_logs()  # raises NonFiniteLossError rather than save NaNs
                path = self.save_checkpoint()
                if self.is_main and cfg.progress:
                    bar.write(f"interrupted at step {self.step}" + (f"; checkpoint saved to {path}" if path else ""))
            finally:
                bar.close()
                restore_ctrl_c()
        elapsed, done = time.perf_counter() - start, (self.step - start_step) * cfg.batch_size * self.world_size
        self.images_per_second = done / elapsed if elapsed > 0 and done else None
        return self.history

    def _log_eval(self) -> None:
        """Evaluate into ``history`` (once per step)."""
        if any(v and v[-1][0] == self.step for k, v in self.history.items() if k.startswith("test/")):
            return
        for k, v in self.evaluate().items():
            self.history.setdefault(f"test/{k}", []).append((self.step, v))

    def _periodic(self, bar) -> None:
        cfg, step = self.config, self.step
        if step % cfg.log_every == 0:
            bar.set_postfix({k: f"{v:.4g}" for k, v in self._flush_logs().items()}, refresh=False)
        if self.is_main:  # rank 0 alone: nothing below takes part in a collective
            if cfg.eval_every and step % cfg.eval_every == 0 and self.test_data is not None:
                self._log_eval()
            if cfg.sample_every and step % cfg.sample_every == 0 and self.out_dir is not None:
                self.save_reconstructions(self.out_dir / f"recon_step{step:06d}.png")
        if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
            self.save_checkpoint()  # every rank: they exchange their random states


def _rank_seed(seed: int, rank: int) -> int:
    """Rank ``rank``'s seed (rank 0 keeps the command's stream): a large prime apart, so
    that no rank repeats the noise of another rank or of a neighbouring seed's run."""
    return seed + 1_000_003 * rank


def _defer_ctrl_c(trainer: Trainer):
    """Make Ctrl-C stop at the next step boundary, so that no half-done step (an EMA
    codebook already updated by the forward pass, one of VQGAN's two optimizers already
    stepped) ends up in the checkpoint. Only in the main thread of a single process: DDP
    ranks would stop at different steps and wait for each other forever. Returns the
    function that puts the previous handler back."""
    trainer._stop_requested = False
    if trainer.world_size > 1 or threading.current_thread() is not threading.main_thread():
        return lambda: None

    def request_stop(signum, frame):
        if trainer._stop_requested:  # pressed twice: stop now
            raise KeyboardInterrupt
        trainer._stop_requested = True

    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, request_stop)
    # getsignal gives None for a handler installed outside Python: restore the default.
    return lambda: signal.signal(signal.SIGINT, previous if previous is not None
                                 else signal.default_int_handler)
