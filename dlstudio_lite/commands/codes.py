"""Stage 2: encode a dataset once into a code file, then train any prior on it.

``dlstudio-lite encode`` turns every image of a VQ model's train and test splits into code
grids and writes them to one file (the shape of rosinality's ``extract_code.py``).
``dlstudio-lite train prior`` (a :class:`~dlstudio_lite.prior.TransformerPrior`) and
``train pixelcnn`` (a :class:`~dlstudio_lite.pixelcnn.PixelCNN` over one level of a
VQ-VAE-2) read such a file with ``--codes``, or encode on the fly from ``--vq-checkpoint``;
both then go through the one :func:`train_on_codes`.

A code file (``torch.load(..., weights_only=True)``) holds ``{"format", "vq_checkpoint",
"data": DataConfig fields, "num_codes": {level: K}, "train": {level: (N, h, w) long},
"test": {...}}``; the levels are ``"codes"`` for a single-grid model (VQ-VAE, VQGAN) and
``"top"`` / ``"bottom"`` for a VQ-VAE-2.
"""
from __future__ import annotations

import io
import json
import time
from pathlib import Path

import torch
import torch.nn as nn

from ..checkpoint import load_model
from ..config import TrainConfig, quick_mode
from ..data import DataConfig
from ..device import get_device, seed_everything
from ..recipes import DEFAULT_RECIPE, QUICK_CAPS, recipe
from . import options
from .train import add_threads_flag, set_recipe_defaults, use_threads

FORMAT = "dlstudio-lite-codes/1"
_MODELS = {  # target -> (help, the levels it may model)
    "prior": ("transformer prior over the codes of a trained VQ model (lecture 6)", ("codes", "top")),
    "maskgit": ("MaskGIT-style prior over the codes of a trained VQ model: bidirectional, "
                "decoded in a few parallel rounds (lecture 6)", ("codes", "top")),
    "pixelcnn": ("gated PixelCNN prior over the top or bottom codes of a VQ-VAE-2 (appendix 9)",
                 ("top", "bottom")),
}


def prior_class(target: str) -> type:
    from ..checkpoint import MODELS
    return MODELS[target]


def add_cli(sub, train_sub, chosen=None) -> None:
    """Register ``encode`` (top level) and ``train prior`` / ``train pixelcnn``; their
    training defaults come from the recipe ``chosen`` or the target's default recipe."""
    e = sub.add_parser("encode", help="encode a dataset into a code file (stage 2's input)",
                       description="Encode the train and test splits with a trained VQ model and "
                       "write every level's code grids to one file, for `train prior --codes` "
                       "and `train pixelcnn --codes`.",
                       epilog="example: dlstudio-lite encode --vq-checkpoint "
                              "data/checkpoints/vqgan_shapes/checkpoint.pt --out runs/codes.pt")
    e.add_argument("--vq-checkpoint", required=True, help="checkpoint.pt of a vqvae, vqgan or vqvae2")
    e.add_argument("--out", required=True, help="the code file to write")
    e.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: best)")
    _data_flags(e)
    e.set_defaults(func=_cli_encode)
    for target, (summary, levels) in _MODELS.items():
        r = chosen if chosen is not None and chosen.target == target else recipe(DEFAULT_RECIPE[target])
        p = train_sub.add_parser(
            target, help=summary, description=f"Train a {summary}, on a code file (--codes) or on "
            "the codes of --vq-checkpoint, encoded here. Writes, into --out: checkpoint.pt, "
            "metrics.json (test cross-entropy in bits per code, or per masked code for maskgit, "
            f"against the context-free baseline), loss_curves.png and samples.png. Defaults: recipe {r.name}.",
            epilog=f"example: dlstudio-lite train --recipe {r.name} --out runs/{target}")
        p.add_argument("--recipe", help="named recipe whose settings are the defaults "
                       "(dlstudio_lite/recipes.py; default: %(default)s)")
        p.add_argument("--vq-checkpoint", default=r.vq_checkpoint(),
                       help="checkpoint.pt of the VQ model (default: %(default)s)")
        p.add_argument("--codes", default=None, help="a file of `dlstudio-lite encode` (then the "
                       "data flags are not used)")
        p.add_argument("--level", default=levels[-1], choices=levels,
                       help="which code grid (a VQ-VAE-2's bottom: conditioned on its top codes; "
                            "default: %(default)s)")
        p.add_argument("--out", required=True, help="output folder (created)")
        p.add_argument("--resume", nargs="?", const="auto", default=None, metavar="CKPT",
                       help="continue from CKPT (default: OUT/checkpoint.pt) on the same codes")
        p.add_argument("--n-samples", type=int, default=16, help="images in samples.png (0: none)")
        add_threads_flag(p)
        _data_flags(p)
        names = options.add_signature(p.add_argument_group(f"model ({prior_class(target).__name__})"),
                                      prior_class(target),
                                      skip=("num_codes", "latent_shape", "condition_codes"))
        options.add_dataclass(p.add_argument_group("training"), TrainConfig,
                              choices=options.TRAIN_CHOICES, clears={"epochs": "steps"})
        p.set_defaults(func=_cli_train, model_args=names)
        set_recipe_defaults(p, r)


