"""The sample-quality measure means something: checked with the shipped feature network.

Real against real is close; every kind of damage moves the Frechet distance up, further
as the damage grows, and pulls the valid-shape rate down. A few hundred images on the CPU.
"""
import json

import pytest
import torch

from dlstudio_lite.checkpoint import CheckpointError, save_checkpoint
from dlstudio_lite.data import FRESH_START, ShapesDataset, generate_shapes
from dlstudio_lite.quality import (frechet_distance, judge_shapes, load_feature_net, quality_report,
                                   save_feature_net, valid_shape_rate)
from dlstudio_lite.shape_features import ShapeFeatureNet, blob_images, damage

N = 200
LEVELS = {"blur": [0.8, 1.5, 3.0], "noise": [0.08, 0.15, 0.3, 0.5], "colour": [0.25, 0.4, 0.6, 0.8],
          "blobs": [0.25, 0.5, 1.0], "erase": [0.1, 0.3, 0.6], "grey": [0.4, 0.7, 1.0]}


def as_images(shapes):
    return torch.from_numpy(shapes.images).permute(0, 3, 1, 2).float() / 127.5 - 1


@pytest.fixture(scope="module")
def net():
    return load_feature_net()


@pytest.fixture(scope="module", params=[64, 32])
def real(request):
    """(seen, unseen, counts of unseen): images the network trained on and images it never saw."""
    if request.param == 64:
        # The network trained on the first 19,800 images of seed 0; seed 7 is new to it.
        unseen = generate_shapes(N, 64, seed=7)
        return as_images(generate_shapes(N, 64, seed=0)), as_images(unseen), torch.from_numpy(unseen.counts)
    train, test = ShapesDataset("train", image_size=32, num_images=1024), ShapesDataset("test", image_size=32, num_images=1024)
    return train.tensors(N), test.tensors(), torch.from_numpy(test.counts)


@pytest.fixture(scope="module")
def fd_real(real, net):
    return frechet_distance(real[0], real[1], net)


def test_real_against_real_is_small(real, net, fd_real):
    mildest = min(frechet_distance(real[1], damage(real[1], kind, levels[0], seed=1), net)
                  for kind, levels in LEVELS.items())
    assert fd_real < 0.5 * mildest, (fd_real, mildest)


@pytest.mark.parametrize("kind", list(LEVELS))
def test_damage_scores_monotonically_worse(kind, real, net, fd_real):
    unseen = real[1]
    fds = [frechet_distance(unseen, damage(unseen, kind, level, seed=1), net) for level in LEVELS[kind]]
    assert fds[0] > fd_real and all(a < b for a, b in zip(fds, fds[1:])), (kind, fd_real, fds)
    rates = [valid_shape_rate(damage(unseen, kind, level, seed=1), net) for level in LEVELS[kind]]
    assert all(a >= b for a, b in zip(rates, rates[1:])), (kind, rates)
    assert rates[-1] <= 0.2, (kind, rates)


def real_rate_floor(images) -> float:
    # At 64x64 (the course's images) real images must reach 95%. At the quick-mode 32x32 the
    # smallest shapes are about 3 pixels across and the count is sometimes missed (about
    # 93% valid), so the floor there is 90%.
    return 0.95 if images.shape[-1] == 64 else 0.90


def test_valid_shape_rate_of_real_images(real, net):
    for images in real[:2]:
        assert valid_shape_rate(images, net) >= real_rate_floor(images)
    judged = judge_shapes(real[1], net)
    assert set(judged) == {"count", "damage", "severity", "p_clean", "p_one_to_five", "valid"}
    assert (judged["damage"] == 0).float().mean() >= 0.95 and judged["severity"].mean() < 0.1
    assert judged["valid"].shape == (N,) and judged["valid"].dtype == torch.bool
    # Changes a viewer would not call damage (shape_features.TOLERATED) keep images valid.
    assert valid_shape_rate(damage(real[1], "blur", 0.3, seed=1), net) >= 0.9
    # The count head mostly gets the number of shapes right (overlaps make it ambiguous).
    assert (judged["count"] == real[2]).float().mean() > 0.6


