"""``dlstudio-lite train MODEL``: the course's main job, headless.

Flags come from where the settings are defined: ``DataConfig`` (data.py), the model's
constructor, ``TrainConfig`` (config.py); their defaults are a named recipe's (recipes.py:
``--recipe NAME``, else the model's default recipe; quick mode's variant in quick mode).
``run_train_command`` builds the data, the model and a :class:`Trainer`, and
writes ``checkpoint.pt``, ``config.json``, ``metrics.json``, ``history.json`` (the logged
curves), ``reconstructions.png`` and ``loss_curves.png`` into ``--out``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..checkpoint import MODELS
from ..config import TrainConfig, quick_mode
from ..data import DataConfig
from ..device import seed_everything
from ..recipes import DEFAULT_RECIPE, LOOP, RECIPES, Recipe, image_model_kwargs, recipe
from . import options

_HELP = {  # ``train prior`` and ``train pixelcnn`` are registered by commands/codes.py
    "autoencoder": "deterministic autoencoder, MSE loss (lecture section 4)",
    "vae": "variational autoencoder, MSE + KL (lecture sections 2, 3, 5)",
    "vqvae": "VQ-VAE with an EMA codebook (lecture sections 7, 8)",
    "vqgan": "VQGAN: VQ-VAE + PatchGAN discriminator, adaptive lambda (lecture section 10)",
    "vqvae2": "VQ-VAE-2: a top code grid and a bottom one conditioned on it (appendix 9)",
}
_SKIP = ("in_channels", "image_size", "latent_size")  # from the data (latent: see below)


def recipe_in(argv: list[str]) -> tuple[list[str], Recipe | None]:
    """The recipe that ``train [MODEL] --recipe NAME ...`` or ``sweep --recipe NAME ...``
    names, and ``argv`` with the model filled in (and, for a sweep, the recipe's factors
    unless ``--grid`` is given). Other command lines come back unchanged, with None."""
    if len(argv) < 2 or argv[0] not in ("train", "sweep"):
        return argv, None
    names = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--recipe"]
    names += [a.split("=", 1)[1] for a in argv if a.startswith("--recipe=")]
    if not names:
        return argv, None
    found = recipe(names[-1])
    rest = argv[1:]
    if rest[0] in MODELS or rest[0] in _HELP:
        if rest[0] != found.target:
            raise ValueError(f"recipe {found.name} trains a {found.target}, not a {rest[0]}")
        rest = rest[1:]
    if found.target == "shape_features":
        raise ValueError(f"recipe {found.name} is run by `dlstudio-lite quality train`")
    if found.target == LOOP:
        raise ValueError(f"recipe {found.name} is a loop written out in lecture "
                         f"{found.lecture.split()[0]}'s notebook; no command runs it")
    if argv[0] == "sweep":
        if not found.sweep:
            raise ValueError(f"recipe {found.name} is one run, not a sweep")
        if "--grid" not in rest:
            rest = [*(f for g in found.sweep.get("grid", []) for f in ("--grid", g)),
                    *(f for b in found.sweep.get("base", []) for f in ("--base", b)), *rest]
    return [argv[0], found.target, *rest], found


def set_recipe_defaults(parser, found: Recipe) -> None:
    """Make ``found``'s settings the defaults of ``parser`` (the help shows them); settings
    without a flag of their own become ``--set`` items."""
    dests = {a.dest for a in parser._actions}
    settings = found.settings()
    if "latent_size" in settings:  # kept as a ratio, so that --image-size alone still fits
        settings["latent_ratio"] = settings.get("image_size", 64) // settings.pop("latent_size")
    parser.set_defaults(**{k: v for k, v in settings.items() if k in dests | {"latent_ratio"}},
                        recipe=found.name, hparams=[(k, v) for k, v in settings.items()
                                                    if k not in dests | {"latent_ratio"}])


def add_cli(sub, chosen: Recipe | None = None) -> Any:
    """Register ``dlstudio-lite train MODEL``; returns the sub-parsers action of ``train``
    so that other modules can add their own ``train`` targets (e.g. ``train prior``).
    Each target's defaults are the recipe ``chosen`` (when it trains that target) or the
    target's default recipe."""
    train = sub.add_parser(
        "train", help="train a model of the course",
        epilog="recipes (dlstudio-lite train --recipe NAME --out DIR; flags override): "
               + ", ".join(RECIPES),
        description="Train a model of the course and write, into --out: checkpoint.pt, "
        "config.json, metrics.json (test MSE, PSNR; perplexity and codebook usage for VQ "
        "models), history.json (the logged curves), reconstructions.png and loss_curves.png. "
        "Set DLSTUDIO_LITE_QUICK=1 for a "
        "run of under a minute on a laptop CPU. Run under `torchrun --nproc_per_node N` for "
        "DistributedDataParallel.")
    train_sub = train.add_subparsers(dest="model", required=True, metavar="MODEL")
    for name, summary in _HELP.items():
        cls = MODELS[name]
        found = chosen if chosen is not None and chosen.target == name else recipe(DEFAULT_RECIPE[name])
        p = train_sub.add_parser(
            name, help=summary, description=f"Train the {summary}. Defaults: recipe {found.name}.",
            epilog=f"example: dlstudio-lite train --recipe {found.name} --out runs/{name}")
        p.add_argument("--recipe", help="named recipe whose settings are the defaults "
                       "(dlstudio_lite/recipes.py; default: %(default)s)")
        p.add_argument("--out", required=True, help="output folder (created)")
        p.add_argument("--resume", nargs="?", const="auto", default=None, metavar="CKPT",
                       help="continue from CKPT (default: OUT/checkpoint.pt)")
        add_threads_flag(p)
        options.add_dataclass(p.add_argument_group("data"), DataConfig)
        g = p.add_argument_group(f"{name} (constructor arguments of {cls.__name__})")
        g.add_argument("--latent-size", type=int, default=None,
                       help="side of the latent grid (default: the image size divided by the "
                            "recipe's ratio, else the model's: 4 for the VQ-VAE, 8 for the VQGAN)")
        names = options.add_signature(g, cls, skip=_SKIP, choices=model_choices())
        g.add_argument("--set", dest="hparams", action="append", type=options.key_value,
                       default=[], metavar="KEY=VALUE",
                       help="any other constructor argument (repeatable), e.g. --set num_repeats=1")
        options.add_dataclass(p.add_argument_group("training"), TrainConfig,
                              choices=options.TRAIN_CHOICES, clears={"epochs": "steps"})
        p.set_defaults(func=run_train_command, model_args=names)
        set_recipe_defaults(p, found)
    return train_sub


