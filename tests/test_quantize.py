"""Tests that pin the vector quantizer's math (Eq. 22, straight-through, EMA, argmin)."""
import math

import pytest
import torch
import torch.nn.functional as F

from dlstudio_lite.quantize import (DEFAULT_MAINTENANCE, QUANTIZERS, CodebookQuantizer,
                                    EMAVectorQuantizer,
                                    VectorQuantizer, VQOutput, code_usage, kmeans, nearest_codes,
                                    perplexity)

# The mechanics tests set codebooks by hand: no k-means start or restart may move them.
PLAIN = dict(kmeans_init=False, dead_code_steps=0)


def brute_force(z, codebook):
    """Nearest code by explicit float64 distances, the slow obvious way."""
    return ((z.double()[:, None, :] - codebook.double()[None]) ** 2).sum(-1).argmin(1)


def to_rows(z_e):
    return z_e.permute(0, 2, 3, 1).reshape(-1, z_e.shape[1])


@pytest.mark.parametrize("chunk_elements", [2 ** 24, 1000, 1])
def test_argmin_matches_brute_force(chunk_elements):
    g = torch.Generator().manual_seed(0)
    z, codebook = torch.randn(700, 8, generator=g), torch.randn(50, 8, generator=g)
    got = nearest_codes(z, codebook, chunk_elements=chunk_elements)
    assert torch.equal(got, brute_force(z, codebook))


def test_distances_are_computed_in_bounded_chunks(monkeypatch):
    sizes, addmm = [], torch.addmm

    def spy(*args, **kwargs):
        out = addmm(*args, **kwargs)
        sizes.append(out.numel())
        return out

    monkeypatch.setattr(torch, "addmm", spy)
    z, codebook = torch.randn(1000, 4), torch.randn(30, 4)
    nearest_codes(z, codebook, chunk_elements=300)
    assert sizes and max(sizes) <= 300 and sum(sizes) == 1000 * 30


def test_forward_indices_match_brute_force_with_chunking_forced():
    torch.manual_seed(0)
    vq = VectorQuantizer(40, 6, chunk_elements=40 * 7, **PLAIN)  # 7 rows per chunk, many chunks
    with torch.no_grad():
        vq.codebook.normal_()
    z_e = torch.randn(3, 6, 5, 4)
    out = vq(z_e)
    assert isinstance(out, VQOutput)
    assert out.indices.shape == (3, 5, 4) and out.indices.dtype == torch.long
    assert torch.equal(out.indices.flatten(), brute_force(to_rows(z_e), vq.codebook))
    # the forward value is the chosen code, laid out back as (B, D, h, w)
    assert torch.allclose(out.quantized, vq.codebook[out.indices].permute(0, 3, 1, 2))


def test_quantizes_channel_vectors_not_memory_rows():
    # Pixel 0 holds (10, 10), pixel 1 holds (0, 0). Flattening BCHW without moving channels
    # last would give rows (10, 0) and (10, 0), both nearest to code 2.
    z_e = torch.tensor([[[[10.0, 0.0]], [[10.0, 0.0]]]])  # (B=1, D=2, h=1, w=2)
    vq = VectorQuantizer(3, 2, **PLAIN)
    with torch.no_grad():
        vq.codebook.copy_(torch.tensor([[10.0, 10.0], [0.0, 0.0], [10.0, 0.0]]))
    assert vq(z_e).indices.tolist() == [[[0, 1]]]


