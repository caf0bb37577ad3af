"""The notebooks' entry point to training: the shipped model of a named recipe, or one
trained here.

Quick mode applies here, not inside the library: a notebook in quick mode always trains
its recipe's quick variant (``recipes.quick_variant``), so that its cells run in seconds
and never depend on a file.
"""
from __future__ import annotations

import os
import warnings

from torch.utils.data import Dataset

from .checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from .config import quick_mode
from .device import get_device
from .paths import CHECKPOINTS
from .recipes import STAGE2, recipe
from .train import Trainer


def load_or_train(name: str, train_data: Dataset | None = None, test_data: Dataset | None = None,
                  *, checkpoint: str | os.PathLike | None = None, model_kwargs: dict | None = None,
                  **overrides):
    """A trained model of the recipe ``name``: the shipped one, or one trained here.

    In normal mode the model in ``checkpoint`` (default: ``data/checkpoints/NAME/``; none
    for a recipe that is not shipped) is returned when it loads; in quick mode, or when the file is missing or damaged (a
    warning says why), the recipe's model is trained here on ``train_data`` / ``test_data``
    (default: the recipe's own data splits). ``model_kwargs``: constructor arguments the
    data decides (a prior's ``num_codes`` and ``latent_shape``); ``overrides``: training
    settings that differ from the recipe, e.g. ``progress=False``. Returns
    ``(model in eval mode, history)``.
    """
    found = recipe(name)
    device = get_device(overrides.get("device"))
    checkpoint = CHECKPOINTS / name / "checkpoint.pt" if checkpoint is None else checkpoint
    if found.shipped and not quick_mode():
        try:
            ckpt = load_checkpoint(checkpoint)
            return model_from_checkpoint(ckpt, checkpoint).to(device), ckpt["history"]
        except CheckpointError as err:
            warnings.warn(f"{err}; training a new model instead", stacklevel=2)
    if train_data is None:
        train_data, default_test = found.data_config().splits()
        test_data = default_test if test_data is None else test_data
    channels = 3 if found.target in STAGE2 else train_data[0][0].shape[0]
    model = found.build_model(channels, **(model_kwargs or {}))
    history = Trainer(model, train_data, test_data, found.train_config(**overrides)).fit()
    return model.eval(), history

