"""dlstudio-lite: the companion package of a course on codebook-based generative models.

The course goes codebook -> ELBO -> autoencoder -> VAE -> VQ-VAE -> VQGAN; each concept
lives in one short module named after the lecture's term (see docs/DESIGN.md).
"""
__version__ = "0.1.0"

# --- foundation ---
from .config import QUICK_ENV, pick, quick_mode
from .device import get_device, seed_everything
