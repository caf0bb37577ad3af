"""``dlstudio-lite train pixelcnn``: a PixelCNN prior over one level of a VQ-VAE-2's codes,
and the VQ-VAE-2 branch of ``dlstudio-lite sample``.

``train pixelcnn --level top`` fits an unconditional :class:`~dlstudio_lite.pixelcnn.PixelCNN`
to the top code grids; ``--level bottom`` fits one to the bottom grids, conditioned on the
top grids of the same images. The dataset is encoded the way ``train prior`` does it
(``prior.encode_dataset``, same train/test split as the VQ model's own run).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from ..checkpoint import CheckpointError, load_model
from ..config import TrainConfig, preset, quick_mode
from ..data import DataConfig
from ..device import get_device, seed_everything
from ..pixelcnn import PixelCNN
from . import options


def add_cli(train_sub) -> None:
    """Register ``train pixelcnn`` on ``train_sub``, the ``train`` command's sub-parsers."""
    run = preset()
    p = train_sub.add_parser(
        "pixelcnn", help="gated PixelCNN prior over the top or bottom codes of a VQ-VAE-2 (appendix 9)",
        description="Encode a dataset with a trained VQ-VAE-2 and train a gated PixelCNN on one "
        "level of its codes: --level top (unconditional) or --level bottom (conditioned on the top "
        "codes). Writes, into --out: checkpoint.pt, metrics.json (test cross-entropy in bits per "
        "code, against the context-free baseline), loss_curves.png and samples.png.",
        epilog="example: dlstudio-lite train pixelcnn --vq-checkpoint runs/vqvae2/checkpoint.pt "
               "--level top --out runs/pixelcnn_top")
    p.add_argument("--vq-checkpoint", required=True, help="checkpoint.pt of a trained vqvae2")
    p.add_argument("--level", required=True, choices=("top", "bottom"),
                   help="which code grid to model (bottom: conditioned on the top codes)")
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument("--n-samples", type=int, default=16, help="images in samples.png (0: none)")
    options.add_dataclass(
        p.add_argument_group("data (default: what config.json next to the VQ checkpoint records)"),
        DataConfig, {"dataset": None}, skip=("image_size",))
    options.add_signature(p.add_argument_group("model (PixelCNN)"), PixelCNN, {},
                          skip=("num_codes", "latent_shape", "condition_codes"))
    options.add_dataclass(p.add_argument_group("training"), TrainConfig, run.prior_train,
                          choices=options.TRAIN_CHOICES)
    p.set_defaults(func=_cli_train_pixelcnn)


def load_vqvae2(path, device):
    """The VQ-VAE-2 in a checkpoint; a clear error for any other model."""
    vq = load_model(path, device)
    if not hasattr(vq, "encode_codes"):
        raise ValueError(f"{path} holds a {type(vq).__name__}: expected a vqvae2 checkpoint "
                         f"(`dlstudio-lite train vqvae2`)")
    return vq


def encode_levels(vq, dataset, device, levels=("top", "bottom")) -> dict[str, torch.Tensor]:
    """``{"top": (N, ht, wt), "bottom": (N, hb, wb)}`` codes of every image of ``dataset``
    (only the ``levels`` asked for)."""
    from ..prior import encode_dataset
    from ..vqvae2 import LevelCodes
    return {level: encode_dataset(LevelCodes(vq, level), dataset, batch_size=128, device=device)
            for level in levels}


def training_input(codes: dict[str, torch.Tensor], level: str) -> torch.Tensor:
    """What the PixelCNN of ``level`` trains on: the top codes, or bottom codes paired with
    their top codes (``pixelcnn.pair_with_condition``)."""
    from ..pixelcnn import pair_with_condition
    if level == "top":
        return codes["top"]
    return pair_with_condition(codes["bottom"], codes["top"])


