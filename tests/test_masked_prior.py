"""Tests for the MaskGIT-style prior (dlstudio_lite/masked_prior.py)."""
import math

import pytest
import torch
import torch.nn.functional as F

from dlstudio_lite.masked_prior import MaskedPrior, mask_ratio
from dlstudio_lite.prior import TransformerPrior

K = 16


def tiny(**kw) -> MaskedPrior:
    torch.manual_seed(0)
    args = dict(num_codes=K, latent_shape=(3, 4), n_layers=2, n_head=2, n_embd=32, dropout=0.0)
    args.update(kw)
    return MaskedPrior(**args).eval()


def test_every_position_sees_every_other_unlike_the_gpt_prior():
    tokens = torch.randint(0, K, (1, 12))
    changed = tokens.clone()
    changed[0, -1] = (changed[0, -1] + 1) % K
    masked = tiny()
    assert not torch.allclose(masked(tokens)[0, 0], masked(changed)[0, 0])
    torch.manual_seed(0)
    causal = TransformerPrior(K, (3, 4), n_layers=2, n_head=2, n_embd=32, dropout=0.0).eval()
    assert torch.allclose(causal(tokens)[0, 0], causal(changed)[0, 0])


def test_the_schedule_runs_from_all_masked_to_none():
    assert float(mask_ratio(0.0)) == 1.0 and float(mask_ratio(1.0)) == pytest.approx(0.0, abs=1e-12)
    assert math.floor(64 * float(mask_ratio(2 / 3))) == 32     # cos(pi/3) = 1/2, not a hair under
    ratios = mask_ratio(torch.linspace(0, 1, 11))
    assert bool((ratios[1:] < ratios[:-1]).all())


def test_training_masks_follow_the_cosine_schedule():
    prior = tiny()
    hidden = prior.random_mask(4000, generator=torch.Generator().manual_seed(0))
    counts = hidden.sum(1)
    assert counts.min() >= 1 and counts.max() == 12
    # E[cos(pi u / 2)] = 2 / pi for u uniform; ceil adds up to one code per grid.
    share = hidden.float().mean().item()
    assert 2 / math.pi < share < 2 / math.pi + 1 / 12
    # Positions are chosen uniformly: no position is hidden much more often than another.
    assert hidden.float().mean(0).std() < 0.02


def test_loss_is_cross_entropy_on_the_masked_codes_only():
    prior = tiny()
    codes = torch.randint(0, K, (5, 3, 4))
    torch.manual_seed(7)
    loss, logs = prior.compute_loss(codes)
    torch.manual_seed(7)
    hidden = prior.random_mask(5)
    targets = codes.flatten(1)
    logits = prior(targets.masked_fill(hidden, prior.mask_token))
    assert loss.item() == pytest.approx(F.cross_entropy(logits[hidden], targets[hidden]).item(), rel=1e-5)
    assert set(logs) == {"ce", "bits_per_masked_code", "accuracy"}
    assert logs["bits_per_masked_code"].item() == pytest.approx(loss.item() / math.log(2), rel=1e-6)


def test_sampling_decodes_in_rounds_and_never_changes_a_fixed_code():
    prior = tiny(decode_steps=4)
    seen = []
    prior.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    grids = prior.sample(6, seed=1)
    assert grids.shape == (6, 3, 4) and grids.min() >= 0 and grids.max() < K
    assert len(seen) == 4  # one forward pass per round
    # Round k starts with the schedule's floor(12 cos(pi/2 k/4)) codes masked, in every grid.
    expected = [12] + [math.floor(12 * float(mask_ratio(k / 4))) for k in (1, 2, 3)]
    assert expected == [12, 11, 8, 4]
    for s, count in zip(seen, expected):
        assert (s == prior.mask_token).sum(1).tolist() == [count] * 6
    final = grids.flatten(1)
    for before in seen:
        fixed = before != prior.mask_token
        assert torch.equal(before[fixed], final[fixed])


