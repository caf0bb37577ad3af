"""Tests for the transformer prior over code indices (dlstudio_lite/prior.py)."""
import math

import pytest
import torch
import torch.nn.functional as F

from dlstudio_lite.prior import CausalSelfAttention, TransformerPrior, filter_logits, load_prior

K = 16  # codes


def tiny_prior(**kw) -> TransformerPrior:
    torch.manual_seed(0)
    args = dict(num_codes=K, latent_shape=(3, 4), n_layers=2, n_head=2, n_embd=32, dropout=0.0)
    args.update(kw)
    return TransformerPrior(**args).eval()


def test_start_token_is_never_a_code_index():
    prior = tiny_prior()
    assert prior.start_token == K  # one past the codes 0..K-1
    assert prior.tok_emb.num_embeddings == K + 1 and prior.head.out_features == K
    samples = prior.sample(8, seed=0)
    assert samples.shape == (8, 3, 4) and samples.dtype == torch.long
    assert samples.min() >= 0 and samples.max() < K
    # A code equal to the start token is not a valid code, so training data with it is refused.
    bad = torch.zeros(2, 3, 4, dtype=torch.long)
    bad[0, 1, 1] = K
    with pytest.raises(ValueError, match=r"\[0, 16\)"):
        prior.compute_loss(bad)


def test_attention_never_sees_future_positions():
    prior = tiny_prior()
    tokens = torch.randint(0, K, (2, 12), generator=torch.Generator().manual_seed(1))
    changed = tokens.clone()
    t = 7
    changed[:, t] = (changed[:, t] + 1) % K
    with torch.no_grad():
        a, b = prior(tokens), prior(changed)
    torch.testing.assert_close(a[:, :t], b[:, :t], rtol=0, atol=0)
    assert not torch.allclose(a[:, t:], b[:, t:])  # ... while later positions do react


def test_attention_scales_before_the_softmax():
    """Compare against softmax(q k^T / sqrt(d) + causal mask) v written out by hand."""
    torch.manual_seed(0)
    attn = CausalSelfAttention(n_embd=8, n_head=2).eval()
    x = torch.randn(3, 5, 8)
    q, k, v = attn.qkv(x).split(8, dim=2)
    q, k, v = (t.view(3, 5, 2, 4).transpose(1, 2) for t in (q, k, v))
    scores = q @ k.transpose(-2, -1) / math.sqrt(4)
    scores = scores.masked_fill(torch.ones(5, 5).triu(1).bool(), float("-inf"))
    y = (scores.softmax(-1) @ v).transpose(1, 2).reshape(3, 5, 8)
    torch.testing.assert_close(attn(x), attn.proj(y))


def test_positions_are_encoded():
    # With the same token everywhere and no positional encoding, every position of a causal
    # model would produce the same logits.
    prior = tiny_prior()
    with torch.no_grad():
        logits = prior(torch.full((1, 12), 3))
    assert not torch.allclose(logits[0, 1], logits[0, 5])


def test_top_k_one_is_greedy_decoding():
    prior = tiny_prior()
    tokens = torch.full((4, 1), prior.start_token)
    with torch.no_grad():
        for _ in range(12):
            nxt = prior(tokens)[:, -1].argmax(-1, keepdim=True)
            tokens = torch.cat([tokens, nxt], 1)
    greedy = tokens[:, 1:].view(4, 3, 4)
    torch.testing.assert_close(prior.sample(4, top_k=1, seed=123), greedy)
    torch.testing.assert_close(prior.sample(4, top_k=1, temperature=2.0, seed=9), greedy)


def test_seeded_sampling_repeats_and_seeds_differ():
    prior = tiny_prior()
    a = prior.sample(6, seed=1)
    torch.testing.assert_close(a, prior.sample(6, seed=1))
    assert not torch.equal(a, prior.sample(6, seed=2))
    gen = torch.Generator().manual_seed(1)
    torch.testing.assert_close(a, prior.sample(6, generator=gen))
    # top-p and top-k together still repeat from a seed
    torch.testing.assert_close(prior.sample(3, top_k=5, top_p=0.9, seed=4),
                               prior.sample(3, top_k=5, top_p=0.9, seed=4))


