"""VQ-VAE-2 (Razavi et al. 2019): two code grids, a coarse *top* one for the global layout
and a finer *bottom* one for the detail, the bottom conditioned on the top.

Layout for an ``S x S`` image, bottom grid ``s x s`` (``s = latent_size``), top ``s/2 x s/2``::

    x --Encoder--> h_b (c, s, s) --SkipBlockEncoder(down)--> (c, s/2, s/2) --1x1--> quantize top
                                                                   q_t --1x1, SkipBlockDecoder(up)--> t (c, s, s)
    [h_b, t] --1x1--> quantize bottom -> q_b --1x1--> b
    decoder input = t + b  --Decoder--> x_hat

The bottom quantizer sees the encoder's fine features *together with* what the top codes
already say (``t``), so the bottom codes only need to carry what the top grid misses: the
paper's "bottom latent conditioned on the top". Both levels use the course's quantizers
(``make_quantizer``: EMA or gradient codebooks, k-means start and dead-code restart through
``Maintenance``), exactly as :class:`~dlstudio_lite.vqvae.VQVAE` does.

**Decoding from the top codes alone.** The decoder adds the two levels' contributions, so
"top only" means: leave the bottom term out (``b = 0``). A decoder that never saw ``b = 0``
would answer with off-distribution garbage, which says nothing about what the top grid
holds; so during training a fraction ``drop_bottom`` of the images is decoded without ``b``
(a per-image switch, like dropout), and top-only decoding is a mode the decoder has learned.
The alternative, a fixed "neutral" bottom code everywhere, has the same problem (no bottom
code means "no detail") and depends on which code that happens to be.

``likelihood="mixture"`` works as in :class:`~dlstudio_lite.vqvae.VQVAE`: the decoder outputs
a mixture over each pixel's levels and draws its mode (:mod:`dlstudio_lite.likelihood`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .autoencoder import Decoder, Encoder, check_shape
from .blocks import SkipBlockDecoder, SkipBlockEncoder
from .config import records_hparams
from .likelihood import check_likelihood, mixture_mode, mixture_nll, output_channels
from .quantize import DEFAULT_MAINTENANCE, VQOutput, code_counts, make_quantizer

LEVELS = ("top", "bottom")


class VQVAE2(nn.Module):
    """Hierarchical VQ-VAE with a top grid ``(latent_size/2)^2`` and a bottom grid
    ``latent_size^2``; ``(B, C, H, W)`` images in [-1, 1].

    ``encode_codes(x) -> (top (B, s/2, s/2), bottom (B, s, s))`` long;
    ``decode_codes(top, bottom=None)`` (None: top only); ``reconstruct(x, levels="both")``.

    Args:
        in_channels: image channels (3 for RGB, 1 for MNIST)
        image_size, latent_size: sides of the image and of the bottom grid (ratio 2, 4 or 8); the top grid is half the bottom one
        base_channels: width of the first encoder stage (doubled at every halving)
        num_repeats: extra same-width SkipBlocks per encoder stage
        num_codes_top: codebook size of the top level
        num_codes_bottom: codebook size of the bottom level
        code_dim: length D of the codes of both levels
        beta: commitment weight (the VQ-VAE paper's 0.25)
        quantizer: the quantizer family of both levels, a name in quantize.QUANTIZERS
        decay: EMA decay of the "ema" quantizer
        kmeans_init: set each codebook by k-means on the first training batch
        dead_code_steps: restart a code unused for this many training steps (0: never)
        drop_bottom: fraction of training images decoded from the top codes alone
        likelihood: the decoder's p(x|z): "gaussian" (MSE; draws the mean) or "mixture" (draws the likeliest of `components` colours)
        components: candidate colours per pixel of the mixture likelihood
    """

    @records_hparams
    def __init__(self, in_channels: int = 3, image_size: int = 64, latent_size: int = 32,
                 base_channels: int = 16, num_repeats: int = 0, num_codes_top: int = 128,
                 num_codes_bottom: int = 128, code_dim: int = 32, beta: float = 0.25,
                 quantizer: str = "ema", decay: float = 0.99,
                 kmeans_init: bool = DEFAULT_MAINTENANCE.kmeans_init,
                 dead_code_steps: int = DEFAULT_MAINTENANCE.dead_code_steps,
                 drop_bottom: float = 0.1, likelihood: str = "gaussian", components: int = 2):
        super().__init__()
        check_likelihood(likelihood, components)
        self.likelihood, self.components = likelihood, components
        if latent_size % 2 != 0:
            raise ValueError(f"the top grid is half the bottom one: latent_size must be even, "
                             f"got {latent_size}")
        if not 0.0 <= drop_bottom < 1.0:
            raise ValueError(f"drop_bottom must be in [0, 1), got {drop_bottom}")
        self.code_dim, self.drop_bottom = code_dim, drop_bottom
        self.num_codes = {"top": num_codes_top, "bottom": num_codes_bottom}
        self.latent_shapes = {"top": (latent_size // 2,) * 2, "bottom": (latent_size,) * 2}
        self.encoder = Encoder(in_channels, image_size, latent_size, base_channels, num_repeats)
        c = self.encoder.out_channels
        self.encoder_top = SkipBlockEncoder(c, c, downsample=True)
        self.pre_vq_top = nn.Conv2d(c, code_dim, 1)
        self.post_vq_top = nn.Conv2d(code_dim, c, 1)
        self.decoder_top = SkipBlockDecoder(c, c, upsample=True)  # back to the bottom grid
        self.pre_vq_bottom = nn.Conv2d(2 * c, code_dim, 1)         # [fine features, top's say]
        self.post_vq_bottom = nn.Conv2d(code_dim, c, 1)
        options = dict(beta=beta, decay=decay, kmeans_init=kmeans_init,
                       dead_code_steps=dead_code_steps)
        self.quantizer_top = make_quantizer(quantizer, num_codes_top, code_dim, **options)
        self.quantizer_bottom = make_quantizer(quantizer, num_codes_bottom, code_dim, **options)
        self.decoder = Decoder(output_channels(likelihood, in_channels, components), image_size,
                               latent_size, base_channels)

    # --- the two levels ----------------------------------------------------------------------
    def _top_features(self, q_top: torch.Tensor) -> torch.Tensor:
        """Top codes ``(B, D, s/2, s/2)`` -> what they say on the bottom grid ``(B, c, s, s)``."""
        return self.decoder_top(self.post_vq_top(q_top))

    def quantize_levels(self, x: torch.Tensor) -> tuple[VQOutput, VQOutput, torch.Tensor]:
        """``(vq_top, vq_bottom, t)``: both levels' ``VQOutput`` and the top's features ``t``."""
        h = self.encoder(x)
        vq_top = self.quantizer_top(self.pre_vq_top(self.encoder_top(h)))
        t = self._top_features(vq_top.quantized)
        vq_bottom = self.quantizer_bottom(self.pre_vq_bottom(torch.cat([h, t], dim=1)))
        return vq_top, vq_bottom, t

    def _decode_params(self, t: torch.Tensor, q_bottom: torch.Tensor | None,
                       keep: torch.Tensor | None = None) -> torch.Tensor:
        """The decoder's raw output: the image (gaussian) or the mixture's parameters."""
        z = t
        if q_bottom is not None:
            b = self.post_vq_bottom(q_bottom)
            z = z + (b if keep is None else b * keep)
        return self.decoder(z)

    def _image_of(self, params: torch.Tensor) -> torch.Tensor:
        """The image ``(B, C, H, W)`` that the decoder's output ``params`` stands for."""
        return params if self.likelihood == "gaussian" else mixture_mode(params, self.components)

    def _decode(self, t: torch.Tensor, q_bottom: torch.Tensor | None) -> torch.Tensor:
        return self._image_of(self._decode_params(t, q_bottom))

    def _training_pass(self, x: torch.Tensor):
        """``(params, vq_top, vq_bottom)``; in training, ``drop_bottom`` of the images are
        decoded from the top alone."""
        vq_top, vq_bottom, t = self.quantize_levels(x)
        keep = None
        if self.training and self.drop_bottom > 0:
            keep = (torch.rand(x.shape[0], 1, 1, 1, device=x.device) >= self.drop_bottom).to(t.dtype)
        return self._decode_params(t, vq_bottom.quantized, keep), vq_top, vq_bottom

    def forward(self, x: torch.Tensor):
        """``(x_hat, vq_top, vq_bottom)``; in training, ``drop_bottom`` of the images are
        decoded from the top alone."""
        params, vq_top, vq_bottom = self._training_pass(x)
        return self._image_of(params), vq_top, vq_bottom

    def compute_loss(self, x: torch.Tensor):
        """``(loss, logs)``: the pixel term (MSE, or the mixture's NLL per dimension) + both
        levels' VQ losses; logs "recon" (the MSE of the drawn image either way), "vq", "nll"
        (mixture only) and, per level, "perplexity_top", "usage_top", "perplexity_bottom",
        "usage_bottom"."""
        params, vq_top, vq_bottom = self._training_pass(x)
        if self.likelihood == "gaussian":
            pixel = recon = F.mse_loss(params, x)
        else:
            pixel = mixture_nll(params, x, self.components)
            recon = F.mse_loss(self._image_of(params), x)
        vq_loss = vq_top.loss + vq_bottom.loss
        logs = {"recon": recon.detach(), "vq": vq_loss.detach()}
        if self.likelihood == "mixture":
            logs["nll"] = pixel.detach()
        for level, vq in zip(LEVELS, (vq_top, vq_bottom)):
            logs[f"perplexity_{level}"] = vq.perplexity.detach()
            logs[f"usage_{level}"] = vq.usage.detach()
        return pixel + vq_loss, logs

    def reconstruct(self, x: torch.Tensor, levels: str = "both") -> torch.Tensor:
        """``(B, C, H, W) -> (B, C, H, W)`` from both levels, or (``levels="top"``) from the
        top codes alone (the bottom term left out, see the module docstring)."""
        if levels not in ("both", "top"):
            raise ValueError(f"levels must be 'both' or 'top', got {levels!r}")
        vq_top, vq_bottom, t = self.quantize_levels(x)
        return self._decode(t, vq_bottom.quantized if levels == "both" else None)

    # --- code grids ----------------------------------------------------------------------------
    @torch.no_grad()
    def encode_codes(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, C, H, W) -> (top (B, s/2, s/2), bottom (B, s, s))`` long (no codebook update)."""
        h = self.encoder(x)
        top = self.quantizer_top.encode_indices(self.pre_vq_top(self.encoder_top(h)))
        t = self._top_features(self.quantizer_top.lookup(top))
        bottom = self.quantizer_bottom.encode_indices(self.pre_vq_bottom(torch.cat([h, t], 1)))
        return top, bottom

    def decode_codes(self, top: torch.Tensor, bottom: torch.Tensor | None = None) -> torch.Tensor:
        """Code grids -> images ``(B, C, H, W)``; ``bottom=None`` decodes the top alone."""
        check_shape(top, self.latent_shapes["top"], "VQVAE2.decode_codes (top codes)")
        t = self._top_features(self.quantizer_top.lookup(top.long()))
        if bottom is None:
            return self._decode(t, None)
        check_shape(bottom, self.latent_shapes["bottom"], "VQVAE2.decode_codes (bottom codes)")
        if bottom.shape[0] != top.shape[0]:
            raise ValueError(f"top and bottom codes must hold the same number of grids, got "
                             f"{top.shape[0]} and {bottom.shape[0]}")
        return self._decode(t, self.quantizer_bottom.lookup(bottom.long()))

    @torch.no_grad()
    def code_counts(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """How often each code of each level occurs in ``x``: ``{"top": (K_top,), "bottom": (K_bottom,)}``
        (what ``evaluate.Reconstruction`` turns into per-level perplexity and usage)."""
        codes = dict(zip(LEVELS, self.encode_codes(x)))
        return {level: code_counts(codes[level], self.num_codes[level]) for level in LEVELS}


class LevelCodes(nn.Module):
    """One level of a :class:`VQVAE2` seen as a single-grid VQ model: ``encode_to_indices(x)``
    gives that level's codes, so ``prior.encode_dataset`` can encode a dataset for it and
    ``train prior`` can fit a transformer to the top codes; ``decode_indices`` (top level
    only) decodes top codes alone."""

    def __init__(self, model: VQVAE2, level: str):
        super().__init__()
        if level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
        self.model, self.level = model, level
        self.num_codes = model.num_codes[level]
        self.hparams = model.hparams

    @torch.no_grad()
    def encode_to_indices(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode_codes(x)[LEVELS.index(self.level)]

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        if self.level != "top":
            raise ValueError("bottom codes decode only together with their top codes: use "
                             "VQVAE2.decode_codes(top, bottom)")
        return self.model.decode_codes(indices)