class FixedBeliefs(MaskedPrior):
    """A prior whose logits ignore the input: position p puts ``sure[p]`` of its mass on code
    p % K and spreads the rest evenly, so how sure it is of each position is known."""

    def __init__(self, sure, **kw):
        super().__init__(K, (3, 4), n_layers=1, n_head=1, n_embd=8, **kw)
        probs = torch.full((12, K), 0.0)
        for p, s in enumerate(sure):
            probs[p] = (1 - s) / (K - 1)
            probs[p, p % K] = s
        self.register_buffer("beliefs", probs.log())

    def forward(self, tokens):
        return self.beliefs.expand(len(tokens), -1, -1)


def test_the_surest_codes_are_fixed_first_without_choice_noise():
    sure = [0.99, 0.3, 0.9, 0.2, 0.95, 0.5, 0.8, 0.4, 0.97, 0.6, 0.7, 0.1]
    prior = FixedBeliefs(sure, decode_steps=4, choice_temperature=0.0).eval()
    seen = []
    prior.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    # top-k 1 draws each position's likeliest code: the choice must still follow the model's
    # own probabilities (with top-k applied first, every drawn code would look certain)
    prior.sample(3, top_k=1, seed=0)
    surest_first = sorted(range(12), key=lambda p: -sure[p])
    for s, count in zip(seen[1:], (11, 8, 4)):
        fixed = (s[0] != prior.mask_token).nonzero().flatten().tolist()
        assert sorted(fixed) == sorted(surest_first[:12 - count])
        assert all(s[0, p] == p % K for p in fixed)


def test_choice_noise_fades_over_the_rounds(monkeypatch):
    import dlstudio_lite.masked_prior as mp
    scales = []
    real = mp.gumbel_noise

    def spy(like, generator=None):
        noise = real(like, generator)
        scales.append(noise)
        return noise
    monkeypatch.setattr(mp, "gumbel_noise", spy)
    prior = FixedBeliefs([0.5] * 12, decode_steps=4, choice_temperature=4.5).eval()
    confidences = []
    monkeypatch.setattr(torch.Tensor, "topk", lambda self, *a, **k: (confidences.append(self.clone()),
                                                                      torch.topk(self, *a, **k))[1])
    prior.sample(2, top_k=1, seed=0)                      # draws code p % K at position p
    assert len(scales) == len(confidences) == 3          # the last round keeps every code
    logp = prior.beliefs.log_softmax(-1).gather(1, (torch.arange(12) % K)[:, None]).T  # (1, 12): log 0.5
    for step, (noise, conf) in enumerate(zip(scales, confidences)):
        open_ = torch.isfinite(conf)
        expected = logp.expand_as(conf) + 4.5 * (1 - (step + 1) / 4) * noise
        assert torch.allclose(conf[open_], expected[open_], atol=1e-5)


def test_one_round_one_grid_and_shaped_distributions():
    prior = tiny(decode_steps=1)
    calls = []
    prior.register_forward_pre_hook(lambda module, args: calls.append(1))
    assert prior.sample(1, seed=0).shape == (1, 3, 4) and len(calls) == 1
    greedy = FixedBeliefs([0.6] * 12).eval()
    assert torch.equal(greedy.sample(4, top_k=1, seed=5).flatten(1), torch.arange(12).expand(4, 12) % K)
    cold = greedy.sample(200, temperature=0.1, seed=1).flatten(1)
    assert (cold == torch.arange(12) % K).float().mean() > 0.99   # 0.6 against 0.027 per other code
    # Keeping the surest draws and redrawing the rest favours each position's likeliest code:
    # MaskGIT does not draw from the model's distribution. Kept in a random order (choice
    # noise far above the log-probabilities), the codes are drawn from it: 0.6 each.
    likeliest = {}
    for noise in (0.0, 1e6):
        drawn = greedy.sample(400, seed=1, choice_temperature=noise).flatten(1)
        likeliest[noise] = (drawn == torch.arange(12) % K).float().mean().item()
    assert abs(likeliest[1e6] - 0.6) < 0.03 and likeliest[0.0] > 0.7
    gen = torch.Generator().manual_seed(3)
    assert torch.equal(greedy.sample(5, generator=gen), greedy.sample(5, seed=3))


def test_more_rounds_than_codes_stop_when_the_grid_is_full():
    prior = tiny(latent_shape=(2, 2))
    calls = []
    prior.register_forward_pre_hook(lambda module, args: calls.append(1))
    grids = prior.sample(3, seed=0, decode_steps=50)
    assert len(calls) <= 4 and grids.max() < K


