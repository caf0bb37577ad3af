"""SkipBlocks: shapes, GroupNorm for small widths, and the two skip rules (concat / slice)."""
import pytest
import torch
import torch.nn.functional as F

from dlstudio_lite.blocks import SkipBlockDecoder, SkipBlockEncoder, group_norm


@pytest.mark.parametrize("channels", [3, 4, 12, 16, 48, 64, 512])
def test_group_norm_groups_divide_channels(channels):
    gn = group_norm(channels)
    assert channels % gn.num_groups == 0 and gn.num_groups <= 32
    assert gn(torch.randn(2, channels, 3, 3)).shape == (2, channels, 3, 3)
    if channels % 32 == 0:
        assert gn.num_groups == 32  # the lecture's choice where it works


@pytest.mark.parametrize("in_ch,out_ch,down,shape", [
    (8, 8, False, (2, 8, 8, 8)), (8, 8, True, (2, 8, 4, 4)), (8, 16, False, (2, 16, 8, 8))])
def test_encoder_block_shapes(in_ch, out_ch, down, shape):
    assert SkipBlockEncoder(in_ch, out_ch, downsample=down)(torch.randn(2, in_ch, 8, 8)).shape == shape


@pytest.mark.parametrize("in_ch,out_ch,up,shape", [
    (8, 8, False, (2, 8, 4, 4)), (8, 8, True, (2, 8, 8, 8)), (16, 8, False, (2, 8, 4, 4))])
def test_decoder_block_shapes(in_ch, out_ch, up, shape):
    assert SkipBlockDecoder(in_ch, out_ch, upsample=up)(torch.randn(2, in_ch, 4, 4)).shape == shape


def zero_main_path(block):
    with torch.no_grad():
        for name in ("conv1", "conv2"):
            if hasattr(block, name):
                getattr(block, name).weight.zero_()
                getattr(block, name).bias.zero_()


def test_encoder_doubling_adds_identity_concatenated_with_itself():
    block = SkipBlockEncoder(4, 8)
    zero_main_path(block)  # conv -> GroupNorm(0) -> ReLU gives 0, so only the skip remains
    x = torch.randn(2, 4, 5, 5)
    assert torch.allclose(block(x), torch.cat([x, x], dim=1))


def test_encoder_downsampling_applies_the_strided_conv_to_both_paths():
    block = SkipBlockEncoder(4, 4, downsample=True)
    zero_main_path(block)
    x = torch.randn(2, 4, 6, 6)
    zeros = torch.zeros_like(x)
    want = block.downsampler(zeros) + block.downsampler(x)
    assert torch.allclose(block(x), want, atol=1e-6)
    assert block.downsampler.stride == (2, 2)
    assert block.downsampler.kernel_size == (1, 1)


@pytest.mark.parametrize("upsample", [False, True])
def test_decoder_skip_slices_identity_and_upsamples_nearest(upsample):
    block = SkipBlockDecoder(8, 4, upsample=upsample)
    zero_main_path(block)
    seen = []
    block.conv_final.register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
    x = torch.randn(2, 8, 3, 3)
    block(x)
    want = x[:, :4]
    if upsample:
        want = F.interpolate(want, scale_factor=2, mode="nearest")
    assert torch.allclose(seen[0], want)


def test_skip_connections_can_be_switched_off():
    torch.manual_seed(0)
    block = SkipBlockEncoder(4, 4, skip_connections=False)
    zero_main_path(block)
    assert torch.count_nonzero(block(torch.randn(1, 4, 4, 4))) == 0


def test_bad_channel_changes_raise():
    with pytest.raises(ValueError, match="expected out_ch 4 or 8"):
        SkipBlockEncoder(4, 6)
    with pytest.raises(ValueError, match="keeps the width"):
        SkipBlockEncoder(4, 8, downsample=True)
    with pytest.raises(ValueError, match="keeps or halves"):
        SkipBlockDecoder(8, 6)
