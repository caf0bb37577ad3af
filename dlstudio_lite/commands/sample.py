"""``dlstudio-lite sample``: draw code grids from a trained prior and decode them with the
VQ model into an image grid (a VQ-VAE-2 takes two PixelCNN priors, top and bottom)."""
from __future__ import annotations

from pathlib import Path

import torch

from ..checkpoint import CheckpointError, load_model
from ..device import get_device
from .codes import load_vq


def add_cli(sub) -> None:
    s = sub.add_parser(
        "sample", help="sample new images: prior -> code grids -> VQ decoder",
        description="Draw code grids from a trained prior and decode them with the VQ model "
        "into an image grid (PNG). For a VQ-VAE-2, --prior-checkpoint is the top PixelCNN and "
        "--bottom-prior-checkpoint the bottom one.",
        epilog="example: dlstudio-lite sample --vq-checkpoint runs/vqgan/checkpoint.pt "
               "--prior-checkpoint runs/prior/checkpoint.pt --out grid.png --top-k 100 --seed 0")
    s.add_argument("--vq-checkpoint", required=True, help="checkpoint.pt of the vqvae / vqgan / vqvae2")
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


def _cli_sample(args) -> int:
    from torchvision.utils import save_image

    from ..plot import image_grid
    from ..prior import load_prior, sample_images

    device = get_device(args.device)
    vq = load_vq(args.vq_checkpoint, device)
    if hasattr(vq, "encode_codes"):  # a VQ-VAE-2: two PixelCNN priors
        images = _sample_vqvae2(args, vq, device)
    else:
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


def _sample_vqvae2(args, vq, device) -> torch.Tensor:
    """``--prior-checkpoint`` is the top PixelCNN, ``--bottom-prior-checkpoint`` the bottom one."""
    from ..pixelcnn import PixelCNN, sample_vqvae2
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
