"""``dlstudio-lite train MODEL``: the course's main job, headless.

Builds the dataset and the model from lecture defaults and flags, trains with
:class:`dlstudio_lite.train.Trainer`, and writes ``checkpoint.pt``, ``config.json``,
``metrics.json``, ``reconstructions.png`` and ``loss_curves.png`` into ``--out``.
"""
from __future__ import annotations

import argparse
import ast
import inspect
import json
from pathlib import Path
from typing import Any

import torch

from .. import data
from ..checkpoint import MODELS
from ..config import pick, quick_mode
from ..device import seed_everything
from ..plot import save_loss_curves
from ..metrics import reconstruction_metrics
from ..train import OPTIMIZERS, SCHEDULERS, TrainConfig, Trainer, cleanup_distributed

# Lecture settings (REFERENCE.md): Adam, lr 1e-4, batch 48, 64x64 images with a 16x16
# latent; VAE KL weight 0.1; VQ-VAE 512 codes, beta 0.25, EMA decay 0.99; VQGAN 256 codes
# on an 8x8 latent. Keys are the models' constructor arguments.
_MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "autoencoder": {},
    "vae": {"beta": 0.1},
    "vqvae": {"num_codes": 512, "beta": 0.25, "decay": 0.99},
    "vqgan": {"num_codes": 256, "beta": 0.25, "decay": 0.99},
}
_LATENT_DIVISOR = {"autoencoder": 4, "vae": 4, "vqvae": 4, "vqgan": 8}
_HELP = {
    "autoencoder": "deterministic autoencoder, MSE loss (lecture section 4)",
    "vae": "variational autoencoder, MSE + KL (lecture sections 2, 3, 5)",
    "vqvae": "VQ-VAE with an EMA codebook (lecture sections 7, 8)",
    "vqgan": "VQGAN: VQ-VAE + PatchGAN discriminator, adaptive lambda (lecture section 10)",
}


