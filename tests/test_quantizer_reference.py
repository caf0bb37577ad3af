"""Each quantizer family against the reference implementation, vector-quantize-pytorch
(lucidrains): same inputs and parameters, then the same values, indices, losses, gradients
and codebook updates wherever the two definitions agree. Where they differ, the test pins the
difference (see each test's docstring).

The reference takes channel-last sequences ``(B, N, D)``; ours takes ``(B, D, h, w)``.
"""
import pytest
import torch

from dlstudio_lite.quantize import FSQ, LFQ, EMAVectorQuantizer, ResidualQuantizer

vqp = pytest.importorskip(
    "vector_quantize_pytorch",
    reason="the reference tests need vector-quantize-pytorch (installed by `python3 course.py "
           "setup`, or `pip install -e .[course]`)")

PLAIN = dict(kmeans_init=False, dead_code_steps=0)


@pytest.fixture(autouse=True)
def _seeded():
    """The reference draws its projections from the global generator: seed it, so that each
    test sees the same weights whatever ran before it in the same process."""
    torch.manual_seed(0)
B, H, W = 2, 4, 5


def as_sequence(z_e):
    """``(B, D, h, w) -> (B, h*w, D)``, the reference's layout, sharing the autograd graph."""
    return z_e.permute(0, 2, 3, 1).reshape(z_e.shape[0], -1, z_e.shape[1])


def pair_of_inputs(dim, scale=1.0, seed=0):
    z = torch.randn(B, dim, H, W, generator=torch.Generator().manual_seed(seed)) * scale
    ours = z.clone().requires_grad_()
    theirs = as_sequence(z).clone().requires_grad_()
    return ours, theirs


def copy_linear(dst, src):
    with torch.no_grad():
        dst.weight.copy_(src.weight)
        dst.bias.copy_(src.bias)


def close(a, b, atol=1e-5):
    assert torch.allclose(a, b, atol=atol, rtol=1e-4), (a - b).abs().max()


def backward(value, loss, seed=1):
    """Backpropagate ``loss + <value, fixed random upstream gradient>``."""
    upstream = torch.randn(value.shape, generator=torch.Generator().manual_seed(seed))
    ((value * upstream).sum() + loss).backward()


@pytest.mark.parametrize("dim", [4, 6])  # 4: no projection; 6: linear maps in and out
def test_fsq_matches_reference(dim):
    ref = vqp.FSQ(levels=[8, 5, 5, 5], dim=dim)
    ours = FSQ(1000, dim)  # fsq_levels(1000) is the paper's [8, 5, 5, 5]
    assert ours.levels == [8, 5, 5, 5]
    if dim != 4:
        copy_linear(ours.project_in, ref.project_in)
        copy_linear(ours.project_out, ref.project_out)
    z, zs = pair_of_inputs(dim, scale=2.0)
    out = ours(z)
    ref_out, ref_idx = ref(zs)
    close(as_sequence(out.quantized), ref_out)
    assert torch.equal(out.indices.flatten(), ref_idx.flatten().long())
    assert float(out.loss) == 0.0  # FSQ has no auxiliary loss
    backward(as_sequence(out.quantized), 0.0)
    backward(ref_out, 0.0)
    close(as_sequence(z.grad), zs.grad)
    # the implicit codebook: indices back to codes agree too
    idx = torch.arange(1000)
    close(ours.indices_to_codes(idx), ref._indices_to_codes(idx))


def test_lfq_matches_reference_where_the_entropies_agree():
    """Same values, indices, loss and gradients at a temperature where every soft code
    probability exceeds 1e-5. Below that, the reference clamps probabilities at 1e-5 inside
    its logarithms and ours does not (exact log_softmax / logsumexp): the two entropy terms
    then differ slightly. The reference also returns a zero loss in eval mode; ours reports
    the loss in both modes, like the codebook quantizers."""
    dim, tau = 6, 1.0
    ref = vqp.LFQ(dim=dim, codebook_size=16, entropy_loss_weight=0.1, commitment_loss_weight=0.25,
                  diversity_gamma=1.0)
    ours = LFQ(16, dim, beta=0.25, entropy_weight=0.1, diversity_gamma=1.0, inv_temperature=tau)
    copy_linear(ours.project_in, ref.project_in)
    copy_linear(ours.project_out, ref.project_out)
    ref.train(), ours.train()
    z, zs = pair_of_inputs(dim, scale=0.5)
    # the guard: this input keeps all soft probabilities above the reference's clamp
    rows = ours.project_in(as_sequence(z.detach()).reshape(-1, dim))
    probs = torch.softmax(2 * tau * rows @ ours.indices_to_codes(torch.arange(16)).t(), 1)
    assert probs.min() > 1e-5
    out = ours(z)
    ref_out, ref_idx, ref_loss = ref(zs, inv_temperature=tau)
    close(as_sequence(out.quantized), ref_out)
    assert torch.equal(out.indices.flatten(), ref_idx.flatten().long())
    close(out.loss, ref_loss)
    backward(as_sequence(out.quantized), out.loss)
    backward(ref_out, ref_loss)
    close(as_sequence(z.grad), zs.grad)
    close(ours.project_in.weight.grad, ref.project_in.weight.grad)


