"""Benchmark: each quantizer family's forward + backward against vector-quantize-pytorch's.

One process, one run: for every family, ours and the reference quantize the same random
encoder output (16 grids of 16x16 vectors of 64 numbers), in training mode, and
backpropagate their loss plus a fixed random gradient on the quantized output. The two take
turns (warm-up, then ``--repeats`` alternating passes), so a change in the machine's load
hits both alike; the table gives the median of each and the ratio reference / ours
(above 1: ours is faster). Codebook upkeep that only one side has by default (our k-means
start and dead-code restarts) is off; the reference gets channel-last sequences ``(B, N, D)``,
its native layout, ours ``(B, D, h, w)``.

    python benchmarks/bench_quantizers.py --write   # also rewrites its section of RESULTS.md
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from bench_quantize import machine, write_section

SECTION = "## Quantizer families against vector-quantize-pytorch (CPU)"
B, SIDE, DIM = 16, 16, 64
PLAIN = dict(kmeans_init=False, dead_code_steps=0)


def families():
    """name -> (description, build ours, build the reference, the reference's forward)."""
    import vector_quantize_pytorch as vqp

    from dlstudio_lite.quantize import FSQ, LFQ, EMAVectorQuantizer, ResidualQuantizer

    def vq_ref(**kw):
        return vqp.VectorQuantize(dim=DIM, codebook_size=512, decay=0.99, commitment_weight=0.25, **kw)

    def run_vq(q, z):
        out, _, loss = q(z)
        return out, loss

    return {
        "fsq": ("FSQ, levels [8, 5, 5, 5] (1000 codes), 64 -> 4 -> 64",
                lambda: FSQ(1000, DIM), lambda: vqp.FSQ(levels=[8, 5, 5, 5], dim=DIM),
                lambda q, z: (q(z)[0], 0.0)),
        "lfq": ("LFQ, 1024 codes (64 -> 10 -> 64), entropy and commitment losses",
                lambda: LFQ(1024, DIM),
                lambda: vqp.LFQ(dim=DIM, codebook_size=1024, entropy_loss_weight=0.1,
                                commitment_loss_weight=0.25),
                lambda q, z: (lambda o: (o[0], o[2]))(q(z))),
        "cosine": ("EMA codebook of 512, cosine lookup in 8 dimensions (64 -> 8 -> 64)",
                   lambda: EMAVectorQuantizer(512, DIM, normalize=True, lookup_dim=8, **PLAIN),
                   lambda: vq_ref(codebook_dim=8, use_cosine_sim=True, rotation_trick=False),
                   run_vq),
        "rotation": ("EMA codebook of 512 (D = 64) with the rotation trick",
                     lambda: EMAVectorQuantizer(512, DIM, rotation_trick=True, **PLAIN),
                     lambda: vq_ref(rotation_trick=True), run_vq),
        "residual": ("residual, 2 EMA levels of 256 codes (D = 64)",
                     lambda: ResidualQuantizer(256 ** 2, DIM, depth=2, **PLAIN),
                     lambda: vqp.ResidualVQ(dim=DIM, num_quantizers=2, codebook_size=256,
                                            decay=0.99, commitment_weight=0.25, rotation_trick=False),
                     lambda q, z: (lambda o: (o[0], o[2].sum()))(q(z))),
    }


def timed_pair(build_ours, build_ref, run_ref, repeats: int) -> tuple[float, float]:
    """Median seconds of one forward + backward, ours and the reference, alternating."""
    import torch

    torch.manual_seed(0)
    ours, ref = build_ours().train(), build_ref().train()
    z = torch.randn(B, DIM, SIDE, SIDE)
    upstream = torch.randn_like(z)
    z_ours = z.clone().requires_grad_()
    z_ref = z.permute(0, 2, 3, 1).reshape(B, SIDE * SIDE, DIM).clone().requires_grad_()
    up_ref = upstream.permute(0, 2, 3, 1).reshape(B, SIDE * SIDE, DIM)

    def step_ours():
        out = ours(z_ours)
        ((out.quantized * upstream).mean() + out.loss).backward()

    def step_ref():
        out, loss = run_ref(ref, z_ref)
        ((out * up_ref).mean() + loss).backward()

    times = {step_ours: [], step_ref: []}
    for r in range(repeats + 1):
        for step in times:
            t0 = time.perf_counter()
            step()
            if r:  # the first round warms up
                times[step].append(time.perf_counter() - t0)
    return statistics.median(times[step_ours]), statistics.median(times[step_ref])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    parser.add_argument("--write", action="store_true", help="rewrite the section of RESULTS.md")
    args = parser.parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    lines = ["| family | setting | ours (ms) | vector-quantize-pytorch (ms) | ratio (reference / ours) |",
             "| --- | --- | ---: | ---: | ---: |"]
    for name, (what, build_ours, build_ref, run_ref) in families().items():
        ours, ref = timed_pair(build_ours, build_ref, run_ref, args.repeats)
        lines.append(f"| {name} | {what} | {1000 * ours:.1f} | {1000 * ref:.1f} | {ref / ours:.2f} |")
        print(lines[-1], flush=True)
    load_after = os.getloadavg()
    import vector_quantize_pytorch
    version = getattr(vector_quantize_pytorch, "__version__", None)
    if version is None:
        from importlib.metadata import version as dist_version
        version = dist_version("vector-quantize-pytorch")
    busy = max(load_before[0], load_after[0]) > (os.cpu_count() or 1)
    busy_note = (" The machine was shared with other jobs (load above one per core), so the "
                 "absolute times are inflated; rerun on an idle machine for times to quote."
                 if busy else "")
    body = (f"Command: `python benchmarks/bench_quantizers.py {' '.join(argv or sys.argv[1:])}`\n\n"
            f"Machine: {machine()}; vector-quantize-pytorch {version}. Load average (1, 5, 15 "
            f"min): {', '.join(f'{v:.1f}' for v in load_before)} at the start, "
            f"{', '.join(f'{v:.1f}' for v in load_after)} at the end.\n\n"
            + "\n".join(lines) + "\n\n"
            f"Input: {B} grids of {SIDE}x{SIDE} vectors of {DIM} numbers ({B * SIDE * SIDE} rows), "
            "training mode, loss = the quantizer's own loss + a fixed random upstream gradient on "
            f"the quantized output; median of {args.repeats} alternating passes after one warm-up "
            "pass each. One run; the ratios, taken from interleaved passes, are what to read."
            + busy_note)
    print("\n" + body)
    if args.write:
        write_section(Path(__file__).with_name("RESULTS.md"), body, SECTION)
    return 0


if __name__ == "__main__":
    sys.exit(main())
