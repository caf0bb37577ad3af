"""Variational autoencoder (lecture sections 2, 3 and 5).

The encoder predicts, for every image, a diagonal Gaussian ``q(z|x) = N(mu, diag(exp(logvar)))``;
a sample ``z = mu + sigma * eps`` (the reparameterization trick) goes through the decoder.
The loss is the negative ELBO: reconstruction + ``beta`` x KL(q(z|x) || N(0, I)).

Spatial latent: unlike DLStudio, whose VAE flattens the feature map into Linear layers, the
mean and log-variance heads here are 1x1 convolutions on the encoder's feature map, so ``z``
is a ``(B, latent_channels, s, s)`` map. That keeps the model small (a Linear layer over a
16x16x256 map would hold 65536 x D weights) and lets the same decoder serve VAE and VQ-VAE.
Sampling draws every latent pixel independently from N(0, I).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .autoencoder import Decoder, Encoder, check_shape
from .config import records_hparams
from .metrics import bits_per_dim as _bits_per_dim

REDUCTIONS = ("sum", "mean")


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``z = mu + exp(logvar / 2) * eps`` with ``eps ~ N(0, I)``; differentiable in mu and logvar."""
    std = torch.exp(0.5 * logvar)
    return mu + std * torch.randn_like(std)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag(exp(logvar))) || N(0, I)) per sample, in nats: shape ``(B,)``.

    Closed form (the lecture's code line; its Eq. 14 prints the reverse KL(p || q)),
    summed over latent dimensions:
    ``0.5 * sum(mu^2 + exp(logvar) - 1 - logvar)``.
    """
    if mu.shape != logvar.shape:
        raise ValueError(f"mu and logvar must have the same shape, got {tuple(mu.shape)} "
                         f"and {tuple(logvar.shape)}")
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).flatten(1).sum(1)


class VAE(nn.Module):
    """VAE with a spatial Gaussian latent ``(B, latent_channels, s, s)``.

    Loss (``compute_loss``) = ``recon + beta * KL`` with ``reduction``:

    * ``"sum"`` (lecture): squared error summed over the pixels of an image and KL summed over
      its latent dimensions, both averaged over the batch. With ``beta = 1`` this is exactly the
      negative ELBO of a Gaussian decoder with variance 1/2 (up to a constant).
    * ``"mean"``: squared error averaged over the ``C*H*W`` pixels and KL averaged over the
      ``latent_channels*s*s`` latent dimensions. Compared with ``"sum"`` the KL term is then
      weighted ``C*H*W / (latent_channels*s*s)`` times more, so the same ``beta`` pushes much
      harder towards the prior (blurrier images, better samples) -- the two are not rescalings
      of each other, which is why ``beta`` must be tuned together with ``reduction``.

    The lecture's example uses ``beta = 0.1`` with summed MSE (the default here). The lecture
    sums over the batch as well; averaging over images keeps the loss independent of batch size.

    ``elbo`` / ``bits_per_dim`` report the true ELBO (beta = 1) under a Gaussian decoder
    ``p(x|z) = N(x_hat, decoder_std^2 I)`` with a *fixed* ``decoder_std`` (default 0.1 on the
    [-1, 1] scale, about 13 of 256 intensity levels). The number depends on that assumption;
    compare bits/dim only between runs with the same ``decoder_std``.

    Args:
        in_channels: image channels (3 for RGB, 1 for MNIST)
        image_size, latent_size: sides of the image and of the latent grid (ratio 2, 4 or 8)
        base_channels: width of the first encoder stage (doubled at every halving)
        num_repeats: extra same-width SkipBlocks per encoder stage
        latent_channels: channels of the Gaussian latent map
        beta: weight of the KL term (the lecture's 0.1)
        reduction: "sum" (the lecture's) or "mean" over pixels and latent dimensions
        decoder_std: the fixed decoder standard deviation that elbo and bits_per_dim assume
        skip_connections: keep the SkipBlocks' identity paths
    """

    @records_hparams
    def __init__(self, in_channels: int = 3, image_size: int = 64, latent_size: int = 16,
                 base_channels: int = 64, num_repeats: int = 0, latent_channels: int = 16,
                 beta: float = 0.1, reduction: str = "sum", decoder_std: float = 0.1,
                 skip_connections: bool = True):
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        if decoder_std <= 0:
            raise ValueError(f"decoder_std must be > 0, got {decoder_std}")
        self.beta, self.reduction, self.decoder_std = beta, reduction, decoder_std
        self.latent_channels, self.latent_size = latent_channels, latent_size
        self.encoder = Encoder(in_channels, image_size, latent_size, base_channels, num_repeats,
                               skip_connections)
        width = self.encoder.out_channels
        self.mu_head = nn.Conv2d(width, latent_channels, 1)
        self.logvar_head = nn.Conv2d(width, latent_channels, 1)
        self.from_latent = nn.Conv2d(latent_channels, width, 1)
        self.decoder = Decoder(in_channels, image_size, latent_size, base_channels,
                               skip_connections)

    @property
    def latent_shape(self) -> tuple:
        return (self.latent_channels, self.latent_size, self.latent_size)

    def encode(self, x: torch.Tensor):
        """``(B, C, H, W) -> (mu, logvar)``, each ``(B, latent_channels, s, s)``."""
        h = self.encoder(x)
        # Clamping keeps exp(logvar) finite early in training; inside [-30, 20] it is a no-op.
        return self.mu_head(h), self.logvar_head(h).clamp(-30.0, 20.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, latent_channels, s, s) -> (B, C, H, W)``."""
        check_shape(z, self.latent_shape, "VAE.decode")
        return self.decoder(self.from_latent(z))

    def forward(self, x: torch.Tensor):
        """Returns ``(x_hat, mu, logvar)`` with ``x_hat`` decoded from a sampled ``z``."""
        mu, logvar = self.encode(x)
        return self.decode(reparameterize(mu, logvar)), mu, logvar

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Decode the posterior mean (no sampling noise)."""
        return self.decode(self.encode(x)[0])

    def compute_loss(self, x: torch.Tensor):
        """``(loss, logs)``; logs: "recon" (MSE per pixel), "kl" (nats per image)."""
        x_hat, mu, logvar = self(x)
        sq_err = (x_hat - x).pow(2).flatten(1)
        kl = kl_divergence(mu, logvar)
        if self.reduction == "sum":
            recon_term, kl_term = sq_err.sum(1).mean(), kl.mean()
        else:
            recon_term, kl_term = sq_err.mean(), kl.mean() / mu[0].numel()
        loss = recon_term + self.beta * kl_term
        return loss, {"recon": sq_err.mean().detach(), "kl": kl.mean().detach()}

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decode ``n`` latents drawn from the prior N(0, I): ``(n, C, H, W)``."""
        device = next(self.parameters()).device
        z = torch.randn((n, *self.latent_shape), generator=generator,
                        device=generator.device if generator is not None else device)
        return self.decode(z.to(device))

    def elbo(self, x: torch.Tensor) -> torch.Tensor:
        """Single-sample ELBO per image in nats, ``(B,)``, with beta = 1 and the fixed
        Gaussian decoder ``N(x_hat, decoder_std^2 I)``: ``E_q[log p(x|z)] - KL``."""
        x_hat, mu, logvar = self(x)
        var = self.decoder_std ** 2
        d = x[0].numel()
        log_px = (-0.5 * (x - x_hat).pow(2).flatten(1).sum(1) / var
                  - 0.5 * d * math.log(2 * math.pi * var))
        return log_px - kl_divergence(mu, logvar)

    def bits_per_dim(self, x: torch.Tensor) -> torch.Tensor:
        """Upper bound on the NLL in bits per 8-bit sub-pixel, ``(B,)`` (see class docstring)."""
        return _bits_per_dim(-self.elbo(x), x[0].numel())
