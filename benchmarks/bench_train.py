"""Training throughput of the VQ-VAE on 64x64 shapes: the Trainer against a bare loop.

Both sides do the same work per step: the same model (same seed), the same data and batch
size, Adam, ``compute_loss`` -> backward -> step. The bare loop has nothing else (no
logging, no NaN guard, no progress bar, no resumable sampler); the Trainer runs as the
command line runs it, minus the progress bar and checkpoints. Runs alternate between the two
and the median of ``--repeats`` timings is reported, which keeps other jobs on a shared
machine from favouring one side.

On a GPU it also compares precisions: fp32, bf16 autocast + channels_last, and the same
with ``torch.compile``.

    python benchmarks/bench_train.py                       # CPU, small config (~2 min)
    python benchmarks/bench_train.py --threads 1 --markdown
    python benchmarks/bench_train.py --device cuda --batch-size 48 --width 64 --steps 50
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
from torch.utils.data import DataLoader

from dlstudio_lite.data import ShapesDataset
from dlstudio_lite.device import get_device, seed_everything
from dlstudio_lite.train import Trainer
from dlstudio_lite.vqvae import VQVAE


def make_model(args) -> VQVAE:
    seed_everything(0)
    return VQVAE(image_size=64, latent_size=16, base_channels=args.width, num_codes=512,
                 code_dim=args.code_dim, beta=0.25, decay=0.99)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Clock:
    """Wall time and this process's CPU time. On a shared CPU the wall clock also counts
    the time other jobs held the cores; CPU time (with one thread) counts only our work."""

    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def rates(self, images: int) -> tuple[float, float]:
        """(images per wall second, images per CPU second)."""
        return (images / (time.perf_counter() - self.wall),
                images / (time.process_time() - self.cpu))


def bare_loop(args, data, device, steps) -> float:
    """The textbook loop; returns (images / wall s, images / CPU s)."""
    model = make_model(args).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    loader = DataLoader(data, batch_size=args.batch_size, shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(0))
    batches = iter(loader)
    _sync(device)
    clock = _Clock()
    for _ in range(steps):
        x = next(batches)[0].to(device, non_blocking=True)
        loss, logs = model.compute_loss(x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    _sync(device)
    return clock.rates(steps * args.batch_size)


def trainer_run(args, data, device, steps, amp="off", channels_last=False,
                compile=False) -> float:
    """The course's Trainer on the same work; returns (images / wall s, images / CPU s)."""
    trainer = Trainer(make_model(args), data, steps=steps, batch_size=args.batch_size, lr=1e-4,
                      device=str(device), amp=amp, channels_last=channels_last,
                      compile=compile, progress=False, seed=0)
    _sync(device)
    clock = _Clock()
    trainer.fit()
    _sync(device)
    return clock.rates(steps * args.batch_size)


