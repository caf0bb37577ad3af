"""Named recipes: every run the course ships or teaches, stated once, in plain Python.

A recipe is the model, data and training settings of one run (like nanoGPT's named config
files). Everything reads them: ``dlstudio-lite train --recipe NAME`` (flags override),
the notebooks (``load_or_train("vqgan_shapes")``), the table of
``data/checkpoints/README.md`` (``tools/checkpoint_readme.py``) and the tests, which check
that each shipped checkpoint's recorded config equals its recipe. A recipe's name is also
its folder under ``data/checkpoints/``.

A recipe states only what differs from the library's defaults (``DataConfig``, the model's
constructor, ``TrainConfig``). Quick mode (``DLSTUDIO_LITE_QUICK=1``) derives a small
variant of every recipe in one place, :func:`quick_variant`; nothing else shrinks a run.

Importing this module costs nothing: the model classes and torch load only when a recipe
is resolved.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from .config import quick_mode

# The `train` target of each model, and the recipe its bare `dlstudio-lite train MODEL` runs.
DEFAULT_RECIPE = {"autoencoder": "autoencoder_shapes", "vae": "vae_shapes",
                  "vqvae": "vqvae_shapes", "vqgan": "vqgan_shapes", "vqvae2": "vqvae2_shapes",
                  "prior": "prior_shapes", "maskgit": "maskgit_mixture_shapes",
                  "pixelcnn": "pixelcnn_top_shapes"}
STAGE2 = ("prior", "maskgit", "pixelcnn")  # targets that train on the codes of another recipe's model
LOOP = "loop"  # the target of a loop written out in a notebook (k-means, a toy ELBO), no command


@dataclass(frozen=True)
class Recipe:
    """One run: ``target`` is the ``dlstudio-lite train`` target (``vqvae``, ``prior``, ...),
    ``"shape_features"`` for ``dlstudio-lite quality train``, or ``LOOP`` for a training loop
    that a notebook writes out itself (it reads the recipe's data size, steps and batch).

    data: ``DataConfig`` fields; model: constructor arguments (``latent_size`` included);
    train: ``TrainConfig`` fields; codes_of: the recipe whose model encodes the data
    (stage 2 only) and level: which of a VQ-VAE-2's code grids; sweep: ``--grid`` /
    ``--base`` factors when the run is a sweep of this point; seeds: the seeds a notebook
    repeats the run with; shipped: whether ``data/checkpoints/NAME`` holds its result;
    lecture and about: for the checkpoint table."""
    name: str
    target: str
    lecture: str
    about: str
    data: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    codes_of: str | None = None
    level: str | None = None
    sweep: dict[str, list[str]] = field(default_factory=dict)
    seeds: tuple[int, ...] = (0,)
    shipped: bool = True
    quick: bool = False

    def replace(self, **changes) -> "Recipe":
        """A copy with some fields changed; ``model=`` / ``train=`` / ``data=`` are merged."""
        for part in ("data", "model", "train"):
            if part in changes:
                changes[part] = {**getattr(self, part), **changes[part]}
        return dataclasses.replace(self, **changes)

    def settings(self) -> dict[str, Any]:
        """Data, model and training settings in one dict, keyed as the flags' destinations."""
        out = {**self.data, **self.model, **self.train}
        if self.level is not None:
            out["level"] = self.level
        return out

    def vq_checkpoint(self):
        """The checkpoint of the model whose codes a stage-2 recipe trains on."""
        from .paths import CHECKPOINTS
        return CHECKPOINTS / self.codes_of / "checkpoint.pt" if self.codes_of else None

    def data_config(self):
        """The run's ``DataConfig``."""
        from .data import DataConfig
        return DataConfig(**self.data)

    def train_config(self, **overrides):
        """The run's ``TrainConfig``."""
        from .config import TrainConfig
        return TrainConfig(**{**self.train, **overrides})

    def model_kwargs(self, in_channels: int = 3, **extra) -> dict[str, Any]:
        """Constructor arguments of the model (``extra``: what the data decides, e.g. a
        prior's ``num_codes`` and ``latent_shape``)."""
        from .checkpoint import MODELS
        kwargs = dict(self.model)
        if self.target not in STAGE2:
            kwargs = image_model_kwargs(MODELS[self.target], kwargs,
                                        self.data.get("image_size", 64), in_channels)
        return {**kwargs, **extra}

    def build_model(self, in_channels: int = 3, **extra):
        """A fresh, untrained model of this recipe."""
        from .checkpoint import MODELS
        return MODELS[self.target](**self.model_kwargs(in_channels, **extra))


def image_model_kwargs(cls, kwargs: dict, image_size: int, in_channels: int,
                       ratio: int | None = None) -> dict:
    """Add what an image model's size follows from: ``in_channels``, ``image_size`` and
    ``latent_size`` (default: the image size divided by ``ratio``, else by the model's own
    ratio, e.g. 64 / 16 = 4 for the VQ-VAE)."""
    from .config import parameters
    params = parameters(cls)
    ratio = ratio or params["image_size"].default // params["latent_size"].default
    latent = kwargs.get("latent_size") or max(1, image_size // ratio)
    return {**kwargs, "in_channels": in_channels, "image_size": image_size,
            "latent_size": latent}


# --- the course's runs -----------------------------------------------------------------------
# Images of the shapes data at 64x64 (DataConfig's defaults) unless a recipe says otherwise.
# The common schedule: batch 32, Adam at 1e-3 annealed by a cosine, a test evaluation every
# 250 steps, a checkpoint every 500, no progress bar (they ran in the background).
_SCHEDULE = dict(batch_size=32, lr=1e-3, scheduler="cosineannealinglr", log_every=25,
                 eval_every=250, checkpoint_every=500, progress=False)
_VQGAN = dict(base_channels=16, code_dim=64, num_codes=1024, disc_lr_scale=0.1, disc_start=1500)

# Appendix 10's families, each about 10 bits per latent position (name: about, model settings).
_QUANTIZER_FAMILIES = {
    "codebook": ("EMA codebook of 1024 with k-means start and restarts",
                 dict(quantizer="ema", num_codes=1024)),
    "rotation": ("the same codebook with the rotation trick",
                 dict(quantizer="ema", num_codes=1024,
                      quantizer_options=dict(rotation_trick=True))),
    "cosine": ("l2-normalised 8-d lookup, 1024 codes", dict(quantizer="cosine", num_codes=1024)),
    # FSQ's levels follow from num_codes (fsq_levels: 1000 -> 8, 5, 5, 5; quick mode's 64 -> 8, 8)
    "fsq": ("FSQ, levels 8,5,5,5 (1000 codes)", dict(quantizer="fsq", num_codes=1000)),
    "lfq": ("LFQ, 10 signs (1024 codes)", dict(quantizer="lfq", num_codes=1024)),
    "residual": ("residual VQ, 2 levels of 32 EMA codes",
                 dict(quantizer="residual", num_codes=1024, quantizer_options=dict(depth=2))),
}
# What fitted the CPU time of the course's build (18 runs on a shared 2-core machine); LFQ's
# steps take about twice as long as the others'.
_QUANTIZER_STEPS = {"shapes": 1000, "digits": 500, "patches": 500}


def _quantizer_run(dataset: str, family: str, seed: int = 0) -> Recipe:
    about, model = _QUANTIZER_FAMILIES[family]
    train = dict(_SCHEDULE, steps=_QUANTIZER_STEPS[dataset], eval_every=100)
    name = f"quantizers_{dataset}/{family}"
    if seed:
        train, name, about = dict(train, seed=seed), f"{name}_seed{seed}", f"{about}, seed {seed}"
    return Recipe(name, "vqvae", "appendix 10", f"{about} on {dataset}",
                  data=dict(dataset=dataset, image_size=32),
                  model=dict(latent_size=8, base_channels=16, code_dim=16, **model), train=train)


_LIST = [
    Recipe("autoencoder_shapes", "autoencoder", "3, 4", "the lecture's autoencoder",
           model=dict(base_channels=16), train=dict(_SCHEDULE, steps=4000, optimizer="adam")),
    Recipe("vae_shapes", "vae", "4, 5", "VAE, beta 0.1 with summed MSE (the lecture's)",
           model=dict(base_channels=16, beta=0.1),
           train=dict(_SCHEDULE, steps=4000, optimizer="adam")),
    *[Recipe(f"vae_beta_sweep/beta_{b:g}", "vae", "4 (sections 4, 7)", f"VAE with KL weight {b:g}",
             data=dict(image_size=32), model=dict(latent_size=8, base_channels=16, beta=float(b)),
             train=dict(_SCHEDULE, steps=3000))
      for b in (0.01, 0.1, 1, 10, 100)],
    Recipe("vqvae_shapes", "vqvae", "5, 6", "VQ-VAE, 32x32 code grid",
           model=dict(latent_size=32, base_channels=16, code_dim=64, num_codes=512),
           train=dict(_SCHEDULE, steps=4000, optimizer="adam")),
    Recipe("vqvae16_shapes", "vqvae", "5", "VQ-VAE on the VAE's 16x16 grid",
           model=dict(latent_size=16, base_channels=16, code_dim=64, num_codes=512),
           train=dict(_SCHEDULE, steps=4000)),
    Recipe("vqgan_shapes", "vqgan", "6", "VQGAN, 8x8 codes, discriminator from step 1500",
           model=_VQGAN, train=dict(_SCHEDULE, steps=4500, lr=5e-4, log_every=10,
                                    checkpoint_every=250)),
    Recipe("vqgan_nodisc_shapes", "vqgan", "6", "the VQGAN's twin whose discriminator never "
           "switches on", model=dict(_VQGAN, disc_start=1_000_000_000),
           train=dict(_SCHEDULE, steps=4500, lr=5e-4, log_every=10, checkpoint_every=250)),
    Recipe("vqgan_mixture_shapes", "vqgan", "6", "the VQGAN with a mixture likelihood: its "
           "decoder draws the mode, not the mean", model=dict(_VQGAN, likelihood="mixture"),
           train=dict(_SCHEDULE, steps=4500, lr=5e-4, log_every=10, checkpoint_every=250)),
    Recipe("vqgan_mixture_nodisc_shapes", "vqgan", "6", "its twin whose discriminator never "
           "switches on", model=dict(_VQGAN, likelihood="mixture", disc_start=1_000_000_000),
           train=dict(_SCHEDULE, steps=4500, lr=5e-4, log_every=10, checkpoint_every=250)),
    # Appendix 11's one lever that moved the check: the same twin trained ten times as long.
    Recipe("vqgan_mixture_long_nodisc_shapes", "vqgan", "6, appendix 11", "the mixture twin trained "
           "for 48,000 steps instead of 4,500", model=dict(_VQGAN, likelihood="mixture", disc_start=1_000_000_000),
           train=dict(_SCHEDULE, steps=48_000, lr=5e-4, log_every=10, checkpoint_every=250)),
    Recipe("prior_shapes", "prior", "6", "transformer prior over vqgan_shapes' 8x8 codes",
           codes_of="vqgan_shapes", model=dict(n_layers=4, n_head=4, n_embd=128),
           train=dict(_SCHEDULE, steps=6000, batch_size=64, optimizer="adamw", eval_every=200)),
    Recipe("prior_mixture_shapes", "prior", "6", "transformer prior over the 8x8 codes of "
           "vqgan_mixture_nodisc_shapes, on 100,000 images", codes_of="vqgan_mixture_nodisc_shapes",
           data=dict(num_images=100_000), model=dict(n_layers=4, n_head=4, n_embd=128),
           train=dict(_SCHEDULE, steps=6000, batch_size=64, optimizer="adamw", eval_every=500)),
    Recipe("prior_mixture_long_shapes", "prior", "6, appendix 11", "the same prior recipe over the 8x8 "
           "codes of vqgan_mixture_long_nodisc_shapes", codes_of="vqgan_mixture_long_nodisc_shapes",
           data=dict(num_images=100_000), model=dict(n_layers=4, n_head=4, n_embd=128),
           train=dict(_SCHEDULE, steps=6000, batch_size=64, optimizer="adamw", eval_every=500)),
    Recipe("maskgit_mixture_shapes", "maskgit", "appendix 11", "MaskGIT-style prior (bidirectional, "
           "parallel decoding) over the same codes, same size and steps as prior_mixture_shapes",
           codes_of="vqgan_mixture_nodisc_shapes", data=dict(num_images=100_000),
           model=dict(n_layers=4, n_head=4, n_embd=128),
           train=dict(_SCHEDULE, steps=6000, batch_size=64, optimizer="adamw", eval_every=500),
           shipped=False),  # a prior lever (appendix 11); the 60 MB budget has no room
    Recipe("prior_large_mixture_shapes", "prior", "appendix 11", "a larger transformer prior (6 layers, "
           "width 192) over the same codes, data and steps as prior_mixture_shapes",
           codes_of="vqgan_mixture_nodisc_shapes", data=dict(num_images=100_000),
           model=dict(n_layers=6, n_head=6, n_embd=192),
           train=dict(_SCHEDULE, steps=6000, batch_size=64, optimizer="adamw", eval_every=500),
           shipped=False),  # a prior lever, as maskgit_mixture_shapes
    # Its other settings are train_shape_features' defaults (shape_features.py).
    Recipe("shape_features", "shape_features", "6 (sample quality)",
           "the feature network of dlstudio_lite.quality", train=dict(steps=3000)),
    Recipe("vqvae2_shapes", "vqvae2", "appendix 9", "VQ-VAE-2, 8x8 top and 16x16 bottom codes, "
           "mixture likelihood (lecture 6, section 9)", data=dict(image_size=32, num_images=8000),
           model=dict(base_channels=16, code_dim=32, num_codes_top=128, num_codes_bottom=128,
                      likelihood="mixture"),
           train=dict(_SCHEDULE, steps=4000, lr=2e-3)),
    Recipe("pixelcnn_top_shapes", "pixelcnn", "appendix 9", "gated PixelCNN, top codes",
           codes_of="vqvae2_shapes", level="top", model=dict(channels=32, n_layers=6),
           train=dict(_SCHEDULE, steps=2000, batch_size=64, lr=2e-3, eval_every=None,
                      checkpoint_every=None)),
    Recipe("pixelcnn_bottom_shapes", "pixelcnn", "appendix 9",
           "gated PixelCNN, bottom codes given the top ones", codes_of="vqvae2_shapes",
           level="bottom", model=dict(channels=32, n_layers=6),
           train=dict(_SCHEDULE, steps=1500, lr=2e-3, eval_every=None, checkpoint_every=None)),
    Recipe("prior_vqvae2_top_shapes", "prior", "appendix 9",
           "the lecture-6 transformer over vqvae2_shapes' top codes", codes_of="vqvae2_shapes",
           model=dict(n_layers=3, n_head=4, n_embd=64),
           train=dict(_SCHEDULE, steps=2000, batch_size=64, lr=2e-3, optimizer="adamw",
                      eval_every=None, checkpoint_every=None)),
    _SWEEP := Recipe("sweep_shapes", "vqvae", "appendix 8", "one factor at a time around beta 1.25, "
           "lr 1e-3, 512 codes (k-means start and restarts off, as when it ran)",
           data=dict(image_size=32, num_images=4000),
           model=dict(base_channels=16, code_dim=32, quantizer="gradient", kmeans_init=False,
                      dead_code_steps=0, beta=1.25, num_codes=512),
           train=dict(steps=800, batch_size=16, lr=1e-3, log_every=10, eval_every=100,
                      eval_batches=8, checkpoint_every=500, progress=False),
           sweep=dict(grid=["beta=0.25,0.75,1.25,1.75", "lr=1e-3,1e-4,1e-5",
                            "num_codes=128,256,512"],
                      base=["beta=1.25", "lr=1e-3", "num_codes=512"])),
    _SWEEP.replace(name="sweep_shapes/long", about="the base point, lr 1e-4 and 128 codes, "
                   "trained until the test curves settle", train=dict(steps=3000),
                   sweep=dict(grid=["beta=1.25", "lr=1e-3,1e-4", "num_codes=128,512"],
                              base=["beta=1.25", "lr=1e-3", "num_codes=512"])),
    _SWEEP.replace(name="sweep_shapes/long_seed", about="the long base point again from a "
                   "second seed (the spread between seeds)", train=dict(steps=3000),
                   sweep=dict(grid=["seed=1"])),
    # Live demos: trained in their notebook every time, never shipped.
    Recipe("autoencoder_depth_demo", "autoencoder", "3 (section 6)", "short runs of a narrow "
           "autoencoder, with and without skip connections, at two depths",
           data=dict(image_size=32, num_images=4000), model=dict(latent_size=8, base_channels=8),
           train=dict(steps=100, batch_size=16, lr=2e-3, scheduler="cosineannealinglr",
                      log_every=10, progress=False), seeds=(0, 1, 2), shipped=False),
    Recipe("dead_code_demo", "vqvae", "5", "a VQ-VAE whose codebook starts in one far cluster",
           data=dict(image_size=32, num_images=1024),
           model=dict(latent_size=8, base_channels=8, code_dim=16, num_codes=64, kmeans_init=False),
           train=dict(steps=300, batch_size=32, lr=2e-3, log_every=10), shipped=False),
    Recipe("sweep_demo", "vqvae", "appendix 8", "the lecture's live two-point sweep, tiny "
           "images", data=dict(image_size=16, num_images=2000),
           model=dict(base_channels=8, code_dim=16, num_codes=64),
           train=dict(steps=150, batch_size=16, log_every=10, eval_batches=2, progress=False),
           sweep=dict(grid=["beta=0.25,1.75"]), shipped=False),
    # Loops written out in a notebook: what they train on and for how long.
    Recipe("kmeans_patches", LOOP, "1 (sections 5, 6)", "k-means codebooks of 2x2 patches: "
           "num_images training images at 32x32, steps Lloyd iterations per fit",
           data=dict(image_size=32, num_images=512), train=dict(steps=25), shipped=False),
    Recipe("amortised_elbo_toy", LOOP, "2 (section 7)", "a linear encoder maximising the "
           "one-sample ELBO of the linear-Gaussian toy model: num_images training examples",
           data=dict(num_images=8192), train=dict(steps=1500, batch_size=256, lr=0.1,
                                                  scheduler="cosineannealinglr"),
           shipped=False),
    # The matched-rate pair: an 8x8 grid for both; the VAE's beta brings its KL near the
    # VQ-VAE's bits per image (lecture 7 measures both).
    _CROSS_VAE := Recipe("crossdata_shapes/vae", "vae", "7 (appendix)", "the matched-rate pair's VAE",
           data=dict(image_size=32),
           model=dict(latent_size=8, base_channels=16, latent_channels=16, beta=0.019),
           train=dict(_SCHEDULE, steps=2000)),
    _CROSS_VQVAE := Recipe("crossdata_shapes/vqvae", "vqvae", "7 (appendix)", "the matched-rate pair's VQ-VAE",
           data=dict(image_size=32),
           model=dict(latent_size=8, base_channels=16, code_dim=16, num_codes=512,
                      dead_code_steps=20),
           train=dict(_SCHEDULE, steps=2000)),
    # The same pair on the two datasets that need no download (lecture 7): model, steps and
    # optimizer as on the shapes, only the data changes, and the VAE's beta, chosen per dataset
    # to bring its KL near that dataset's VQ-VAE rate (the notes in tools/checkpoint_readme.py).
    *[pair.replace(name=f"crossdata_{data}/{pair.target}", about=f"{pair.about}, on {data}",
                   data=dict(dataset=data), model=dict(beta=beta) if pair.target == "vae" else {})
      for data, beta in (("digits", 0.0081), ("patches", 0.029))
      for pair in (_CROSS_VAE, _CROSS_VQVAE)],
    # Appendix 10: the quantizer families at matched bits, ~10 bits per code on one 8x8 grid
    # (640 bits per image), the same small VQ-VAE, schedule, data and seed for every family;
    # only the quantizer and its own options differ.
    *[_quantizer_run(dataset, family) for dataset in ("shapes", "digits", "patches")
      for family in _QUANTIZER_FAMILIES],
    # A second seed on shapes: the rotation trick against the plain codebook (the comparison
    # that changes least, one option), and LFQ, whose first run kept part of the colour.
    *[_quantizer_run("shapes", family, seed=1) for family in ("codebook", "rotation", "lfq")],
]
RECIPES: dict[str, Recipe] = {r.name: r for r in _LIST}


# --- quick mode: the one place that shrinks a run ----------------------------------------------
# Each setting is capped at the value here; the rest follow from it (below).
QUICK_CAPS = dict(image_size=32, num_images=1_024, steps=12, batch_size=16, base_channels=8,
                  code_dim=16, num_codes=64, num_codes_top=32, num_codes_bottom=32,
                  dead_code_steps=5, n_layers=2, n_embd=32, channels=8, log_every=3,
                  eval_batches=2)
QUICK_MIN_LR = 2e-3  # so few steps learn visibly only with a larger step size


def quick_variant(recipe: Recipe) -> Recipe:
    """The small version of ``recipe``: every run well under a minute on a laptop CPU.

    Settings are capped by ``QUICK_CAPS`` (the library's defaults count too: a recipe at
    64x64 by default runs at 32x32); a latent grid shrinks with the image, a transformer's
    heads with its capped width (so that they still divide it); a step count
    inside the run (discriminator start, evaluation) shrinks with the run; no checkpoints
    on the way; the learning rate is at least ``QUICK_MIN_LR``; one seed."""
    if recipe.quick:
        return recipe
    if recipe.target == "shape_features":  # its 64 and 32 px test splits need 456 images
        return dataclasses.replace(recipe, data={"num_images": 456}, quick=True, train={
            "steps": QUICK_CAPS["steps"], "batch_size": QUICK_CAPS["batch_size"]})
    from .config import TrainConfig
    # A stage-2 run encodes the images its VQ model was trained on: no data settings here.
    # Only the generated shapes have a size to cap (num_images); a real dataset keeps its own.
    data = dict(recipe.data) if recipe.target in STAGE2 else {"image_size": 64, **recipe.data}
    if recipe.target not in STAGE2 and data.get("dataset", "shapes") == "shapes":
        data.setdefault("num_images", 20_000)
    model, train = dict(recipe.model), {**dataclasses.asdict(TrainConfig()), **recipe.train}
    steps = train.get("steps") or QUICK_CAPS["steps"]

    def cap(part: dict, key: str) -> None:
        if key in part and part[key] is not None and key in QUICK_CAPS:
            part[key] = min(part[key], QUICK_CAPS[key])

    for key in QUICK_CAPS:
        cap(data, key), cap(train, key)
        if key != "image_size":
            cap(model, key)
    if model.get("n_embd") and model.get("n_head"):  # the heads must still split the capped width
        model["n_head"] = math.gcd(model["n_embd"], model["n_head"])
    if model.get("latent_size"):
        model["latent_size"] = max(1, model["latent_size"] * data["image_size"]
                                   // recipe.data.get("image_size", 64))
    scale = lambda n: max(1, n * train["steps"] // steps)  # noqa: E731
    if model.get("disc_start", 0) < steps:
        model.update({"disc_start": scale(model["disc_start"])} if "disc_start" in model else {})
    if train.get("eval_every"):
        train["eval_every"] = max(train["steps"] // 2, scale(train["eval_every"]))
    train.update(checkpoint_every=None, lr=max(train["lr"], QUICK_MIN_LR),
                 eval_batches=min(train["eval_batches"] or QUICK_CAPS["eval_batches"],
                                  QUICK_CAPS["eval_batches"]))
    train = {k: v for k, v in train.items() if k in recipe.train or v != getattr(TrainConfig(), k)}
    if recipe.target == LOOP:  # a notebook's own loop reads only what its recipe states
        data, train = {k: data[k] for k in recipe.data}, {k: train[k] for k in recipe.train}
    return dataclasses.replace(recipe, data=data, model=model, train=train, seeds=recipe.seeds[:1],
                               quick=True)


def recipe(name: str, quick: bool | None = None) -> Recipe:
    """The recipe ``name``; in quick mode (or with ``quick=True``) its quick variant."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; the recipes are: {', '.join(RECIPES)}")
    found = RECIPES[name]
    return quick_variant(found) if (quick_mode() if quick is None else quick) else found