def test_gradients_follow_eq22():
    """Codebook learns only from the codebook term, decoder only from reconstruction,
    encoder output from reconstruction (straight-through copy) plus beta * commitment."""
    torch.manual_seed(0)
    beta = 0.7  # not 1, so swapping beta onto the codebook term (taming "legacy") shows
    vq = VectorQuantizer(16, 4, beta=beta, **PLAIN)
    with torch.no_grad():
        vq.codebook.normal_()
    decoder = torch.nn.Conv2d(4, 3, 1)
    z_e = torch.randn(2, 4, 3, 3, requires_grad=True)
    target = torch.randn(2, 3, 3, 3)
    out = vq(z_e)
    recon = F.mse_loss(decoder(out.quantized), target)

    # reconstruction term: nothing reaches the codebook; z_e gets exactly dL/dz_q
    g_ze, g_zq, g_cb = torch.autograd.grad(recon, [z_e, out.quantized, vq.codebook],
                                           retain_graph=True, allow_unused=True)
    assert g_cb is None or torch.count_nonzero(g_cb) == 0
    assert torch.allclose(g_ze, g_zq)
    assert all(g is not None for g in torch.autograd.grad(recon, list(decoder.parameters()),
                                                          retain_graph=True))

    # VQ loss: never reaches the decoder; codebook and encoder get the hand-computed grads
    assert all(g is None for g in torch.autograd.grad(out.loss, list(decoder.parameters()),
                                                      retain_graph=True, allow_unused=True))
    g_ze_vq, g_cb_vq = torch.autograd.grad(out.loss, [z_e, vq.codebook])
    z, idx = to_rows(z_e.detach()), out.indices.flatten()
    e = vq.codebook.detach()[idx]
    n = z.numel()
    want_cb = torch.zeros_like(vq.codebook).index_add_(0, idx, 2 * (e - z) / n)
    want_ze = (beta * 2 * (z - e) / n).view(2, 3, 3, 4).permute(0, 3, 1, 2)
    assert torch.allclose(g_cb_vq, want_cb, atol=1e-7)
    assert torch.allclose(g_ze_vq, want_ze, atol=1e-7)
    # and the value is codebook + beta * commitment (both mean squared errors)
    assert torch.allclose(out.loss, (1 + beta) * F.mse_loss(z, e))


def test_autocast_bf16_picks_the_same_codes_as_fp32():
    # Vectors far from the origin and close to each other: distances computed in bf16 pick
    # the wrong code for almost every vector here (checked: about 9 in 10).
    g = torch.Generator().manual_seed(0)
    vq = VectorQuantizer(64, 16, **PLAIN)
    with torch.no_grad():
        vq.codebook.copy_(10 + 0.5 * torch.randn(64, 16, generator=g))
    z_e = (10 + 0.5 * torch.randn(4, 16, 8, 8, generator=g)).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = vq(z_e)
    fp32 = vq(z_e.float())
    assert torch.equal(out.indices, fp32.indices)
    assert torch.equal(out.indices.flatten(), brute_force(to_rows(z_e.float()), vq.codebook))
    assert out.quantized.dtype == torch.float32 and torch.isfinite(out.loss)


def test_perplexity_extremes():
    k = 8
    assert perplexity(torch.arange(k).repeat(5), k).item() == pytest.approx(k)
    assert perplexity(torch.full((40,), 3), k).item() == pytest.approx(1.0)
    two = torch.tensor([0, 0, 1, 1])
    assert perplexity(two, k).item() == pytest.approx(2.0)


def test_output_perplexity_and_usage():
    vq = VectorQuantizer(4, 2, **PLAIN).eval()
    with torch.no_grad():
        vq.codebook.copy_(torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]]))
    z_e = vq.codebook.detach()[torch.tensor([0, 1, 2, 3])].T.reshape(1, 2, 2, 2)
    out = vq(z_e)
    assert out.perplexity.item() == pytest.approx(4.0)
    assert out.usage.item() == pytest.approx(1.0)
    out = vq(torch.zeros(1, 2, 2, 2))
    assert out.perplexity.item() == pytest.approx(1.0)
    assert out.usage.item() == pytest.approx(0.25)


def test_shape_errors_are_clear():
    vq = VectorQuantizer(16, 8, **PLAIN)
    with pytest.raises(ValueError, match=r"\(B, 8, h, w\).*\(2, 4, 3, 3\)"):
        vq(torch.randn(2, 4, 3, 3))
    with pytest.raises(ValueError, match="got"):
        vq(torch.randn(8, 3))
    with pytest.raises(ValueError, match=r"\[0, 16\)"):
        vq.lookup(torch.full((1, 2, 2), 16))


