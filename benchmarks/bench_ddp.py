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


def run_side(args, processes: int) -> float:
    """Images per second of one side (a fresh process or torchrun job)."""
    threads = args.threads // processes
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
    p.add_argument("--markdown", action="store_true", help="print a table for RESULTS.md")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)
    if args.batch_size % args.threads:
        p.error(f"--batch-size {args.batch_size} does not split over {args.threads} processes")
    runs: dict[int, list[float]] = {1: [], args.threads: []}
    loads: list[float] = []
    for _ in range(args.repeats):
        for processes in (1, args.threads):
            loads.append(os.getloadavg()[0])
            runs[processes].append(run_side(args, processes))
            print(f"{processes} process(es): {runs[processes][-1]:.1f} images/s "
                  f"(load {loads[-1]:.2f})", file=sys.stderr)
    one, many = (statistics.median(runs[k]) for k in (1, args.threads))
    t = args.threads
    if not args.markdown:
        print(f"1 process x {t} threads: {one:.1f} images/s; {t} processes x 1 thread: "
              f"{many:.1f} images/s; ratio {many / one:.2f}")
        return
    import torch
    print(f"Quick-mode VQ-VAE (32x32 shapes, base_channels 16, EMA), total batch "
          f"{args.batch_size}, {args.steps} timed steps after {args.warmup}, median of "
          f"{args.repeats} alternating runs per side; {platform.machine()}, "
          f"{os.cpu_count()} cores, torch {torch.__version__}, gloo\n")
    print("| setup | images / s (median) | runs |\n| --- | ---: | --- |")
    print(f"| 1 process x {t} threads, batch {args.batch_size} | {one:.1f} | "
          f"{', '.join(f'{r:.1f}' for r in runs[1])} |")
    print(f"| {t} processes x 1 thread, batch {args.batch_size // t} each | {many:.1f} | "
          f"{', '.join(f'{r:.1f}' for r in runs[t])} |")
    print(f"\nRatio ({t} processes / 1 process): {many / one:.2f}. Load average (1 min) before "
          f"each run: {', '.join(f'{x:.2f}' for x in loads)}.")


if __name__ == "__main__":
    main()
