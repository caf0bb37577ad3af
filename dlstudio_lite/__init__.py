"""dlstudio-lite: the companion package of a course on codebook-based generative models.

The course goes codebook -> ELBO -> autoencoder -> VAE -> VQ-VAE -> VQGAN; each concept
lives in one short module named after the lecture's term (see docs/DESIGN.md).
"""
__version__ = "0.1.0"

# --- foundation ---
from .config import QUICK_ENV, pick, quick_mode
from .device import get_device, seed_everything
from .data import (DATA_ROOT, DatasetUnavailableError, ShapeImages, ShapesDataset, denormalize,
                   generate_shapes, load_dataset, load_shapes)
from .plot import (image_grid, input_output_pairs, interactive, plot_history, show_images,
                   show_reconstructions, show_side_by_side)

# --- models ---
from .blocks import SkipBlockDecoder, SkipBlockEncoder
from .autoencoder import Autoencoder, Decoder, Encoder
from .vae import VAE, kl_divergence, reparameterize
from .quantize import EMAVectorQuantizer, VectorQuantizer, VQOutput, perplexity
from .vqvae import VQVAE
from .metrics import bits_per_dim, mse, psnr, reconstruction_metrics

# --- trainer ---
from .checkpoint import CHECKPOINTS, MODELS, CheckpointError, load_checkpoint, load_model, save_checkpoint
from .train import (NonFiniteLossError, TrainConfig, Trainer, load_or_train, make_optimizer,
                    make_scheduler)

# --- vqgan / prior ---
from .vqgan import (VQGAN, PatchDiscriminator, PerceptualLoss, adaptive_lambda,
                    discriminator_gan_loss, generator_gan_loss)
from .prior import TransformerPrior, decode_samples, encode_dataset, load_prior, sample_images
