"""``dlstudio-lite data``: generate the shapes dataset and optionally write it as PNGs."""
from __future__ import annotations

import argparse
import inspect
import time
from pathlib import Path

from ..config import quick_mode
from ..data import DataConfig, ShapesDataset, export_image_folder, load_shapes
from ..paths import CACHE
from ..recipes import QUICK_CAPS


def add_cli(sub) -> None:
    p = sub.add_parser("data", help="generate the embedded shapes dataset (and optionally write PNGs)",
                       description="Generate the shapes dataset (cached under data/cache) and, with --out, "
                       "write it as an image folder you can browse.")
    defaults = QUICK_CAPS if quick_mode() else {}  # the dataset's own, or quick mode's caps
    p.add_argument("--num-images", type=int, help="(default: %(default)s)", default=defaults.get(
        "num_images", inspect.signature(ShapesDataset).parameters["num_images"].default))
    p.add_argument("--image-size", type=int, help="(default: %(default)s)",
                   default=defaults.get("image_size", DataConfig.image_size))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="write PNGs here (ImageFolder layout)")
    p.set_defaults(func=_cli_data)


def _cli_data(args: argparse.Namespace) -> int:
    n, size = args.num_images, args.image_size
    start = time.perf_counter()
    data = load_shapes(n, size, args.seed)
    print(f"{n} shape images of {size}x{size} ready in {time.perf_counter() - start:.1f} s "
          f"(cache: {CACHE}); {data.holes.sum() / n:.1f} hole pixels per image on average")
    if args.out:
        print(f"wrote {export_image_folder(args.out, n, size, args.seed)}")
    return 0
