"""Benchmark: how the number of torch threads copes with other work on the same cores.

On an idle 2-core machine torch's default (one thread per core) is fastest. When another
process keeps a core busy, every parallel region of an operator waits at its end for the
thread that the scheduler has put aside, and OpenMP's spin-waiting burns the time slices
the other process needed: the lectures ran 5 to 15 times slower. This benchmark times one
lecture-sized workload (100 training steps of lecture 3's small autoencoder, 32 x 32 images,
batch 16) in a fresh process per setting, optionally next to a busy loop that it starts
itself, and prints wall and CPU seconds with the load average. Run from the repository root:

    python benchmarks/bench_threads.py [--busy 1] [--steps 100]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

WORKLOAD = """
import time, resource, torch
from dlstudio_lite import Autoencoder, seed_everything
from dlstudio_lite.threads import use_course_threads
threads = {threads}
if threads:
    torch.set_num_threads(threads)
else:
    use_course_threads()
seed_everything(0)
model = Autoencoder(image_size=32, latent_size=8, base_channels=8)
opt = torch.optim.Adam(model.parameters(), lr=2e-3)
x = torch.rand(16, 3, 32, 32) * 2 - 1
start, cpu0 = time.perf_counter(), time.process_time()
for _ in range({steps}):
    loss = model.compute_loss(x)[0]
    opt.zero_grad(); loss.backward(); opt.step()
print(f"{{time.perf_counter() - start:.2f}} {{time.process_time() - cpu0:.2f}} {{torch.get_num_threads()}}")
"""

SETTINGS = {
    "2 threads (torch's default on 2 cores)": (2, {}),
    "2 threads, OMP_WAIT_POLICY=PASSIVE": (2, {"OMP_WAIT_POLICY": "PASSIVE"}),
    "1 thread": (1, {}),
    "the course's choice (dlstudio_lite.threads)": (0, {}),
}


def run(threads: int, env: dict, steps: int) -> tuple[float, float, int]:
    full_env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    full_env.update(env, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", WORKLOAD.format(threads=threads, steps=steps)],
                         env=full_env, capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), float(out[1]), int(out[2])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--busy", type=int, default=0, help="busy-loop processes to start next to it")
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        time.sleep(1.0 if busy else 0.0)
        print(f"{args.busy} busy loop(s) started by the benchmark; cores: {os.cpu_count()}")
        print(f"| setting | wall s | CPU s | threads | load average (1 min) |\n|---|---|---|---|---|")
        for name, (threads, env) in SETTINGS.items():
            wall, cpu, used = run(threads, env, args.steps)
            print(f"| {name} | {wall:.1f} | {cpu:.1f} | {used} | {os.getloadavg()[0]:.1f} |", flush=True)
    finally:
        for p in busy:
            p.kill()
            p.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
