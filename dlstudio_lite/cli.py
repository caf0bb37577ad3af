"""The ``dlstudio-lite`` command line.

Each module that owns a command registers it through an ``add_cli`` function, so this
file stays a table of contents. Run ``dlstudio-lite --help`` for the list.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dlstudio-lite",
        description="Companion command line of the dlstudio-lite course: generate the shapes "
        "dataset, train the course's models, sample from them and grade exercises.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # --- register: data ---
    from .commands import data
    data.add_cli(sub)
    # --- register: train ---
    from .commands import train
    train_sub = train.add_cli(sub)
    # --- register: prior / sample ---
    from .commands import prior
    prior.add_cli(sub, train_sub)
    # --- register: train pixelcnn (VQ-VAE-2 priors) ---
    from .commands import pixelcnn
    pixelcnn.add_cli(train_sub)
    # --- register: exercises / grade (instructor tooling, its own subpackage) ---
    from .grading import commands as grading
    grading.add_cli(sub)
    # --- register: quality (sample-quality measure) ---
    from .commands import quality
    quality.add_cli(sub)
    # --- register: checkpoint slim ---
    from .commands import checkpoint
    checkpoint.add_cli(sub)
    # --- register: sweep (a grid of train runs; after every train target) ---
    from .commands import sweep
    sweep.add_cli(sub, train_sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # A command with ``extra_args`` (sweep) passes the flags it does not know on to another.
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "extra_args", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    try:
        with _process_group():
            return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        # A command line reports a user's mistake in one line instead of a traceback.
        print(f"dlstudio-lite {args.command}: error: {err}", file=sys.stderr)
        return 2


def _process_group():
    """Under ``torchrun``: the process group's life (a barrier at the end, a failure's
    message shared; ``distributed.session``); otherwise nothing (and no torch import)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from .distributed import session
        return session()
    return contextlib.nullcontext()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
