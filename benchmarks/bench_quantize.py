"""Benchmark: vector quantizer forward + backward on CPU, time and peak memory.

Compares dlstudio-lite's ``VectorQuantizer`` / ``EMAVectorQuantizer`` with
* a dense one-hot quantizer in the style of the lecture's listing (full N x K distance
  matrix, argmin, N x K one-hot matrix, ``one_hot @ codebook``), and
* ``vector_quantize_pytorch.VectorQuantize`` (EMA codebook, straight-through gradients,
  i.e. ``rotation_trick=False``), if that package is installed (``pip install .[bench]``).

Memory: each (variant, size) runs once in a fresh Python process, so one variant's memory
cannot hide another's; we report the peak resident set size (VmHWM, reset through
/proc/self/clear_refs just before the pass) minus the RSS at that moment, i.e. the extra
memory the first forward + backward pass needed (Linux only; torch allocations are invisible
to tracemalloc). Time: the variants of one size share a process and take turns, and we
report the median per pass, so a change in the machine's load hits all variants alike.

    python benchmarks/bench_quantize.py --write   # also rewrites the section in RESULTS.md
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

CASES = [  # (K codes, D dims, N vectors)
    (512, 64, 65_536),
    (16_384, 32, 16_384),
]
VARIANTS = ["ours", "ours-ema", "one-hot", "vqp"]
SECTION = "## Vector quantizer (CPU)"


# ----------------------------------------------------------------- the lecture-style baseline
def make_one_hot_quantizer(num_codes: int, code_dim: int, beta: float = 0.25):
    import torch
    import torch.nn.functional as F
    from torch import nn

    class OneHotVQ(nn.Module):
        """The lecture listing's algorithm (with argmin): dense distances and one-hot."""

        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(num_codes, code_dim)
            self.embedding.weight.data.uniform_(-1 / num_codes, 1 / num_codes)

        def forward(self, inputs):
            inputs = inputs.permute(0, 2, 3, 1).contiguous()
            flat = inputs.view(-1, code_dim)
            w = self.embedding.weight
            distances = (flat.pow(2).sum(1, keepdim=True) + w.pow(2).sum(1)
                         - 2 * flat @ w.t())
            idx = distances.argmin(1).unsqueeze(1)
            one_hot = torch.zeros(idx.shape[0], num_codes, device=inputs.device)
            one_hot.scatter_(1, idx, 1)
            quantized = (one_hot @ w).view(inputs.shape)
            loss = F.mse_loss(quantized, inputs.detach()) + beta * F.mse_loss(inputs, quantized.detach())
            quantized = inputs + (quantized - inputs).detach()
            p = one_hot.mean(0)
            perplexity = torch.exp(-(p * torch.log(p + 1e-10)).sum())
            return loss, quantized.permute(0, 3, 1, 2).contiguous(), perplexity  # as listed

    return OneHotVQ()


# ----------------------------------------------------------------- one measurement (child)
def rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not found in /proc/self/status")