def _data_flags(p) -> None:
    options.add_dataclass(
        p.add_argument_group("data (default: what config.json beside the VQ checkpoint records)"),
        DataConfig, {"dataset": None}, skip=("image_size",))


def recorded_data(vq_checkpoint) -> dict:
    """Dataset settings that `dlstudio-lite train` wrote to config.json beside the checkpoint."""
    path = Path(vq_checkpoint).parent / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {k: config[k] for k in ("dataset", "num_images") if config.get(k) is not None}


def load_vq(path, device) -> nn.Module:
    """The VQ model in a checkpoint; a clear error for a model without a codebook."""
    vq = load_model(path, device)
    if not hasattr(vq, "encode_to_indices") and not hasattr(vq, "encode_codes"):
        raise ValueError(f"{path} holds a {type(vq).__name__}, which has no codebook: "
                         f"expected a vqvae, vqgan or vqvae2 checkpoint")
    return vq


def level_model(vq: nn.Module, level: str) -> nn.Module:
    """``vq`` itself, or one level of a VQ-VAE-2 seen as a single-grid model."""
    if hasattr(vq, "encode_codes"):
        from ..vqvae2 import LevelCodes
        if level == "codes":
            level = "top"
        return LevelCodes(vq, level)
    if level != "codes":
        raise ValueError(f"a {type(vq).__name__} has one code grid; --level {level} is for a vqvae2")
    return vq


def encode(vq_checkpoint, data: DataConfig, device, levels=None) -> dict:
    """The code-file dict of ``vq_checkpoint`` over ``data``'s splits (``levels``: all)."""
    from ..prior import encode_dataset
    vq = load_vq(vq_checkpoint, device)
    levels = levels or (("top", "bottom") if hasattr(vq, "encode_codes") else ("codes",))
    splits = dict(zip(("train", "test"), data.splits()))
    codes = {split: {level: encode_dataset(level_model(vq, level), ds, batch_size=128, device=device)
                     for level in levels} for split, ds in splits.items()}
    return {"format": FORMAT, "vq_checkpoint": str(vq_checkpoint), "data": vars(data),
            "num_codes": {level: int(level_model(vq, level).num_codes) for level in levels}, **codes}


def save_codes(codes: dict, path) -> Path:
    from ..paths import atomic_write
    buffer = io.BytesIO()
    torch.save(codes, buffer)
    return atomic_write(path, lambda f: f.write(buffer.getvalue()))


def load_codes(path) -> dict:
    codes = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(codes, dict) or codes.get("format") != FORMAT:
        raise ValueError(f"{path} is not a code file of `dlstudio-lite encode` "
                         f"(expected format {FORMAT!r})")
    return codes


