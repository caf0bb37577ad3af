"""VQGAN: a VQ-VAE trained against a patch discriminator (lecture section 10, Eqs. 23-26).

The VQ-VAE (encoder, codebook, decoder) is the *generator*. A PatchGAN discriminator
scores every patch of an image as real or reconstructed, and the generator is trained to
fool it on top of the VQ-VAE loss, which makes reconstructions sharper than MSE alone:

    L_G = L_rec (+ perceptual) + L_VQ + lambda * L_GAN          (Eq. 25)
    lambda = w_disc * ||grad_GL L_rec|| / (||grad_GL L_GAN|| + delta)   (Eq. 26)

where ``G_L`` is the weight of the decoder's last layer: lambda rescales the GAN term so
that its gradient at the output has the size of the reconstruction gradient. Both the
discriminator and the GAN term stay off for the first ``disc_start`` steps, so that the
autoencoder first learns to reconstruct and the discriminator then refines details.

Two bugs of the lecture's implementation (docs/ERRATA.md, B5) are avoided: the
discriminator's fake branch detaches the *generator's output* (the lecture detached the
discriminator's output, so it never learned from fakes), and lambda and the delayed start
of Eq. 26 are implemented.
"""
from __future__ import annotations

import contextlib
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .blocks import group_norm
from .config import records_hparams
from .optim import make_optimizer, trainable
from .vqvae import VQVAE, vq_logs

GAN_LOSSES = ("hinge", "non_saturating")


# --- discriminator ----------------------------------------------------------------------------

def default_disc_layers(image_size: int) -> int:
    """Stride-2 layers for an image size: 1 for 16 px, 2 for 32 px, 3 for 64 px.

    With ``n = log2(image_size) - 3`` halvings, the two stride-1 layers that follow leave a
    6 x 6 grid of patch logits whatever the image size, each seeing a sizeable patch.
    """
    if image_size < 8:
        raise ValueError(f"the patch discriminator needs images of at least 8 pixels, got {image_size}")
    return max(1, int(math.log2(image_size)) - 3)


