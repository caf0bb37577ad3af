"""Named recipes: the shipped checkpoints record them, every one rebuilds in quick mode, the
command line and the checkpoint README read them, and every printed command parses."""
from __future__ import annotations

import ast
import json
import math
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dlstudio_lite import cli
from dlstudio_lite.checkpoint import MODELS
from dlstudio_lite.commands import options
from dlstudio_lite.commands.train import recipe_in
from dlstudio_lite.config import TrainConfig
from dlstudio_lite.paths import CHECKPOINTS
from dlstudio_lite.recipes import LOOP, RECIPES, STAGE2, recipe

ROOT = Path(__file__).resolve().parent.parent
# Where and how a run was watched, not what it computed.
NOT_SETTINGS = {"device"}


def _parse(argv):
    argv, chosen = recipe_in(argv)
    return cli.build_parser(chosen).parse_known_args(argv)


def _train_dict(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in NOT_SETTINGS}


def _recorded(name: str) -> dict | None:
    """What the run behind data/checkpoints/NAME recorded: config.json, or for a stage-2
    run the hparams and settings in its metrics.json."""
    folder = CHECKPOINTS / name
    for file in ("config.json", "metrics.json"):
        if (folder / file).exists():
            record = json.loads((folder / file).read_text())
            if "hparams" in record:
                return record
    return None


def _shipped(found):
    """(recipe, recorded) pairs: each shipped folder of this recipe (a sweep: each point)."""
    if not found.sweep:
        return [(found, _recorded(found.name))]
    pairs = []
    for folder in sorted((CHECKPOINTS / found.name).glob("*=*")):
        point = dict(part.split("=") for part in folder.name.split(","))
        model = {k: float(v) for k, v in point.items() if k == "beta"}
        model.update({k: int(v) for k, v in point.items() if k == "num_codes"})
        train = {k: float(v) for k, v in point.items() if k == "lr"}
        train.update({k: int(v) for k, v in point.items() if k == "seed"})
        pairs.append((found.replace(model=model, train=train),
                      _recorded(f"{found.name}/{folder.name}")))
    return pairs


@pytest.mark.parametrize("name", [n for n, r in RECIPES.items() if r.shipped and n != "shape_features"])
def test_each_shipped_checkpoint_recorded_its_recipe(name, normal):
    pairs = _shipped(recipe(name))
    assert pairs and all(recorded is not None for _, recorded in pairs), name
    for found, recorded in pairs:
        assert _train_dict(recorded["train"]) == _train_dict(found.train_config().to_dict())
        cls = MODELS[found.target]
        hparams = recorded["hparams"]
        hparams = cls.upgrade_hparams(hparams) if hasattr(cls, "upgrade_hparams") else hparams
        if found.target in STAGE2:
            assert recorded["vq_checkpoint"] == f"data/checkpoints/{found.codes_of}/checkpoint.pt"
            assert recorded.get("level", found.level) in (found.level, None, "top", "codes")
            extra = {k: hparams[k] for k in ("num_codes", "latent_shape", "condition_codes")
                     if k in hparams}
            expected = found.model_kwargs(**extra)
        else:
            data = found.data_config()
            assert (recorded["dataset"], recorded["image_size"], recorded["num_images"]) == \
                (data.dataset, data.image_size, data.num_images)
            expected = found.model_kwargs()
        # Every recorded constructor argument is the recipe's (or the class's default);
        # checkpoints from before an argument existed record fewer.
        built = {**{k: p.default for k, p in options.parameters(cls).items()}, **expected}
        built = {k: list(v) if isinstance(v, tuple) else v for k, v in built.items()}
        assert {k: built[k] for k in hparams} == hparams, name


def test_the_shape_features_run_used_its_recipe(normal):
    import inspect

    from dlstudio_lite.shape_features import train_shape_features
    ckpt = torch.load(CHECKPOINTS / "shape_features" / "checkpoint.pt", weights_only=True)
    defaults = {k: p.default for k, p in inspect.signature(train_shape_features).parameters.items()}
    found = recipe("shape_features")
    settings = {**defaults, **found.data, **found.train}
    for key in ("steps", "batch_size", "num_images", "lr", "seed"):
        assert ckpt["config"][key] == settings[key], key