def test_sampling_restores_training_mode():
    prior = tiny_prior(dropout=0.1).train()
    prior.sample(1, seed=0)
    assert prior.training


def test_filter_logits_top_k_and_top_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = lambda out: torch.isfinite(out)[0].tolist()  # noqa: E731
    assert kept(filter_logits(logits, top_k=2)) == [True, True, False, False]
    assert kept(filter_logits(logits, top_p=0.5)) == [True, False, False, False]
    assert kept(filter_logits(logits, top_p=0.7)) == [True, True, False, False]
    assert kept(filter_logits(logits, top_p=1.0)) == [True] * 4
    # the order of the vocabulary does not matter
    perm = torch.tensor([2, 0, 3, 1])
    assert kept(filter_logits(logits[:, perm], top_p=0.7)) == [False, True, False, True]
    with pytest.raises(ValueError):
        filter_logits(logits, top_k=0)
    with pytest.raises(ValueError):
        filter_logits(logits, top_p=0.0)


def test_prior_loss_goes_down_on_toy_sequences():
    torch.manual_seed(0)
    prior = tiny_prior().train()
    data = torch.randint(0, K, (4, 3, 4), generator=torch.Generator().manual_seed(3))
    opt = torch.optim.AdamW(prior.parameters(), lr=3e-3)
    first = None
    for _ in range(80):
        loss, logs = prior.compute_loss(data)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    assert first == pytest.approx(math.log(K), rel=0.1)  # a fresh model is near uniform
    assert loss.item() < 0.3 * first
    assert set(logs) == {"ce", "bits_per_code", "accuracy"}


def test_compute_loss_is_next_code_cross_entropy():
    prior = tiny_prior()
    idx = torch.randint(0, K, (2, 3, 4))
    flat = idx.flatten(1)
    inputs = torch.cat([torch.full((2, 1), K), flat[:, :-1]], 1)
    expected = F.cross_entropy(prior(inputs).reshape(-1, K), flat.reshape(-1))
    torch.testing.assert_close(prior.compute_loss(idx)[0], expected)


