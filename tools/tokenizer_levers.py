"""Record a tokenizer lever measured around ``vqgan_mixture_nodisc_shapes`` (appendix 11).

A lever is one run of that recipe with a few settings changed (the grid, the code rate, the
training length, a discriminator, ...), trained and scored with

    dlstudio-lite train --recipe vqgan_mixture_nodisc_shapes --steps 1500 --out RUN
    dlstudio-lite quality score RUN/checkpoint.pt --update-metrics

This script reads RUN's config.json and metrics.json, finds which settings differ from the
recipe, writes the one command that reproduces the run (and checks that the command line
parses back to exactly the recorded settings), and stores a row in the ``levers`` list of
``data/checkpoints/vqgan_mixture_nodisc_shapes/metrics.json``, replacing a row with the same
changes. The runs themselves are not shipped (60 MB budget); appendix 11 draws its table of
levers from these rows.

    python tools/tokenizer_levers.py RUN --cpu-minutes 12.9 [--note "..."]

With ``--prior PRIOR`` the row also records a prior trained on the run's codes with the
shipped prior's recipe and scored over three sampling seeds per setting:

    dlstudio-lite train prior --recipe prior_mixture_shapes --vq-checkpoint RUN/checkpoint.pt --out PRIOR
    dlstudio-lite quality score RUN/checkpoint.pt --prior PRIOR/checkpoint.pt --seeds 1 2 3 --update-metrics
"""
from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dlstudio_lite import cli  # noqa: E402
from dlstudio_lite.commands import options  # noqa: E402
from dlstudio_lite.commands.train import model_kwargs, recipe_in  # noqa: E402
from dlstudio_lite.config import TrainConfig  # noqa: E402
from dlstudio_lite.paths import CHECKPOINTS, atomic_write  # noqa: E402
from dlstudio_lite.recipes import recipe  # noqa: E402
from dlstudio_lite.vqgan import VQGAN  # noqa: E402

BASE = "vqgan_mixture_nodisc_shapes"
PRIOR_BASE = "prior_mixture_shapes"     # the shipped prior's recipe, over BASE's codes
TRAIN_ONLY = {"device", "progress", "log_every", "eval_every", "checkpoint_every"}  # how a run was watched


def _flag(key: str, value) -> list[str]:
    return [f"--{key.replace('_', '-')}", str(value)]


def changes_of(config: dict) -> tuple[dict, dict]:
    """(model changes, training changes) of a run's config.json against the recipe."""
    base = recipe(BASE)
    defaults = {k: p.default for k, p in options.parameters(VQGAN).items()}
    built = {**defaults, **base.model_kwargs()}
    model = {k: v for k, v in config["hparams"].items() if built.get(k) != v}
    train_base = base.train_config().to_dict()
    train = {k: v for k, v in config["train"].items()
             if k not in TRAIN_ONLY and train_base.get(k) != v}
    return model, train


def command_of(model: dict, train: dict, out: str) -> list[str]:
    """The ``dlstudio-lite train`` argv that reproduces the changes: a setting through its
    own flag when it is a number or a word, else through ``--set KEY=VALUE``."""
    argv = ["train", "--recipe", BASE]
    for key, value in {**train, **model}.items():
        plain = isinstance(value, (int, float, str)) and not isinstance(value, bool)
        text = json.dumps(value) if isinstance(value, dict) else repr(value)   # both read back by --set
        argv += _flag(key, value) if plain else ["--set", f"{key}={text}"]
    return argv + ["--out", out]


def parsed(argv: list[str], image_size: int) -> tuple[dict, dict]:
    """(constructor arguments, training settings) that ``argv`` asks for."""
    argv, chosen = recipe_in(argv)
    args, _ = cli.build_parser(chosen).parse_known_args(argv)
    return model_kwargs(VQGAN, args, image_size, 3), options.from_args(TrainConfig, args).to_dict()


