# ---
# jupyter:
#   dlstudio_lite:
#     exercise: ex05_vqvae
#     title: 'Exercise 5: VQ-VAE, stop-gradient and straight-through'
#   jupytext:
#     formats: py:percent
#     notebook_metadata_filter: dlstudio_lite
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Exercise 5: VQ-VAE, stop-gradient and straight-through
#
# The VQ-VAE objective (the lecture's Eq. 22) is
#
# $$\mathcal{L} = \lVert x - \hat x\rVert^2 + \lVert \mathrm{sg}[z_e] - e\rVert^2 + \beta\,\lVert z_e - \mathrm{sg}[e]\rVert^2 ,$$
#
# where `sg[.]` (stop-gradient) is `.detach()` in PyTorch. Each term is meant to train
# something different:
#
# | term | trains |
# | --- | --- |
# | reconstruction | decoder, and the encoder through the straight-through copy |
# | codebook $\lVert \mathrm{sg}[z_e] - e\rVert^2$ | the codebook only |
# | commitment $\beta\lVert z_e - \mathrm{sg}[e]\rVert^2$ | the encoder only |
#
# The lookup (argmin) has no useful gradient, so the decoder's gradient is copied straight
# through it to the encoder. A misplaced or missing `.detach()` does not crash: the model
# still trains, just worse, which is why these lines deserve careful tests.

# %%
import contextlib

import torch
import torch.nn.functional as F

_ = torch.manual_seed(0)  # it returns the generator: `_ =` keeps it from being printed


@contextlib.contextmanager
def skip_if_unanswered():
    """Around a check: a question not answered yet prints its message instead of a traceback."""
    try:
        yield
    except NotImplementedError as unanswered:
        print(unanswered)


def expect_close(what, got, expected, rtol=1e-5, atol=1e-6):
    """Visible checks: fail with both values, to six digits, and their relative error."""
    if got is None:
        raise AssertionError(f"{what}: expected {expected}, got None")
    got, expected = torch.as_tensor(got).detach().double(), torch.as_tensor(expected).detach().double()
    if got.shape != expected.shape:
        raise AssertionError(f"{what}: expected shape {tuple(expected.shape)}, got {tuple(got.shape)}")
    if not torch.allclose(got, expected, rtol=rtol, atol=atol):
        rel = float((got - expected).abs().max() / expected.abs().max().clamp_min(1e-12))
        show = lambda t: f"{t.item():.6g}" if t.dim() == 0 else f"\n{t.numpy().round(6)}\n"  # noqa: E731
        raise AssertionError(f"{what}: expected {show(expected)} got {show(got)} (relative error {rel:.2g})")

# %% [markdown]
# ## Question 1 (3 points): the two VQ losses
#
# Write `vq_losses(z_e, z_q, beta=0.25)` returning `(codebook_loss, commitment_loss, total)`:
# mean squared errors between the encoder output `z_e` and the chosen codes `z_q` (both
# `(B, D, h, w)`), with `.detach()` placed so that the codebook loss moves only the codes and
# the commitment loss moves only the encoder; `total = codebook_loss + beta * commitment_loss`.

# %%
def vq_losses(z_e, z_q, beta=0.25):
    """Codebook and commitment losses (scalars) of (B, D, h, w) inputs: (codebook, commitment, total)."""
    ### BEGIN SOLUTION
    codebook_loss = F.mse_loss(z_q, z_e.detach())
    commitment_loss = F.mse_loss(z_e, z_q.detach())
    return codebook_loss, commitment_loss, codebook_loss + beta * commitment_loss
    ### END SOLUTION


