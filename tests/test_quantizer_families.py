"""Every quantizer family follows one protocol: VQ models, priors and checkpoints use any of
them alike (the comparisons with the reference implementation are in
test_quantizer_reference.py)."""
import math

import pytest
import torch

from dlstudio_lite.quantize import (FSQ, LFQ, QUANTIZERS, CodebookQuantizer, ResidualQuantizer,
                                    fsq_levels, make_quantizer)

PLAIN = dict(kmeans_init=False, dead_code_steps=0)
SETTINGS = dict(beta=0.25, decay=0.99, kmeans_init=True, dead_code_steps=5)  # what a VQVAE passes


@pytest.mark.parametrize("name", sorted(QUANTIZERS))
def test_every_family_follows_the_protocol(name):
    torch.manual_seed(0)
    q = make_quantizer(name, 256, 12, **SETTINGS)
    assert q.num_codes == 256
    z = torch.randn(4, 12, 5, 3, requires_grad=True)
    out = q.train()(z)
    assert out.quantized.shape == z.shape and out.indices.shape == (4, 5, 3)
    assert out.indices.dtype == torch.long and 0 <= int(out.indices.min()) <= int(out.indices.max()) < 256
    assert out.loss.dim() == 0 and 1 <= float(out.perplexity) <= 256 and 0 < float(out.usage) <= 1
    (out.quantized.square().sum() + out.loss).backward()
    assert z.grad is not None and z.grad.abs().sum() > 0  # a gradient reaches the encoder
    # without training-time updates, the forward pass, encode_indices and lookup agree
    q.eval()
    with torch.no_grad():
        out = q(z)
    assert torch.equal(q.encode_indices(z), out.indices)
    assert torch.allclose(q.lookup(out.indices), out.quantized, atol=1e-5)


def test_fsq_levels_reproduce_the_papers_table_and_refuse_what_cannot_factor():
    table = {240: [8, 6, 5], 1000: [8, 5, 5, 5], 4375: [7, 5, 5, 5, 5],
             15360: [8, 8, 8, 6, 5], 64000: [8, 8, 8, 5, 5, 5]}
    for num_codes, levels in table.items():
        assert fsq_levels(num_codes) == levels
    assert fsq_levels(512) == [8, 8, 8]
    for bad in (1, 2, 11, 7 * 11):
        with pytest.raises(ValueError, match="product of levels"):
            fsq_levels(bad)
    with pytest.raises(ValueError, match="--num-codes 1000"):
        FSQ(512, 4, levels=[8, 5, 5, 5])


def test_fsq_uses_every_code_of_its_grid_and_rounds_with_a_straight_through_gradient():
    q = FSQ(240, 3)  # [8, 6, 5], no projection
    codes = q.indices_to_codes(torch.arange(240))
    assert len({tuple(c) for c in codes.tolist()}) == 240  # 240 distinct grid points
    # every code is reachable from some input
    z = torch.randn(20000, 3) * 2
    assert torch.unique(q.vectors_to_indices(z)).numel() == 240
    rows = torch.randn(50, 3, requires_grad=True)
    value, loss, _ = q.quantize_rows(rows)
    value.sum().backward()
    bounded = q.bound(rows.detach())
    expected = torch.autograd.functional.jacobian(lambda r: q.bound(r).sum(0), rows.detach())
    assert float(loss) == 0.0 and torch.allclose(value, bounded.round() / torch.tensor([4, 3, 2]))
    # d value / d z = d bound / d z / (L // 2): rounding passes the gradient unchanged
    assert torch.allclose(rows.grad, expected.sum(0) / torch.tensor([4, 3, 2]), atol=1e-6)


def test_lfq_codes_are_signs_and_the_index_their_binary_number():
    q = LFQ(8, 3)
    rows = torch.tensor([[1.0, -2.0, 0.5], [-1.0, -1.0, -1.0], [0.1, 0.2, 0.3]])
    value, _, idx = q.quantize_rows(rows)
    assert idx.tolist() == [0b101, 0b000, 0b111]
    assert torch.equal(value, torch.sign(rows)) and torch.equal(q.indices_to_codes(idx), torch.sign(rows))
    with pytest.raises(ValueError, match="power of two"):
        LFQ(1000, 4)


