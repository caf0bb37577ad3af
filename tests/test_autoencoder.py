"""Encoder / Decoder / Autoencoder: ratios 2, 4, 8, channel widths, clear shape errors."""
import pytest
import torch
from torch import nn

from dlstudio_lite.autoencoder import Autoencoder, Decoder, Encoder
from dlstudio_lite.blocks import SelfAttention2d, SkipBlockDecoder, SkipBlockEncoder
from dlstudio_lite.checkpoint import model_from_checkpoint
from dlstudio_lite.vqvae import VQVAE


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size,ratio", [(16, 2), (16, 4), (16, 8), (32, 4)])
def test_encoder_decoder_shapes(channels, size, ratio):
    enc = Encoder(channels, size, size // ratio, base_channels=4)
    dec = Decoder(channels, size, size // ratio, base_channels=4)
    assert enc.out_channels == dec.in_channels == 4 * ratio
    x = torch.randn(2, channels, size, size)
    z = enc(x)
    assert z.shape == (2, 4 * ratio, size // ratio, size // ratio)
    assert dec(z).shape == x.shape


def test_lecture_defaults():
    enc = Encoder()  # 64x64x3 -> 16x16
    assert enc.conv_in.in_channels == 3 and enc.conv_in.out_channels == 64
    assert enc.conv_in.kernel_size == (3, 3)
    assert [Encoder(image_size=64, latent_size=s).out_channels for s in (32, 16, 8)] == [128, 256, 512]


def test_num_repeats_adds_same_width_blocks_per_stage():
    def count(m):
        return sum(isinstance(b, SkipBlockEncoder) for b in m.modules())
    base = Encoder(3, 32, 8, base_channels=4, num_repeats=0)
    deeper = Encoder(3, 32, 8, base_channels=4, num_repeats=3)
    assert count(deeper) - count(base) == 2 * 3  # two stages for ratio 4
    assert deeper(torch.randn(1, 3, 32, 32)).shape == (1, 16, 8, 8)


def test_decoder_repeats_add_same_width_blocks_at_the_finer_resolution():
    def blocks(m):
        return [b for b in m.modules() if isinstance(b, SkipBlockDecoder)]
    base = Decoder(3, 32, 8, base_channels=4)
    deeper = Decoder(3, 32, 8, base_channels=4, num_repeats=2)
    added = [b for b in blocks(deeper) if not b.upsample and b.in_ch == b.out_ch]
    assert len(blocks(deeper)) - len(blocks(base)) == len(added) == 2 * 2  # two stages
    # each follows an upsampling: widths 8 (16x16) and 4 (32x32), two of each
    assert sorted(b.in_ch for b in added) == [4, 4, 8, 8]
    assert deeper(torch.randn(1, 16, 8, 8)).shape == (1, 3, 32, 32)
    with pytest.raises(ValueError, match="num_repeats must be >= 0, got -1"):
        Decoder(3, 32, 8, num_repeats=-1)


def test_vqvae_decoder_repeats_is_recorded_and_rebuilt_from_a_checkpoint():
    kwargs = dict(image_size=16, latent_size=4, base_channels=4, code_dim=8, num_codes=16)
    model = VQVAE(**kwargs, decoder_repeats=1)
    n_plain = sum(isinstance(b, SkipBlockDecoder) for b in VQVAE(**kwargs).decoder.modules())
    assert sum(isinstance(b, SkipBlockDecoder) for b in model.decoder.modules()) == n_plain + 2
    rebuilt = model_from_checkpoint({"model_name": "vqvae", "hparams": model.hparams,
                                     "model": model.state_dict()})
    assert rebuilt.hparams["decoder_repeats"] == 1
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(x)[0], model.eval()(x)[0])


def test_decoder_attention_sits_after_the_first_block_at_the_latent_resolution():
    attending = Decoder(3, 32, 8, base_channels=4, attention=True)
    attention = [m for m in attending.modules() if isinstance(m, SelfAttention2d)]
    assert len(attention) == 1 and attending.blocks[1] is attention[0]
    assert attention[0].norm.num_channels == 8       # 16 channels halved by the first block
    assert attending(torch.randn(1, 16, 8, 8)).shape == (1, 3, 32, 32)


def test_self_attention_treats_positions_as_a_set():
    # No position enters the weights: shuffling the positions of the input shuffles the
    # output the same way (a convolution, which weighs neighbours by offset, does not).
    torch.manual_seed(0)
    block = SelfAttention2d(8, num_heads=2).eval()
    x = torch.randn(2, 8, 4, 5)
    perm = torch.randperm(20)
    def shuffle(t):
        return t.flatten(2)[:, :, perm].reshape(t.shape)
    with torch.no_grad():
        assert torch.allclose(block(shuffle(x)), shuffle(block(x)), atol=1e-5)
        conv = nn.Conv2d(8, 8, 3, padding=1)
        assert not torch.allclose(conv(shuffle(x)), shuffle(conv(x)), atol=1e-3)


def test_self_attention_keeps_the_shape_and_adds_to_its_input():
    block = SelfAttention2d(8)
    x = torch.randn(2, 8, 4, 5)
    with torch.no_grad():
        block.attn.out_proj.weight.zero_()
        block.attn.out_proj.bias.zero_()
        assert torch.equal(block(x), x)          # a zero mix leaves the input as it was
    assert SelfAttention2d(8)(x).shape == x.shape


def test_vqvae_decoder_attention_is_recorded_and_rebuilt_from_a_checkpoint():
    kwargs = dict(image_size=16, latent_size=4, base_channels=4, code_dim=8, num_codes=16)
    model = VQVAE(**kwargs, decoder_attention=True)
    assert sum(isinstance(m, SelfAttention2d) for m in model.decoder.modules()) == 1
    assert not any(isinstance(m, SelfAttention2d) for m in VQVAE(**kwargs).modules())
    rebuilt = model_from_checkpoint({"model_name": "vqvae", "hparams": model.hparams,
                                     "model": model.state_dict()})
    assert rebuilt.hparams["decoder_attention"] is True
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(x)[0], model.eval()(x)[0])


def test_decoder_ends_in_a_plain_conv():
    dec = Decoder(3, 16, 8, base_channels=4)
    assert isinstance(dec.conv_out, nn.Conv2d) and dec.conv_out.kernel_size == (3, 3)
    with torch.no_grad():
        dec.conv_out.bias.fill_(5.0)  # no tanh/sigmoid: values outside [-1, 1] pass through
    assert dec(torch.randn(1, 8, 8, 8)).min() > 1.0


@pytest.mark.parametrize("size,latent,match", [
    (64, 4, r"one of \(2, 4, 8\).*64/4 = 16"),
    (30, 8, "multiple of latent_size.*image_size=30, latent_size=8"),
    (64, 64, "64/64 = 1")])
def test_misconfiguration_raises(size, latent, match):
    with pytest.raises(ValueError, match=match):
        Encoder(3, size, latent)
    with pytest.raises(ValueError, match=match):
        Decoder(3, size, latent)


def test_wrong_input_raises_with_expected_and_given_shape():
    enc = Encoder(3, 16, 8, base_channels=4)
    with pytest.raises(ValueError, match=r"\(B, 3, 16, 16\), got \(2, 1, 16, 16\)"):
        enc(torch.zeros(2, 1, 16, 16))
    with pytest.raises(ValueError, match=r"\(B, 3, 16, 16\), got \(2, 3, 32, 32\)"):
        enc(torch.zeros(2, 3, 32, 32))
    with pytest.raises(ValueError, match=r"got \(3, 16, 16\)"):
        enc(torch.zeros(3, 16, 16))
    dec = Decoder(3, 16, 8, base_channels=4)
    with pytest.raises(ValueError, match=r"\(B, 8, 8, 8\), got \(1, 4, 8, 8\)"):
        dec(torch.zeros(1, 4, 8, 8))


def test_autoencoder_protocol_and_hparams():
    torch.manual_seed(0)
    model = Autoencoder(in_channels=3, image_size=16, latent_size=4, base_channels=4).eval()
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert model.encode(x).shape == (2, 16, 4, 4)
    assert model.decode(model.encode(x)).shape == model.reconstruct(x).shape == x.shape
    loss, logs = model.compute_loss(x)
    assert loss.dim() == 0 and loss.requires_grad
    assert torch.allclose(logs["recon"], ((model(x) - x) ** 2).mean())
    clone = Autoencoder(**model.hparams).eval()
    clone.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(clone(x), model(x))


def test_autoencoder_learns():
    torch.manual_seed(0)
    model = Autoencoder(in_channels=1, image_size=16, latent_size=8, base_channels=4)
    x = torch.rand(4, 1, 16, 16) * 2 - 1
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(30):
        loss, _ = model.compute_loss(x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    assert loss.item() < 0.7 * first
