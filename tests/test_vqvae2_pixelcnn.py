"""VQ-VAE-2 (dlstudio_lite/vqvae2.py) and the gated PixelCNN prior (dlstudio_lite/pixelcnn.py).

Causality is checked by gradients: the output at a position p may depend on an input
position only when that input comes before p in raster order (type A: strictly before;
type B: p itself too). ``input_dependence`` returns where d output(p) / d input is not zero.
"""
import json

import pytest
import torch
from torch import nn

from dlstudio_lite.pixelcnn import (MaskedConv2d, PixelCNN, input_dependence, pair_with_condition,
                                    split_condition)
from dlstudio_lite.vqvae2 import VQVAE2

H = W = 8
P = (4, 4)  # the position whose receptive field the tests inspect


def raster_masks(position=P, shape=(H, W)):
    """(before, at_or_after) bool masks of a grid, relative to ``position`` in raster order."""
    order = torch.arange(shape[0] * shape[1]).view(shape)
    here = order[position]
    return order < here, order >= here


@pytest.mark.parametrize("mask_type", ["A", "B"])
def test_masked_conv_sees_only_the_past(mask_type):
    torch.manual_seed(0)
    conv = MaskedConv2d(2, 3, 5, mask_type)
    seen = input_dependence(conv, torch.randn(1, 2, H, W), P)
    before, _ = raster_masks()
    i, j = P
    window = torch.zeros(H, W, dtype=torch.bool)
    window[i - 2:i + 3, j - 2:j + 3] = True   # the 5x5 kernel's reach
    expected = window & before                # every earlier position it reaches ...
    expected[i, j] = mask_type == "B"         # ... and p itself for type B only
    assert torch.equal(seen, expected)


def test_a_stack_of_plain_masked_convs_is_causal_but_has_a_blind_spot():
    """Type A then three type B layers (3x3): nothing at or after p is seen; and the codes
    above-right of p beyond the diagonal, e.g. (i-1, j+2) and (i-2, j+3), are never seen
    (the blind spot), while (i-1, j+1) and (i-2, j+2) are."""
    torch.manual_seed(0)
    stack = nn.Sequential(MaskedConv2d(4, 8, 3, "A"), nn.Tanh(),
                          *[m for _ in range(3) for m in (MaskedConv2d(8, 8, 3, "B"), nn.Tanh())])
    seen = input_dependence(stack, torch.randn(1, 4, H, W), P)
    before, later = raster_masks()
    i, j = P
    assert not (seen & later).any()
    assert seen[i - 1, j + 1] and seen[i - 2, j + 2] and seen[i, j - 1]
    assert not seen[i - 1, j + 2] and not seen[i - 2, j + 3] and not seen[i - 1, j + 3]


def test_gated_pixelcnn_is_causal_and_has_no_blind_spot():
    """Two stacks: nothing at or after p, and everything before p within reach of its
    n_layers layers (rows i-n..i-1 at columns j-n..j+n, row i at columns j-n..j-1) is seen,
    the blind spot of the plain stack included."""
    torch.manual_seed(0)
    n = 3
    model = PixelCNN(16, (H, W), channels=8, n_layers=n)
    seen = input_dependence(model.logits_from_embedding, torch.randn(1, 8, H, W), P)
    before, later = raster_masks()
    i, j = P
    assert not (seen & later).any()
    window = torch.zeros(H, W, dtype=torch.bool)
    window[i - n:i, j - n:j + n + 1] = True
    window[i, j - n:j] = True
    assert seen[window].all()
    assert seen[i - 1, j + 2] and seen[i - 2, j + 3]  # the plain stack's blind spot


def test_conditioning_changes_the_bottom_prior():
    torch.manual_seed(0)
    model = PixelCNN(16, (H, W), condition_codes=5, channels=8, n_layers=2).eval()
    codes = torch.randint(0, 16, (2, H, W))
    top_a, top_b = torch.zeros(2, 4, 4, dtype=torch.long), torch.full((2, 4, 4), 3)
    with torch.no_grad():
        a, a2, b = model(codes, top_a), model(codes, top_a.clone()), model(codes, top_b)
    torch.testing.assert_close(a, a2)
    assert (a - b).abs().amax() > 1e-3
    with pytest.raises(ValueError, match="expected a condition"):
        model(codes)
    with pytest.raises(ValueError, match="unconditional"):
        PixelCNN(16, (H, W), channels=8, n_layers=1)(codes, top_a)
    # The trainer's input: codes and condition stacked on one grid, split back unchanged.
    pair = pair_with_condition(codes, top_b)
    assert pair.shape == (2, 2, H, W)
    torch.testing.assert_close(split_condition(pair)[0], codes)
    loss, logs = model.compute_loss(pair)
    torch.testing.assert_close(-model.log_prob(codes, top_b).mean() / (H * W), loss.detach())
    assert set(logs) == {"ce", "bits_per_code", "accuracy"}