@pytest.mark.parametrize("name", [n for n, r in RECIPES.items()
                                  if n != "shape_features" and r.target != LOOP])
def test_every_recipe_rebuilds_in_quick_mode_and_the_command_line_agrees(name, quick):
    from dlstudio_lite.commands.train import model_kwargs
    found = recipe(name)
    assert found.quick and found.train["steps"] <= 12
    args, _ = _parse(["train", "--recipe", name, "--out", "x"])
    assert options.from_args(TrainConfig, args) == found.train_config()
    if found.target in STAGE2:
        grid = (2, 2) if found.level != "bottom" else (4, 4)
        extra = {"num_codes": 8, "latent_shape": grid}
        if found.level == "bottom":
            extra["condition_codes"] = 8
        model = found.build_model(**extra)
        from_flags = MODELS[found.target](**extra, **{k: getattr(args, k) for k in args.model_args})
        assert from_flags.hparams == model.hparams
        codes = torch.randint(0, 8, (2, *grid))
        batch = torch.stack([codes, codes], 1) if found.level == "bottom" else codes
    else:
        model = found.build_model()
        from_flags = MODELS[found.target](**model_kwargs(MODELS[found.target], args, args.image_size, 3))
        assert from_flags.hparams == model.hparams
        batch = torch.rand(2, 3, found.data["image_size"], found.data["image_size"]) * 2 - 1
    loss, logs = model.compute_loss(batch)
    assert torch.isfinite(loss)


def test_the_sweep_recipe_expands_to_its_factors_and_runs_its_points_with_it():
    argv, found = recipe_in(["sweep", "--recipe", "sweep_shapes", "--out", "x", "--print-commands"])
    assert found.name == "sweep_shapes" and argv[:2] == ["sweep", "vqvae"]
    assert argv.count("--grid") == 3 and argv.count("--base") == 3


def test_a_recipe_of_another_model_or_an_unknown_one_is_refused(capsys):
    assert cli.main(["train", "vae", "--recipe", "vqgan_shapes", "--out", "x"]) == 2
    assert "trains a vqgan, not a vae" in capsys.readouterr().err
    assert cli.main(["train", "--recipe", "nope", "--out", "x"]) == 2
    assert "vqgan_shapes" in capsys.readouterr().err  # the message lists the recipes


def test_flags_override_a_recipe_and_epochs_clears_its_steps():
    args, _ = _parse(["train", "--recipe", "vqgan_shapes", "--lr", "1e-2", "--out", "x"])
    config = options.from_args(TrainConfig, args)
    assert config.lr == 1e-2 and config.steps == recipe("vqgan_shapes").train["steps"]
    args, _ = _parse(["train", "vqvae", "--epochs", "2", "--out", "x"])
    config = options.from_args(TrainConfig, args)
    assert (config.steps, config.epochs) == (None, 2)


def test_the_checkpoint_readme_is_generated_from_the_recipes():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "checkpoint_readme.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_checkpoint_readme_says_which_shipped_checkpoints_were_slimmed():
    # A slimmed checkpoint cannot be resumed: its row must say so (it ends with the slim
    # command), and a row must not claim it of a checkpoint that can still be resumed.
    said = " ".join(re.findall(r"dlstudio-lite checkpoint slim [^`]*", (CHECKPOINTS / "README.md").read_text()))
    for path in sorted(CHECKPOINTS.glob("**/checkpoint.pt")):
        name = path.parent.relative_to(CHECKPOINTS).as_posix()
        slimmed = bool(torch.load(path, map_location="cpu", weights_only=True).get("slimmed"))
        listed = f"data/checkpoints/{name}/checkpoint.pt" in said or (
            f"data/checkpoints/{name.rsplit('/', 1)[0]}/*/checkpoint.pt" in said)
        assert slimmed == listed, (name, slimmed)


