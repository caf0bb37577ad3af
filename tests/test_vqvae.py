"""VQ-VAE: the VQ-model protocol of docs/DESIGN.md, on a tiny configuration."""
import pytest
import torch

from dlstudio_lite.quantize import EMAVectorQuantizer, VectorQuantizer, VQOutput
from dlstudio_lite.vqvae import VQVAE

SMALL = dict(in_channels=3, image_size=16, latent_size=4, base_channels=8, num_codes=16,
             code_dim=8)


def images(b=2, c=3, s=16, seed=0):
    return torch.rand(b, c, s, s, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_protocol_shapes():
    torch.manual_seed(0)
    model = VQVAE(**SMALL)
    x = images()
    assert model.num_codes == 16 and model.code_dim == 8
    z_e = model.encode(x)
    assert z_e.shape == (2, 8, 4, 4)
    vq = model.quantize(z_e)
    assert isinstance(vq, VQOutput)
    assert vq.quantized.shape == (2, 8, 4, 4) and vq.indices.shape == (2, 4, 4)
    assert model.decode(vq.quantized).shape == x.shape
    assert model.reconstruct(x).shape == x.shape
    idx = model.encode_to_indices(x)
    assert idx.shape == (2, 4, 4) and idx.dtype == torch.long
    assert model.decode_indices(idx).shape == x.shape
    assert model.last_layer_weight is model.decoder.conv_out.weight

    loss, logs = model.compute_loss(x)
    assert loss.dim() == 0 and loss.requires_grad
    assert {"recon", "vq", "perplexity", "usage"} <= set(logs)
    assert all(v.dim() == 0 and not v.requires_grad for v in logs.values())
    loss.backward()
    assert model.last_layer_weight.grad is not None


def test_recon_log_is_per_pixel_mse_and_loss_adds_vq():
    torch.manual_seed(0)
    model = VQVAE(**SMALL).eval()  # eval: the EMA codebook does not move between calls
    x = images()
    loss, logs = model.compute_loss(x)
    x_hat, vq = model(x)
    assert torch.allclose(logs["recon"], ((x_hat - x) ** 2).mean())
    assert torch.allclose(loss, logs["recon"] + vq.loss)


def test_indices_round_trip_matches_reconstruction():
    torch.manual_seed(0)
    model = VQVAE(**SMALL).eval()
    x = images()
    with torch.no_grad():
        assert torch.allclose(model.decode_indices(model.encode_to_indices(x)),
                              model.reconstruct(x), atol=1e-5)


def test_encode_to_indices_does_not_touch_the_codebook_in_training_mode():
    torch.manual_seed(0)
    model = VQVAE(**SMALL).train()
    before = model.quantizer.codebook.clone()
    model.encode_to_indices(images())
    assert torch.equal(model.quantizer.codebook, before)


def test_quantizer_name_chooses_the_update_rule():
    ema = VQVAE(**SMALL)
    plain = VQVAE(**SMALL, quantizer="gradient")
    assert isinstance(ema.quantizer, EMAVectorQuantizer)
    assert type(plain.quantizer) is VectorQuantizer
    ema_params = {id(p) for p in ema.parameters()}
    assert id(ema.quantizer.codebook) not in ema_params  # EMA codebook: buffer, not optimised
    assert any(p is plain.quantizer.codebook for p in plain.parameters())
    with pytest.raises(ValueError, match="unknown quantizer 'emma'.*gradient, ema"):
        VQVAE(**SMALL, quantizer="emma")


def test_hparams_rebuild_an_identical_model():
    torch.manual_seed(0)
    model = VQVAE(**SMALL, quantizer="gradient", kmeans_init=True, dead_code_steps=10).eval()
    assert all(isinstance(v, (int, float, bool, str, type(None))) for v in model.hparams.values())
    assert model.quantizer.maintenance.dead_code_steps == 10 and model.quantizer.maintenance.kmeans_init
    clone = VQVAE(**model.hparams).eval()
    clone.load_state_dict(model.state_dict())
    x = images()
    with torch.no_grad():
        assert torch.equal(model.reconstruct(x), clone.reconstruct(x))
    assert clone.hparams == model.hparams


def test_lecture_defaults():
    model = VQVAE()
    assert model.encoder.out_channels == 256 and model.latent_size == 16
    assert (model.num_codes, model.code_dim) == (512, 256)
    assert model.quantizer.beta == 0.25 and model.quantizer.decay == 0.99


def test_bad_input_raises():
    model = VQVAE(**SMALL)
    with pytest.raises(ValueError, match=r"\(B, 3, 16, 16\).*\(2, 1, 16, 16\)"):
        model.compute_loss(torch.zeros(2, 1, 16, 16))
    with pytest.raises(ValueError, match=r"\(B, 8, 4, 4\)"):
        model.decode(torch.zeros(2, 8, 8, 8))


@pytest.mark.parametrize("quantizer", ["ema", "gradient"])
def test_a_few_steps_reduce_the_loss(quantizer):
    torch.manual_seed(0)
    model = VQVAE(**SMALL, quantizer=quantizer, kmeans_init=True)
    x = images(b=4)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss, _ = model.compute_loss(x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
