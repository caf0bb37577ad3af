"""Evaluation parts: eval mode that restores itself, the one loop, the picture."""
import pytest
import torch
from torch.utils.data import TensorDataset

from dlstudio_lite.evaluate import (LossLogs, Reconstruction, evaluate, evaluating,
                                    reconstruction_metrics, save_reconstructions)
from dlstudio_lite.vae import VAE
from dlstudio_lite.vqvae import VQVAE


def data(n=10, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.rand(n, 3, size, size, generator=g) * 2 - 1)


def test_evaluating_switches_to_eval_and_restores_even_on_errors():
    model = torch.nn.Dropout(0.5).train()
    with pytest.raises(RuntimeError):
        with evaluating(model):
            assert not model.training
            raise RuntimeError
    assert model.training
    model.eval()
    with evaluating(model, seed=3):
        a = torch.rand(2)
    with evaluating(model, seed=3):
        b = torch.rand(2)
    assert torch.equal(a, b) and not model.training


def test_evaluate_is_the_batch_size_weighted_mean_and_leaves_the_rng_alone():
    torch.manual_seed(0)
    model = VAE(image_size=16, latent_size=4, base_channels=8, latent_channels=4)
    ds = data(10)
    state = torch.get_rng_state()
    out = evaluate(model, ds, batch_size=4)      # batches of 4, 4, 2
    assert torch.equal(torch.get_rng_state(), state)
    assert out == evaluate(model, ds, batch_size=4)  # repeatable (fixed-seed VAE noise)
    assert set(out) == {"recon", "kl", "loss"}
    vq = VQVAE(image_size=16, latent_size=4, base_channels=8, num_codes=16, code_dim=8).eval()
    x = ds.tensors[0]
    with torch.no_grad():  # deterministic in eval mode
        recon = [vq.compute_loss(x[i:i + 4])[1]["recon"] for i in (0, 4, 8)]
    want = (4 * recon[0] + 4 * recon[1] + 2 * recon[2]) / 10
    assert evaluate(vq, ds, batch_size=4)["recon"] == pytest.approx(want.item(), rel=1e-5)
    assert evaluate(model, data(10), max_batches=1, batch_size=4).keys() == out.keys()
    assert evaluate(model, TensorDataset(torch.zeros(0, 3, 16, 16))) == {}


def test_reconstruction_measure_counts_codes_over_the_whole_split():
    torch.manual_seed(0)
    model = VQVAE(image_size=16, latent_size=4, base_channels=8, num_codes=16, code_dim=8)
    out = reconstruction_metrics(model, data(6), batch_size=4)
    assert out["num_images"] == 6 and out["mse"] > 0 and 0 < out["codebook_usage"] <= 1
    idx = model.eval().encode_to_indices(data(6).tensors[0])
    used = idx.unique().numel() / 16
    assert out["codebook_usage"] == pytest.approx(used)
    with pytest.raises(ValueError, match="empty"):
        reconstruction_metrics(model, TensorDataset(torch.zeros(0, 3, 16, 16)))
    assert isinstance(LossLogs()(model, data(2).tensors[0])["loss"], torch.Tensor)
    assert Reconstruction().finish({"mse": 1.0}, 3) == {"mse": 1.0, "num_images": 3}


def test_save_reconstructions_writes_inputs_over_outputs(tmp_path):
    from PIL import Image
    model = VQVAE(image_size=16, latent_size=4, base_channels=8, num_codes=16, code_dim=8).train()
    path = save_reconstructions(model, data(5), tmp_path / "sub" / "r.png", n=3)
    width, height = Image.open(path).size
    assert (width, height) == (3 * 16 + 4 * 2, 2 * 16 + 3 * 2)  # 3 columns, 2 rows, padding 2
    assert model.training