def test_ema_update_matches_hand_computation():
    decay, eps = 0.9, 1e-5
    vq = EMAVectorQuantizer(3, 2, beta=0.25, decay=decay, eps=eps, **PLAIN)
    init = torch.tensor([[0.0, 0.0], [5.0, 5.0], [-5.0, 5.0]])
    vq.codebook.copy_(init)
    vq.embed_sum.copy_(init)
    buffer_before = vq.codebook.data_ptr()
    rows = torch.tensor([[0.5, 0.0], [1.0, -1.0], [4.0, 6.0]])  # two to code 0, one to code 1
    vq.train()(rows.T.reshape(1, 2, 1, 3))

    counts, sums = [2.0, 1.0, 0.0], [[1.5, -1.0], [4.0, 6.0], [0.0, 0.0]]
    size = [decay * 1.0 + (1 - decay) * c for c in counts]
    total = sum(size)
    for k in range(3):
        smoothed = (size[k] + eps) / (total + 3 * eps) * total
        m = [decay * init[k, j].item() + (1 - decay) * sums[k][j] for j in range(2)]
        want = torch.tensor([m[0] / smoothed, m[1] / smoothed])
        assert torch.allclose(vq.codebook[k], want, atol=1e-6), k
        assert vq.cluster_size[k].item() == pytest.approx(size[k])
    # buffers updated in place; no Parameters for an optimizer to hold stale copies of
    assert vq.codebook.data_ptr() == buffer_before
    assert list(vq.parameters()) == []
    assert {"codebook", "cluster_size", "embed_sum"} <= set(vq.state_dict())


def test_ema_loss_is_commitment_only_and_eval_does_not_update():
    torch.manual_seed(0)
    vq = EMAVectorQuantizer(8, 4, beta=0.25, **PLAIN)
    z_e = torch.randn(2, 4, 3, 3, requires_grad=True)
    out = vq.eval()(z_e)
    e = vq.codebook[out.indices.flatten()]
    assert torch.allclose(out.loss, 0.25 * F.mse_loss(to_rows(z_e), e))
    before = vq.state_dict()
    before = {k: v.clone() for k, v in before.items()}
    vq(z_e)
    vq.encode_indices(z_e)
    assert all(torch.equal(before[k], v) for k, v in vq.state_dict().items())


def test_ema_codes_stay_bounded_in_first_steps():
    # Data that uses only a few codes: with the common bad initialisation (cluster sizes 0,
    # random sums) unused codes are divided by ~eps and jump to norms near 1e5.
    torch.manual_seed(0)
    vq = EMAVectorQuantizer(64, 8, decay=0.99, **PLAIN).train()
    with torch.no_grad():
        vq.codebook.normal_()
        vq.embed_sum.copy_(vq.codebook)
    init_norm = vq.codebook.norm(dim=1).max()
    centres = 2 * torch.randn(3, 8)
    for _ in range(20):
        rows = centres[torch.randint(0, 3, (128,))] + 0.1 * torch.randn(128, 8)
        vq(rows.T.reshape(1, 8, 8, 16))
        assert torch.isfinite(vq.codebook).all()
    bound = 2 * max(init_norm, (centres.norm(dim=1).max() + 1))
    assert vq.codebook.norm(dim=1).max() < bound


@pytest.mark.parametrize("cls", [VectorQuantizer, EMAVectorQuantizer])
def test_dead_code_restart_moves_unused_codes(cls):
    torch.manual_seed(0)
    vq = cls(4, 2, dead_code_steps=2, kmeans_init=False).train()
    far = torch.tensor([[0.0, 0.0], [1.0, 1.0], [100.0, 100.0], [-100.0, 100.0]])
    with torch.no_grad():
        vq.codebook.copy_(far)
        if cls is EMAVectorQuantizer:
            vq.embed_sum.copy_(far)
    rows = torch.rand(16, 2)  # all near codes 0 and 1; codes 2 and 3 are never chosen
    z_e = rows.T.reshape(1, 2, 4, 4)
    vq(z_e)
    assert torch.allclose(vq.codebook[2:], far[2:], rtol=1e-3)  # unused for one step: kept
    vq(z_e)
    for k in (2, 3):  # unused for two steps: now a vector of the current batch
        assert ((rows - vq.codebook[k]).abs().sum(1) < 1e-6).any(), k
    assert vq.codebook[2:].abs().max() < 2
    assert (vq.steps_unused == 0).all()  # restarted codes reset; used codes never counted
    if cls is VectorQuantizer:  # used codes are left alone (EMA codes move by their EMA)
        assert torch.equal(vq.codebook[:2].detach(), far[:2])