def test_each_recorded_tokenizer_lever_is_the_recipe_with_exactly_its_changes(normal):
    # Appendix 11 draws its table of levers from these rows (tools/tokenizer_levers.py): each
    # row's command must rebuild its run, and the unchanged row must be the shipped model.
    sys.path.insert(0, str(ROOT / "tools"))
    import tokenizer_levers as levers
    metrics = json.loads((CHECKPOINTS / levers.BASE / "metrics.json").read_text())
    rows = metrics["levers"]
    assert len(rows) >= 5 and any(not r["changes"] for r in rows)
    for row in rows:
        argv = shlex.split(row["command"])[1:]
        hparams, train = levers.parsed(argv, 64)
        model, training = levers.changes_of({"hparams": hparams, "train": train})
        assert {**model, **training} == row["changes"], row["command"]
        if row["changes"]:  # leaving out the last change is noticed
            cut = argv[:argv.index("--out")][:-2]          # every flag here takes one value
            model, training = levers.changes_of(dict(zip(("hparams", "train"), levers.parsed(cut + ["--out", "x"], 64))))
            assert {**model, **training} != row["changes"]
        else:
            assert (row["psnr"], row["recon_fd"], row["recon_shape_check"], row["recon_passed"]) == (
                metrics["psnr"], metrics["recon_fd"], metrics["recon_shape_check"]["rate"],
                metrics["recon_shape_check"]["passed"])
        assert 0 <= row["recon_shape_check"] <= 1 and row["cpu_minutes"] > 0
        if "recon_passed" in row:   # the verdict on each test image agrees with the rate
            assert len(row["recon_passed"]) == 200 and set(row["recon_passed"]) <= {"0", "1"}
            assert row["recon_passed"].count("1") == round(200 * row["recon_shape_check"])
        if "prior" in row:   # a prior over this run's codes: the shipped prior's recipe, on its checkpoint
            prior_argv = shlex.split(row["prior"]["command"])[1:]
            out = argv[argv.index("--out") + 1]
            assert prior_argv[:3] == ["train", "prior", "--recipe"] and prior_argv[3] == levers.PRIOR_BASE
            assert prior_argv[prior_argv.index("--vq-checkpoint") + 1] == f"{out}/checkpoint.pt"
            assert len(prior_argv) == 8, "the recipe unchanged: only the codes and the output folder"
            spreads = row["prior"]["samples_by_setting"].values()
            assert spreads and all(s["seeds"] >= 3 for s in spreads) and row["prior"]["cpu_minutes"] > 0


def test_a_levers_prior_must_be_the_shipped_recipe_on_that_runs_codes(tmp_path, normal):
    sys.path.insert(0, str(ROOT / "tools"))
    import tokenizer_levers as levers
    run, prior = tmp_path / "run", tmp_path / "prior"
    run.mkdir(), prior.mkdir()
    shipped = json.loads((CHECKPOINTS / levers.PRIOR_BASE / "metrics.json").read_text())

    def recorded(**changes):
        (prior / "metrics.json").write_text(json.dumps({**shipped, "vq_checkpoint": str(run / "checkpoint.pt"),
                                                         **changes}))
        return levers.prior_of(run, prior, cpu_minutes=50.0)

    row = recorded()
    assert row["command"] == (f"dlstudio-lite train prior --recipe {levers.PRIOR_BASE} "
                              "--vq-checkpoint runs/run/checkpoint.pt --out runs/prior")
    assert row["samples_by_setting"]["temperature 1.0, top-k None"]["seeds"] == 3
    with pytest.raises(ValueError, match="codes of .*shipped"):
        recorded(vq_checkpoint=str(tmp_path / "shipped" / "checkpoint.pt"))
    with pytest.raises(ValueError, match="not the prior_mixture_shapes recipe.*'steps': \\(3000, 6000\\)"):
        recorded(train={**shipped["train"], "steps": 3000})
    with pytest.raises(ValueError, match="num_images"):
        recorded(train_grids=19800)
    with pytest.raises(ValueError, match="no setting scored over 3 sampling seeds"):
        recorded(samples_by_setting={})