def _data_of(args, vq_checkpoint, image_size: int) -> DataConfig:
    """The VQ model's own train/test split: flags, else what its run recorded."""
    recorded = recorded_data(vq_checkpoint)
    return options.from_args(DataConfig, args, image_size=image_size,
                             dataset=args.dataset or recorded.get("dataset", "shapes"),
                             num_images=args.num_images or recorded.get("num_images")
                             or (QUICK_CAPS["num_images"] if quick_mode() else None))


def _cli_encode(args) -> int:
    device = get_device(args.device)
    size = int(load_vq(args.vq_checkpoint, "cpu").hparams.get("image_size", 64))
    codes = encode(args.vq_checkpoint, _data_of(args, args.vq_checkpoint, size), device)
    path = save_codes(codes, args.out)
    print(f"wrote {path}: " + ", ".join(f"{level} {tuple(t.shape)}" for level, t in codes["train"].items()))
    return 0


def _cli_train(args) -> int:
    use_threads(args)
    device = get_device(args.device)
    seed_everything(args.seed)
    levels = ("top", "bottom") if args.level == "bottom" else (args.level,)
    start = time.perf_counter()
    if args.codes:
        codes = load_codes(args.codes)
    else:
        if args.vq_checkpoint is None:
            raise ValueError("give --codes or --vq-checkpoint")
        size = int(load_vq(args.vq_checkpoint, "cpu").hparams.get("image_size", 64))
        codes = encode(args.vq_checkpoint, _data_of(args, args.vq_checkpoint, size), device,
                       _levels_for(args.vq_checkpoint, levels))
    encode_s = time.perf_counter() - start
    # A prior's level "top" is a single-grid model's only grid, "codes", and the reverse.
    level = args.level if args.level in codes["num_codes"] else \
        {"top": "codes", "codes": "top"}.get(args.level)
    if level not in codes["num_codes"]:
        raise ValueError(f"the codes hold the levels {', '.join(codes['num_codes'])}, not {args.level!r}")
    config = options.from_args(TrainConfig, args, device=str(device))
    kwargs = {name: getattr(args, name) for name in args.model_args}
    out = Path(args.out)
    resume = out / "checkpoint.pt" if args.resume == "auto" else args.resume
    return train_on_codes(args.model, codes, level, kwargs, config, out, n_samples=args.n_samples,
                          seed=args.seed, encode_seconds=encode_s, resume=resume)


def _levels_for(vq_checkpoint, levels):
    """A single-grid model has only ``codes``; the prior's default level ``top`` means it."""
    vq = load_vq(vq_checkpoint, "cpu")
    return levels if hasattr(vq, "encode_codes") else ("codes",)