# %% tags=["check"]
with skip_if_unanswered():
    z_e = torch.randn(2, 3, 2, 2, requires_grad=True)
    z_q = torch.randn(2, 3, 2, 2, requires_grad=True)   # stands in for codebook[indices]
    codebook_loss, commitment_loss, total = vq_losses(z_e, z_q, beta=0.5)
    mse = F.mse_loss(z_e, z_q).item()
    assert abs(codebook_loss.item() - mse) < 1e-6 and abs(commitment_loss.item() - mse) < 1e-6, \
        f"both losses should equal the mean squared error {mse:.4f}, got {codebook_loss.item():.4f} and {commitment_loss.item():.4f}"
    assert abs(total.item() - 1.5 * mse) < 1e-5, f"total with beta=0.5: expected {1.5 * mse:.4f}, got {total.item():.4f}"
    codebook_loss.backward(retain_graph=True)
    assert z_e.grad is None, "the codebook loss sends a gradient to the encoder output z_e: it must not (stop-gradient on z_e)"
    assert z_q.grad is not None, "the codebook loss sends no gradient to the codes z_q"
    z_q.grad = None
    commitment_loss.backward()
    assert z_q.grad is None, "the commitment loss sends a gradient to the codes z_q: it must not (stop-gradient on z_q)"
    assert z_e.grad is not None, "the commitment loss sends no gradient to the encoder output z_e"
    # The total moves the codes by the codebook term alone and the encoder by beta * commitment.
    z_e.grad = z_q.grad = None
    vq_losses(z_e, z_q, beta=0.5)[2].backward()
    expect_close("d total / d z_q (codebook term only, weight 1)", z_q.grad, 2 * (z_q - z_e).detach() / z_q.numel())
    expect_close("d total / d z_e (beta * commitment term, beta = 0.5)", z_e.grad, 0.5 * 2 * (z_e - z_q).detach() / z_e.numel())
    print("vq_losses: the checks passed")

# %% tags=["hidden-tests"] question="vq_losses" points=3
g = rng(31)


def verdict(r, z_e, codes, z_q_value, g_codes_ref):
    shape = tuple(z_e.shape)
    mse = ((z_e.detach() - z_q_value) ** 2).mean()
    cb, cm, total = r.outputs(3)
    for name, value in (("codebook_loss", cb), ("commitment_loss", cm), ("total", total)):
        assert value.dim() == 0, f"input {shape}: {name} should be a scalar, got shape {tuple(value.shape)}"
    assert torch.allclose(cb, mse) and torch.allclose(cm, mse), \
        f"input {shape}: the losses are not the mean squared error between z_e and z_q"
    assert torch.allclose(total, 1.3 * mse), f"input {shape}: total is not codebook_loss + beta * commitment_loss"
    (g_codes,) = r.grad(0)
    assert g_codes is not None and g_codes.abs().sum() > 0, "the codebook loss does not train the codebook"
    assert r.grad(1)[0] is None, "the codebook loss trains the encoder"
    assert r.grad(2)[0] is None, "the commitment loss trains the codebook"
    (g_enc,) = r.grad(3)
    assert g_enc is not None and torch.allclose(g_enc, 2 * (z_e.detach() - z_q_value) / z_e.numel(), atol=1e-6), \
        f"input {shape}: the commitment gradient on z_e is wrong"
    t_codes, t_enc = r.grad(4)
    assert t_codes is not None and torch.allclose(t_codes, g_codes_ref, atol=1e-6), \
        "the gradient of total on the codebook is not the codebook loss's alone (weight 1, no beta)"
    assert t_enc is not None and torch.allclose(t_enc, 0.3 * 2 * (z_e.detach() - z_q_value) / z_e.numel(), atol=1e-6), \
        "the gradient of total on z_e is not beta times the commitment loss's"
    assert r.grad_after_call(z_e) is None and r.grad_after_call(codes) is None, "vq_losses left .grad on its inputs"


for B, D, h, w in ((3, 4, 2, 5), (1, 2, 3, 1)):   # the second: a batch of one, non-square
    z_e = torch.randn(B, D, h, w, generator=g, requires_grad=True)
    codes = torch.randn(6, D, generator=g, requires_grad=True)
    idx = torch.randint(0, 6, (B, h, w), generator=g)
    z_q = Op("permute", Op("embedding", idx, codes), (0, 3, 1, 2))   # built in the sandbox, so it depends on codes
    codes_ref = codes.detach().clone().requires_grad_()
    g_codes_ref = torch.autograd.grad(((codes_ref[idx].permute(0, 3, 1, 2) - z_e.detach()) ** 2).mean(), codes_ref)[0]
    check(Call("vq_losses", z_e, z_q, beta=0.3,
               grads=[Grad([(Out(0), None)], wrt=[codes]), Grad([(Out(0), None)], wrt=[z_e]),
                      Grad([(Out(1), None)], wrt=[codes]), Grad([(Out(1), None)], wrt=[z_e]),
                      Grad([(Out(2), None)], wrt=[codes, z_e])]),
          verdict, z_e=z_e, codes=codes, z_q_value=z_q.value().detach(), g_codes_ref=g_codes_ref)