def _key_value(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        value = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        pass  # keep it as a string
    return key.strip(), value


def _common_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default="shapes",
                   help="shapes, mnist, cifar10, celeba or folder:PATH (default: shapes, "
                        "generated offline)")
    g.add_argument("--data-root", default=None, help="where datasets live (default: data.py's)")
    g.add_argument("--image-size", type=int, default=None,
                   help="square image side (default: 64, quick mode 32)")
    g.add_argument("--num-images", type=int, default=None,
                   help="shapes only: images to generate (default: data.py's, 20000 / quick 1024)")
    g.add_argument("--workers", type=int, default=0,
                   help="DataLoader worker processes (default: 0, load in the main process)")

    g = p.add_argument_group("model size")
    g.add_argument("--latent-size", type=int, default=None,
                   help="side of the latent grid (default: image size / 4; VQGAN: / 8)")
    g.add_argument("--base-channels", type=int, default=None,
                   help="width of the first encoder stage (default: the model's, quick 16)")
    g.add_argument("--set", dest="hparams", action="append", type=_key_value, default=[],
                   metavar="KEY=VALUE", help="any other model constructor argument "
                   "(repeatable), e.g. --set num_repeats=1")

    g = p.add_argument_group("run length")
    g.add_argument("--steps", type=int, default=None,
                   help="optimizer steps (default: 2000, quick mode 20; the lecture ran 20 "
                        "epochs for AE/VAE and 100 for VQ-VAE)")
    g.add_argument("--epochs", type=int, default=None, help="epochs instead of --steps")
    g.add_argument("--seed", type=int, default=0, help="seeds model init and data order")

    g = p.add_argument_group("optimisation")
    g.add_argument("--lr", type=float, default=None,
                   help="learning rate (default: 1e-4 as in the lecture; quick mode 1e-3, so "
                        "that its few steps visibly learn)")
    g.add_argument("--batch-size", type=int, default=None,
                   help="images per step and process (lecture: 48; quick mode 16)")
    g.add_argument("--optimizer", default="adam", type=str.lower, choices=list(OPTIMIZERS),
                   help="optimizer (default: adam)")
    g.add_argument("--weight-decay", type=float, default=0.0, help="(default: 0)")
    g.add_argument("--scheduler", default="none", type=str.lower,
                   choices=["none", *SCHEDULERS], help="lr schedule, stepped every step")
    g.add_argument("--scheduler-arg", dest="scheduler_kwargs", action="append",
                   type=_key_value, default=[], metavar="KEY=VALUE",
                   help="extra scheduler argument, e.g. gamma=0.5 (repeatable)")
    g.add_argument("--grad-clip", type=float, default=None, help="max gradient norm")

    g = p.add_argument_group("hardware")
    g.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: best)")
    g.add_argument("--amp", default="auto", choices=["auto", "bf16", "fp16", "off"],
                   help="mixed precision; auto = bf16 (or fp16) on CUDA, off on CPU")
    g.add_argument("--compile", action="store_true", help="torch.compile the model")
    g.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: torch's; 1 is much faster when "
                        "other jobs share the cores)")

    g = p.add_argument_group("output")
    g.add_argument("--out", required=True, help="output folder (created)")
    g.add_argument("--resume", nargs="?", const="auto", default=None, metavar="CKPT",
                   help="continue from CKPT (default: OUT/checkpoint.pt)")
    g.add_argument("--log-every", type=int, default=None, help="steps between log syncs (default: 25, quick 5)")
    g.add_argument("--eval-every", type=int, default=None, help="steps between test evaluations (default: 250, quick 10)")
    g.add_argument("--sample-every", type=int, default=None,
                   help="steps between reconstruction grids recon_stepN.png")
    g.add_argument("--checkpoint-every", type=int, default=None,
                   help="steps between checkpoints (default: 500; one is always "
                        "written at the end)")
    g.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def add_cli(sub) -> Any:
    """Register ``dlstudio-lite train MODEL``; returns the sub-parsers action of ``train``
    so that other modules can add their own ``train`` targets (e.g. ``train prior``)."""
    train = sub.add_parser(
        "train", help="train a model of the course",
        description="Train a model of the course and write, into --out: checkpoint.pt, "
        "config.json, metrics.json (test MSE, PSNR; perplexity and codebook usage for VQ "
        "models), reconstructions.png and loss_curves.png. Set DLSTUDIO_LITE_QUICK=1 for a "
        "run of under a minute on a laptop CPU. Run under `torchrun --nproc_per_node N` for "
        "DistributedDataParallel.")
    train_sub = train.add_subparsers(dest="model", required=True, metavar="MODEL")
    common = _common_parser()
    for name, help_text in _HELP.items():
        p = train_sub.add_parser(
            name, parents=[common], help=help_text, description=f"Train the {help_text}.",
            epilog=f"example: dlstudio-lite train {name} --dataset shapes --out runs/{name}")
        g = p.add_argument_group(f"{name} settings")
        if name == "vae":
            g.add_argument("--kl-weight", type=float, default=0.1,
                           help="weight of the KL term (the VAE's beta; lecture: 0.1)")
        if name in ("vqvae", "vqgan"):
            g.add_argument("--num-codes", type=int, default=_MODEL_DEFAULTS[name]["num_codes"],
                           help="codebook size K (default: %(default)s)")
            g.add_argument("--code-dim", type=int, default=None,
                           help="codebook vector size D (default: the model's)")
            g.add_argument("--beta", type=float, default=0.25,
                           help="commitment weight (lecture: %(default)s)")
        if name in ("vqvae", "vqgan"):
            g.add_argument("--ema-decay", type=float, default=0.99,
                           help="EMA codebook decay (lecture: %(default)s; 0 = learn the codebook "
                                "by gradient instead)")
        if name == "vqgan":
            g.add_argument("--disc-start", type=int, default=None,
                           help="step at which the discriminator switches on (default: the "
                                "model's, 2000 / quick 5)")
        p.set_defaults(func=run_train_command)
    return train_sub