class _Tiny(torch.nn.Module):
    """A model whose step costs almost nothing, so that timing it measures the loop."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 1)

    def compute_loss(self, x):
        loss = (self.conv(x) - x).pow(2).mean()
        return loss, {"recon": loss.detach()}


def fixed_cost(args, steps: int = 1500) -> tuple[float, float]:
    """CPU microseconds per step of a bare loop and of the Trainer on ``_Tiny``: their
    difference is what the Trainer adds to every step, whatever the model."""
    from torch.utils.data import TensorDataset
    data = TensorDataset(torch.rand(steps * args.batch_size, 3, 8, 8))

    def bare():
        torch.manual_seed(0)
        model = _Tiny()
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        start = time.process_time()
        for (x,) in DataLoader(data, batch_size=args.batch_size, shuffle=True, drop_last=True,
                               generator=torch.Generator().manual_seed(0)):
            loss, logs = model.compute_loss(x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return (time.process_time() - start) / steps * 1e6

    def trainer():
        torch.manual_seed(0)
        t = Trainer(_Tiny(), data, steps=steps, batch_size=args.batch_size, lr=1e-4,
                    device="cpu", progress=False, seed=0)
        start = time.process_time()
        t.fit()
        return (time.process_time() - start) / steps * 1e6

    runs = [(bare(), trainer()) for _ in range(args.repeats)]
    return (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default=None, help="default: best available")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--width", type=int, default=16, help="base_channels of the VQ-VAE")
    p.add_argument("--code-dim", type=int, default=64)
    p.add_argument("--steps", type=int, default=12, help="timed steps per run")
    p.add_argument("--repeats", type=int, default=5, help="alternating runs per side")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--markdown", action="store_true", help="print a RESULTS.md table")
    p.add_argument("--fixed-cost", action="store_true",
                   help="also time both loops on a model that costs nothing (CPU us per step)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = get_device(args.device)
    data = ShapesDataset("train", image_size=64, num_images=max(600, 4 * args.batch_size),
                         test_size=100)

    # warm-up: first-touch allocations, lazy inits, oneDNN/cuDNN kernel choice
    bare_loop(args, data, device, 2)
    trainer_run(args, data, device, 2)
    bare, trainer = [], []
    for _ in range(args.repeats):
        bare.append(bare_loop(args, data, device, args.steps))
        trainer.append(trainer_run(args, data, device, args.steps))
    # columns: images / wall second, images / CPU second (medians)
    b = [statistics.median(r[i] for r in bare) for i in (0, 1)]
    t = [statistics.median(r[i] for r in trainer) for i in (0, 1)]
    rows = [("bare PyTorch loop, fp32", b, ""),
            ("Trainer, fp32", t, f"overhead {100 * (b[0] / t[0] - 1):+.1f}% wall, "
                                 f"{100 * (b[1] / t[1] - 1):+.1f}% CPU time per image")]

    if device.type == "cuda":
        for label, kw in [("Trainer, bf16 autocast + channels_last",
                           dict(amp="bf16", channels_last=True)),
                          ("Trainer, bf16 + channels_last + torch.compile",
                           dict(amp="bf16", channels_last=True, compile=True))]:
            trainer_run(args, data, device, 3, **kw)  # warm-up (and compilation)
            runs = [trainer_run(args, data, device, args.steps, **kw)
                    for _ in range(args.repeats)]
            ips = [statistics.median(r[i] for r in runs) for i in (0, 1)]
            rows.append((label, ips, f"{ips[0] / t[0]:.2f}x the fp32 Trainer"))

    where = (torch.cuda.get_device_name(device) if device.type == "cuda"
             else f"{platform.processor() or platform.machine()}, "
                  f"{torch.get_num_threads()} torch thread(s)")
    header = (f"VQ-VAE 64x64 (latent 16x16, base_channels {args.width}, 512 codes of dim "
              f"{args.code_dim}, EMA), batch {args.batch_size}, {args.steps} timed steps, "
              f"median of {args.repeats}; {device.type} ({where}), torch {torch.__version__}")
    if args.fixed_cost:
        bare_us, trainer_us = fixed_cost(args)
        step_us = 1e6 * args.batch_size / b[1]
        rows.append(("fixed cost per step, near-empty model", (float("nan"), float("nan")),
                     f"bare {bare_us:.0f} us, Trainer {trainer_us:.0f} us of CPU per step: the "
                     f"Trainer adds {trainer_us - bare_us:.0f} us, "
                     f"{100 * (trainer_us - bare_us) / step_us:.1f}% of a VQ-VAE step "
                     f"({step_us / 1000:.0f} ms)"))
    if args.markdown:
        print(header + "\n")
        print("| setup | images / s (wall) | images / CPU s | note |\n| --- | ---: | ---: | --- |")
        for label, (wall, cpu), note in rows:
            print(f"| {label} | {wall:.1f} | {cpu:.1f} | {note} |")
        print(f"\nall runs, images / wall s: bare {[round(r[0], 1) for r in bare]}, "
              f"trainer {[round(r[0], 1) for r in trainer]}; images / CPU s: bare "
              f"{[round(r[1], 1) for r in bare]}, trainer {[round(r[1], 1) for r in trainer]}")
    else:
        print(header)
        for label, (wall, cpu), note in rows:
            print(f"{label:<48} {wall:8.1f} img/s wall {cpu:8.1f} img/CPU-s  {note}")


if __name__ == "__main__":
    main()