# %% [markdown]
# ## Question 2 (2 points): the straight-through estimator
#
# Write `straight_through(z_e, z_q)`: its *value* must be `z_q` (the decoder sees the
# codes), while its *gradient* goes unchanged to `z_e` and not at all to `z_q`.
# One line does it: add to `z_e` a detached correction.

# %%
def straight_through(z_e, z_q):
    """Value of z_q, gradient of identity to z_e: (B, D, h, w), (B, D, h, w) -> (B, D, h, w)."""
    ### BEGIN SOLUTION
    return z_e + (z_q - z_e).detach()
    ### END SOLUTION


# %% tags=["check"]
with skip_if_unanswered():
    z_e = torch.randn(1, 2, 2, 2, requires_grad=True)
    z_q = torch.randn(1, 2, 2, 2, requires_grad=True)
    out = straight_through(z_e, z_q)
    assert torch.allclose(out, z_q), "the value should equal z_q"
    (out * 3).sum().backward()
    assert z_e.grad is not None and torch.allclose(z_e.grad, torch.full_like(z_e, 3.0)), \
        f"the upstream gradient (3 everywhere) should reach z_e unchanged, got {z_e.grad}"
    assert z_q.grad is None, "a gradient reaches z_q through the straight-through path: detach it"
    print("straight_through: the checks passed")

# %% tags=["hidden-tests"] question="straight_through" points=2
g = rng(2)


def verdict(r, z_e, z_q, upstream):
    shape = tuple(z_e.shape)
    out = r.tensor()
    assert tuple(out.shape) == shape, f"input {shape}: expected shape {shape}, got {tuple(out.shape)}"
    assert out.dtype == z_e.dtype, f"input {shape}: expected dtype {z_e.dtype}, got {out.dtype}"
    assert torch.allclose(out, z_q.detach(), atol=1e-6), f"input {shape}: the value is not z_q"
    g_enc, g_codes = r.grad(0)
    assert g_enc is not None and torch.allclose(g_enc, upstream), f"input {shape}: the gradient does not reach z_e unchanged"
    assert g_codes is None or g_codes.abs().sum() == 0, f"input {shape}: a gradient reaches z_q"
    assert torch.equal(r.after(z_e), z_e.detach()) and torch.equal(r.after(z_q), z_q.detach()), "straight_through changed its inputs"
    assert r.grad_after_call(z_e) is None and r.grad_after_call(z_q) is None, "straight_through left .grad on its inputs"


for shape in ((2, 3, 4, 1), (1, 2, 3, 5)):
    z_e = torch.randn(*shape, generator=g, requires_grad=True)
    z_q = torch.randn(*shape, generator=g, requires_grad=True)
    upstream = torch.randn(*shape, generator=g)
    check(Call("straight_through", z_e, z_q, grads=[Grad([(Out(), upstream)], wrt=[z_e, z_q])]), verdict,
          z_e=z_e, z_q=z_q, upstream=upstream)

# %% [markdown]
# ## Question 3 (3 points): find the bugs
#
# `buggy_vector_quantize` below follows a listing that circulates with the lecture. It
# runs without an error, yet three of its lines are wrong, for two reasons: one picks the
# wrong code, and two mix up the `(B, D, h, w)` layout, once on the way into the
# distances and once on the way back. Read it, find the three lines, and write a
# corrected `vector_quantize(z_e, codebook, beta=0.25)` returning
# `(z_q, loss, indices)`: `z_q (B, D, h, w)` with the straight-through gradient, `loss` the
# codebook loss plus `beta` times the commitment loss, and `indices (B, h, w)`.

# %%
def buggy_vector_quantize(z_e, codebook, beta=0.25):
    B, D, h, w = z_e.shape
    flat = z_e.reshape(-1, D)
    distances = (flat**2).sum(1, keepdim=True) + (codebook**2).sum(1) - 2 * flat @ codebook.t()
    indices = distances.argmax(dim=1)
    z_q = codebook[indices].reshape(B, D, h, w)
    loss = F.mse_loss(z_q, z_e.detach()) + beta * F.mse_loss(z_e, z_q.detach())
    z_q = z_e + (z_q - z_e).detach()
    return z_q, loss, indices.reshape(B, h, w)