def test_a_prior_lever_must_be_its_recipe_in_full_on_the_shipped_twins_codes(tmp_path, normal):
    sys.path.insert(0, str(ROOT / "tools"))
    import prior_levers
    run = tmp_path / "maskgit"
    run.mkdir()
    found = recipe("maskgit_mixture_shapes")
    shipped = json.loads((CHECKPOINTS / prior_levers.BASE / "metrics.json").read_text())
    twin = f"data/checkpoints/{found.codes_of}/checkpoint.pt"
    spread = {"seeds": 3, "sample_fd_mean": 30.0, "sample_shape_check_mean": 0.3}
    good = {**{k: shipped[k] for k in ("train_grids", "test_grids", "parameters", "test_accuracy")},
            "vq_checkpoint": twin, "step": 6000, "test_bits_per_code": None, "test_bits_per_masked_code": 3.5,
            "hparams": {"num_codes": 1024, "latent_shape": [8, 8], **found.model_kwargs(), "dropout": 0.1,
                        "decode_steps": 8, "choice_temperature": 4.5}, "train": found.train_config().to_dict(),
            "samples_by_setting": {"temperature 1.0, top-k None, 8 rounds": {"seed_spread": spread,
                                                                             "sample_seconds": 4.0}}}

    def row(**changes):
        (run / "metrics.json").write_text(json.dumps({**good, **changes}))
        return prior_levers.row_of(run, "maskgit_mixture_shapes", 50.0, None)

    r = row()
    assert r["command"] == "dlstudio-lite train maskgit --recipe maskgit_mixture_shapes --out runs/maskgit"
    assert "test_bits_per_code" not in r and r["test_bits_per_masked_code"] == 3.5
    assert "test_accuracy" not in r and r["test_masked_accuracy"] == shipped["test_accuracy"]
    assert r["samples_by_setting"]["temperature 1.0, top-k None, 8 rounds"]["sample_seconds"] == 4.0
    args, _ = _parse(shlex.split(r["command"])[1:])
    assert options.from_args(TrainConfig, args) == found.train_config()
    with pytest.raises(ValueError, match="codes of"):
        row(vq_checkpoint="runs/fsq_4500/checkpoint.pt")
    with pytest.raises(ValueError, match="'n_embd': \\(64, 128\\)"):
        row(hparams={**good["hparams"], "n_embd": 64})
    with pytest.raises(ValueError, match="'choice_temperature': \\(1.0, 4.5\\)"):   # a default the recipe does not name
        row(hparams={**good["hparams"], "choice_temperature": 1.0})
    with pytest.raises(ValueError, match="'step': \\(3000, 6000\\)"):
        row(step=3000)                                     # stopped early: not the recipe's run
    with pytest.raises(ValueError, match="num_images"):
        row(train_grids=19800)
    with pytest.raises(ValueError, match="no setting scored over 3"):
        row(samples_by_setting={"temperature 1.0, top-k None, 8 rounds": {"seed_spread": {**spread, "seeds": 1}}})


def test_the_kept_maskgit_samples_are_the_scored_draw_with_its_decoding_order(tmp_path):
    sys.path.insert(0, str(ROOT / "tools"))
    import prior_levers

    from dlstudio_lite.checkpoint import save_checkpoint
    from dlstudio_lite.masked_prior import MaskedPrior, mask_ratio
    torch.manual_seed(0)
    prior = MaskedPrior(16, (4, 4), n_layers=1, n_head=2, n_embd=16, decode_steps=5)
    save_checkpoint({"model_name": "maskgit", "hparams": prior.hparams, "model": prior.state_dict(),
                     "optimizers": [], "schedulers": [], "step": 0, "epoch": 0, "history": {}, "rng": {},
                     "config": {}}, tmp_path / "checkpoint.pt")
    kept = prior_levers.samples_of(tmp_path, n=6, seed=1)
    assert torch.equal(kept["codes"].long(), prior.sample(6, seed=1))   # the draw quality score makes
    assert kept["rounds"] == 5 and kept["setting"] == "temperature 1.0, top-k None, 5 rounds"
    fixed = kept["fixed_at_round"].flatten(1)
    for r in range(1, 5):   # after round r, all but the schedule's share are fixed
        assert bool(((fixed <= r).sum(1) == 16 - math.floor(16 * float(mask_ratio(r / 5)))).all())
    assert int(fixed.max()) == 5 and int(fixed.min()) == 1 and fixed.dtype == torch.int16