class PatchDiscriminator(nn.Module):
    """PatchGAN: ``(B, C, H, W) -> (B, 1, h, w)`` real/fake logits, one per image patch.

    Layout (pix2pix / taming-transformers): a 4x4 stride-2 conv with LeakyReLU(0.2),
    ``num_layers - 1`` more 4x4 stride-2 convs that double the channels (capped at 8x
    ``base_channels``) with a norm and LeakyReLU, one 4x4 stride-1 conv of the same kind,
    and a final 4x4 stride-1 conv to one logit. ``h = H / 2**num_layers - 2``.

    GroupNorm instead of the reference BatchNorm: real and fake batches go through the
    discriminator separately, and GroupNorm behaves the same for any batch composition
    and size, in training and in evaluation.
    """

    def __init__(self, in_channels: int = 3, base_channels: int = 64,
                 num_layers: int | None = None, image_size: int = 64):
        super().__init__()
        if num_layers is None:
            num_layers = default_disc_layers(image_size)
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        if image_size // 2 ** num_layers - 2 < 1:
            raise ValueError(f"{num_layers} stride-2 layers leave no patch of a {image_size}-pixel "
                             f"image: use at most {default_disc_layers(image_size)} layers "
                             f"(or num_layers=None to choose from the image size)")
        self.num_layers = num_layers
        layers: list[nn.Module] = [nn.Conv2d(in_channels, base_channels, 4, 2, 1),
                                   nn.LeakyReLU(0.2, inplace=True)]
        ch = base_channels
        for i in range(1, num_layers + 1):
            out = base_channels * min(2 ** i, 8)
            stride = 2 if i < num_layers else 1  # the last of these keeps the resolution
            layers += [nn.Conv2d(ch, out, 4, stride, 1, bias=False),  # the norm adds the bias
                       group_norm(out), nn.LeakyReLU(0.2, inplace=True)]
            ch = out
        layers.append(nn.Conv2d(ch, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        # DCGAN / pix2pix initialisation: N(0, 0.02) convs, norm scales near 1.
        if isinstance(module, nn.Conv2d):
            nn.init.normal_(module.weight, 0.0, 0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.GroupNorm):
            nn.init.normal_(module.weight, 1.0, 0.02)
            nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"expected images of shape (B, C, H, W), got {tuple(x.shape)}")
        return self.net(x)


# --- adversarial losses -------------------------------------------------------------------------

def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """0.5 * (mean relu(1 - D(x)) + mean relu(1 + D(x_hat)))."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def non_saturating_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """0.5 * (BCE(D(x), 1) + BCE(D(x_hat), 0)) on logits: the lecture's Eq. 24, maximised by D.

    BCE-with-logits rather than sigmoid + BCE: it is the same function, computed stably.
    """
    return 0.5 * (F.binary_cross_entropy_with_logits(logits_real, torch.ones_like(logits_real))
                  + F.binary_cross_entropy_with_logits(logits_fake, torch.zeros_like(logits_fake)))


def discriminator_gan_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor,
                           kind: str = "hinge") -> torch.Tensor:
    """The discriminator's loss for ``kind`` in ``GAN_LOSSES``."""
    if kind == "hinge":
        return hinge_d_loss(logits_real, logits_fake)
    if kind == "non_saturating":
        return non_saturating_d_loss(logits_real, logits_fake)
    raise ValueError(f"unknown GAN loss {kind!r}: expected one of {', '.join(GAN_LOSSES)}")


def generator_gan_loss(logits_fake: torch.Tensor, kind: str = "hinge") -> torch.Tensor:
    """The generator's GAN loss: -mean D(x_hat) (hinge) or BCE(D(x_hat), 1) (non-saturating).

    "Non-saturating" means the generator maximises log D(x_hat) instead of minimising
    log(1 - D(x_hat)), whose gradient vanishes while the discriminator wins easily.
    """
    if kind == "hinge":
        return -logits_fake.mean()
    if kind == "non_saturating":
        return F.binary_cross_entropy_with_logits(logits_fake, torch.ones_like(logits_fake))
    raise ValueError(f"unknown GAN loss {kind!r}: expected one of {', '.join(GAN_LOSSES)}")


# delta of Eq. 26: it only keeps the division finite when the GAN gradient vanishes. 1e-6 is
# the lecture's value; taming-transformers (calculate_adaptive_weight) adds 1e-4. The choice
# barely matters: while ||grad L_GAN|| is much larger than delta, lambda changes by a factor
# of about 1 - delta / ||grad L_GAN||, and when the gradient does vanish, lambda is clamped
# to [0, 1e4] either way.
ADAPTIVE_LAMBDA_DELTA = 1e-6


def adaptive_lambda(rec_loss: torch.Tensor, gan_loss: torch.Tensor,
                    last_layer_weight: torch.Tensor, delta: float = ADAPTIVE_LAMBDA_DELTA,
                    max_value: float = 1e4) -> torch.Tensor:
    """Eq. 26: ||grad_w rec_loss|| / (||grad_w gan_loss|| + delta), clamped to [0, max_value].

    ``w`` is the decoder's last-layer weight. The result is detached: lambda is a weight,
    not something to optimise. ``retain_graph=True`` keeps the graph for the real backward.
    """
    g_rec = torch.autograd.grad(rec_loss, last_layer_weight, retain_graph=True)[0]
    g_gan = torch.autograd.grad(gan_loss, last_layer_weight, retain_graph=True)[0]
    lam = g_rec.norm() / (g_gan.norm() + delta)
    return lam.clamp(0.0, max_value).detach()


# --- optional perceptual loss -------------------------------------------------------------------

class PerceptualLoss(nn.Module):
    """LPIPS-style distance between VGG16 features of two image batches in [-1, 1] -> scalar.

    For each of VGG16's relu1_2 ... relu5_3 feature maps, channel vectors are normalised to
    unit length and their squared differences averaged over positions; the five layers are
    summed. (LPIPS proper also learns a per-channel weighting; equal weights are its
    "baseline" variant and need no extra download.)

    Needs ImageNet VGG16 weights: torchvision downloads them once into its cache, or pass
    ``weights_path`` to a saved torchvision ``vgg16`` state dict (only ``features.*`` is read). Without either, a ``RuntimeError``
    says so: the course never needs them (``perceptual_weight=0`` is the default).
    """

    LAYERS = (3, 8, 15, 22, 29)  # indices of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3

    def __init__(self, weights_path: str | None = None):
        super().__init__()
        from torchvision.models import VGG16_Weights, vgg16
        try:
            if weights_path is not None:
                # A torchvision vgg16 state dict; only the "features." part is used. Built on
                # the meta device, so no time goes into a random init that is overwritten.
                state = torch.load(weights_path, map_location="cpu", weights_only=True)
                with torch.device("meta"):
                    features = vgg16().features
                features.load_state_dict({k[len("features."):]: v for k, v in state.items()
                                          if k.startswith("features.")}, assign=True)
            else:
                features = vgg16(weights=VGG16_Weights.IMAGENET1K_V1).features
        except Exception as err:
            raise RuntimeError(
                "the perceptual loss needs pretrained VGG16 weights, which could not be loaded "
                f"({type(err).__name__}: {err}). Download them once on a machine with internet "
                f"({VGG16_Weights.IMAGENET1K_V1.url}) into torch's cache "
                f"({torch.hub.get_dir()}/checkpoints) or pass weights_path=..., or train without "
                "it (perceptual_weight=0).") from err
        features = features[: self.LAYERS[-1] + 1].eval()
        for p in features.parameters():
            p.requires_grad_(False)
        # Kept out of the module tree on purpose: the frozen VGG weights are not part of the
        # model, so they stay out of state_dict(), checkpoints and the optimisers.
        object.__setattr__(self, "_vgg", features)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.size(1) == 1:
            x = x.expand(-1, 3, -1, -1)  # grey images: VGG expects three channels
        h = ((x + 1) / 2 - self.mean) / self.std  # [-1, 1] -> ImageNet normalisation
        feats = []
        for i, layer in enumerate(self._vgg):
            h = layer(h)
            if i in self.LAYERS:
                feats.append(h / (h.norm(dim=1, keepdim=True) + 1e-10))
        return feats

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self._vgg[0].weight.device != x.device:
            self._vgg.to(x.device)
        return sum((a - b).pow(2).sum(1).mean() for a, b in zip(self._features(x), self._features(y)))


# --- the model ----------------------------------------------------------------------------------

@contextlib.contextmanager
def frozen(module: nn.Module):
    """Run a forward pass without recording gradients for ``module``'s parameters.

    Gradients still flow *through* the module to its input. Used for the discriminator
    in the generator step, so that step leaves no stray gradients on the discriminator.
    """
    flags = [p.requires_grad for p in module.parameters()]
    for p in module.parameters():
        p.requires_grad_(False)
    try:
        yield module
    finally:
        for p, flag in zip(module.parameters(), flags):
            p.requires_grad_(flag)


class VQGAN(VQVAE):
    """A ``VQVAE`` (the generator) trained against a ``PatchDiscriminator``; see the module
    docstring. It *is* a VQ-VAE, so every VQ-model method (``encode``, ``decode_indices``,
    ...) works unchanged, and it owns its two-optimizer training step.

    Keyword arguments not listed here go to ``VQVAE`` (``image_size``, ``code_dim``, ...).
    The VQGAN's own defaults: 256 codes on an 8x8 latent (the lecture's setting), and:

    disc_channels, disc_layers: width and stride-2 depth of the discriminator
        (``None``: the generator's ``base_channels``, and a depth chosen from the image size).
    disc_start: step at which the discriminator and the GAN term switch on.
    disc_weight: factor on the adaptive lambda (0.8 in the reference config).
    disc_lr_scale: the discriminator's learning rate as a multiple of the generator's.
        The reference uses 1; below 1 the discriminator learns more slowly, so on small,
        easily told-apart data it does not simply win outright (its gradients would then
        stop being informative).
    gan_loss: "hinge" (reference) or "non_saturating" (the lecture's BCE, Eq. 24).
    recon_loss: "l1" (the reference recipe's pixel term) or "mse" (the lecture's), for the
        Gaussian likelihood; with ``likelihood="mixture"`` the pixel term is the mixture's
        negative log-likelihood. The logged "recon" is the MSE either way, so runs compare.
    perceptual_weight: weight of the optional VGG perceptual loss (0 = off; needs weights,
        from torchvision's cache or ``perceptual_weights_path``).
    delta: the small constant in lambda's denominator (see ``ADAPTIVE_LAMBDA_DELTA``).
    """

    @records_hparams
    def __init__(self, latent_size: int = 8, num_codes: int = 256,
                 disc_channels: int | None = None, disc_layers: int | None = None,
                 disc_start: int = 1000, disc_weight: float = 0.8, disc_lr_scale: float = 1.0,
                 gan_loss: str = "hinge",
                 recon_loss: str = "mse", perceptual_weight: float = 0.0, perceptual_weights_path: str | None = None,
                 delta: float = ADAPTIVE_LAMBDA_DELTA, **vqvae_kwargs):
        if gan_loss not in GAN_LOSSES:
            raise ValueError(f"unknown gan_loss {gan_loss!r}: expected one of {', '.join(GAN_LOSSES)}")
        if recon_loss not in ("l1", "mse"):
            raise ValueError(f"unknown recon_loss {recon_loss!r}: expected 'l1' or 'mse'")
        if disc_lr_scale <= 0:
            raise ValueError(f"disc_lr_scale must be > 0, got {disc_lr_scale}")
        if disc_start < 0 or disc_weight < 0 or perceptual_weight < 0 or delta <= 0:
            raise ValueError(f"expected disc_start >= 0, disc_weight >= 0, perceptual_weight >= 0 "
                             f"and delta > 0, got {disc_start}, {disc_weight}, {perceptual_weight}, {delta}")
        if recon_loss == "l1" and vqvae_kwargs.get("likelihood", "gaussian") == "mixture":
            raise ValueError("recon_loss='l1' replaces the Gaussian's pixel term; a mixture likelihood "
                             "is its own pixel term: use recon_loss='mse' (the default) with it")
        super().__init__(latent_size=latent_size, num_codes=num_codes, **vqvae_kwargs)
        g = self.hparams  # the generator's complete arguments
        if disc_channels is None:
            # As wide as the encoder's first stage: the reference's 64 channels were sized
            # for a far larger generator and would dominate the cost of a small model.
            disc_channels = g["base_channels"]
        self.discriminator = PatchDiscriminator(g["in_channels"], disc_channels, disc_layers,
                                                g["image_size"])
        self.disc_start, self.disc_weight, self.gan_loss = int(disc_start), float(disc_weight), gan_loss
        self.recon_loss, self.disc_lr_scale = recon_loss, float(disc_lr_scale)
        self.perceptual_weight, self.delta = float(perceptual_weight), float(delta)
        self.perceptual = PerceptualLoss(perceptual_weights_path) if perceptual_weight > 0 else None
        # Checkpoints written when the generator was a VQVAE attribute name its weights
        # "generator.encoder...": read them as "encoder...".
        self._register_load_state_dict_pre_hook(_drop_generator_prefix)

    # --- the two networks and their optimizers --------------------------------------------
    def generator_parameters(self):
        return (p for name, p in self.named_parameters() if not name.startswith("discriminator."))

    def discriminator_parameters(self):
        return self.discriminator.parameters()

    def configure_optimizers(self, config) -> list[torch.optim.Optimizer]:
        """Generator and discriminator optimizers, by default with the usual GAN betas
        (0.5, 0.9): a short momentum memory suits the moving target of adversarial training.
        The discriminator's learning rate is ``disc_lr_scale`` times the generator's."""
        kwargs = dict(weight_decay=config.weight_decay,
                      betas=config.betas or (0.5, 0.9), momentum=config.momentum)
        name = config.optimizer or "adam"
        return [make_optimizer(name, trainable(self.generator_parameters()), lr=config.lr, **kwargs),
                make_optimizer(name, trainable(self.discriminator_parameters()),
                               lr=config.lr * self.disc_lr_scale, **kwargs)]

    def training_step(self, x: torch.Tensor, step: int, runner) -> dict[str, torch.Tensor]:
        """Generator (encoder, codebook, decoder) first, then the discriminator on the
        detached reconstructions of the same batch. ``runner`` is the trainer's
        :class:`~dlstudio_lite.train.StepRunner`."""
        g_loss, g_logs, x_hat = runner.forward("generator_loss", x, step)
        runner.update(g_loss, 0)
        d_loss, d_logs = runner.forward("discriminator_loss", x, x_hat, step)
        runner.update(d_loss, 1)
        return {**g_logs, **d_logs, "loss": g_loss.detach(), "d_loss": d_loss.detach()}

    # --- losses -----------------------------------------------------------------------------
    def _vq_terms(self, x: torch.Tensor):
        """Shared by training and evaluation: x_hat, reconstruction loss, VQ output, logs."""
        x_hat, pixel, vq = self.reconstruction_terms(x)
        recon = F.mse_loss(x_hat, x) if self.likelihood == "mixture" else pixel
        rec_loss = F.l1_loss(x_hat, x) if self.recon_loss == "l1" else pixel
        if self.perceptual is not None:
            rec_loss = rec_loss + self.perceptual_weight * self.perceptual(x_hat, x)
        logs = vq_logs(recon, vq)
        if self.likelihood == "mixture":
            logs["nll"] = pixel.detach()
        return x_hat, rec_loss, vq, logs

    def compute_loss(self, x: torch.Tensor):
        """Evaluation loss (no adversarial term): reconstruction (+ perceptual) + VQ loss."""
        _, rec_loss, vq, logs = self._vq_terms(x)
        return rec_loss + vq.loss, logs

    def generator_loss(self, x: torch.Tensor, step: int):
        """x: (B, C, H, W) -> (loss, logs, x_hat). Needs gradients enabled (for lambda).

        logs: "recon", "vq", "perplexity", "usage", "g_gan", "lambda" (0 before disc_start).
        """
        x_hat, rec_loss, vq, logs = self._vq_terms(x)
        loss = rec_loss + vq.loss
        zero = x.new_zeros(())
        g_gan, lam = zero, zero
        if step >= self.disc_start:
            if not torch.is_grad_enabled():
                raise RuntimeError("generator_loss needs gradients to compute the adaptive lambda; "
                                   "use compute_loss(x) for evaluation")
            with frozen(self.discriminator):
                g_gan = generator_gan_loss(self.discriminator(x_hat), self.gan_loss)
            lam = self.disc_weight * adaptive_lambda(rec_loss, g_gan, self.last_layer_weight, self.delta)
            loss = loss + lam * g_gan
        logs.update(g_gan=g_gan.detach(), **{"lambda": lam})
        return loss, logs, x_hat

    def discriminator_loss(self, x: torch.Tensor, x_hat: torch.Tensor, step: int):
        """Real images x and reconstructions x_hat, both (B, C, H, W) -> (loss, logs).

        logs: "d_loss", "d_real", "d_fake" (mean logits on real and reconstructed images).
        Before ``disc_start`` the loss is a zero that still depends on the discriminator's
        weights, so the trainer's backward and optimizer step run and change nothing.
        """
        if step < self.disc_start:
            loss = 0.0 * sum(p.sum() for p in self.discriminator.parameters())
            zero = loss.detach()
            return loss, {"d_loss": zero, "d_real": zero, "d_fake": zero}
        # Bug 4 of the lecture: detach the *generator's output*, so this loss trains the
        # discriminator on fakes without sending gradients back into the generator.
        x_hat = x_hat.detach()
        logits_real = self.discriminator(x)
        logits_fake = self.discriminator(x_hat)
        loss = discriminator_gan_loss(logits_real, logits_fake, self.gan_loss)
        logs = {"d_loss": loss.detach(), "d_real": logits_real.detach().mean(),
                "d_fake": logits_fake.detach().mean()}
        return loss, logs


def _drop_generator_prefix(state_dict, prefix, *args) -> None:
    old = prefix + "generator."
    for key in [k for k in state_dict if k.startswith(old)]:
        state_dict[prefix + key[len(old):]] = state_dict.pop(key)