def add_threads_flag(p) -> None:
    """``--threads``, shared by every training command (set before training by ``use_threads``)."""
    p.add_argument("--threads", type=options.positive_int, default=None,
                   help="CPU threads for torch (default: the course's, half the cores and at most "
                        "four, unless OMP_NUM_THREADS or DLSTUDIO_LITE_THREADS is set; 1 is much "
                        "faster when other jobs share the cores)")


def use_threads(args) -> None:
    """Apply ``--threads``, if given, to torch's intra-op threads."""
    import torch
    if args.threads is not None:
        torch.set_num_threads(args.threads)


def model_choices() -> dict:
    from ..quantize import QUANTIZERS
    from ..vqgan import GAN_LOSSES
    return {"quantizer": QUANTIZERS, "gan_loss": GAN_LOSSES, "reduction": ("sum", "mean")}


def model_kwargs(cls: type, args, image_size: int, channels: int) -> dict:
    """Constructor arguments from the flags (``recipes.image_model_kwargs`` adds the sizes)."""
    params = options.parameters(cls)
    kwargs: dict[str, Any] = {name: getattr(args, name) for name in args.model_args}
    kwargs = image_model_kwargs(cls, {**kwargs, "latent_size": args.latent_size}, image_size,
                                channels, getattr(args, "latent_ratio", None))
    for key, value in args.hparams:  # --set KEY=VALUE
        if key not in params:
            raise ValueError(f"{cls.__name__} has no argument {key!r}; it accepts "
                             f"{', '.join(params)}")
        kwargs[key] = value
    return kwargs


def run_train_command(args) -> int:
    """The main job behind ``dlstudio-lite train MODEL``."""
    from ..train import Trainer
    use_threads(args)
    seed_everything(args.seed)
    data = options.from_args(DataConfig, args)
    train_set, test_set = data.splits()
    channels = train_set[0][0].shape[0]
    cls = MODELS[args.model]
    kwargs = model_kwargs(cls, args, data.image_size, channels)
    model = cls(**kwargs)
    config = options.from_args(TrainConfig, args)
    out = Path(args.out)
    trainer = Trainer(model, train_set, test_set, config, out_dir=out, model_name=args.model)
    if args.resume:
        trainer.resume(out / "checkpoint.pt" if args.resume == "auto" else args.resume)
    trainer.fit()
    if trainer.is_main:  # under torchrun: rank 0 writes (cli.main ends the process group)
        write_outputs(trainer, data, model.hparams, args.recipe)
    return 0


def write_outputs(trainer, data: DataConfig, hparams: dict, recipe_name: str | None = None) -> None:
    """config.json, metrics.json (test reconstruction metrics), the pictures."""
    from ..evaluate import reconstruction_metrics
    from ..plot import save_loss_curves
    out, cfg = trainer.out_dir, trainer.config
    config = {"model": trainer.model_name, "recipe": recipe_name,
              "hparams": hparams, "train": cfg.to_dict(),
              "dataset": data.dataset, "image_size": data.image_size,
              "num_images": data.num_images, "quick_mode": quick_mode(),
              "world_size": trainer.world_size, "device": str(trainer.device),
              "amp": str(trainer.amp_dtype).replace("torch.", "") if trainer.amp_dtype else "off"}
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    metrics = reconstruction_metrics(trainer.model, trainer.test_data, trainer.device,
                                     batch_size=cfg.batch_size, max_batches=cfg.eval_batches)
    metrics.update({"step": trainer.step, "epoch": trainer.epoch,
                    "interrupted": trainer.interrupted,
                    "train_images_per_second": trainer.images_per_second})
    metrics["final_train_logs"] = {k.split("/", 1)[1]: v[-1][1] for k, v in trainer.history.items()
                                   if k.startswith("train/") and v}
    if data.dataset == "shapes" and hasattr(trainer.model, "reconstruct"):
        metrics.update(recon_quality(trainer.model, trainer.test_data, trainer.device))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    # The curves as numbers (also in the checkpoint, but readable without torch, and kept
    # when a sweep ships results without checkpoints).
    (out / "history.json").write_text(json.dumps(trainer.history) + "\n")
    trainer.save_reconstructions(out / "reconstructions.png")
    save_loss_curves(trainer.history, out / "loss_curves.png")


def recon_quality(model, test_data, device) -> dict:
    """Frechet distance and valid-shape rate of the reconstructions of the shapes test split."""
    import torch

    from ..data import images_of
    from ..evaluate import evaluating
    from ..quality import shapes_quality
    x = torch.stack([images_of(test_data[i]) for i in range(len(test_data))])
    with evaluating(model), torch.no_grad():
        rec = torch.cat([model.reconstruct(b.to(device)).float().cpu() for b in x.split(100)])
    holes = torch.from_numpy(test_data.holes) if hasattr(test_data, "holes") else None
    return shapes_quality(x, rec.clamp(-1, 1), "recon", holes=holes)