def test_latent_rate_is_kl_in_bits_for_a_vae_and_code_entropy_times_grid_for_a_vq_model():
    import math

    from dlstudio_lite.evaluate import latent_rate
    from dlstudio_lite.vae import kl_divergence
    torch.manual_seed(0)
    ds = data(6)
    vae = VAE(image_size=16, latent_size=4, base_channels=8, latent_channels=4).eval()
    x = ds.tensors[0]
    with torch.no_grad():
        expected = float(kl_divergence(*vae.encode(x)).mean()) / math.log(2)
    assert latent_rate(vae, ds, batch_size=4)["bits_per_image"] == pytest.approx(expected, rel=1e-5)

    vq = VQVAE(image_size=16, latent_size=4, base_channels=8, code_dim=4, num_codes=8).eval()
    out = latent_rate(vq, ds, batch_size=4)
    p = torch.bincount(vq.encode_to_indices(x).flatten(), minlength=8).float() / (6 * 16)
    entropy_bits = float(-(p[p > 0] * p[p > 0].log2()).sum())
    assert out["grid_cells"] == 16
    assert out["bits_per_image"] == pytest.approx(16 * entropy_bits, rel=1e-5)
    assert out["bits_per_image"] <= 16 * math.log2(8) + 1e-6
    from dlstudio_lite.autoencoder import Autoencoder
    with pytest.raises(TypeError, match="encode_to_indices"):   # no distribution, no rate
        latent_rate(Autoencoder(image_size=16, latent_size=4, base_channels=8), ds)


def test_edge_sharpness_and_shape_colour_error():
    from torchvision.transforms.functional import gaussian_blur

    from dlstudio_lite import ShapesDataset
    from dlstudio_lite.metrics import edge_sharpness, shape_colour_error

    x = ShapesDataset("test", image_size=32, num_images=300).tensors(16)
    assert edge_sharpness(x, x) == pytest.approx(1.0)
    blurred = gaussian_blur(x, [5, 5], [1.0, 1.0])
    assert edge_sharpness(blurred, x) < 0.8
    exact = shape_colour_error(x, x)
    assert len(exact["error"]) >= 16 and float(exact["error"].max()) < 1e-3
    # A colour cast of +0.2 in the red channel is +25.5 in 0-255 units on every shape
    # (less where red is already near its top and the clamp cuts it).
    cast = x.clone()
    cast[:, 0] = (cast[:, 0] + 0.2).clamp(-1, 1)
    shifted = shape_colour_error(cast, x)
    assert 10 < float(shifted["bias"][:, 0].mean()) <= 25.6
    assert float(shifted["bias"][:, 1:].abs().max()) < 1e-3
    with pytest.raises(ValueError, match="no shape"):
        shape_colour_error(torch.full_like(x, -1.0), torch.full_like(x, -1.0))


def test_colourfulness_kept_is_one_for_the_originals_and_zero_for_grey_shapes():
    from dlstudio_lite import ShapesDataset
    from dlstudio_lite.metrics import colourfulness_kept, shape_colour_error

    x = ShapesDataset("test", image_size=32, num_images=300).tensors(16)
    assert colourfulness_kept(shape_colour_error(x, x)) == pytest.approx(1.0)
    grey = x.mean(1, keepdim=True).expand_as(x)          # same brightness, no hue
    assert colourfulness_kept(shape_colour_error(grey, x)) == pytest.approx(0.0, abs=1e-6)
    faded = x * 0.5 + x.mean(1, keepdim=True) * 0.5      # half way to grey
    assert colourfulness_kept(shape_colour_error(faded, x)) == pytest.approx(0.5, abs=0.01)


def test_shape_colour_error_reports_hole_density_and_blurred_holes_darken():
    from torchvision.transforms.functional import gaussian_blur

    from dlstudio_lite import ShapesDataset
    from dlstudio_lite.metrics import shape_colour_error

    data = ShapesDataset("test", image_size=32, num_images=300, return_holes=True)
    x, holes = (torch.stack([torch.as_tensor(data[i][j]) for i in range(24)]) for j in (0, 1))
    none = shape_colour_error(x, x, holes=torch.zeros_like(holes))
    assert len(none["hole_density"]) == len(none["error"]) and not none["hole_density"].any()
    blurred = shape_colour_error(gaussian_blur(x, [3, 3], [0.7, 0.7]), x, holes=holes)
    density, darkening = blurred["hole_density"], -blurred["bias"].mean(1)
    assert 0 <= float(density.min()) and float(density.max()) < 0.5 and density.max() > 0.02
    # a blur mixes each hole's black into its neighbours: the more holes, the darker
    assert float(torch.corrcoef(torch.stack([density, darkening]))[0, 1]) > 0.3
    with pytest.raises(ValueError, match="holes must be"):
        shape_colour_error(x, x, holes=holes[:, :8])
