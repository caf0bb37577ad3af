"""The ``dlstudio-lite`` command line.

Each module that owns a command registers it through an ``add_cli`` function, so this
file stays a table of contents; no command imports this module back (a sweep gets
:func:`main` handed to it). Run ``dlstudio-lite --help`` for the list.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys


def build_parser(chosen=None) -> argparse.ArgumentParser:
    """The parser; ``chosen`` (a ``recipes.Recipe``) supplies the defaults of the ``train``
    target it trains (``--recipe NAME``, see :func:`main`)."""
    parser = argparse.ArgumentParser(
        prog="dlstudio-lite",
        description="Companion command line of the dlstudio-lite course: generate the shapes "
        "dataset, train the course's models (named recipes: `train --recipe NAME`), sample "
        "from them and grade exercises.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from .commands import checkpoint, codes, data, quality, sample, sweep, train
    from .grading import commands as grading
    data.add_cli(sub)
    train_sub = train.add_cli(sub, chosen)     # train MODEL
    codes.add_cli(sub, train_sub, chosen)      # encode, train prior, train pixelcnn
    sample.add_cli(sub)
    grading.add_cli(sub)                       # exercises, grade (instructor tooling)
    quality.add_cli(sub)
    checkpoint.add_cli(sub)
    sweep.add_cli(sub, train_sub, main)        # after every train target
    return parser


def main(argv: list[str] | None = None) -> int:
    from .commands.train import recipe_in
    argv = list(sys.argv[1:] if argv is None else argv)
    try:  # `train --recipe NAME`: the recipe's settings become the defaults
        argv, chosen = recipe_in(argv)
    except ValueError as err:
        print(f"dlstudio-lite: error: {err}", file=sys.stderr)
        return 2
    parser = build_parser(chosen)
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