def test_seeded_sampling_repeats_and_seeds_differ():
    prior = tiny()
    assert torch.equal(prior.sample(8, seed=3), prior.sample(8, seed=3))
    assert not torch.equal(prior.sample(8, seed=3), prior.sample(8, seed=4))


def test_it_learns_that_a_grid_is_one_repeated_code():
    torch.manual_seed(0)
    prior = tiny(latent_shape=(2, 2), n_embd=48).train()
    opt = torch.optim.AdamW(prior.parameters(), lr=1e-2)
    for _ in range(300):
        codes = torch.randint(0, 4, (64, 1, 1)).expand(64, 2, 2)  # 4 of the 16 codes, one per grid
        loss, _ = prior.compute_loss(codes)
        opt.zero_grad()
        loss.backward()
        opt.step()
    grids = prior.eval().sample(200, seed=0).flatten(1)
    constant = (grids == grids[:, :1]).all(1).float().mean().item()
    assert constant > 0.9 and (grids < 4).float().mean() > 0.99
    assert len(torch.unique(grids[:, 0][grids[:, 0] < 4])) == 4  # every allowed code appears: no collapse


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="decode_steps"):
        tiny(decode_steps=0)
    with pytest.raises(ValueError, match="choice_temperature"):
        tiny(choice_temperature=-1)
    prior = tiny()
    with pytest.raises(ValueError, match=r"\(B, 12\)"):
        prior(torch.zeros(1, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="temperature"):
        prior.sample(2, temperature=0)
    with pytest.raises(ValueError, match="choice_temperature"):
        prior.sample(2, choice_temperature=-0.5)
    with pytest.raises(ValueError, match="decode_steps"):
        prior.sample(2, decode_steps=0)
    with pytest.raises(ValueError, match="causal"):
        prior.blocks[0].attn(torch.zeros(1, 1, 32), cache=[])


def test_checkpoint_round_trip_through_the_registry(tmp_path):
    from dlstudio_lite.checkpoint import MODELS, load_model, save_checkpoint
    from dlstudio_lite.prior import load_prior
    assert MODELS["maskgit"] is MaskedPrior
    prior = tiny(decode_steps=5, choice_temperature=2.0)
    path = save_checkpoint({"model_name": "maskgit", "hparams": prior.hparams,
                            "model": prior.state_dict(), "optimizers": [], "schedulers": [],
                            "step": 0, "epoch": 0, "history": {}, "rng": {}, "config": {}},
                           tmp_path / "checkpoint.pt")
    loaded = load_prior(path)
    assert isinstance(loaded, MaskedPrior) and loaded.hparams == prior.hparams
    assert torch.equal(loaded.sample(4, seed=2), prior.sample(4, seed=2))
    assert isinstance(load_model(path), MaskedPrior)


def test_train_maskgit_command_records_its_masked_loss(vq_checkpoint, tmp_path):
    import json

    from dlstudio_lite.cli import main
    out = tmp_path / "maskgit"
    assert main(["train", "maskgit", "--vq-checkpoint", str(vq_checkpoint), "--out", str(out),
                 "--num-images", "64", "--steps", "3", "--batch-size", "8", "--n-layers", "1",
                 "--n-embd", "16", "--decode-steps", "3", "--n-samples", "4", "--device", "cpu",
                 "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_bits_per_code"] is None and metrics["test_accuracy"] is None  # not a next-code model
    assert 0 < metrics["test_bits_per_masked_code"] < 10 and 0 <= metrics["test_masked_accuracy"] <= 1
    assert metrics["sample_settings"] == "temperature 1.0, no top-k, 3 rounds"
    assert metrics["hparams"]["decode_steps"] == 3
    assert metrics["sample_fd"] >= 0 and (out / "samples.png").is_file()
    # the sample command draws from it as from any prior (its own number of rounds)
    png = tmp_path / "drawn.png"
    assert main(["sample", "--vq-checkpoint", str(vq_checkpoint), "--prior-checkpoint", str(out / "checkpoint.pt"),
                 "--out", str(png), "--n", "4", "--seed", "2", "--device", "cpu"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