def _model_kwargs(name: str, cls: type, args, image_size: int, channels: int) -> dict:
    """Constructor kwargs for ``cls`` from the lecture defaults and the flags."""
    kwargs: dict[str, Any] = {**_MODEL_DEFAULTS[name], "in_channels": channels,
                              "image_size": image_size,
                              "latent_size": args.latent_size
                              or max(1, image_size // _LATENT_DIVISOR[name])}
    if args.base_channels or quick_mode():
        kwargs["base_channels"] = args.base_channels or 16
    if name == "vae":
        kwargs["beta"] = args.kl_weight
    if name in ("vqvae", "vqgan"):
        kwargs.update(num_codes=args.num_codes, beta=args.beta)
        if args.code_dim:
            kwargs["code_dim"] = args.code_dim
        if args.ema_decay > 0:
            kwargs["decay"] = args.ema_decay
        else:
            kwargs.pop("decay")
            kwargs["ema"] = False
    if name == "vqgan" and args.disc_start is not None:
        kwargs["disc_start"] = args.disc_start
    params = inspect.signature(cls).parameters
    accepts_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
    for key, value in args.hparams:  # --set KEY=VALUE
        if not accepts_any and key not in params:
            raise ValueError(f"{cls.__name__} has no argument {key!r}; it accepts "
                             f"{', '.join(params)}")
        kwargs[key] = value
    return kwargs


def datasets_for(args, image_size: int):
    root = {"root": args.data_root} if args.data_root else {}
    if args.dataset == "shapes":
        extra = {}
        if args.num_images:  # small custom sets hold out a fifth (at most the usual 200)
            extra = {"num_images": args.num_images,
                     "test_size": min(200, max(1, args.num_images // 5))}
        return (data.ShapesDataset("train", image_size=image_size, **root, **extra),
                data.ShapesDataset("test", image_size=image_size, **root, **extra))
    if args.num_images:
        raise ValueError(f"--num-images applies to the shapes dataset only, not {args.dataset!r}")
    return (data.load_dataset(args.dataset, "train", image_size=image_size, **root),
            data.load_dataset(args.dataset, "test", image_size=image_size, **root))


def run_train_command(args) -> int:
    """The main job behind ``dlstudio-lite train MODEL``."""
    name = args.model
    out = Path(args.out)
    image_size = args.image_size or pick(64, 32)
    steps = args.steps if (args.steps or args.epochs) else pick(2000, 20)
    batch_size = args.batch_size or pick(48, 16)
    if args.threads:
        torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    train_set, test_set = datasets_for(args, image_size)
    first = train_set[0]
    channels = (first[0] if isinstance(first, (tuple, list)) else first).shape[0]
    cls = MODELS[name]
    kwargs = _model_kwargs(name, cls, args, image_size, channels)
    model = cls(**kwargs)

    eval_batches = pick(None, 4)
    config = TrainConfig(
        steps=steps, epochs=args.epochs, batch_size=batch_size, lr=args.lr or pick(1e-4, 1e-3),
        optimizer=args.optimizer, weight_decay=args.weight_decay,
        betas=(0.5, 0.9) if name == "vqgan" else None,  # the usual GAN setting
        scheduler=None if args.scheduler == "none" else args.scheduler,
        scheduler_kwargs=dict(args.scheduler_kwargs), grad_clip=args.grad_clip, amp=args.amp,
        compile=args.compile, seed=args.seed, device=args.device, num_workers=args.workers,
        log_every=args.log_every or pick(25, 5), eval_every=args.eval_every or pick(250, 10),
        eval_batches=eval_batches, sample_every=args.sample_every,
        checkpoint_every=args.checkpoint_every or pick(500, None),
        progress=not args.no_progress)
    trainer = Trainer(model, train_set, test_set, config, out_dir=out, model_name=name)
    if args.resume:
        trainer.resume(out / "checkpoint.pt" if args.resume == "auto" else args.resume)
    try:
        trainer.fit()
        if trainer.is_main:
            _write_outputs(trainer, args, kwargs, image_size, eval_batches)
    finally:
        cleanup_distributed()
    return 0


def _write_outputs(trainer: Trainer, args, hparams: dict, image_size: int,
                   eval_batches: int | None) -> None:
    out = trainer.out_dir
    cfg = trainer.config
    config = {"model": trainer.model_name, "hparams": hparams, "train": cfg.to_dict(),
              "dataset": args.dataset, "image_size": image_size, "num_images": args.num_images,
              "quick_mode": quick_mode(), "world_size": trainer.world_size,
              "device": str(trainer.device),
              "amp": str(trainer.amp_dtype).replace("torch.", "") if trainer.amp_dtype else "off"}
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    metrics = reconstruction_metrics(trainer.model, trainer.test_data, trainer.device,
                                     batch_size=cfg.batch_size, max_batches=eval_batches)
    metrics.update({"step": trainer.step, "epoch": trainer.epoch,
                    "interrupted": trainer.interrupted,
                    "train_images_per_second": trainer.images_per_second})
    final = {k.split("/", 1)[1]: v[-1][1] for k, v in trainer.history.items()
             if k.startswith("train/") and v}
    metrics["final_train_logs"] = final
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    trainer.save_reconstructions(out / "reconstructions.png")
    save_loss_curves(trainer.history, out / "loss_curves.png")
