"""``dlstudio-lite checkpoint slim``: drop the optimizer states of checkpoints meant to be
shipped and only loaded (see :func:`dlstudio_lite.checkpoint.slim_checkpoint`)."""
from __future__ import annotations

from pathlib import Path


def add_cli(sub) -> None:
    p = sub.add_parser("checkpoint", help="checkpoint upkeep (slim a checkpoint for shipping)",
                       description="Upkeep of checkpoints written by `dlstudio-lite train`.")
    csub = p.add_subparsers(dest="checkpoint_command", required=True, metavar="ACTION")
    s = csub.add_parser("slim", help="drop optimizer states (the file still loads as a model)",
                        description="Drop the optimizer, scheduler and scaler states of each "
                        "checkpoint, in place and atomically. The model, its hparams, history and "
                        "config stay, so it still loads with load_model; it can no longer be resumed.",
                        epilog="example: dlstudio-lite checkpoint slim data/checkpoints/vae_beta_sweep/*/checkpoint.pt")
    s.add_argument("paths", nargs="+", type=Path, metavar="CHECKPOINT", help="checkpoint.pt files")
    s.add_argument("--half", action="store_true",
                   help="also store the model's float32 weights as float16 (half the size; they load "
                        "back as float32, rounded: score the file after slimming it)")
    s.set_defaults(func=_cli_slim)


def _cli_slim(args) -> int:
    from ..checkpoint import slim_checkpoint

    for path in args.paths:
        before, after = slim_checkpoint(path, half=args.half)
        print(f"{path}: {before / 1e6:.2f} MB -> {after / 1e6:.2f} MB")
    return 0
