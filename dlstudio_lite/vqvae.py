"""VQ-VAE (lecture sections 7 and 8): encoder -> 1x1 pre-VQ conv -> vector quantizer ->
1x1 post-VQ conv -> decoder.

Loss (Eq. 22) = reconstruction + codebook term + beta * commitment term. The reconstruction
term here is the *mean* squared error per pixel, where the lecture uses the summed MSE.
With the sum, the reconstruction term is ``B*C*H*W`` times larger while the VQ terms (means
over latent elements) are not, so the codebook and commitment terms barely count and the
effective learning rate of encoder and decoder grows with image and batch size. The mean
keeps all three terms on the scale the VQ-VAE paper's beta = 0.25 was chosen for, and makes
"recon" comparable across models and image sizes.

``likelihood="mixture"`` replaces the squared error (a Gaussian likelihood, whose best image
is the mean) by a mixture over each pixel's levels, whose drawn image is the mode
(:mod:`dlstudio_lite.likelihood`): the decoder then outputs the mixture's parameters, and
``decode`` returns the image they stand for.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .autoencoder import Decoder, Encoder, check_shape
from .config import records_hparams
from .likelihood import check_likelihood, mixture_mode, mixture_nll, output_channels
from .quantize import DEFAULT_MAINTENANCE, VQOutput, make_quantizer


class VQVAE(nn.Module):
    """VQ-VAE; defaults are the lecture's example (64x64 images, 16x16x256 encoder output,
    512 codes of dimension 256, beta 0.25, EMA codebook with decay 0.99).

    ``encode``: ``(B, C, H, W) -> z_e (B, code_dim, s, s)``; ``quantize``: ``z_e -> VQOutput``;
    ``decode``: ``(B, code_dim, s, s) -> (B, C, H, W)``. ``quantizer`` names the quantizer
    family in ``quantize.QUANTIZERS`` (``"ema"``, ``"gradient"``, ``"cosine"``, ``"fsq"``,
    ``"lfq"``, ``"residual"``); ``beta``, ``decay`` (EMA only), ``kmeans_init``,
    ``dead_code_steps`` and ``quantizer_options`` (any other argument of the chosen class)
    are passed to it where the family takes them.

    Args:
        in_channels: image channels (3 for RGB, 1 for MNIST)
        image_size, latent_size: sides of the image and of the latent grid (ratio 2, 4 or 8)
        base_channels: width of the first encoder stage (doubled at every halving)
        num_repeats: extra same-width SkipBlocks per encoder stage
        decoder_repeats: extra same-width SkipBlocks after each decoder upsampling
        decoder_attention: a self-attention block in the decoder at the latent resolution, as in taming's VQGAN
        num_codes: codebook size K (for every family: the number of distinct codes per latent pixel)
        code_dim: length D of each code
        beta: commitment weight (the VQ-VAE paper's and the lecture's 0.25)
        quantizer: the quantizer family, a name in quantize.QUANTIZERS
        decay: EMA decay of the "ema" quantizer (the lecture's 0.99)
        kmeans_init: set the codebook by k-means on the first training batch
        dead_code_steps: restart a code unused for this many training steps (0: never)
        skip_connections: keep the SkipBlocks' identity paths
        quantizer_options: the family's own options, e.g. levels=[8,5,5,5] (fsq), depth=2 (residual), rotation_trick=True, lookup_dim=8
        likelihood: the decoder's p(x|z): "gaussian" (MSE; draws the mean) or "mixture" (draws the likeliest of `components` colours)
        components: candidate colours per pixel of the mixture likelihood
    """

    @records_hparams
    def __init__(self, in_channels: int = 3, image_size: int = 64, latent_size: int = 16,
                 base_channels: int = 64, num_repeats: int = 0, num_codes: int = 512,
                 code_dim: int = 256, beta: float = 0.25, quantizer: str = "ema",
                 decay: float = 0.99, kmeans_init: bool = DEFAULT_MAINTENANCE.kmeans_init,
                 dead_code_steps: int = DEFAULT_MAINTENANCE.dead_code_steps,
                 skip_connections: bool = True, quantizer_options: dict | None = None,
                 likelihood: str = "gaussian", components: int = 2, decoder_repeats: int = 0,
                 decoder_attention: bool = False):
        super().__init__()
        check_likelihood(likelihood, components)
        self.likelihood, self.components = likelihood, components
        self.num_codes, self.code_dim, self.latent_size = num_codes, code_dim, latent_size
        self.encoder = Encoder(in_channels, image_size, latent_size, base_channels, num_repeats,
                               skip_connections)
        width = self.encoder.out_channels
        self.pre_vq_conv = nn.Conv2d(width, code_dim, 1)
        self.quantizer = make_quantizer(quantizer, num_codes, code_dim, beta=beta, decay=decay,
                                        kmeans_init=kmeans_init, dead_code_steps=dead_code_steps,
                                        **(quantizer_options or {}))
        self.post_vq_conv = nn.Conv2d(code_dim, width, 1)
        self.decoder = Decoder(output_channels(likelihood, in_channels, components), image_size,
                               latent_size, base_channels, skip_connections, decoder_repeats,
                               decoder_attention)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.pre_vq_conv(self.encoder(x))

    def quantize(self, z_e: torch.Tensor) -> VQOutput:
        return self.quantizer(z_e)

    def decode_params(self, z_q: torch.Tensor) -> torch.Tensor:
        """``(B, code_dim, s, s)`` -> the decoder's raw output: the image (gaussian) or the
        mixture's parameters ``(B, 4K + 1, H, W)``."""
        check_shape(z_q, (self.code_dim, self.latent_size, self.latent_size), "VQVAE.decode")
        return self.decoder(self.post_vq_conv(z_q))

    def image_of(self, params: torch.Tensor) -> torch.Tensor:
        """The image ``(B, C, H, W)`` that the decoder's output ``params`` stands for."""
        return params if self.likelihood == "gaussian" else mixture_mode(params, self.components)

    def decode(self, z_q: torch.Tensor) -> torch.Tensor:
        """``(B, code_dim, s, s) -> (B, C, H, W)`` images."""
        return self.image_of(self.decode_params(z_q))

    def forward(self, x: torch.Tensor):
        """Returns ``(x_hat, VQOutput)``."""
        vq = self.quantize(self.encode(x))
        return self.decode(vq.quantized), vq

    def reconstruction_terms(self, x: torch.Tensor):
        """``(x_hat, pixel term, VQOutput)``: the pixel term is the MSE (gaussian) or the
        mixture's negative log-likelihood per dimension (mixture)."""
        vq = self.quantize(self.encode(x))
        params = self.decode_params(vq.quantized)
        x_hat = self.image_of(params)
        pixel = F.mse_loss(x_hat, x) if self.likelihood == "gaussian" else mixture_nll(params, x, self.components)
        return x_hat, pixel, vq

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self(x)[0]

    def compute_loss(self, x: torch.Tensor):
        """``(loss, logs)``; logs: "recon" (MSE per pixel of the drawn image, whatever the
        likelihood), "vq", "perplexity", "usage" (and "nll" for a mixture)."""
        x_hat, pixel, vq = self.reconstruction_terms(x)
        logs = vq_logs(pixel if self.likelihood == "gaussian" else F.mse_loss(x_hat, x), vq)
        if self.likelihood == "mixture":
            logs["nll"] = pixel.detach()
        return pixel + vq.loss, logs

    @torch.no_grad()
    def encode_to_indices(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W) -> (B, s, s)`` long code indices (no codebook update)."""
        return self.quantizer.encode_indices(self.encode(x))

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """``(B, s, s)`` long -> ``(B, C, H, W)`` images."""
        return self.decode(self.quantizer.lookup(indices))

    @staticmethod
    def upgrade_hparams(hparams: dict) -> dict:
        """Constructor arguments of a checkpoint written before the quantizer registry
        (``ema=True/False``) in today's form (``quantizer="ema"/"gradient"``)."""
        if "ema" not in hparams:
            return hparams
        hparams = dict(hparams)
        hparams["quantizer"] = "ema" if hparams.pop("ema") else "gradient"
        return hparams

    @property
    def last_layer_weight(self) -> torch.Tensor:
        """Weight of the decoder's final conv (VQGAN's adaptive lambda differentiates here)."""
        return self.decoder.conv_out.weight


def vq_logs(recon: torch.Tensor, vq: VQOutput) -> dict[str, torch.Tensor]:
    """The logs every VQ model reports (detached scalars)."""
    return {"recon": recon.detach(), "vq": vq.loss.detach(),
            "perplexity": vq.perplexity.detach(), "usage": vq.usage.detach()}

