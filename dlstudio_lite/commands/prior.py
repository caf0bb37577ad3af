"""``dlstudio-lite train prior`` and ``dlstudio-lite sample`` (stage 2 of VQGAN).

``train prior`` encodes the dataset with a trained VQ model and fits a
:class:`dlstudio_lite.prior.TransformerPrior` to the code grids; ``sample`` draws new
grids from the prior and decodes them into an image grid.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import torch.nn as nn

from ..checkpoint import load_model
from ..config import TrainConfig, preset, quick_mode
from ..data import DataConfig, images_of
from ..device import get_device, seed_everything
from ..prior import TransformerPrior
from . import options


def add_cli(sub, train_sub) -> None:
    """Register ``train prior`` (on ``train_sub``, the ``train`` command's sub-parsers) and
    ``sample`` (on ``sub``, the top-level sub-parsers)."""
    run = preset()
    p = train_sub.add_parser(
        "prior", help="transformer prior over the codes of a trained VQ-VAE / VQGAN (section 10)",
        description="Encode a dataset into code grids with a trained VQ model and train a GPT-style "
        "prior on them. Writes, into --out: checkpoint.pt, metrics.json (test cross-entropy in "
        "bits per code, against the context-free baseline), loss_curves.png and samples.png.",
        epilog="example: dlstudio-lite train prior --vq-checkpoint runs/vqgan/checkpoint.pt "
               "--out runs/prior")
    p.add_argument("--vq-checkpoint", required=True, help="checkpoint.pt of a trained vqvae or vqgan")
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument("--n-samples", type=int, default=16, help="images in samples.png (0: none)")
    options.add_dataclass(
        p.add_argument_group("data (default: what config.json next to the VQ checkpoint records)"),
        DataConfig, {"dataset": None}, skip=("image_size",))
    options.add_signature(p.add_argument_group("model (TransformerPrior)"), TransformerPrior,
                          run.prior_model, skip=("num_codes", "latent_shape"))
    options.add_dataclass(p.add_argument_group("training"), TrainConfig, run.prior_train,
                          choices=options.TRAIN_CHOICES)
    p.set_defaults(func=_cli_train_prior)

    s = sub.add_parser(
        "sample", help="sample new images: prior -> code grids -> VQ decoder",
        description="Draw code grids from a trained prior and decode them with the VQ model "
        "into an image grid (PNG). For a VQ-VAE-2, --prior-checkpoint is the top PixelCNN and "
        "--bottom-prior-checkpoint the bottom one.",
        epilog="example: dlstudio-lite sample --vq-checkpoint runs/vqgan/checkpoint.pt "
               "--prior-checkpoint runs/prior/checkpoint.pt --out grid.png --top-k 100 --seed 0")
    s.add_argument("--vq-checkpoint", required=True, help="checkpoint.pt of the vqvae / vqgan")
    s.add_argument("--prior-checkpoint", required=True,
                   help="checkpoint.pt of `train prior` (VQ-VAE-2: of `train pixelcnn --level top`)")
    s.add_argument("--bottom-prior-checkpoint", default=None,
                   help="VQ-VAE-2 only: checkpoint.pt of `train pixelcnn --level bottom`")
    s.add_argument("--out", default="samples.png", help="PNG to write (default: samples.png)")
    s.add_argument("--n", type=int, default=16, help="number of images")
    s.add_argument("--nrow", type=int, default=8, help="images per row of the grid")
    s.add_argument("--temperature", type=float, default=1.0, help="> 1 more diverse, < 1 safer")
    s.add_argument("--top-k", type=int, default=None, help="keep the k most likely codes (1: greedy)")
    s.add_argument("--top-p", type=float, default=None, help="nucleus: keep codes up to this mass")
    s.add_argument("--seed", type=int, default=0, help="the same seed gives the same images")
    s.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: best)")
    s.set_defaults(func=_cli_sample)


def _load_vq(path, device) -> nn.Module:
    vq = load_model(path, device)
    if hasattr(vq, "encode_codes"):  # a VQ-VAE-2: the transformer models its top codes
        from ..vqvae2 import LevelCodes
        return LevelCodes(vq, "top")
    return _check_vq(vq, path)


def _check_vq(vq: nn.Module, path) -> nn.Module:
    if not hasattr(vq, "encode_to_indices"):
        raise ValueError(f"{path} holds a {type(vq).__name__}, which has no codebook: "
                         f"expected a vqvae or vqgan checkpoint")
    return vq


def _recorded_data(vq_checkpoint) -> dict:
    """Dataset settings that `dlstudio-lite train` wrote to config.json beside the checkpoint."""
    path = Path(vq_checkpoint).parent / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {k: config[k] for k in ("dataset", "num_images") if config.get(k) is not None}


def _cli_train_prior(args) -> int:
    from torch.utils.data import TensorDataset
    from torchvision.utils import save_image

    from ..plot import image_grid, save_loss_curves
    from ..prior import encode_dataset, sample_images
    from ..quantize import code_counts, code_usage
    from ..train import Trainer

    out = Path(args.out)
    seed_everything(args.seed)
    device = get_device(args.device)
    vq = _load_vq(args.vq_checkpoint, device)
    recorded = _recorded_data(args.vq_checkpoint)
    # The same train/test split as `dlstudio-lite train` made for the VQ model.
    data = options.from_args(DataConfig, args, image_size=int(vq.hparams.get("image_size", 64)),
                             dataset=args.dataset or recorded.get("dataset", "shapes"),
                             num_images=args.num_images or recorded.get("num_images")
                             or preset().data.get("num_images"))
    start = time.perf_counter()
    splits = data.splits()
    train_idx, test_idx = (encode_dataset(vq, d, batch_size=128, device=device) for d in splits)
    encode_s = time.perf_counter() - start
    prior = TransformerPrior(vq.num_codes, tuple(train_idx.shape[1:]), n_layer=args.n_layer,
                             n_head=args.n_head, n_embd=args.n_embd, dropout=args.dropout)
    config = options.from_args(TrainConfig, args, device=str(device))
    trainer = Trainer(prior, TensorDataset(train_idx), TensorDataset(test_idx), config,
                      out_dir=out, model_name="prior")
    history = trainer.fit()
    if not trainer.is_main:  # under torchrun: rank 0 measures and writes
        return 0

    test = {k.split("/", 1)[1]: v[-1][1] for k, v in history.items() if k.startswith("test/") and v}
    metrics = {
        "vq_checkpoint": str(args.vq_checkpoint), "dataset": data.dataset,
        "image_size": data.image_size, "num_codes": vq.num_codes,
        "latent_shape": list(prior.latent_shape),
        "train_sequences": len(train_idx), "test_sequences": len(test_idx),
        "test_bits_per_code": test.get("bits_per_code"), "test_accuracy": test.get("accuracy"),
        # A prior that ignores the context can do no better than the codes' entropy.
        "context_free_bits_per_code": float(code_usage(code_counts(train_idx, vq.num_codes)).bits),
        "codes_used_by_dataset": int(torch.unique(train_idx).numel()),
        "step": trainer.step, "encode_seconds": encode_s,
        "train_sequences_per_second": trainer.images_per_second, "quick_mode": quick_mode(),
        "hparams": prior.hparams, "train": config.to_dict(),
    }
    if data.dataset == "shapes":
        from ..quality import shapes_quality
        real = torch.stack([images_of(splits[1][i]) for i in range(len(splits[1]))])
        samples = sample_images(prior.to(device), vq, len(real), seed=args.seed).cpu()
        metrics.update(shapes_quality(real, samples, "sample"), sample_settings="temperature 1.0, no top-k")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    save_loss_curves(history, out / "loss_curves.png")
    if args.n_samples > 0:
        images = sample_images(prior.to(device), vq, args.n_samples, seed=args.seed)
        save_image(image_grid(images.cpu(), nrow=8), out / "samples.png")
    print(f"prior: test {metrics['test_bits_per_code']:.3f} bits per code (context-free "
          f"{metrics['context_free_bits_per_code']:.3f}); wrote {out}")
    return 0


def _cli_sample(args) -> int:
    from torchvision.utils import save_image

    from ..plot import image_grid
    from ..prior import load_prior, sample_images

    device = get_device(args.device)
    vq = load_model(args.vq_checkpoint, device)
    if hasattr(vq, "encode_codes"):  # a VQ-VAE-2: two PixelCNN priors (commands/pixelcnn.py)
        from .pixelcnn import sample_vqvae2_images
        images = sample_vqvae2_images(args, vq, device)
    else:
        vq = _check_vq(vq, args.vq_checkpoint)
        prior = load_prior(args.prior_checkpoint, device)
        latent = vq.hparams.get("latent_size")
        if latent is not None and prior.latent_shape != (latent, latent):
            raise ValueError(f"the prior models {prior.latent_shape} code grids but the VQ model "
                             f"makes {latent}x{latent} grids: was it trained on this VQ model?")
        images = sample_images(prior, vq, args.n, temperature=args.temperature, top_k=args.top_k,
                               top_p=args.top_p, seed=args.seed)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_image(image_grid(images.cpu(), nrow=args.nrow), out)
    print(f"wrote {args.n} samples to {out}")
    return 0