def test_no_restart_when_disabled():
    vq = VectorQuantizer(4, 2, **PLAIN).train()
    with torch.no_grad():
        vq.codebook.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [100.0, 100.0], [-9.0, 9.0]]))
    before = vq.codebook.detach().clone()
    for _ in range(5):
        vq(torch.rand(1, 2, 4, 4))
    assert torch.equal(vq.codebook.detach(), before)


@pytest.mark.parametrize("cls", [VectorQuantizer, EMAVectorQuantizer])
def test_kmeans_init_finds_the_clusters(cls):
    torch.manual_seed(0)
    centres = torch.tensor([[5.0, 0.0], [-5.0, 0.0], [0.0, 5.0], [0.0, -5.0]])
    rows = centres.repeat(64, 1) + 0.05 * torch.randn(256, 2)
    vq = cls(4, 2, kmeans_init=True, kmeans_iters=10, dead_code_steps=0).train()
    assert not bool(vq.initialized)
    out = vq(rows.T.reshape(1, 2, 16, 16))
    assert bool(vq.initialized)
    assert out.usage.item() == 1.0
    dist = torch.cdist(centres, vq.codebook.detach())
    assert (dist.min(1).values < 0.2).all()
    # kmeans itself: every centre is the mean of its cluster
    found = kmeans(rows, 4, iters=10)
    assert torch.cdist(centres, found).min(1).values.max() < 0.2


@pytest.mark.parametrize("cls", [VectorQuantizer, EMAVectorQuantizer])
def test_a_loaded_codebook_is_kept_by_the_default_kmeans_start(cls):
    # Lecture 1 loads a codebook into a quantizer built with the defaults and checks that it
    # picks the same tokens as a plain nearest-code function. With the k-means start on by
    # default, a codebook written into vq.codebook was replaced on the first training-mode
    # forward pass; load_codebook marks the loaded codes as the start.
    torch.manual_seed(0)
    codes, z = torch.randn(6, 3), torch.randn(2, 3, 4, 5)
    vq = cls(num_codes=6, code_dim=3).train()
    assert vq.maintenance.kmeans_init      # the default this test guards against
    vq.load_codebook(codes)
    out = vq(z)
    want = torch.cdist(z.permute(0, 2, 3, 1).reshape(-1, 3), codes).argmin(1).view(2, 4, 5)
    assert torch.equal(out.indices, want)
    assert torch.allclose(out.quantized, codes[want].permute(0, 3, 1, 2), atol=1e-6)
    if cls is VectorQuantizer:             # the EMA rule moves its codes after a batch, by design
        assert torch.equal(vq.codebook.detach(), codes)
    with pytest.raises(ValueError, match=r"\(6, 3\)"):
        vq.load_codebook(torch.randn(5, 3))


def test_lookup_inverts_indices():
    torch.manual_seed(0)
    vq = VectorQuantizer(10, 3, **PLAIN).eval()
    z_e = torch.randn(2, 3, 4, 5)
    out = vq(z_e)
    # z_e + (e - z_e) equals e only up to rounding, hence the tolerance
    assert torch.allclose(vq.lookup(out.indices), out.quantized, atol=1e-6)
    assert torch.equal(vq.encode_indices(z_e), out.indices)


def test_straight_through_value_and_large_codebook_runs():
    # K * N = 2^26 would be a 256 MiB one-hot; chunked distances keep it small and fast.
    torch.manual_seed(0)
    vq = VectorQuantizer(4096, 8, chunk_elements=2 ** 22, **PLAIN)
    z_e = torch.randn(4, 8, 64, 64, requires_grad=True)
    out = vq(z_e)
    out.quantized.sum().backward()
    assert torch.equal(z_e.grad, torch.ones_like(z_e))  # identity gradient through z_q
    assert math.isfinite(out.perplexity.item())