def test_empty_and_blob_images_are_not_valid(net):
    assert valid_shape_rate(torch.full((20, 3, 64, 64), -1.0), net) == 0.0
    assert valid_shape_rate(blob_images(50, 64, torch.Generator().manual_seed(3)), net) <= 0.1


def test_iterables_of_batches_give_the_same_distance(real, net):
    seen, unseen, counts = real
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(unseen, counts), batch_size=64)
    assert frechet_distance(seen.split(50), loader, net) == pytest.approx(frechet_distance(seen, unseen, net),
                                                                            rel=1e-4, abs=1e-4)
    report = quality_report(seen, unseen, net)
    assert report["fd"] == pytest.approx(frechet_distance(seen, unseen, net), rel=1e-4, abs=1e-4)
    assert real_rate_floor(unseen) <= report["valid_shape_rate"] <= 1.0


def test_bad_images_are_refused_with_what_was_expected(net):
    x = torch.zeros(4, 3, 32, 32)
    with pytest.raises(TypeError, match="float images"):
        frechet_distance(x.to(torch.uint8), x, net)
    with pytest.raises(ValueError, match=r"RGB images \(B, 3, H, W\)"):
        valid_shape_rate(torch.zeros(4, 1, 32, 32), net)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        valid_shape_rate(x + 255, net)
    with pytest.raises(ValueError, match="at least 2 real and 2 fake"):
        frechet_distance(x, x[:1], net)
    with pytest.raises(ValueError, match="unknown damage"):
        damage(x, "smudge", 1.0)


def test_loading_errors_name_what_was_expected(tmp_path):
    with pytest.raises(CheckpointError, match="dlstudio-lite quality train"):
        load_feature_net(tmp_path / "missing.pt")
    other = save_checkpoint({"model_name": "vqvae", "hparams": {}, "model": {}, "optimizers": {},
                             "schedulers": {}, "step": 0, "epoch": 0, "history": {}, "rng": {},
                             "config": {}}, tmp_path / "vq.pt")
    with pytest.raises(CheckpointError, match="expected 'shape_features'"):
        load_feature_net(other)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="could not be read"):
        load_feature_net(tmp_path / "junk.pt")
    wrong = ShapeFeatureNet(width=8, num_features=16)
    path = save_feature_net(wrong, tmp_path / "f.pt")
    state = torch.load(path, weights_only=True)
    state["hparams"] = {"width": 16, "num_features": 64}
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="does not fit"):
        load_feature_net(path)


def test_saved_feature_net_round_trips(tmp_path):
    net = ShapeFeatureNet(width=8, num_features=16).eval()
    net.feature_mean.fill_(0.5)
    back = load_feature_net(save_feature_net(net, tmp_path / "f" / "checkpoint.pt"))
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    torch.testing.assert_close(back(x), net(x))
    assert back(x).shape == (3, 16) and not back.training


