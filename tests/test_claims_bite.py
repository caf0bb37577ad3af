"""The lectures' claim checks bite: lecture 3 run against a worse checkpoint fails on the
sentence that checkpoint makes false.

Normal mode only (``python3 course.py test --normal`` runs it): the lecture loads its
shipped checkpoint there, and the claims about trained results are checked there.
"""
import os
from pathlib import Path

import nbformat
import pytest
import torch

from dlstudio_lite.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from dlstudio_lite.paths import CHECKPOINTS, CHECKPOINTS_ENV

pytestmark = [
    pytest.mark.normal,
    pytest.mark.skipif(os.environ.get("DLSTUDIO_LITE_QUICK") != "0",
                       reason="normal-mode test: run it with python3 course.py test --normal"),
]

LECTURES = Path(__file__).resolve().parents[1] / "lectures"


def test_lecture_3_fails_on_its_psnr_claim_with_an_untrained_autoencoder(tmp_path, monkeypatch):
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    shipped = CHECKPOINTS / "autoencoder_shapes" / "checkpoint.pt"
    ckpt = load_checkpoint(shipped)
    torch.manual_seed(0)
    untrained = type(model_from_checkpoint(ckpt, shipped))(**ckpt["hparams"])
    # Same file, same history and settings: only the weights are those of a fresh model.
    save_checkpoint({**ckpt, "model": untrained.state_dict()},
                    tmp_path / "autoencoder_shapes" / "checkpoint.pt")
    monkeypatch.setenv(CHECKPOINTS_ENV, str(tmp_path))
    monkeypatch.setenv("DLSTUDIO_LITE_QUICK", "0")
    monkeypatch.setenv("MPLBACKEND", "Agg")

    nb = nbformat.read(LECTURES / "03_autoencoder.ipynb", as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(LECTURES)}})
    with pytest.raises(CellExecutionError) as failure:
        client.execute()
    message = str(failure.value)
    assert "ClaimError" in message
    assert "reconstructs unseen shapes" in message, message[-2000:]
