"""One process with T threads against T processes with one thread each (DistributedDataParallel
on gloo), the same total batch: training images per second, as a ratio.

Both sides train the quick-mode VQ-VAE (32x32 shapes, base_channels 16, EMA codebook) with
the Trainer, as ``dlstudio-lite train`` does: one process with ``--batch-size B`` and
``torch.set_num_threads(T)``, or ``torchrun --standalone --nproc_per_node T`` with batch
``B / T`` per rank and one thread each. Each side first runs ``--warmup`` untimed steps, then
``--steps`` timed ones (rank 0's wall clock; DDP's all-reduce keeps the ranks in step). The
sides alternate, ``--repeats`` times, so a change in the machine's load hits both; the table
gives the medians and every run, and the load average (1 min) before each run.

    python benchmarks/bench_ddp.py                    # 2 threads vs 2 processes, batch 32
    python benchmarks/bench_ddp.py --repeats 5 --markdown
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def worker(args) -> None:
    """One side's training (in each rank under torchrun); rank 0 writes its rate."""
    import torch

    from dlstudio_lite.data import DataConfig
    from dlstudio_lite.device import seed_everything
    from dlstudio_lite.train import Trainer, cleanup_distributed
    from dlstudio_lite.vqvae import VQVAE

    torch.set_num_threads(args.threads)
    seed_everything(0)
    train, _ = DataConfig(dataset="shapes", image_size=32, num_images=1024).splits()
    model = VQVAE(image_size=32, latent_size=8, base_channels=16)
    trainer = Trainer(model, train, steps=args.warmup, batch_size=args.batch_size, lr=1e-3,
                      log_every=5, progress=False, device="cpu")
    trainer.fit()  # warm-up: allocations, the k-means start, the first all-reduces
    trainer.total_steps += args.steps
    trainer.fit()
    if trainer.is_main:
        Path(args.result).write_text(json.dumps({"images_per_second": trainer.images_per_second,
                                                 "world_size": trainer.world_size}))
    cleanup_distributed()


def run_side(args, processes: int, threads: int) -> float:
    """Images per second of one side (a fresh process, or a torchrun job)."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        flags = ["--worker", "--threads", str(threads), "--batch-size",
                 str(args.batch_size // processes), "--steps", str(args.steps), "--warmup",
                 str(args.warmup), "--result", str(result)]
        launcher = [sys.executable] if processes == 1 else [
            sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={processes}"]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads),
               "MKL_NUM_THREADS": str(threads), "DLSTUDIO_LITE_DEVICE": "cpu"}
        subprocess.run([*launcher, __file__, *flags], env=env, check=True, cwd=ROOT,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        return json.loads(result.read_text())["images_per_second"]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2, help="cores to share (T)")
    p.add_argument("--batch-size", type=int, default=32, help="total images per step (B)")
    p.add_argument("--steps", type=int, default=40, help="timed steps per run")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    p.add_argument("--repeats", type=int, default=3, help="runs per side, alternating")
    p.add_argument("--sides", default="threads,processes,single",
                   help="which sides, in turn: threads (1 process x T threads), processes "
                        "(T processes x 1 thread), single (1 process x 1 thread, a reference)")
    p.add_argument("--markdown", action="store_true", help="print a table for RESULTS.md")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)
    t = args.threads
    if args.batch_size % t:
        p.error(f"--batch-size {args.batch_size} does not split over {t} processes")
    known = {"threads": (1, t, f"1 process x {t} threads, batch {args.batch_size}"),
             "processes": (t, 1, f"{t} processes x 1 thread, batch {args.batch_size // t} each"),
             "single": (1, 1, f"1 process x 1 thread, batch {args.batch_size} (reference)")}
    sides = [known[name] for name in args.sides.split(",")]
    runs: dict[str, list[float]] = {label: [] for _, _, label in sides}
    loads: list[float] = []
    for _ in range(args.repeats):
        for processes, threads, label in sides:
            loads.append(os.getloadavg()[0])
            runs[label].append(run_side(args, processes, threads))
            print(f"{label}: {runs[label][-1]:.1f} images/s (load {loads[-1]:.2f})",
                  file=sys.stderr)
    medians = {label: statistics.median(r) for label, r in runs.items()}
    if args.markdown:
        import torch
        print(f"Quick-mode VQ-VAE (32x32 shapes, base_channels 16, EMA), total batch "
              f"{args.batch_size}, {args.steps} timed steps after {args.warmup}, median of "
              f"{args.repeats} alternating runs per side; {platform.machine()}, "
              f"{os.cpu_count()} cores, torch {torch.__version__}, gloo\n")
        print("| setup | images / s (median) | runs |\n| --- | ---: | --- |")
        for label, r in runs.items():
            print(f"| {label} | {medians[label]:.1f} | {', '.join(f'{x:.1f}' for x in r)} |")
        print(f"\nLoad average (1 min) before each run: {', '.join(f'{x:.2f}' for x in loads)}.")
    else:
        for label, m in medians.items():
            print(f"{label}: {m:.1f} images/s")
    if "threads" in args.sides and "processes" in args.sides:
        ratio = medians[known["processes"][2]] / medians[known["threads"][2]]
        print(f"\nRatio ({t} processes / 1 process with {t} threads): {ratio:.2f}")


if __name__ == "__main__":
    main()