def test_quality_commands_in_quick_mode(tmp_path, quick, capsys):
    from dlstudio_lite.autoencoder import Autoencoder
    from dlstudio_lite.cli import main

    out = tmp_path / "features"
    assert main(["quality", "train", "--out", str(out), "--steps", "3", "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 3 and metrics["quick_mode"] is True
    for key in ("count_accuracy_64px", "count_accuracy_32px", "mixed_clean_vs_damaged_accuracy_64px"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["sanity"]["fd_train_vs_test"] >= 0.0
    assert load_feature_net(out / "checkpoint.pt").num_features == 64

    # score: the reconstructions of a (tiny, untrained) autoencoder, with the new network
    model = Autoencoder(image_size=32, base_channels=8)
    ckpt = save_checkpoint({"model_name": "autoencoder", "hparams": model.hparams, "model": model.state_dict(),
                            "optimizers": {}, "schedulers": {}, "step": 0, "epoch": 0, "history": {},
                            "rng": {}, "config": {}}, tmp_path / "ae.pt")
    report_path = tmp_path / "score.json"
    assert main(["quality", "score", str(ckpt), "--features", str(out / "checkpoint.pt"),
                 "--json", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    assert report["what"] == "reconstructions" and report["fd"] >= 0.0
    assert "not ImageNet FID" in capsys.readouterr().out
    # a larger sample of fresh images beside the test split, recorded with each image's verdict
    assert main(["quality", "score", str(ckpt), "--features", str(out / "checkpoint.pt"), "--fresh", "6",
                 "--update-metrics"]) == 0
    fresh = json.loads((tmp_path / "metrics.json").read_text())["recon_fresh"]
    assert fresh["n"] == 6 and len(fresh["passed"]) == 6 and set(fresh["passed"]) <= {"0", "1"}
    assert fresh["passed"].count("1") == round(6 * fresh["shape_check"]) and fresh["fd"] >= 0.0
    assert fresh["generator_start"] == FRESH_START and "brightness_bias" in fresh["colour"]
    assert main(["quality", "score", str(ckpt), "--fresh", "1"]) == 2
    assert "at least 2 images" in capsys.readouterr().err
    assert main(["quality", "score", str(tmp_path / "none.pt")]) == 2
    assert main(["quality", "train", "--out", str(tmp_path / "x"), "--steps", "2"]) == 2
    assert "at least 3 steps" in capsys.readouterr().err


def save(model, name, path):
    """A checkpoint of an untrained ``model`` under the registry ``name``."""
    return save_checkpoint({"model_name": name, "hparams": model.hparams, "model": model.state_dict(),
                            "optimizers": [], "schedulers": [], "step": 0, "epoch": 0, "history": {},
                            "rng": {}, "config": {}}, path)


def test_a_maskgit_prior_is_scored_per_number_of_rounds(tmp_path, quick, capsys, monkeypatch):
    from dlstudio_lite.cli import main
    from dlstudio_lite.masked_prior import MaskedPrior
    from dlstudio_lite.prior import TransformerPrior
    from dlstudio_lite.vqvae import VQVAE

    torch.manual_seed(0)
    vq = save(VQVAE(image_size=32, base_channels=8, num_codes=16, code_dim=8, latent_size=8,
                    kmeans_init=False), "vqvae", tmp_path / "vq" / "checkpoint.pt")
    prior = save(MaskedPrior(16, (8, 8), n_layers=1, n_head=2, n_embd=16, decode_steps=6), "maskgit",
                 tmp_path / "maskgit" / "checkpoint.pt")
    passes = []       # forward passes per draw: the rounds that really ran
    real_sample = MaskedPrior.sample

    def counted(self, *args, **kwargs):
        hook = self.register_forward_pre_hook(lambda module, a: passes.append(1))
        try:
            return real_sample(self, *args, **kwargs)
        finally:
            passes.append("end")
            hook.remove()
    monkeypatch.setattr(MaskedPrior, "sample", counted)

    def rounds_run():
        runs = "".join("x" if p == 1 else "|" for p in passes).split("|")[:-1]
        passes.clear()
        return [len(r) for r in runs]

    for rounds in ([], ["--decode-steps", "3"]):
        assert main(["quality", "score", str(vq), "--prior", str(prior), "--n", "4", "--seeds", "1", "2",
                     "--update-metrics"] + rounds) == 0
        assert rounds_run() == [int(rounds[1]) if rounds else 6] * 2
    assert main(["quality", "score", str(vq), "--prior", str(prior), "--n", "4", "--seeds", "1", "2",
                 "--choice-temperature", "0", "--update-metrics"]) == 0
    assert rounds_run() == [6, 6]
    zero_noise = json.loads((tmp_path / "maskgit" / "metrics.json").read_text())["samples_by_setting"][
        "temperature 1.0, top-k None, 6 rounds, choice temperature 0.0"]["by_seed"]
    assert main(["quality", "score", str(vq), "--prior", str(prior), "--n", "4", "--seeds", "1", "2",
                 "--update-metrics"]) == 0
    default = json.loads((tmp_path / "maskgit" / "metrics.json").read_text())["samples_by_setting"][
        "temperature 1.0, top-k None, 6 rounds"]["by_seed"]
    assert zero_noise != default          # the choice noise reached the sampler
    by_setting = json.loads((tmp_path / "maskgit" / "metrics.json").read_text())["samples_by_setting"]
    assert set(by_setting) == {"temperature 1.0, top-k None, 6 rounds", "temperature 1.0, top-k None, 3 rounds",
                               "temperature 1.0, top-k None, 6 rounds, choice temperature 0.0"}
    assert all(entry["sample_seconds"] > 0 and entry["torch_threads"] >= 1 for entry in by_setting.values())
    # rounds mean nothing to a prior that draws one code per step: refused, not ignored
    gpt = save(TransformerPrior(16, (8, 8), n_layers=1, n_head=2, n_embd=16), "prior",
               tmp_path / "prior" / "checkpoint.pt")
    capsys.readouterr()
    assert main(["quality", "score", str(vq), "--prior", str(gpt), "--n", "2", "--decode-steps", "3"]) == 2
    assert "MaskGIT" in capsys.readouterr().err
    assert main(["quality", "score", str(vq), "--prior", str(gpt), "--n", "2", "--fresh", "4"]) == 2   # samples have no originals
    assert "cannot be combined with --prior" in capsys.readouterr().err
    # over a VQ-VAE-2's top codes the rounds asked for are the rounds run
    from dlstudio_lite.vqvae2 import VQVAE2
    vq2 = save(VQVAE2(image_size=32, latent_size=8, base_channels=8, code_dim=8, num_codes_top=16,
                      num_codes_bottom=16, kmeans_init=False), "vqvae2", tmp_path / "vq2" / "checkpoint.pt")
    top = save(MaskedPrior(16, (4, 4), n_layers=1, n_head=2, n_embd=16, decode_steps=6), "maskgit",
               tmp_path / "top" / "checkpoint.pt")
    passes.clear()
    assert main(["quality", "score", str(vq2), "--prior", str(top), "--n", "2", "--decode-steps", "2",
                 "--update-metrics"]) == 0
    assert rounds_run() == [2]
    assert "temperature 1.0, top-k None, 2 rounds" in json.loads((tmp_path / "top" / "metrics.json").read_text())[
        "samples_by_setting"]


def test_scoring_a_prior_keeps_every_sampling_setting_on_record(tmp_path, quick, capsys):
    from dlstudio_lite.cli import main
    from dlstudio_lite.prior import TransformerPrior
    from dlstudio_lite.vqvae import VQVAE

    torch.manual_seed(0)
    vq = save(VQVAE(image_size=32, base_channels=8, num_codes=16, code_dim=8, latent_size=8,
                    kmeans_init=False), "vqvae", tmp_path / "vq" / "checkpoint.pt")
    prior = save(TransformerPrior(16, (8, 8), n_layers=1, n_head=2, n_embd=16), "prior",
                 tmp_path / "prior" / "checkpoint.pt")
    for t, k in [("1.0", None), ("0.7", "5")]:
        argv = ["quality", "score", str(vq), "--prior", str(prior), "--n", "6", "--temperature", t,
                "--update-metrics"] + (["--top-k", k] if k else [])
        assert main(argv) == 0
    metrics = json.loads((tmp_path / "prior" / "metrics.json").read_text())
    assert set(metrics["samples_by_setting"]) == {"temperature 1.0, top-k None", "temperature 0.7, top-k 5"}
    last = metrics["samples_by_setting"]["temperature 0.7, top-k 5"]
    assert metrics["sample_settings"] == "temperature 0.7, top-k 5" and last["n"] == 6
    assert metrics["sample_fd"] == last["sample_fd"] and 0 <= last["sample_valid_shape_rate"] <= 1
    assert "6 prior samples" in capsys.readouterr().out
    # a second sampling seed of the same setting is kept beside the first, with the spread
    argv = ["quality", "score", str(vq), "--prior", str(prior), "--n", "6", "--temperature", "0.7",
            "--top-k", "5", "--seed", "3", "--update-metrics"]
    assert main(argv) == 0
    entry = json.loads((tmp_path / "prior" / "metrics.json").read_text())["samples_by_setting"]["temperature 0.7, top-k 5"]
    assert set(entry["by_seed"]) == {"0", "3"} and entry["seed"] == 3
    fds = [run["sample_fd"] for run in entry["by_seed"].values()]
    assert entry["seed_spread"]["seeds"] == 2
    assert abs(entry["seed_spread"]["sample_fd_mean"] - sum(fds) / 2) < 1e-9
    assert abs(entry["seed_spread"]["sample_fd_std"] - abs(fds[0] - fds[1]) / 2 ** 0.5) < 1e-9

    # several seeds: the non-learned check's rate as mean and spread, every failure explained
    assert main(["quality", "score", str(vq), "--prior", str(prior), "--n", "6", "--seeds", "1", "2", "3",
                 "--update-metrics"]) == 0
    assert "3 seeds" in capsys.readouterr().out
    sample = json.loads((tmp_path / "prior" / "metrics.json").read_text())["sample_shape_check"]
    assert sample["seeds"] == [1, 2, 3] and len(sample["rates"]) == 3 and sample["n"] == 6
    assert sample["mean"] == pytest.approx(sum(sample["rates"]) / 3) and sample["std"] >= 0
    assert sum(sample["why_failed"].values()) == round(3 * 6 * (1 - sample["mean"]))
    entry = json.loads((tmp_path / "prior" / "metrics.json").read_text())["samples_by_setting"]["temperature 1.0, top-k None"]
    assert entry["passing_kinds"] == sample["passing_kinds"]      # regions of passing samples, all seeds
    assert (sum(sample["passing_kinds"].values()) > 0) == (sample["mean"] > 0)
    assert main(["quality", "score", str(vq), "--update-metrics"]) == 0
    recorded = json.loads((tmp_path / "vq" / "metrics.json").read_text())
    recon = recorded["recon_shape_check"]
    assert recon["n"] == 200 and 0 <= recon["rate"] <= 1
    assert len(recon["passed"]) == 200 and set(recon["passed"]) <= {"0", "1"}
    assert recon["passed"].count("1") / 200 == pytest.approx(recon["rate"])
    assert 0 <= recon["kinds_kept"] <= recon["rate"]          # kinds kept only where the image passes
    colour = recorded["recon_colour"]
    assert colour["shapes"] >= colour["hole_free_shapes"] > 0 and 0 <= colour["colour_error_median"] <= 442
    # a PixelCNN top prior needs its bottom prior
    from dlstudio_lite.pixelcnn import PixelCNN
    top = save(PixelCNN(16, (4, 4), channels=8, n_layers=1), "pixelcnn", tmp_path / "top" / "checkpoint.pt")
    assert main(["quality", "score", str(vq), "--prior", str(top), "--n", "2"]) == 2
    assert "--bottom-prior" in capsys.readouterr().err
    # a checkpoint that holds no prior at all is named as such
    assert main(["quality", "score", str(vq), "--prior", str(vq), "--n", "2"]) == 2
    assert "expected a transformer prior" in capsys.readouterr().err

    # a transformer over a VQ-VAE-2's top codes, completed by the bottom PixelCNN (appendix 9)
    from dlstudio_lite.vqvae2 import VQVAE2
    vq2 = save(VQVAE2(image_size=32, latent_size=8, base_channels=8, code_dim=8, num_codes_top=16,
                      num_codes_bottom=16, kmeans_init=False), "vqvae2", tmp_path / "vq2" / "checkpoint.pt")
    top_t = save(TransformerPrior(16, (4, 4), n_layers=1, n_head=2, n_embd=16), "prior",
                 tmp_path / "top_t" / "checkpoint.pt")
    bottom = save(PixelCNN(16, (8, 8), condition_codes=16, channels=8, n_layers=1), "pixelcnn",
                  tmp_path / "bottom" / "checkpoint.pt")
    for extra in ([], ["--bottom-prior", str(bottom)]):
        assert main(["quality", "score", str(vq2), "--prior", str(top_t), "--n", "4", "--seeds", "1", "2",
                     "--json", str(tmp_path / "t.json")] + extra) == 0
        report = json.loads((tmp_path / "t.json").read_text())
        assert report["seeds"] == [1, 2] and len(report["per_seed"]) == 2 and 0 <= report["shape_check"] <= 1
    assert main(["quality", "score", str(vq2), "--prior", str(prior), "--n", "2"]) == 2   # an 8x8 prior
    assert "top level has (4, 4) grids" in capsys.readouterr().err


def test_feature_training_is_reproducible_for_any_step_count():
    from dlstudio_lite.shape_features import train_shape_features

    runs = [train_shape_features(steps=10, batch_size=4, num_images=456, progress=False)[0] for _ in range(2)]
    for (name, a), b in zip(runs[0].state_dict().items(), runs[1].state_dict().values()):
        assert torch.equal(a, b), name


def test_colour_report_sees_a_systematic_darkening_and_lost_colour():
    from dlstudio_lite.data import ShapesDataset
    from dlstudio_lite.quality import colour_report

    test = ShapesDataset("test", image_size=32)
    x, holes = test.tensors(60), torch.from_numpy(test.holes[:60])
    same = colour_report(x, x, holes)
    assert abs(same["brightness_bias"]) < 1e-3 and same["colour_error_median"] < 1e-3
    assert same["colourfulness_kept"] == pytest.approx(1.0)
    assert 0 < same["hole_free_shapes"] < same["shapes"]
    darker = colour_report(torch.where(x > -1, x - 10 / 127.5, x), x, holes)   # every lit pixel 10 levels darker
    assert darker["brightness_bias"] == pytest.approx(-10, abs=0.01) and darker["brightness_std"] < 0.01
    assert darker["brightness_median"] == pytest.approx(-10, abs=0.01)
    # a few images far darker: the mean moves, the median (most shapes untouched) does not
    few = x.clone()
    few[:5] = torch.where(x[:5] > -1, (x[:5] - 80 / 127.5).clamp(min=-1), x[:5])
    tail = colour_report(few, x, holes)
    assert tail["brightness_bias"] < -2 and abs(tail["brightness_median"]) < 1e-3
    grey = x.mean(1, keepdim=True).expand_as(x)
    assert colour_report(grey, x, holes)["colourfulness_kept"] < 1e-6


def test_shapes_quality_records_the_kinds_kept():
    from dlstudio_lite.data import ShapesDataset
    from dlstudio_lite.quality import shapes_quality
    from dlstudio_lite.shape_check import check_shapes
    images = ShapesDataset("test", image_size=64).tensors(40)
    same = shapes_quality(images, images, "recon")["recon_shape_check"]
    assert same["kinds_kept"] == pytest.approx(same["rate"]) and same["rate"] > 0.9
    # mirrored images keep their shapes, so their kinds too, wherever both pass
    mirrored = images.flip(-1)
    kept = shapes_quality(images, mirrored, "recon")["recon_shape_check"]["kinds_kept"]
    both = check_shapes(images).passed & check_shapes(mirrored).passed
    assert kept <= float(both.float().mean()) and kept > 0.8


def test_paired_verdicts_count_the_changed_images_and_give_the_sign_test():
    from dlstudio_lite.quality import paired_verdicts

    # 5 gained, 14 lost, 181 unchanged: the split appendix 11 reports (two-sided p = 0.0636)
    a, b = "1" * 5 + "0" * 14 + "1" * 100 + "0" * 81, "0" * 5 + "1" * 14 + "1" * 100 + "0" * 81
    out = paired_verdicts(a, b)
    assert (out["gained"], out["lost"]) == (5, 14) and out["p"] == pytest.approx(0.0636, abs=1e-4)
    assert paired_verdicts(b, a)["p"] == out["p"] and paired_verdicts(a, a) == {"gained": 0, "lost": 0, "p": 1.0}
    assert paired_verdicts("10", "01")["p"] == 1.0          # one each way: as even as it gets
    with pytest.raises(ValueError, match="equally long"):
        paired_verdicts("101", "10")
    with pytest.raises(ValueError, match="0s and 1s"):
        paired_verdicts("1x", "10")
