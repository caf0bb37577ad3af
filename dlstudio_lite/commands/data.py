"""``dlstudio-lite data``: generate the shapes dataset and optionally write it as PNGs."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..config import pick
from ..data import DATA_ROOT, export_image_folder, load_shapes


def add_cli(sub) -> None:
    p = sub.add_parser("data", help="generate the embedded shapes dataset (and optionally write PNGs)",
                       description="Generate the shapes dataset (cached under data/cache) and, with --out, "
                       "write it as an image folder you can browse.")
    p.add_argument("--num-images", type=int, default=None, help="default 20000 (quick mode 1024)")
    p.add_argument("--image-size", type=int, default=None, help="default 64 (quick mode 32)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="write PNGs here (ImageFolder layout)")
    p.set_defaults(func=_cli_data)


def _cli_data(args: argparse.Namespace) -> int:
    n = args.num_images or pick(20_000, 1_024)
    size = args.image_size or pick(64, 32)
    start = time.perf_counter()
    data = load_shapes(n, size, args.seed)
    print(f"{n} shape images of {size}x{size} ready in {time.perf_counter() - start:.1f} s "
          f"(cache: {DATA_ROOT / 'cache'}); {data.holes.sum() / n:.1f} hole pixels per image on average")
    if args.out:
        print(f"wrote {export_image_folder(args.out, n, size, args.seed)}")
    return 0