def test_bad_inputs_raise_clear_errors():
    prior = tiny_prior()
    with pytest.raises(ValueError, match=r"\(B, 3, 4\)"):
        prior.compute_loss(torch.zeros(2, 4, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="temperature"):
        prior.sample(1, temperature=0.0)
    with pytest.raises(ValueError, match="sequence length"):
        prior(torch.zeros(1, 13, dtype=torch.long))
    with pytest.raises(ValueError, match="divisible"):
        TransformerPrior(num_codes=K, n_embd=30, n_head=4)


def test_hparams_rebuild_the_prior():
    prior = tiny_prior()
    clone = TransformerPrior(**prior.hparams)
    clone.load_state_dict(prior.state_dict())
    torch.testing.assert_close(clone.eval().sample(2, seed=0), prior.sample(2, seed=0))


# --- command line: train prior, sample --------------------------------------------------------

def test_train_prior_and_sample_commands(vq_checkpoint, tmp_path):
    import json

    from dlstudio_lite.cli import main
    from dlstudio_lite.prior import load_prior

    out = tmp_path / "prior"
    assert main(["train", "prior", "--vq-checkpoint", str(vq_checkpoint), "--out", str(out),
                 "--num-images", "64", "--steps", "3", "--batch-size", "8", "--n-layers", "1",
                 "--n-embd", "16", "--n-samples", "4", "--device", "cpu", "--no-progress"]) == 0
    for name in ("checkpoint.pt", "metrics.json", "loss_curves.png", "samples.png"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["latent_shape"] == [4, 4] and metrics["num_codes"] == K
    assert metrics["sample_fd"] >= 0 and 0 <= metrics["sample_valid_shape_rate"] <= 1
    assert metrics["train_grids"] == 52 and metrics["test_grids"] == 12
    assert 0 <= metrics["context_free_bits_per_code"] <= math.log2(K)
    prior = load_prior(out / "checkpoint.pt")
    assert prior.num_codes == K and prior.latent_shape == (4, 4)

    def sample(seed, name):
        path = tmp_path / name
        assert main(["sample", "--vq-checkpoint", str(vq_checkpoint), "--prior-checkpoint",
                     str(out / "checkpoint.pt"), "--out", str(path), "--n", "4", "--top-k", "8",
                     "--seed", str(seed), "--device", "cpu"]) == 0
        return path.read_bytes()

    first = sample(0, "a.png")
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    assert sample(0, "b.png") == first
    assert sample(1, "c.png") != first


def test_sample_command_refuses_a_mismatched_pair(vq_checkpoint, tmp_path, capsys):
    from dlstudio_lite.checkpoint import save_checkpoint
    from dlstudio_lite.cli import main

    other = TransformerPrior(num_codes=K, latent_shape=(2, 2), n_layers=1, n_embd=16)
    path = save_checkpoint({"model_name": "prior", "hparams": other.hparams,
                            "model": other.state_dict(), "optimizers": [], "schedulers": [],
                            "step": 0, "epoch": 0, "history": {}, "rng": {}, "config": {}},
                           tmp_path / "prior.pt")
    assert main(["sample", "--vq-checkpoint", str(vq_checkpoint), "--prior-checkpoint",
                 str(path), "--out", str(tmp_path / "x.png"), "--device", "cpu"]) == 2
    assert "(2, 2)" in capsys.readouterr().err
    # a VQ checkpoint is not a prior checkpoint
    assert main(["sample", "--vq-checkpoint", str(vq_checkpoint), "--prior-checkpoint",
                 str(vq_checkpoint), "--out", str(tmp_path / "x.png"), "--device", "cpu"]) == 2


def test_weight_decay_reaches_only_the_linear_weights_as_in_mingpt():
    from dlstudio_lite.config import TrainConfig
    prior = TransformerPrior(num_codes=K, latent_shape=(2, 2), n_layers=1, n_head=2, n_embd=16)
    (opt,) = prior.configure_optimizers(TrainConfig(lr=1e-3, weight_decay=0.1))
    decayed, kept = ({id(p) for p in g["params"]} for g in opt.param_groups)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]
    names = {id(p): n for n, p in prior.named_parameters()}
    assert decayed | kept == set(names) and not decayed & kept
    for i in kept:  # biases, LayerNorm gains and both embeddings are not decayed
        assert names[i].endswith("bias") or "ln" in names[i] or "emb" in names[i], names[i]
    assert all(names[i].endswith("weight") and "emb" not in names[i] for i in decayed)
    assert "tok_emb.weight" in {names[i] for i in kept} and "head.weight" in {names[i] for i in decayed}


def test_the_shipped_prior_written_with_n_layer_still_loads():
    import json

    from dlstudio_lite.paths import CHECKPOINTS
    folder = CHECKPOINTS / "prior_shapes"
    assert "n_layer" in json.loads((folder / "metrics.json").read_text())["hparams"]  # the old name
    prior = load_prior(folder / "checkpoint.pt")
    assert prior.hparams["n_layers"] == len(prior.blocks) == 4 and "n_layer" not in prior.hparams


def test_encode_once_then_train_a_prior_on_the_code_file(vq_checkpoint, tmp_path):
    import json

    from dlstudio_lite.cli import main
    from dlstudio_lite.commands.codes import load_codes
    codes = tmp_path / "codes.pt"
    assert main(["encode", "--vq-checkpoint", str(vq_checkpoint), "--out", str(codes),
                 "--num-images", "64", "--device", "cpu"]) == 0
    stored = load_codes(codes)
    assert stored["train"]["codes"].shape == (52, 4, 4) and stored["num_codes"] == {"codes": K}
    out = tmp_path / "prior"
    assert main(["train", "prior", "--codes", str(codes), "--out", str(out), "--steps", "2",
                 "--batch-size", "8", "--n-layers", "1", "--n-embd", "16", "--n-samples", "2",
                 "--device", "cpu", "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_grids"] == 52 and metrics["encode_seconds"] < 5  # read, not encoded
    # Any prior trains on the same file: a PixelCNN over the VQ-VAE's one grid.
    assert main(["train", "pixelcnn", "--codes", str(codes), "--out", str(tmp_path / "pixelcnn"),
                 "--steps", "1", "--batch-size", "8", "--channels", "8", "--n-layers", "2",
                 "--n-samples", "0", "--device", "cpu", "--no-progress"]) == 0
    assert json.loads((tmp_path / "pixelcnn" / "metrics.json").read_text())["latent_shape"] == [4, 4]


def test_an_interrupted_prior_run_resumes_to_the_uninterrupted_one(vq_checkpoint, tmp_path, monkeypatch):
    # Stage-2 runs long enough to need it (a large prior on many encoded images) continue with
    # `--resume`; the continued run must repeat the uninterrupted one loss for loss.
    from dlstudio_lite.checkpoint import load_checkpoint
    from dlstudio_lite.cli import main
    from dlstudio_lite.prior import TransformerPrior
    codes = tmp_path / "codes.pt"
    assert main(["encode", "--vq-checkpoint", str(vq_checkpoint), "--out", str(codes),
                 "--num-images", "64", "--device", "cpu"]) == 0

    def run(out, *extra):
        return main(["train", "prior", "--codes", str(codes), "--out", str(out), "--steps", "6",
                     "--batch-size", "8", "--n-layers", "1", "--n-embd", "16", "--n-samples", "0",
                     "--log-every", "1", "--device", "cpu", "--no-progress", *extra])

    assert run(tmp_path / "full") == 0
    full = load_checkpoint(tmp_path / "full" / "checkpoint.pt")["history"]["train/loss"]

    original, calls = TransformerPrior.compute_loss, {"n": 0}

    def stop_at_step_4(self, indices):
        if calls["n"] == 3:
            raise KeyboardInterrupt  # what Ctrl-C does at the start of step 4
        calls["n"] += 1
        return original(self, indices)

    monkeypatch.setattr(TransformerPrior, "compute_loss", stop_at_step_4)
    assert run(tmp_path / "cut") == 0
    assert load_checkpoint(tmp_path / "cut" / "checkpoint.pt")["step"] == 3
    monkeypatch.setattr(TransformerPrior, "compute_loss", original)
    assert run(tmp_path / "cut", "--resume") == 0
    resumed = load_checkpoint(tmp_path / "cut" / "checkpoint.pt")
    assert resumed["step"] == 6 and resumed["history"]["train/loss"] == full


def test_sampling_with_the_key_value_cache_draws_what_the_full_forward_draws():
    # The reference: recompute the whole prefix at every step (no cache), same generator.
    torch.manual_seed(0)
    prior = TransformerPrior(num_codes=12, latent_shape=(3, 4), n_layers=2, n_head=2, n_embd=16).eval()
    with torch.no_grad():  # sharper logits than at initialisation, so that the draws differ
        prior.head.weight.mul_(50.0)

    def reference(n, seed, **kw):
        generator = torch.Generator().manual_seed(seed)
        tokens = torch.full((n, 1), prior.start_token, dtype=torch.long)
        for _ in range(prior.block_size):
            logits = prior(tokens)[:, -1, :] / kw.get("temperature", 1.0)
            probs = filter_logits(logits, kw.get("top_k"), kw.get("top_p")).softmax(dim=-1)
            tokens = torch.cat([tokens, torch.multinomial(probs, 1, generator=generator)], dim=1)
        return tokens[:, 1:].reshape(n, 3, 4)

    for seed, kw in [(0, {}), (1, {"top_k": 3}), (2, {"top_p": 0.8, "temperature": 0.7})]:
        assert torch.equal(prior.sample(16, seed=seed, **kw), reference(16, seed, **kw))
    with pytest.raises(ValueError, match="one position at a time"):
        prior.blocks[0].attn(torch.randn(2, 3, 16), cache=[])