def test_lfq_entropy_term_rewards_using_many_codes_confidently():
    q = LFQ(4, 2, inv_temperature=10.0)
    spread = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    collapsed = torch.tensor([[1.0, 1.0]] * 4)
    unsure = torch.zeros(4, 2)
    # spread: confident rows and all codes used -> the lowest value, -log 4
    assert torch.isclose(q.entropy_loss(spread), torch.tensor(-math.log(4.0)), atol=1e-4)
    assert q.entropy_loss(spread) < q.entropy_loss(collapsed) and q.entropy_loss(spread) < q.entropy_loss(unsure)


def test_residual_levels_refine_each_other_and_combine_into_one_index():
    torch.manual_seed(0)
    q = ResidualQuantizer(16 ** 2, 4, depth=2, quantizer="gradient", **PLAIN)
    assert q.codes_per_level == 16 and all(isinstance(level, CodebookQuantizer) for level in q.stages)
    rows = torch.randn(30, 4)
    idx = q.vectors_to_indices(rows)
    first = q.stages[0].vectors_to_indices(rows)
    second = q.stages[1].vectors_to_indices(rows - q.stages[0].indices_to_codes(first))
    assert torch.equal(idx, first + 16 * second)
    assert torch.allclose(q.indices_to_codes(idx), q.stages[0].indices_to_codes(first)
                          + q.stages[1].indices_to_codes(second))
    with pytest.raises(ValueError, match="K \\*\\* depth"):
        ResidualQuantizer(200, 4, depth=2)
    with pytest.raises(ValueError, match="codebook quantizer"):
        ResidualQuantizer(16 ** 2, 4, depth=2, quantizer="fsq")


def test_cosine_lookup_compares_directions_in_a_small_space():
    torch.manual_seed(0)
    q = make_quantizer("cosine", 32, 16, **PLAIN)
    assert q.lookup_dim == 8 and q.normalize
    assert torch.allclose(q.codes().norm(dim=1), torch.ones(32))
    rows = q.project_in(torch.randn(40, 16)).detach()
    # scaling a vector does not change its code
    assert torch.equal(q.vectors_to_indices(rows), q.vectors_to_indices(3 * rows))


@pytest.mark.parametrize("name", ["cosine", "gradient"])
def test_a_codebook_learned_by_gradients_trains_through_dead_code_restarts(name):
    """A restart overwrites codes after the lookup and before the backward pass, which the
    normalised lookup saved the codebook for (it once failed there, on its first restart)."""
    torch.manual_seed(0)
    q = make_quantizer(name, 64, 16, kmeans_init=True, dead_code_steps=1)
    optimizer = torch.optim.Adam(q.parameters(), 1e-3)
    for _ in range(4):
        before = q.codes().detach().clone()
        out = q(torch.randn(2, 16, 4, 4))           # 32 rows: at least half of the codes idle
        (out.quantized.square().mean() + out.loss).backward()
        optimizer.step()
        optimizer.zero_grad()
    restarted = q.steps_unused == 0
    assert not torch.allclose(q.codes().detach(), before) and bool(restarted.all())


@pytest.mark.parametrize("name, num_codes", [("fsq", 240), ("lfq", 64), ("residual", 64), ("cosine", 64)])
def test_a_vq_vae_trains_saves_and_reloads_with_any_family(tmp_path, name, num_codes):
    from dlstudio_lite import Trainer, VQVAE, seed_everything
    from dlstudio_lite.checkpoint import load_model
    from dlstudio_lite.prior import encode_dataset

    seed_everything(0)
    images = torch.rand(32, 3, 16, 16) * 2 - 1
    model = VQVAE(image_size=16, latent_size=4, base_channels=8, num_codes=num_codes, code_dim=8,
                  quantizer=name)
    trainer = Trainer(model, torch.utils.data.TensorDataset(images), steps=3, batch_size=8,
                      progress=False, out_dir=tmp_path)
    trainer.fit()
    again = load_model(tmp_path / "checkpoint.pt").eval()
    assert type(again.quantizer) is type(model.quantizer)
    codes = again.encode_to_indices(images[:4])
    assert torch.equal(codes, model.eval().encode_to_indices(images[:4]))
    assert again.decode_indices(codes).shape == (4, 3, 16, 16)
    # what a prior is fitted to: one index per cell, below num_codes
    encoded = encode_dataset(again, torch.utils.data.TensorDataset(images), batch_size=16)
    assert encoded.shape == (32, 4, 4) and int(encoded.max()) < num_codes