def build(variant: str, k: int, d: int, n: int):
    """Return a function that runs one forward + backward pass of ``variant``."""
    import torch

    torch.manual_seed(0)
    side = int(round((n // 16) ** 0.5))  # N = 16 images of side x side latents
    if variant in ("ours", "ours-ema"):
        from dlstudio_lite.quantize import EMAVectorQuantizer, VectorQuantizer
        vq = (EMAVectorQuantizer if variant == "ours-ema" else VectorQuantizer)(k, d)

        def step(z):
            out = vq(z)
            return out.quantized, out.loss
    elif variant == "one-hot":
        vq = make_one_hot_quantizer(k, d)

        def step(z):
            loss, quantized, _ = vq(z)
            return quantized, loss
    else:
        from vector_quantize_pytorch import VectorQuantize
        vq = VectorQuantize(dim=d, codebook_size=k, decay=0.99, commitment_weight=0.25,
                            rotation_trick=False, accept_image_fmap=True)

        def step(z):
            quantized, _, loss = vq(z)
            return quantized, loss.sum()
    vq.train()
    z = torch.randn(n // side ** 2, d, side, side, requires_grad=True)
    upstream = torch.randn_like(z)

    def fwd_bwd():
        quantized, loss = step(z)
        ((quantized * upstream).mean() + loss).backward()
        z.grad = None
        for p in vq.parameters():
            p.grad = None

    return fwd_bwd


def measure_memory(variant: str, k: int, d: int, n: int) -> dict:
    """Extra peak RSS (MiB) of the first forward + backward, in this fresh process."""
    fwd_bwd = build(variant, k, d, n)
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS counter (VmHWM)
    before = rss_kib("VmRSS")
    fwd_bwd()
    return {"peak_mib": (rss_kib("VmHWM") - before) / 1024}


def measure_time(variants: list, k: int, d: int, n: int, repeats: dict) -> dict:
    """Median seconds per forward + backward. The variants take turns (round robin), so a
    change in the machine's load during the run affects them all alike."""
    steps = {v: build(v, k, d, n) for v in variants}
    for f in steps.values():  # untimed warm-up pass
        f()
    times = {v: [] for v in variants}
    for r in range(max(repeats.values())):
        for v, f in steps.items():
            if r < repeats[v]:
                t0 = time.perf_counter()
                f()
                times[v].append(time.perf_counter() - t0)
    return {v: {"ms": 1000 * statistics.median(t), "repeats": len(t)} for v, t in times.items()}


# ----------------------------------------------------------------- driver (parent)
NAMES = {"ours": "dlstudio-lite `VectorQuantizer`",
         "ours-ema": "dlstudio-lite `EMAVectorQuantizer`",
         "one-hot": "lecture-style dense one-hot (argmin)",
         "vqp": "vector-quantize-pytorch `VectorQuantize` (EMA, straight-through)"}


def run_child(*args):
    """Run this script with ``--child ARGS`` in a fresh process; return its JSON or an error."""
    cmd = [sys.executable, __file__, "--child", json.dumps(args)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["killed (out of memory?)"])[-1]
        return {"error": last[:120]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(rows) -> str:
    lines = ["| K | D | N | quantizer | fwd+bwd time (ms, median) | repeats | peak extra RSS (MiB) |",
             "| ---: | ---: | ---: | --- | ---: | ---: | ---: |"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['K']} | {r['D']} | {r['N']} | {NAMES[r['variant']]} | "
                         f"failed: {r['error']} | | |")
        else:
            lines.append(f"| {r['K']} | {r['D']} | {r['N']} | {NAMES[r['variant']]} | "
                         f"{r['ms']:.0f} | {r['repeats']} | {r['peak_mib']:.0f} |")
    return "\n".join(lines)


def speedups(rows) -> str:
    """One line per case: how many times faster ``ours`` is than each other variant."""
    lines = []
    for k, d, n in CASES:
        case = {r["variant"]: r for r in rows if (r["K"], r["D"], r["N"]) == (k, d, n)}
        ours = case.get("ours", {}).get("ms")
        if not ours:
            continue
        parts = [f"{case[v]['ms'] / ours:.1f}x faster than {NAMES[v]}"
                 for v in ("one-hot", "vqp") if case.get(v, {}).get("ms")]
        if parts:
            lines.append(f"- K={k}, D={d}, N={n}: `VectorQuantizer` is " + ", ".join(parts) + ".")
    return "\n".join(lines)


def machine() -> str:
    import torch
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{os.cpu_count()}-core CPU ({cpu}), torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), Python {platform.python_version()}")


def write_section(path: Path, body: str, heading: str = SECTION) -> None:
    """Replace (or append) the "## " section ``heading`` of ``path``, leaving the other
    sections as they are."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    section = f"{heading}\n\n{body.strip()}\n"
    parts = re.split(r"(?m)^(?=## )", text)  # each part starts at a "## " heading
    if any(p.startswith(heading + "\n") for p in parts):
        parts = [section if p.startswith(heading + "\n") else p for p in parts]
    else:
        parts.append(section)
    text = "\n\n".join(p.strip("\n") for p in parts) + "\n"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--variants", nargs="+", default=VARIANTS, choices=VARIANTS)
    parser.add_argument("--write", action="store_true", help="rewrite the section of RESULTS.md")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, *rest = json.loads(args.child)
        result = measure_memory(*rest) if kind == "memory" else measure_time(*rest)
        print(json.dumps(result))
        return 0
    load_before = os.getloadavg()[0]
    rows = []
    for k, d, n in CASES:
        # The dense one-hot at K=16384 needs several GiB and ~10 s a pass: time it once.
        repeats = {v: 1 if (v == "one-hot" and k > 4096) else args.repeats for v in args.variants}
        mem = {v: run_child("memory", v, k, d, n) for v in args.variants}
        ok = [v for v in args.variants if "error" not in mem[v]]
        timing = run_child("time", ok, k, d, n, {v: repeats[v] for v in ok}) if ok else {}
        for v in args.variants:
            row = {"variant": v, "K": k, "D": d, "N": n, **mem[v]}
            if "error" in timing:
                row["error"] = timing["error"]
            row.update(timing.get(v, {}))
            rows.append(row)
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    load_after = os.getloadavg()[0]
    # Above about one per core, other processes share the CPU and stretch every timing.
    busy_note = ("; other processes were running, so absolute times are inflated and the "
                 "ratios between rows of one case are what to read"
                 if max(load_before, load_after) > (os.cpu_count() or 1) else "")
    body = (f"Command: `python benchmarks/bench_quantize.py {' '.join(argv or sys.argv[1:])}`\n\n"
            f"Machine: {machine()}. Load average (1 min): {load_before:.1f} at the start, "
            f"{load_after:.1f} at the end{busy_note}.\n\n"
            f"{table(rows)}\n\n{speedups(rows)}\n\n"
            "Time: median wall-clock time of one forward + backward pass (loss = the "
            "quantizer's own loss + a fixed random upstream gradient on the quantized output) "
            "after one untimed pass; the variants of a case run in one process and take turns, "
            "so load changes hit them alike (the repeat count is in the table). Memory: peak "
            "resident set size during the first forward + backward minus the RSS just before it "
            "(VmHWM reset via /proc/self/clear_refs), each variant in a fresh process; it counts "
            "distance matrices, one-hot matrices and autograd buffers, rounded to MiB.")
    print("\n" + body)
    if args.write:
        write_section(Path(__file__).with_name("RESULTS.md"), body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
