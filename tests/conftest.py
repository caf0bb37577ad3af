"""Shared test settings: quick mode on, a private data root, one torch thread per worker."""
import os

import pytest
import torch

os.environ.setdefault("DLSTUDIO_LITE_QUICK", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# Two xdist workers share two cores; more threads per worker only adds contention.
torch.set_num_threads(1)


@pytest.fixture
def quick(monkeypatch):
    monkeypatch.setenv("DLSTUDIO_LITE_QUICK", "1")


@pytest.fixture
def normal(monkeypatch):
    monkeypatch.delenv("DLSTUDIO_LITE_QUICK", raising=False)


def pytest_configure(config):
    # Tests too slow for the quick suite; `python3 course.py test --normal` runs them.
    config.addinivalue_line("markers", "normal: a normal-mode test (python3 course.py test --normal)")
    config.addinivalue_line("markers", "slow: a long integration test (the sandboxed grading batch, "
                            "extra multi-process runs); `python3 course.py test` leaves it out, "
                            "`python3 course.py test --normal` and CI run it")


@pytest.fixture(scope="module")
def vq_checkpoint(tmp_path_factory):
    """A tiny VQ-VAE trained for one step through the shared trainer (only its codes matter;
    16 codes on a 4x4 grid)."""
    from dlstudio_lite.data import ShapesDataset
    from dlstudio_lite.train import Trainer
    from dlstudio_lite.vqvae import VQVAE

    out = tmp_path_factory.mktemp("vq")
    torch.manual_seed(0)
    model = VQVAE(image_size=16, latent_size=4, base_channels=8, num_codes=16, code_dim=8)
    Trainer(model, ShapesDataset("train", image_size=16, num_images=64, test_size=12), steps=1,
            batch_size=8, progress=False, device="cpu", out_dir=out).fit()
    return out / "checkpoint.pt"