# %%
def vector_quantize(z_e, codebook, beta=0.25):
    """Quantize (B, D, h, w) with a (K, D) codebook: returns (z_q, loss, indices (B, h, w))."""
    ### BEGIN SOLUTION
    B, D, h, w = z_e.shape
    flat = z_e.permute(0, 2, 3, 1).reshape(-1, D)                  # channels last before flattening
    distances = (flat**2).sum(1, keepdim=True) + (codebook**2).sum(1) - 2 * flat @ codebook.t()
    indices = distances.argmin(dim=1)                               # nearest, not farthest
    z_q = codebook[indices].reshape(B, h, w, D).permute(0, 3, 1, 2)
    loss = F.mse_loss(z_q, z_e.detach()) + beta * F.mse_loss(z_e, z_q.detach())
    z_q = z_e + (z_q - z_e).detach()
    return z_q, loss, indices.reshape(B, h, w)
    ### END SOLUTION


# %% tags=["check"]
with skip_if_unanswered():
    codebook = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]])
    wanted = torch.tensor([[[1, 2, 0], [0, 2, 1]]])                      # (1, 2, 3)
    z_e = (codebook[wanted] + 0.1).permute(0, 3, 1, 2)                  # (1, 2, 2, 3)
    z_q, loss, idx = vector_quantize(z_e, codebook)
    assert tuple(idx.shape) == (1, 2, 3), f"indices: expected shape (1, 2, 3), got {tuple(idx.shape)}"
    assert torch.equal(idx, wanted), (
        f"indices: expected\n{wanted}\ngot\n{idx}\n(the nearest code has the smallest distance; "
        "the D numbers of one position lie along dimension 1, so move them last before flattening)")
    assert torch.allclose(z_q, codebook[wanted].permute(0, 3, 1, 2)), (
        "z_q does not hold the chosen codes at the right positions (the codes come out as (B, h, w, D) "
        "rows: reshape to that, then move D back to dimension 1)")
    # Gradients: straight through to z_e; the loss moves the codes by the codebook term (weight 1).
    z_e.requires_grad_()
    codebook.requires_grad_()
    z_q, loss, idx = vector_quantize(z_e, codebook, beta=0.25)
    z_q.sum().backward(retain_graph=True)
    expect_close("d z_q.sum() / d z_e (straight-through: ones)", z_e.grad, torch.ones_like(z_e))
    codebook.grad = None
    loss.backward()
    chosen = codebook.detach()[wanted].permute(0, 3, 1, 2)
    expected = torch.zeros(3, 2).index_add_(0, wanted.reshape(-1), (2 * (chosen - z_e.detach()) / z_e.numel()).permute(0, 2, 3, 1).reshape(-1, 2))
    expect_close("d loss / d codebook (the codebook term, without beta)", codebook.grad, expected)
    print("vector_quantize: the check passed")

# %% tags=["hidden-tests"] question="fix_quantizer" points=3
g = rng(17)


def verdict(r, shape, K, z_e, codebook, upstream):
    B, D, h, w = shape
    z_q, loss, idx = r.outputs(3)
    flat = z_e.detach().permute(0, 2, 3, 1).reshape(-1, D)
    ref_idx = torch.cdist(flat, codebook.detach()).argmin(1).reshape(B, h, w)
    assert tuple(idx.shape) == (B, h, w), f"indices for {shape}: expected shape {(B, h, w)}, got {tuple(idx.shape)}"
    assert torch.equal(idx, ref_idx), f"input {shape} with {K} codes: wrong code indices"
    ref_q = codebook.detach()[ref_idx].permute(0, 3, 1, 2)
    assert torch.allclose(z_q.detach(), ref_q, atol=1e-6), f"input {shape}: z_q does not hold the nearest codes"
    mse = ((z_e.detach() - ref_q) ** 2).mean()
    assert torch.allclose(loss.detach(), 1.4 * mse, rtol=1e-4), f"input {shape}: loss should be (1 + beta) * mse here"
    (g_enc,) = r.grad(0)
    assert g_enc is not None and torch.allclose(g_enc, upstream), "the straight-through gradient does not reach z_e unchanged"
    g_codes, g_enc_loss = r.grad(1)
    assert g_codes is not None and g_codes.abs().sum() > 0, "the loss does not train the codebook"
    cb = codebook.detach().clone().requires_grad_()
    want = torch.autograd.grad(((cb[ref_idx].permute(0, 3, 1, 2) - z_e.detach()) ** 2).mean(), cb)[0]
    assert torch.allclose(g_codes, want, atol=1e-6), \
        f"input {shape}: the loss's gradient on the codebook is not the codebook term's (weight 1, beta on the commitment term)"
    assert g_enc_loss is not None and torch.allclose(g_enc_loss, 0.4 * 2 * (z_e.detach() - ref_q) / z_e.numel(), atol=1e-6), \
        f"input {shape}: the loss's gradient on z_e is not beta times the commitment term's"