def same_statistics(ref_codebook):
    """Start the reference's EMA statistics where ours start: counts of 1 and sums equal to
    the codes. Up to 1.32 the reference started there too; from 1.34 it starts both at zero
    (its first update then moves each used code all the way to its batch mean), so without
    this the codebooks compared after one step would differ by the start, not by the rule."""
    with torch.no_grad():
        ref_codebook.cluster_size.fill_(1.0)
        ref_codebook.embed_avg.copy_(ref_codebook.embed)


def ema_pair(dim, codebook_dim=None, rotation_trick=False, normalize=False, num_codes=16):
    ref = vqp.VectorQuantize(dim=dim, codebook_size=num_codes, codebook_dim=codebook_dim,
                             decay=0.8, commitment_weight=0.25, rotation_trick=rotation_trick,
                             use_cosine_sim=normalize)
    ours = EMAVectorQuantizer(num_codes, dim, beta=0.25, decay=0.8, rotation_trick=rotation_trick,
                              normalize=normalize, lookup_dim=codebook_dim, **PLAIN)
    with torch.no_grad():
        ours.set_codes(torch.ones(num_codes, dtype=torch.bool), ref._codebook.embed[0].clone())
    same_statistics(ref._codebook)
    if codebook_dim is not None:
        copy_linear(ours.project_in, ref.project_in)
        copy_linear(ours.project_out, ref.project_out)
    return ours.train(), ref.train()


@pytest.mark.parametrize("rotation_trick", [False, True], ids=["straight-through", "rotation"])
@pytest.mark.parametrize("cosine", [False, True], ids=["euclidean", "cosine-low-dim"])
def test_ema_codebook_quantizers_match_reference(rotation_trick, cosine):
    """Plain EMA lookup, and ViT-VQGAN's factorised lookup (16 -> 4 numbers, l2-normalised
    rows and codes), each with the straight-through estimator and with the rotation trick:
    values, indices, the commitment loss, gradients (input and projection) and the
    codebook after one EMA step. The reference learns cosine codebooks by EMA only, so our
    gradient-learned "cosine" family has no reference counterpart."""
    dim = 16 if cosine else 8
    ours, ref = ema_pair(dim, codebook_dim=4 if cosine else None, rotation_trick=rotation_trick,
                         normalize=cosine)
    z, zs = pair_of_inputs(dim)
    out = ours(z)
    ref_out, ref_idx, ref_loss = ref(zs)
    assert torch.equal(out.indices.flatten(), ref_idx.flatten().long())
    close(as_sequence(out.quantized), ref_out)
    close(out.loss, ref_loss)
    backward(as_sequence(out.quantized), out.loss)
    backward(ref_out, ref_loss)
    close(as_sequence(z.grad), zs.grad)
    if cosine:
        close(ours.project_in.weight.grad, ref.project_in.weight.grad)
    close(ours.codes(), ref._codebook.embed[0])  # after the EMA update


def test_rotation_trick_changes_the_gradient_but_not_the_value():
    ours_st, _ = ema_pair(8)
    ours_rot, _ = ema_pair(8, rotation_trick=True)
    ours_rot.load_state_dict(ours_st.state_dict())
    grads = []
    for q in (ours_st.eval(), ours_rot.eval()):
        z, _ = pair_of_inputs(8)
        out = q(z)
        backward(out.quantized, 0.0)
        grads.append((out.quantized.detach(), z.grad))
    close(grads[0][0], grads[1][0])
    assert not torch.allclose(grads[0][1], grads[1][1], atol=1e-3)


def test_residual_quantizer_matches_reference_up_to_the_estimator():
    """Two EMA levels of 16 codes: values, per-level indices (ours combine them into one
    index, level 0 least significant), the summed commitment losses and both codebook
    updates agree. The gradient differs on purpose: the reference applies the
    straight-through estimator at every level, so the upstream gradient reaches the input
    once per level (depth times); ours applies it once to the sum, as RQ-VAE's code does."""
    dim, depth, k = 8, 2, 16
    ref = vqp.ResidualVQ(dim=dim, num_quantizers=depth, codebook_size=k, decay=0.8,
                         commitment_weight=0.25, rotation_trick=False)
    ours = ResidualQuantizer(k ** depth, dim, depth=depth, quantizer="ema", beta=0.25, decay=0.8,
                             **PLAIN)
    for level, ref_level in zip(ours.stages, ref.layers):
        level.set_codes(torch.ones(k, dtype=torch.bool), ref_level._codebook.embed[0].clone())
        same_statistics(ref_level._codebook)
    ours.train(), ref.train()
    z, zs = pair_of_inputs(dim)
    out = ours(z)
    ref_out, ref_idx, ref_losses = ref(zs)
    close(as_sequence(out.quantized), ref_out)
    combined = ref_idx[..., 0] + k * ref_idx[..., 1]
    assert torch.equal(out.indices.flatten(), combined.flatten().long())
    close(out.loss, ref_losses.sum())
    for level, ref_level in zip(ours.stages, ref.layers):
        close(level.codes(), ref_level._codebook.embed[0])
    # the commitment losses' gradients agree; the upstream gradient is depth times ours
    ref_losses.sum().backward(retain_graph=True)
    out.loss.backward(retain_graph=True)
    close(as_sequence(z.grad), zs.grad)
    z.grad, zs.grad = None, None
    backward(as_sequence(out.quantized), 0.0)
    backward(ref_out, 0.0)
    close(depth * as_sequence(z.grad), zs.grad)