def row_of(run: Path, cpu_minutes: float, note: str | None) -> dict:
    config = json.loads((run / "config.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    if config.get("quick_mode"):
        raise ValueError(f"{run} was trained in quick mode: a lever must be a real run")
    if "recon_shape_check" not in metrics:
        raise ValueError(f"{run}/metrics.json has no flat-shape check: run "
                         f"`dlstudio-lite quality score {run}/checkpoint.pt --update-metrics` first")
    model, train = changes_of(config)
    argv = command_of(model, train, f"runs/{run.name}")
    hparams, train_config = parsed(argv, config["image_size"])
    wrong = {k: (hparams.get(k), v) for k, v in config["hparams"].items() if hparams.get(k, v) != v}
    wrong.update({k: (train_config.get(k), v) for k, v in config["train"].items()
                  if k not in TRAIN_ONLY and train_config.get(k) != v})
    if wrong:
        raise ValueError(f"the command {shlex.join(argv)} does not reproduce {run}: "
                         f"(parsed, recorded) = {wrong}")
    hp = config["hparams"]
    colour = metrics["recon_colour"]
    return {
        "changes": {**model, **train},
        "command": "dlstudio-lite " + shlex.join(argv),
        "bits_per_image": round(hp["latent_size"] ** 2 * math.log2(hp["num_codes"])),
        "steps": metrics["step"],
        "psnr": metrics["psnr"],
        "recon_fd": metrics["recon_fd"],
        "recon_valid_shape_rate": metrics["recon_valid_shape_rate"],
        "recon_shape_check": metrics["recon_shape_check"]["rate"],
        "why_failed": metrics["recon_shape_check"]["why_failed"],
        "colour_error_median": colour["colour_error_median"],
        "brightness_bias": colour["brightness_bias"],
        "colourfulness_kept": colour["colourfulness_kept"],
        "codebook_usage": metrics["codebook_usage"],     # share of the codes the test images use
        "perplexity": metrics["perplexity"],
        "cpu_minutes": cpu_minutes,
        # the verdict on each test image, for a paired comparison with another run (scored
        # before these were recorded: absent)
        **({"recon_passed": metrics["recon_shape_check"]["passed"]} if "passed" in metrics["recon_shape_check"] else {}),
        # passing with the originals' shapes, kind for kind, and the kinds the check fitted to the
        # passing images' regions (scored before these were recorded: absent)
        **{k: metrics["recon_shape_check"][k] for k in ("kinds_kept", "passing_kinds") if k in metrics["recon_shape_check"]},
        # the same scores on a larger sample of fresh images (`quality score --fresh N`), where measured
        **({"fresh": metrics["recon_fresh"]} if "recon_fresh" in metrics else {}),
        **({"note": note} if note else {}),
    }


def prior_of(run: Path, prior: Path, cpu_minutes: float) -> dict:
    """What a prior trained on ``run``'s codes with the recipe ``PRIOR_BASE`` scores: raises
    unless it was trained on that run's checkpoint with the recipe's settings, in full."""
    from prior_levers import checked_run, scored_settings   # a sibling in tools/
    metrics = checked_run(prior, PRIOR_BASE, run / "checkpoint.pt")
    scored = scored_settings(metrics)
    return {"command": f"dlstudio-lite train prior --recipe {PRIOR_BASE} --vq-checkpoint "
                       f"runs/{run.name}/checkpoint.pt --out runs/{prior.name}",
            "test_bits_per_code": metrics["test_bits_per_code"],
            "samples_by_setting": scored, "cpu_minutes": cpu_minutes}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="folder of a trained and scored run")
    p.add_argument("--cpu-minutes", type=float, required=True, help="user CPU time of the training")
    p.add_argument("--note", help="what else to know about the run")
    p.add_argument("--prior", type=Path, help=f"folder of a {PRIOR_BASE} prior trained on RUN's codes and scored")
    p.add_argument("--prior-cpu-minutes", type=float, help="user CPU time of the prior (encoding included)")
    args = p.parse_args(argv)
    if (args.prior is None) != (args.prior_cpu_minutes is None):
        p.error("--prior and --prior-cpu-minutes go together")
    row = row_of(args.run, args.cpu_minutes, args.note)
    if args.prior:
        row["prior"] = prior_of(args.run, args.prior, args.prior_cpu_minutes)
    path = CHECKPOINTS / BASE / "metrics.json"
    metrics = json.loads(path.read_text())
    levers = [r for r in metrics.get("levers", []) if r["changes"] != row["changes"]] + [row]
    metrics["levers"] = sorted(levers, key=lambda r: (r["steps"], len(r["changes"]), str(sorted(r["changes"].items()))))
    text = (json.dumps(metrics, indent=2) + "\n").encode()
    atomic_write(path, lambda f: f.write(text))
    print(f"{row['command']}: check {row['recon_shape_check']:.1%}, FD {row['recon_fd']:.1f} "
          f"({len(metrics['levers'])} levers recorded)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
