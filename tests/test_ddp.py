"""The trainer under DistributedDataParallel: two gloo processes on the CPU."""
import socket

import torch
import torch.multiprocessing as mp
from torch.utils.data import TensorDataset

from dlstudio_lite.checkpoint import load_checkpoint


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: str) -> None:
    import os
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world),
                      RANK=str(rank), LOCAL_RANK=str(rank), DLSTUDIO_LITE_DEVICE="cpu")
    torch.set_num_threads(1)
    from dlstudio_lite.device import seed_everything
    from dlstudio_lite.train import Trainer, cleanup_distributed
    from dlstudio_lite.vqvae import VQVAE

    # Each rank initialises its model differently on purpose: DDP must broadcast rank 0's.
    seed_everything(rank)
    model = VQVAE(image_size=16, latent_size=4, base_channels=8, num_codes=16, code_dim=8)
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.rand(32, 3, 16, 16, generator=g) * 2 - 1)
    trainer = Trainer(model, data, out_dir=out, steps=3, batch_size=4, lr=1e-3, log_every=1,
                      progress=False)
    trainer._loader.sampler.set_epoch(0)
    seen = list(trainer._loader.sampler)
    trainer.fit()
    names, params = zip(*model.named_parameters())
    torch.save({"names": list(names), "params": [p.detach() for p in params], "seen": seen,
                "world": trainer.world_size, "history": trainer.history},
               os.path.join(out, f"rank{rank}.pt"))
    cleanup_distributed()


def test_two_process_ddp_run_trains_in_sync_and_rank0_saves(tmp_path):
    # fork starts in well under a second; spawn re-imports torch in each child (seconds).
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    mp.start_processes(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True,
                       start_method=method)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2
    # the DistributedSampler split the epoch between the ranks
    assert len(r0["seen"]) == len(r1["seen"]) == 16 and not set(r0["seen"]) & set(r1["seen"])
    # different data and different initialisations, yet identical weights: gradients were
    # averaged and rank 0's parameters broadcast
    for a, b in zip(r0["params"], r1["params"]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ckpt["step"] == 3
    for name, value in zip(r0["names"], r0["params"]):  # rank 0's trained weights
        torch.testing.assert_close(ckpt["model"][name], value)
    assert [s for s, _ in r0["history"]["train/loss"]] == [1, 2, 3]
    # only rank 0 writes files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt", "rank0.pt",
                                                           "rank1.pt"]