def _cli_train_pixelcnn(args) -> int:
    from torch.utils.data import TensorDataset
    from torchvision.utils import save_image

    from ..evaluate import evaluating
    from ..plot import image_grid, save_loss_curves
    from ..quantize import code_counts, code_usage
    from ..train import Trainer
    from .prior import _recorded_data

    out = Path(args.out)
    seed_everything(args.seed)
    device = get_device(args.device)
    vq = load_vqvae2(args.vq_checkpoint, device)
    recorded = _recorded_data(args.vq_checkpoint)
    data = options.from_args(DataConfig, args, image_size=int(vq.hparams["image_size"]),
                             dataset=args.dataset or recorded.get("dataset", "shapes"),
                             num_images=args.num_images or recorded.get("num_images")
                             or preset().data.get("num_images"))
    start = time.perf_counter()
    level = args.level
    levels = ("top",) if level == "top" else ("top", "bottom")
    train_codes, test_codes = (encode_levels(vq, d, device, levels) for d in data.splits())
    encode_s = time.perf_counter() - start
    prior = PixelCNN(vq.num_codes[level], vq.latent_shapes[level],
                     condition_codes=vq.num_codes["top"] if level == "bottom" else 0,
                     channels=args.channels, n_layers=args.n_layers, kernel_size=args.kernel_size)
    config = options.from_args(TrainConfig, args, device=str(device))
    trainer = Trainer(prior, TensorDataset(training_input(train_codes, level)),
                      TensorDataset(training_input(test_codes, level)), config, out_dir=out,
                      model_name="pixelcnn")
    history = trainer.fit()
    if not trainer.is_main:  # under torchrun: rank 0 measures and writes
        return 0

    test = {k.split("/", 1)[1]: v[-1][1] for k, v in history.items() if k.startswith("test/") and v}
    metrics = {
        "vq_checkpoint": str(args.vq_checkpoint), "level": level, "dataset": data.dataset,
        "image_size": data.image_size, "num_codes": prior.num_codes,
        "latent_shape": list(prior.latent_shape), "condition_codes": prior.condition_codes,
        "parameters": sum(p.numel() for p in prior.parameters()),
        "train_grids": len(train_codes[level]), "test_grids": len(test_codes[level]),
        "test_bits_per_code": test.get("bits_per_code"), "test_accuracy": test.get("accuracy"),
        # A prior that ignores the context can do no better than the codes' entropy.
        "context_free_bits_per_code": float(code_usage(code_counts(train_codes[level],
                                                                   prior.num_codes)).bits),
        "step": trainer.step, "encode_seconds": encode_s,
        "train_grids_per_second": trainer.images_per_second, "quick_mode": quick_mode(),
        "hparams": prior.hparams, "train": config.to_dict(),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    save_loss_curves(history, out / "loss_curves.png")
    if args.n_samples > 0:
        generator = torch.Generator(device=device).manual_seed(args.seed)
        n = args.n_samples
        with evaluating(vq):
            if level == "top":  # sampled top grids, decoded from the top alone
                images = vq.decode_codes(prior.sample(n, generator=generator))
            else:  # bottom grids sampled for the top grids of test images
                top = test_codes["top"][:n].to(device)
                images = vq.decode_codes(top, prior.sample(len(top), condition=top,
                                                           generator=generator))
        save_image(image_grid(images.clamp(-1, 1).cpu(), nrow=8), out / "samples.png")
    print(f"pixelcnn ({level}): test {metrics['test_bits_per_code']:.3f} bits per code "
          f"(context-free {metrics['context_free_bits_per_code']:.3f}); wrote {out}")
    return 0


def sample_vqvae2_images(args, vq, device) -> torch.Tensor:
    """The images of ``dlstudio-lite sample`` for a VQ-VAE-2: ``--prior-checkpoint`` is the top
    PixelCNN, ``--bottom-prior-checkpoint`` the bottom one."""
    from ..pixelcnn import sample_vqvae2
    if not args.bottom_prior_checkpoint:
        raise ValueError("a VQ-VAE-2 needs two priors: --prior-checkpoint (the top PixelCNN) "
                         "and --bottom-prior-checkpoint (the bottom PixelCNN)")
    priors = []
    for path in (args.prior_checkpoint, args.bottom_prior_checkpoint):
        prior = load_model(path, device)
        if not isinstance(prior, PixelCNN):
            raise CheckpointError(f"checkpoint {str(path)!r} holds a {type(prior).__name__}, "
                                  f"expected a PixelCNN (written by `train pixelcnn`)")
        priors.append(prior)
    generator = torch.Generator(device=device).manual_seed(args.seed)
    return sample_vqvae2(vq, *priors, args.n, temperature=args.temperature, generator=generator,
                         top_k=args.top_k, top_p=args.top_p)