def _ddp_worker(rank, world, init_file, out_dir):
    import torch.distributed as dist
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    try:
        torch.manual_seed(0)  # same initial codebook on both ranks
        vq = EMAVectorQuantizer(8, 2, decay=0.5, dead_code_steps=1, kmeans_init=False).train()
        rows = torch.randn(2, 32, 2, generator=torch.Generator().manual_seed(1))[rank]
        vq(rows.T.reshape(1, 2, 4, 8))
        torch.save(vq.state_dict(), f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_ema_statistics_are_shared_across_ddp_ranks(tmp_path):
    """Two gloo ranks with different data end with identical buffers, equal to one process
    that saw both batches (dead codes restarted identically on both ranks)."""
    import torch.multiprocessing as mp
    # fork starts in well under a second; spawn re-imports torch in each child (seconds).
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    mp.start_processes(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2,
                       join=True, start_method=method)
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    a, b = results[0], results[1]
    assert all(torch.equal(a[k], b[k]) for k in a)
    torch.manual_seed(0)
    single = EMAVectorQuantizer(8, 2, decay=0.5, **PLAIN).train()
    rows = torch.randn(2, 32, 2, generator=torch.Generator().manual_seed(1)).reshape(64, 2)
    out = single(rows.T.reshape(1, 2, 8, 8))
    used = torch.bincount(out.indices.flatten(), minlength=8) > 0
    assert torch.allclose(a["codebook"][used], single.codebook[used], atol=1e-6)
    assert torch.allclose(a["cluster_size"][used], single.cluster_size[used])


def test_kmeans_finds_small_clusters_next_to_a_dominant_background():
    # Image latents are mostly one background vector; starting centres must be distinct
    # rows, or several codes start (and stay) on the background and the shapes get none.
    torch.manual_seed(0)
    background = torch.zeros(1000, 2)
    means = torch.tensor([[5.0, 0.0], [0.0, 5.0], [5.0, 5.0]])
    shapes = (means[:, None, :] + 0.1 * torch.randn(3, 10, 2)).reshape(30, 2)
    centres = kmeans(torch.cat([background, shapes]), 4, iters=10)
    for m in torch.cat([torch.zeros(1, 2), means]):
        assert (centres - m).norm(dim=1).min() < 0.5, f"no centre near {m.tolist()}"


def test_code_usage_gives_perplexity_usage_and_bits():
    stats = code_usage(torch.tensor([5, 5, 5, 5, 0, 0, 0, 0]))
    assert stats.perplexity.item() == pytest.approx(4.0)
    assert stats.usage.item() == pytest.approx(0.5)
    assert stats.bits.item() == pytest.approx(2.0)
    assert code_usage(torch.zeros(4, dtype=torch.long)).bits.item() == 0.0


def test_vq_models_take_their_maintenance_defaults_from_one_place():
    import inspect

    from dlstudio_lite.vqvae import VQVAE
    params = inspect.signature(VQVAE).parameters
    assert params["kmeans_init"].default == DEFAULT_MAINTENANCE.kmeans_init
    assert params["dead_code_steps"].default == DEFAULT_MAINTENANCE.dead_code_steps
    vq = EMAVectorQuantizer(8, 2, kmeans_init=True, dead_code_steps=3)
    assert (vq.maintenance.kmeans_init, vq.maintenance.dead_code_steps) == (True, 3)


# --- a new variant: one class and one registry line (the example of docs/DESIGN.md) ---------

class FrozenQuantizer(CodebookQuantizer):
    """A fixed random codebook (as in BEST-RQ's random-projection quantizer): nothing
    learns the codes; the encoder commits to them."""

    def init_codebook(self, init):
        self.register_buffer("codebook", torch.randn_like(init))

    def codebook_loss(self, z, e):
        return self.beta * F.mse_loss(z, e.detach())


def test_a_new_quantizer_is_one_class_and_one_registry_line(monkeypatch, tmp_path, quick):
    import json

    from dlstudio_lite import cli
    from dlstudio_lite.checkpoint import load_model
    from dlstudio_lite.vqvae import VQVAE

    monkeypatch.setitem(QUANTIZERS, "frozen", FrozenQuantizer)  # the registry line
    model = VQVAE(image_size=16, latent_size=4, base_channels=8, num_codes=16, code_dim=8,
                  quantizer="frozen", dead_code_steps=1)
    assert isinstance(model.quantizer, FrozenQuantizer) and model.hparams["quantizer"] == "frozen"
    # the shared parts work unchanged: nearest code, straight-through, maintenance
    out = model.quantizer.train()(torch.randn(2, 8, 4, 4))
    assert out.indices.shape == (2, 4, 4) and out.quantized.shape == (2, 8, 4, 4)
    # selectable from the command line, trained, saved and rebuilt by name
    argv = ["train", "vqvae", "--quantizer", "frozen", "--out", str(tmp_path / "run"),
            "--data-root", str(tmp_path / "data"), "--num-images", "40", "--image-size", "16",
            "--base-channels", "8", "--num-codes", "16", "--code-dim", "8", "--batch-size", "8",
            "--steps", "2", "--no-progress"]
    assert cli.main(argv) == 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["hparams"]["quantizer"] == "frozen"
    trained = load_model(tmp_path / "run" / "checkpoint.pt")
    assert isinstance(trained.quantizer, FrozenQuantizer)
    assert list(trained.quantizer.parameters()) == []  # nothing for the optimizer


# --- collapse-free defaults (k-means start + dead-code restart) ------------------------------

def _textures(n: int, size: int = 16) -> torch.Tensor:
    """Smooth random colour fields: no background at all, unlike the shapes."""
    low = torch.rand(n, 3, 4, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1
    return torch.nn.functional.interpolate(low, size=size, mode="bilinear", align_corners=False)


def _usage_after_training(images: torch.Tensor, **upkeep):
    from torch.utils.data import TensorDataset

    from dlstudio_lite import Trainer, VQVAE, seed_everything
    from dlstudio_lite.quantize import code_counts, code_usage

    seed_everything(0)
    model = VQVAE(image_size=16, latent_size=4, base_channels=8, code_dim=32, num_codes=128, **upkeep)
    Trainer(model, TensorDataset(images), steps=30, batch_size=32, lr=2e-3, log_every=30,
            progress=False).fit()
    with torch.no_grad():
        indices = model.eval().quantize(model.encode(images)).indices
    return code_usage(code_counts(indices, 128))


@pytest.mark.parametrize("kind", ["shapes (mostly black background)", "smooth colour textures"])
def test_default_codebook_upkeep_prevents_collapse(kind):
    from dlstudio_lite import ShapesDataset

    images = (ShapesDataset("train", image_size=16, num_images=300).tensors(256) if kind.startswith("shapes")
              else _textures(256))
    default = _usage_after_training(images)
    plain = _usage_after_training(images, kmeans_init=False, dead_code_steps=0)
    # Without upkeep most of the codebook is never chosen; with the defaults most of it is.
    assert plain.usage < 0.35 and default.usage > 0.7, (plain, default)
    assert default.perplexity > 3 * plain.perplexity, (plain, default)


def test_upkeep_is_on_by_default_and_the_command_line_turns_it_off():
    from dlstudio_lite import VQGAN, VQVAE
    from dlstudio_lite.cli import build_parser

    for model in (VQVAE(image_size=16, latent_size=4, base_channels=8, code_dim=8, num_codes=16),
                  VQGAN(image_size=16, latent_size=4, base_channels=8, code_dim=8, num_codes=16)):
        assert model.quantizer.maintenance.kmeans_init and model.quantizer.maintenance.dead_code_steps > 0
    parser = build_parser()
    on = parser.parse_args(["train", "vqvae", "--out", "x"])
    off = parser.parse_args(["train", "vqvae", "--out", "x", "--no-kmeans-init", "--dead-code-steps", "0"])
    assert on.kmeans_init is True and on.dead_code_steps > 0
    assert off.kmeans_init is False and off.dead_code_steps == 0