# --- every command printed in a lecture, README or the package's own help parses ----------------
PLACEHOLDERS = {"beta_B": "beta_0.01", "--temperature T": "--temperature 1.0", "--top-k K": "--top-k 5",
                "top|bottom": "top"}


def printed_commands() -> list[tuple[str, str]]:
    """(where, command) for each `dlstudio-lite ...` command shown to a reader: in backticks
    or on a line of a code block (continued with a backslash) of the Markdown files and the
    lectures (comment lines of the .py files)."""
    files = [ROOT / "README.md", ROOT / "START_HERE.md", ROOT / "instructor" / "README.md",
             *sorted((ROOT / "docs").glob("*.md")), CHECKPOINTS / "README.md",
             *sorted((ROOT / "lectures").glob("*.py"))]
    found = []
    for path in files:
        text = path.read_text()
        if path.suffix == ".py":
            text = "\n".join(line[2:] if line.startswith("# ") else line for line in text.splitlines())
        text = re.sub(r"\\\n\s*", " ", text)
        for match in re.finditer(r"`(dlstudio-lite [^`]+)`|^\s*(dlstudio-lite [^\n#`]+)", text, re.M):
            found.append((path.name, (match.group(1) or match.group(2)).strip()))
    return found


def test_every_printed_command_parses():
    commands = printed_commands()
    assert len(commands) > 30
    checked, failed = 0, []
    for where, command in commands:
        if "..." in command or "MODEL" in command or "NAME" in command or "--help" in command \
                or "--grid KEY" in command or command.endswith(("train", "sweep", "quality")):
            continue  # a template or a name, not a command to run
        for placeholder, value in PLACEHOLDERS.items():
            command = command.replace(placeholder, value)
        command = command.split(" > ")[0].split(" for B in ")[0]
        argv = shlex.split(command)[1:]
        if all(re.fullmatch(r"[a-z]+", a) for a in argv):
            continue  # `dlstudio-lite checkpoint slim`: a command named in prose
        if argv[0] in ("train", "sweep", "encode") and "--out" not in argv:
            argv += ["--out", "x"]  # a fragment in prose: only its flags matter
        try:
            _parse(argv)
        except SystemExit:
            failed.append(f"{where}: `{command}`")
        checked += 1
    assert not failed, "commands that do not parse:\n" + "\n".join(failed)
    assert checked > 20


# --- the command line's modules ------------------------------------------------------------------
def _imports(path: Path) -> set[str]:
    """Modules of the package that ``path`` imports, anywhere in the file."""
    package = path.relative_to(ROOT).with_suffix("").parts[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = list(package[:len(package) - node.level + 1])
            target = ".".join(base + ([node.module] if node.module else []))
            out |= {f"{target}.{a.name}" for a in node.names} | {target}
    return out


def test_the_command_line_has_no_import_circle():
    commands = sorted((ROOT / "dlstudio_lite" / "commands").glob("*.py"))
    for path in commands:
        assert "dlstudio_lite.cli" not in _imports(path), f"{path.name} imports cli back"
    graph = {p.stem: {m.rsplit(".", 1)[-1] for m in _imports(p)
                      if m.startswith("dlstudio_lite.commands.")} - {p.stem} for p in commands}
    for name, deps in graph.items():
        for dep in deps:
            assert name not in graph.get(dep, set()), f"commands/{name}.py <-> commands/{dep}.py"


def test_a_notebook_loop_recipe_shrinks_in_quick_mode_and_no_command_runs_it():
    normal, quick = recipe("amortised_elbo_toy", quick=False), recipe("amortised_elbo_toy", quick=True)
    assert quick.train["steps"] < normal.train["steps"] and quick.data["num_images"] < normal.data["num_images"]
    assert set(quick.train) == set(normal.train) and quick.train["lr"] == normal.train["lr"]
    with pytest.raises(ValueError, match="loop written out in lecture 2"):
        recipe_in(["train", "--recipe", "amortised_elbo_toy", "--out", "x"])


def test_quick_mode_keeps_one_seed_of_a_repeated_run():
    assert recipe("autoencoder_depth_demo", quick=False).seeds == (0, 1, 2)
    assert recipe("autoencoder_depth_demo", quick=True).seeds == (0,)