def test_pixelcnn_sampling_repeats_with_a_generator_and_follows_the_condition():
    torch.manual_seed(0)
    model = PixelCNN(6, (4, 4), condition_codes=3, channels=8, n_layers=2)
    top = torch.randint(0, 3, (3, 2, 2))
    draw = lambda seed, **kw: model.sample(3, condition=top, generator=torch.Generator().manual_seed(seed), **kw)  # noqa: E731
    first = draw(0)
    assert first.shape == (3, 4, 4) and first.dtype == torch.long
    assert 0 <= first.min() and first.max() < 6 and model.training  # mode restored
    torch.testing.assert_close(draw(0), first)
    # top_k=1 is greedy: each code is the argmax given the codes drawn before it.
    greedy = draw(1, top_k=1)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(greedy, top).argmax(1), greedy)


def test_vqvae2_code_grids_shapes_and_levels():
    torch.manual_seed(0)
    model = VQVAE2(image_size=16, latent_size=8, base_channels=8, num_codes_top=12,
                   num_codes_bottom=20, code_dim=8)
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    loss, logs = model.compute_loss(x)
    loss.backward()
    assert {"recon", "vq", "perplexity_top", "perplexity_bottom", "usage_top"} <= set(logs)
    model.eval()
    top, bottom = model.encode_codes(x)
    assert top.shape == (3, 4, 4) and bottom.shape == (3, 8, 8)
    assert top.max() < 12 and bottom.max() < 20 and top.dtype == bottom.dtype == torch.long
    with torch.no_grad():
        both, top_only = model.reconstruct(x), model.reconstruct(x, levels="top")
        torch.testing.assert_close(model.decode_codes(top, bottom), both)
        torch.testing.assert_close(model.decode_codes(top), top_only)
    assert both.shape == top_only.shape == x.shape and not torch.allclose(both, top_only)
    counts = model.code_counts(x)
    assert counts["top"].shape == (12,) and int(counts["bottom"].sum()) == 3 * 64
    clone = VQVAE2(**model.hparams)
    clone.load_state_dict(model.state_dict())
    torch.testing.assert_close(clone.eval().encode_codes(x)[1], bottom)
    with pytest.raises(ValueError, match=r"\(B, 4, 4\)"):
        model.decode_codes(bottom)
    with pytest.raises(ValueError, match="levels"):
        model.reconstruct(x, levels="bottom")


def test_train_vqvae2_pixelcnns_and_sample_through_the_command_line(tmp_path):
    from dlstudio_lite.cli import main

    vq = tmp_path / "vqvae2"
    assert main(["train", "vqvae2", "--image-size", "16", "--num-images", "60", "--base-channels",
                 "8", "--code-dim", "8", "--num-codes-top", "8", "--num-codes-bottom", "8",
                 "--steps", "2", "--batch-size", "8", "--eval-batches", "1", "--device", "cpu",
                 "--no-progress", "--out", str(vq)]) == 0
    metrics = json.loads((vq / "metrics.json").read_text())
    assert {"psnr", "perplexity_top", "perplexity_bottom", "codebook_usage_top"} <= set(metrics)
    small = ["--steps", "2", "--batch-size", "8", "--channels", "8", "--n-layers", "2",
             "--n-samples", "2", "--device", "cpu", "--no-progress"]
    for level in ("top", "bottom"):
        assert main(["train", "pixelcnn", "--vq-checkpoint", str(vq / "checkpoint.pt"), "--level",
                     level, "--out", str(tmp_path / level), *small]) == 0
        m = json.loads((tmp_path / level / "metrics.json").read_text())
        assert m["latent_shape"] == ([4, 4] if level == "top" else [8, 8])
        assert m["condition_codes"] == (8 if level == "bottom" else 0)
        assert m["train_grids"] == 48 and (tmp_path / level / "samples.png").is_file()
    # The transformer of lecture 6 on the same checkpoint models its top codes.
    assert main(["train", "prior", "--vq-checkpoint", str(vq / "checkpoint.pt"), "--out",
                 str(tmp_path / "transformer"), "--steps", "1", "--batch-size", "8", "--n-layers", "1",
                 "--n-embd", "16", "--n-samples", "0", "--device", "cpu", "--no-progress"]) == 0
    assert json.loads((tmp_path / "transformer" / "metrics.json").read_text())["latent_shape"] == [4, 4]
    out = tmp_path / "grid.png"
    assert main(["sample", "--vq-checkpoint", str(vq / "checkpoint.pt"), "--prior-checkpoint",
                 str(tmp_path / "top" / "checkpoint.pt"), "--bottom-prior-checkpoint",
                 str(tmp_path / "bottom" / "checkpoint.pt"), "--n", "2", "--device", "cpu",
                 "--out", str(out)]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"
    # Without the bottom prior the command says what is missing.
    assert main(["sample", "--vq-checkpoint", str(vq / "checkpoint.pt"), "--prior-checkpoint",
                 str(tmp_path / "top" / "checkpoint.pt"), "--device", "cpu",
                 "--out", str(out)]) == 2
