"""Record a prior lever measured over the shipped twin's codes (appendix 11).

A prior lever is a prior of another kind or recipe trained on the codes of
``vqgan_mixture_nodisc_shapes`` (the shipped prior ``prior_mixture_shapes`` models the same
codes), for example MaskGIT's parallel decoding:

    dlstudio-lite train maskgit --recipe maskgit_mixture_shapes --out RUN
    dlstudio-lite quality score data/checkpoints/vqgan_mixture_nodisc_shapes/checkpoint.pt \\
        --prior RUN/checkpoint.pt --seeds 1 2 3 --update-metrics

This script checks that RUN was trained, in full, on those codes with exactly the settings of
the recipe named (so the row's command reproduces it), and stores a row in the ``levers`` list
of ``data/checkpoints/prior_mixture_shapes/metrics.json``, replacing a row of the same recipe.
The runs are not shipped (60 MB budget); appendix 11 reads these rows.

    python tools/prior_levers.py RUN --recipe maskgit_mixture_shapes --cpu-minutes 53 [--note "..."]

With ``--save-samples`` it also keeps what the lecture shows of a MaskGIT prior that is not
shipped: the code grids of its 200 samples of sampling seed 1 (the ones scored first, at the
prior's own number of rounds) and the round in which each code was fixed, in
``data/checkpoints/prior_mixture_shapes/RECIPE_samples.pt`` (about 50 kB).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dlstudio_lite.checkpoint import MODELS  # noqa: E402
from dlstudio_lite.commands import options  # noqa: E402
from dlstudio_lite.paths import CHECKPOINTS, atomic_write  # noqa: E402
from dlstudio_lite.recipes import recipe  # noqa: E402

BASE = "prior_mixture_shapes"            # the shipped prior; its rows live in its metrics.json
TRAIN_ONLY = {"device", "progress", "log_every", "eval_every", "checkpoint_every"}  # how a run was watched


def checked_run(run: Path, name: str, vq_checkpoint: Path) -> dict:
    """metrics.json of the prior in ``run``: raises unless it is a full, real run of the recipe
    ``name`` on the codes of ``vq_checkpoint``, scored over at least 3 sampling seeds."""
    found = recipe(name)
    metrics = json.loads((run / "metrics.json").read_text())
    if metrics.get("quick_mode"):
        raise ValueError(f"{run} was trained in quick mode: a lever must be a real run")
    vq = Path(metrics["vq_checkpoint"])
    if (vq if vq.is_absolute() else ROOT / vq).resolve() != vq_checkpoint.resolve():
        raise ValueError(f"{run} was trained on the codes of {vq}, not of {vq_checkpoint}")
    # every constructor argument, defaults included: a run with another choice_temperature
    # or dropout is not the recipe's, even though the recipe does not name them
    defaults = {k: p.default for k, p in options.parameters(MODELS[found.target]).items()
                if k not in ("num_codes", "latent_shape")}
    expected = {**found.train_config().to_dict(), **defaults, **found.model_kwargs()}
    recorded = {**metrics["train"], **metrics["hparams"]}
    differ = {k: (v, expected[k]) for k, v in recorded.items()
              if k in expected and k not in TRAIN_ONLY and expected[k] != v}
    if metrics["train_grids"] + metrics["test_grids"] != found.data["num_images"]:
        differ["num_images"] = (metrics["train_grids"] + metrics["test_grids"], found.data["num_images"])
    if metrics["step"] != found.train["steps"]:
        differ["step"] = (metrics["step"], found.train["steps"])
    if differ:
        raise ValueError(f"{run} is not the {name} recipe: (recorded, recipe) = {differ}")
    if not scored_settings(metrics):
        raise ValueError(f"{run} has no setting scored over 3 sampling seeds: run `dlstudio-lite quality score "
                         f"{vq_checkpoint} --prior {run}/checkpoint.pt --seeds 1 2 3 --update-metrics`")
    return metrics


def scored_settings(metrics: dict) -> dict:
    """Setting -> its spread over sampling seeds (and what else was recorded), for the
    settings scored over at least 3 seeds."""
    return {setting: {**s["seed_spread"],
                      **{k: s[k] for k in ("passing_kinds", "sample_seconds", "torch_threads", "by_seed") if k in s}}
            for setting, s in metrics.get("samples_by_setting", {}).items()
            if s.get("seed_spread", {}).get("seeds", 0) >= 3}


def row_of(run: Path, name: str, cpu_minutes: float, note: str | None) -> dict:
    """The lever row of RUN, trained with the recipe ``name``: raises if it was not."""
    found = recipe(name)
    if found.codes_of != recipe(BASE).codes_of:
        raise ValueError(f"recipe {name} models the codes of {found.codes_of}, not of {recipe(BASE).codes_of}")
    metrics = checked_run(run, name, CHECKPOINTS / found.codes_of / "checkpoint.pt")
    scored = scored_settings(metrics)
    loss = {k: metrics[k] for k in ("test_bits_per_code", "test_accuracy", "test_bits_per_masked_code",
                                    "test_masked_accuracy") if metrics.get(k) is not None}
    if "test_bits_per_masked_code" in loss and "test_masked_accuracy" not in loss:
        # a run written before the masked accuracy had its own key recorded it as test_accuracy
        loss["test_masked_accuracy"] = loss.pop("test_accuracy")
    return {"recipe": name, "target": found.target,
            "command": f"dlstudio-lite train {found.target} --recipe {name} --out runs/{run.name}",
            "hparams": metrics["hparams"], "parameters": metrics["parameters"], "steps": metrics["step"],
            **loss,
            "samples_by_setting": scored, "cpu_minutes": cpu_minutes, **({"note": note} if note else {})}


def samples_of(run: Path, n: int = 200, seed: int = 1) -> dict:
    """The code grids a MaskGIT prior draws with ``seed`` (as ``quality score --seeds`` draws
    them) and the round in which each code was fixed -> tensors (n, h, w)."""
    import torch

    from dlstudio_lite.masked_prior import MaskedPrior
    from dlstudio_lite.prior import load_prior
    prior = load_prior(run / "checkpoint.pt")
    if not isinstance(prior, MaskedPrior):
        raise ValueError(f"{run} holds a {type(prior).__name__}: only a MaskGIT prior decodes in rounds")
    inputs = []
    hook = prior.register_forward_pre_hook(lambda module, args: inputs.append(args[0] != prior.mask_token))
    try:
        codes = prior.sample(n, temperature=1.0, seed=seed)
    finally:
        hook.remove()
    # fixed before round r+1 = known in round r+1's input; never known = fixed in the last round
    fixed_at = torch.full(codes.flatten(1).shape, len(inputs), dtype=torch.int16)
    for r, known in reversed(list(enumerate(inputs[1:], start=1))):
        fixed_at[known] = r
    return {"codes": codes.to(torch.int16), "fixed_at_round": fixed_at.view_as(codes),
            "rounds": len(inputs), "seed": seed,
            # labelled as `quality score` labels it: by the rounds asked for (fewer may run)
            "setting": f"temperature 1.0, top-k None, {prior.decode_steps} rounds"}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="folder of a trained and scored prior")
    p.add_argument("--recipe", required=True, help="the recipe it was trained with")
    p.add_argument("--cpu-minutes", type=float, required=True, help="user CPU time of the training, encoding included")
    p.add_argument("--note", help="what else to know about the run")
    p.add_argument("--save-samples", action="store_true",
                   help="keep the codes of its seed-1 samples and their decoding order for the lecture")
    args = p.parse_args(argv)
    row = row_of(args.run, args.recipe, args.cpu_minutes, args.note)
    if args.save_samples:
        import torch
        kept = samples_of(args.run)
        scored = row["samples_by_setting"].get(kept["setting"])
        if scored is None:
            raise ValueError(f"{args.run} was not scored at {kept['setting']!r}: its samples would show "
                             "another setting than the numbers")
        target = CHECKPOINTS / BASE / f"{args.recipe}_samples.pt"
        atomic_write(target, lambda f: torch.save({**kept, "command": row["command"]}, f))
        row["samples_file"] = target.relative_to(ROOT).as_posix()
    path = CHECKPOINTS / BASE / "metrics.json"
    metrics = json.loads(path.read_text())
    metrics["levers"] = sorted([r for r in metrics.get("levers", []) if r["recipe"] != row["recipe"]] + [row],
                               key=lambda r: r["recipe"])
    text = (json.dumps(metrics, indent=2) + "\n").encode()
    atomic_write(path, lambda f: f.write(text))
    best = max(row["samples_by_setting"].items(), key=lambda kv: kv[1]["sample_shape_check_mean"])
    print(f"{row['command']}: {len(row['samples_by_setting'])} settings; most passing {best[0]}: check "
          f"{best[1]['sample_shape_check_mean']:.1%}, FD {best[1]['sample_fd_mean']:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
