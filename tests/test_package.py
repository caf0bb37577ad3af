"""The package as a whole: a light import, public names, recipes as defaults, generated flags."""
import json
import subprocess
import sys

import pytest

import dlstudio_lite
from dlstudio_lite import cli
from dlstudio_lite.commands import options
from dlstudio_lite.config import TrainConfig, records_hparams
from dlstudio_lite.recipes import recipe


def test_import_pulls_in_neither_plotting_nor_instructor_tooling():
    code = ("import sys, dlstudio_lite\n"
            "from dlstudio_lite import VQVAE, Trainer, ShapesDataset, load_or_train\n"
            "import json; print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    loaded = set(json.loads(out.stdout))
    for heavy in ("matplotlib", "dlstudio_lite.grading", "nbclient",
                  "nbformat", "dlstudio_lite.plot", "torchvision.models"):
        assert heavy not in loaded, heavy
    assert "dlstudio_lite.vqvae" in loaded and "dlstudio_lite.train" in loaded


def test_every_public_name_resolves():
    for name in dlstudio_lite.__all__:
        assert getattr(dlstudio_lite, name) is not None, name
    assert "VQGAN" in dir(dlstudio_lite)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        dlstudio_lite.nope  # noqa: B018


def test_records_hparams_binds_defaults_and_a_subclass_adds_its_own():
    class Base:
        @records_hparams
        def __init__(self, a: int = 1, b: tuple = (2, 3)):
            pass

    class Child(Base):
        @records_hparams
        def __init__(self, c: str = "x", **kwargs):
            super().__init__(**kwargs)

    assert Base(5).hparams == {"a": 5, "b": [2, 3]}
    assert Child(a=7).hparams == {"a": 7, "b": [2, 3], "c": "x"}


def _parse(argv):
    return cli.build_parser().parse_args(argv)


@pytest.mark.parametrize("mode", ["quick", "normal"])
def test_flag_defaults_are_the_default_recipe_over_the_library_defaults(mode, request):
    request.getfixturevalue(mode)
    run = recipe("vqgan_shapes")  # the quick variant in quick mode
    args = _parse(["train", "vqgan", "--out", "x"])
    assert options.from_args(TrainConfig, args) == TrainConfig(**run.train)
    assert args.image_size == run.data.get("image_size", 64)  # else DataConfig's default
    assert args.num_images == run.data.get("num_images")      # None: ShapesDataset's 20,000
    assert args.disc_start == run.model["disc_start"]
    assert args.quantizer == "ema" and args.decay == 0.99      # VQGAN's own defaults
    prior = _parse(["train", "prior", "--vq-checkpoint", "v.pt", "--out", "x"])
    assert options.from_args(TrainConfig, prior) == TrainConfig(**recipe("prior_shapes").train)


def test_help_shows_the_defaults_in_use(quick, capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "vqgan", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--disc-start DISC_START step at which the discriminator and the GAN term switch on (default: 4)" in text
    assert "--batch-size BATCH_SIZE images per step and process (default: 16)" in text
    from dlstudio_lite.quantize import QUANTIZERS
    assert "{" + ",".join(QUANTIZERS) + "}" in text and "fsq" in QUANTIZERS