def train_on_codes(target: str, codes: dict, level: str, model_kwargs: dict, config: TrainConfig,
                   out: Path, n_samples: int = 16, seed: int = 0, encode_seconds: float = 0.0,
                   resume=None) -> int:
    """Fit a prior of ``target`` to ``codes[...][level]``, write checkpoint, metrics, curves
    and samples into ``out`` (the one stage-2 training path); ``resume``: a checkpoint of an
    interrupted run on the same codes to continue from."""
    from torch.utils.data import TensorDataset

    from ..plot import save_loss_curves
    from ..quantize import code_counts, code_usage
    from ..train import Trainer
    train_codes, test_codes = codes["train"][level], codes["test"][level]
    num_codes = codes["num_codes"][level]
    extra = {}
    if target == "pixelcnn" and level == "bottom":
        from ..pixelcnn import pair_with_condition
        extra = {"condition_codes": codes["num_codes"]["top"]}
        inputs = [pair_with_condition(codes[s]["bottom"], codes[s]["top"]) for s in ("train", "test")]
    else:
        inputs = [train_codes, test_codes]
    prior = prior_class(target)(num_codes, tuple(train_codes.shape[1:]), **extra, **model_kwargs)
    trainer = Trainer(prior, TensorDataset(inputs[0]), TensorDataset(inputs[1]), config,
                      out_dir=out, model_name=target)
    if resume is not None:
        trainer.resume(resume)
    history = trainer.fit()
    if not trainer.is_main:  # under torchrun: rank 0 measures and writes
        return 0
    if trainer.interrupted:  # the checkpoint is saved; measuring a half-trained prior misleads
        print(f"{target} ({level}): stopped at step {trainer.step}; the same command with "
              f"--resume continues it")
        return 0
    test = {k.split("/", 1)[1]: v[-1][1] for k, v in history.items() if k.startswith("test/") and v}
    metrics = {
        "vq_checkpoint": codes["vq_checkpoint"], "level": level, "dataset": codes["data"]["dataset"],
        "image_size": codes["data"]["image_size"], "num_codes": num_codes,
        "latent_shape": list(prior.latent_shape),
        "parameters": sum(p.numel() for p in prior.parameters()),
        "train_grids": len(train_codes), "test_grids": len(test_codes),
        "test_bits_per_code": test.get("bits_per_code"), "test_accuracy": test.get("accuracy"),
        # MaskGIT's loss and accuracy are on masked codes only: no likelihood, and not
        # comparable with a next-code prediction's, so they go under their own names.
        **({"test_bits_per_code": None, "test_accuracy": None,
            "test_bits_per_masked_code": test["bits_per_masked_code"],
            "test_masked_accuracy": test.get("accuracy")} if "bits_per_masked_code" in test else {}),
        # A prior that ignores the context can do no better than the codes' entropy.
        "context_free_bits_per_code": float(code_usage(code_counts(train_codes, num_codes)).bits),
        "codes_used_by_dataset": int(torch.unique(train_codes).numel()),
        "step": trainer.step, "encode_seconds": encode_seconds,
        "train_grids_per_second": trainer.images_per_second, "quick_mode": quick_mode(),
        "hparams": prior.hparams, "train": config.to_dict(),
    }
    if target == "pixelcnn":
        metrics["condition_codes"] = prior.condition_codes
    if n_samples > 0 or (target in ("prior", "maskgit") and metrics["dataset"] == "shapes"):
        _samples_and_quality(prior, codes, level, metrics, out, n_samples, seed, trainer.device)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    save_loss_curves(history, out / "loss_curves.png")
    loss = (f"{metrics['test_bits_per_code']:.3f} bits per code" if metrics["test_bits_per_code"] is not None
            else f"{metrics['test_bits_per_masked_code']:.3f} bits per masked code")
    print(f"{target} ({level}): test {loss} (context-free "
          f"{metrics['context_free_bits_per_code']:.3f}); wrote {out}")
    return 0


def _samples_and_quality(prior, codes, level, metrics, out, n_samples, seed, device) -> None:
    """samples.png; for a transformer prior on the shapes, also the samples' quality."""
    from torchvision.utils import save_image

    from ..evaluate import evaluating
    from ..plot import image_grid
    vq = load_vq(codes["vq_checkpoint"], device)
    prior = prior.to(device)

    def draw(n: int) -> torch.Tensor:
        generator = torch.Generator(device=device).manual_seed(seed)
        with evaluating(vq), evaluating(prior), torch.no_grad():
            if level == "bottom":  # bottom grids for the top grids of test images
                top = codes["test"]["top"][:n].to(device)
                return vq.decode_codes(top, prior.sample(len(top), condition=top, generator=generator))
            grids = prior.sample(n, generator=generator)
            return level_model(vq, level).decode_indices(grids).clamp(-1, 1)

    if isinstance(prior, prior_class("prior")) and metrics["dataset"] == "shapes":
        from ..data import images_of
        from ..quality import shapes_quality
        test = DataConfig(**codes["data"]).splits()[1]
        real = torch.stack([images_of(test[i]) for i in range(len(test))])
        rounds = f", {prior.decode_steps} rounds" if hasattr(prior, "decode_steps") else ""
        metrics.update(shapes_quality(real, draw(len(real)).cpu(), "sample"),
                       sample_settings=f"temperature 1.0, no top-k{rounds}")
    if n_samples > 0:
        save_image(image_grid(draw(n_samples).clamp(-1, 1).cpu(), nrow=8), out / "samples.png")