for shape, K in (((2, 3, 4, 5), 8), ((1, 6, 2, 3), 4)):
    z_e = torch.randn(*shape, generator=g, requires_grad=True)
    codebook = torch.randn(K, shape[1], generator=g, requires_grad=True)
    upstream = torch.randn(*shape, generator=g)
    call = Call("vector_quantize", z_e, codebook, beta=0.4,
                grads=[Grad([(Out(0), upstream)], wrt=[z_e]), Grad([(Out(1), None)], wrt=[codebook, z_e])])
    check(call, verdict, shape=shape, K=K, z_e=z_e, codebook=codebook, upstream=upstream)

# %% [markdown]
# ## Question 4 (2 points): a known-answer test
#
# The bugs of question 3 run silently, so test a quantizer on a case whose answer you
# know: every codebook vector, fed back in as an encoder output, must come back as its own
# index, `0, 1, ..., K-1`. Write `codebook_as_encoder_output(codebook)`: from a `(K, D)`
# codebook build the encoder output `(1, D, 1, K)` (one image, a `1 x K` grid) whose
# position `(0, :, 0, k)` holds code `k`. Mind the same trap as in question 3: the `D`
# numbers of one code must end up along dimension 1.

# %%
def codebook_as_encoder_output(codebook):
    """The K codes as a (1, D, 1, K) encoder output: position (0, :, 0, k) holds code k."""
    ### BEGIN SOLUTION
    K, D = codebook.shape
    return codebook.t().reshape(1, D, 1, K)
    ### END SOLUTION


# %% tags=["check"]
with skip_if_unanswered():
    codebook = torch.randn(6, 3)
    grid = codebook_as_encoder_output(codebook)
    assert tuple(grid.shape) == (1, 3, 1, 6), f"a (6, 3) codebook: expected shape (1, 3, 1, 6), got {tuple(grid.shape)}"
    for k in (0, 4):
        expect_close(f"grid[0, :, 0, {k}] (code {k})", grid[0, :, 0, k], codebook[k])
    print("codebook_as_encoder_output: the check passed")

# %% [markdown]
# Now the test itself, on your quantizer and on the listing: the buggy one fails it.

# %% tags=["uses-answers"]
with skip_if_unanswered():
    codebook = torch.randn(6, 3)
    grid = codebook_as_encoder_output(codebook)
    for label, quantize in (("your vector_quantize", vector_quantize), ("buggy_vector_quantize", buggy_vector_quantize)):
        idx = quantize(grid, codebook)[2].flatten().tolist()
        print(f"{label:22s} returns {idx}: {'passes' if idx == list(range(6)) else 'FAILS'} the known-answer test")

# %% tags=["hidden-tests"] question="known_answer" points=2
g = rng(23)


def verdict(r, codebook):
    K, D = codebook.shape
    grid = r.tensor()
    assert tuple(grid.shape) == (1, D, 1, K), f"a ({K}, {D}) codebook: expected shape {(1, D, 1, K)}, got {tuple(grid.shape)}"
    for k in range(K):
        assert torch.equal(grid[0, :, 0, k], codebook[k]), f"a ({K}, {D}) codebook: position (0, :, 0, {k}) does not hold code {k}"
    assert torch.equal(r.after(codebook), codebook), "codebook_as_encoder_output changed the codebook"


for K, D in ((5, 3), (4, 4), (1, 2), (7, 1)):
    codebook = torch.randn(K, D, generator=g)
    check(Call("codebook_as_encoder_output", codebook), verdict, codebook=codebook)
