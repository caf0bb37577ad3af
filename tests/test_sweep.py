"""The sweep: grid expansion, the table, restarts that skip finished points, printed commands."""
import json
import shlex

import pytest

from dlstudio_lite import cli, sweep
from dlstudio_lite.commands import sweep as sweep_command


def test_a_grid_has_every_combination_and_one_at_a_time_changes_one_factor():
    factors = dict([sweep.parse_factor("beta=0.25,1.25,1.75"),
                    sweep.parse_factor("lr=1e-3,1e-4")])
    points = sweep.grid(factors)
    assert [p.settings for p in points[:3]] == [
        {"beta": "0.25", "lr": "1e-3"}, {"beta": "0.25", "lr": "1e-4"}, {"beta": "1.25", "lr": "1e-3"}]
    assert len(points) == 6 and len(set(p.name for p in points)) == 6
    assert points[0].name == "beta=0.25,lr=1e-3"  # the user's text, not 0.001

    ofat = sweep.one_at_a_time(factors, {"beta": "1.25", "lr": "1e-3"})
    assert [(p.varied, p.settings) for p in ofat] == [
        ("base", {"beta": "1.25", "lr": "1e-3"}), ("beta", {"beta": "0.25", "lr": "1e-3"}),
        ("beta", {"beta": "1.75", "lr": "1e-3"}), ("lr", {"beta": "1.25", "lr": "1e-4"})]
    with pytest.raises(ValueError, match="one value for each factor"):
        sweep.one_at_a_time(factors, {"beta": "1.25"})
    assert sweep.Point({"dataset": "folder:/a/b"}).name == "dataset=folder--a-b"


@pytest.mark.parametrize("text", ["beta", "beta=", "=1,2", "beta=1,,2", "beta=1,1"])
def test_a_malformed_factor_is_refused(text):
    with pytest.raises(ValueError, match="beta|KEY=VALUE"):
        sweep.parse_factor(text)


def test_summary_has_final_best_and_steps_to_95_percent_of_the_best_perplexity():
    history = {"train/perplexity": [[10, 5.0], [20, 50.0], [30, 96.0], [40, 100.0], [50, 90.0]],
               "train/loss": [[10, 3.0], [20, 1.0], [30, 2.0]], "lr": [[10, 1e-3]]}
    row = sweep.summarize({"mse": 0.1, "final_train_logs": {"loss": 1.0}}, history)
    assert row["mse"] == 0.1 and "final_train_logs" not in row
    assert (row["train_perplexity_final"], row["train_perplexity_best"],
            row["train_perplexity_best_step"],
            row["train_perplexity_steps_to_95pct"]) == (90, 100, 40, 30)
    assert (row["train_loss_best"], row["train_loss_best_step"]) == (1.0, 20)  # lower is better
    assert row["lr_final"] == 1e-3 and "lr_best" not in row
    assert sweep.steps_to_fraction([(1, 3.0), (2, 1.05), (3, 1.0)], 0.95, False) == 2


def _sweep(tmp_path, *extra):
    argv = ["sweep", "vqvae", "--grid", "beta=0.25,1.25", "--out", str(tmp_path / "sweep"),
            "--data-root", str(tmp_path / "data"), "--num-images", "40", "--image-size", "16",
            "--base-channels", "8", "--code-dim", "8", "--num-codes", "16", "--batch-size", "8",
            "--steps", "2", "--log-every", "1", "--eval-every", "2", "--eval-batches", "1", *extra]
    return cli.main(argv)


def test_a_restarted_sweep_skips_finished_points_and_tabulates_every_point(tmp_path, quick,
                                                                           monkeypatch, capsys):
    import dlstudio_lite.plot
    monkeypatch.setattr(dlstudio_lite.plot, "save_loss_curves", lambda *a, **k: None)  # 1 s each
    assert _sweep(tmp_path) == 0
    out = tmp_path / "sweep"
    points = ["beta=0.25", "beta=1.25"]
    first = {p: (out / p / "metrics.json").stat().st_mtime_ns for p in points}
    for p in points:
        config = json.loads((out / p / "config.json").read_text())
        assert config["hparams"]["beta"] == float(p.split("=")[1])  # the point's setting arrived
    rows = sweep.read_table(out / "sweep.csv")
    assert [r["point"] for r in rows] == points and [r["beta"] for r in rows] == [0.25, 1.25]
    for column in ("status", "seconds", "mse", "psnr", "perplexity", "codebook_usage",
                   "train_loss_final", "train_loss_best", "test_recon_final",
                   "train_perplexity_best", "train_perplexity_steps_to_95pct"):
        assert all(r[column] is not None for r in rows), column
    assert all(r["status"] == "finished" and r["step"] == 2 for r in rows)
    assert "2 to run" in capsys.readouterr().err

    (out / points[1] / "metrics.json").unlink()  # as if stopped before the end
    assert _sweep(tmp_path) == 0
    assert "1 already finished, 1 to run" in capsys.readouterr().err
    assert (out / points[0] / "metrics.json").stat().st_mtime_ns == first[points[0]]
    assert "--resume" in json.loads((out / points[1] / "sweep_point.json").read_text())["command"]

    assert _sweep(tmp_path, "--steps", "3") == 2  # more steps is another run: refused
    assert "another command" in capsys.readouterr().err


def test_printed_commands_are_train_commands_of_each_point(tmp_path, quick, capsys):
    assert _sweep(tmp_path, "--grid", "lr=1e-3,1e-4", "--grid", "kmeans_init=True,False",
                  "--print-commands") == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 8 and not (tmp_path / "sweep").exists()  # printed, nothing run
    seen = set()
    for line in lines:
        env, program, *argv = shlex.split(line)
        assert env == "DLSTUDIO_LITE_QUICK=1" and program == "dlstudio-lite"
        args = cli.build_parser().parse_args(argv)  # what the shell would run
        assert args.command == "train" and args.model == "vqvae" and args.steps == 2
        assert args.out.endswith(f"beta={args.beta},lr={argv[argv.index('--lr') + 1]},"
                                 f"kmeans_init={args.kmeans_init}")
        seen.add((args.beta, args.lr, args.kmeans_init))
    assert len(seen) == 8


def test_unknown_settings_and_models_are_refused_before_anything_runs(tmp_path, quick, capsys):
    assert _sweep(tmp_path, "--grid", "no_such=1,2") == 2
    assert "no option 'no_such'" in capsys.readouterr().err
    assert _sweep(tmp_path, "--grid", "num_codes=8,many") == 2  # train's own flag check
    assert "num_codes=many" in capsys.readouterr().err
    assert cli.main(["sweep", "nomodel", "--grid", "a=1", "--out", str(tmp_path)]) == 2
    assert "unknown model" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["train", "vqvae", "--no-such-flag", "--out", str(tmp_path)])
    for count in ("--jobs", "--threads", "--nproc-per-point"):   # a count below 1 is refused, not read as the default
        with pytest.raises(SystemExit):
            cli.main(["sweep", "vqvae", "--grid", "num_codes=8", "--out", str(tmp_path / "sweep"), count, "0"])
        assert "expected a positive whole number, got 0" in capsys.readouterr().err
    assert not (tmp_path / "sweep").exists()


def test_parallel_points_get_gpus_round_robin(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    slots = sweep_command._slots(jobs=3, threads=2)
    envs = [slots.get() for _ in range(3)]
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["3", "5", "3"]
    assert all(e["OMP_NUM_THREADS"] == "2" for e in envs)
