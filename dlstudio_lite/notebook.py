"""The notebooks' entry point to training: the shipped model, or one trained here.

Quick mode applies here, not inside the library: a notebook in quick mode always trains
its (small) model, so that its cells run in seconds and never depend on a file.
"""
from __future__ import annotations

import os
import warnings

from torch.utils.data import Dataset

from .checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from .config import quick_mode
from .device import get_device
from .train import Trainer


def load_or_train(checkpoint: str | os.PathLike | None, make_model, train_data: Dataset,
                  test_data: Dataset | None = None, *, steps: int, **trainer_kwargs):
    """A trained model for a notebook: the shipped one, or one trained here.

    This is the notebooks' entry point, where quick mode applies: in normal mode the model
    in ``checkpoint`` is returned when it loads; in quick mode, when ``checkpoint`` is None,
    or when the file is missing or damaged (a warning says why), ``make_model()`` is trained
    for ``steps`` steps with :class:`Trainer` (``trainer_kwargs`` are its config fields).
    Returns ``(model in eval mode, history)``.
    """
    device = get_device(trainer_kwargs.get("device"))
    if checkpoint is not None and not quick_mode():
        try:
            ckpt = load_checkpoint(checkpoint)
            return model_from_checkpoint(ckpt, checkpoint).to(device), ckpt["history"]
        except CheckpointError as err:
            warnings.warn(f"{err}; training a new model instead", stacklevel=2)
    model = make_model()
    history = Trainer(model, train_data, test_data, steps=steps, **trainer_kwargs).fit()
    return model.eval(), history
