"""Several processes under ``torchrun``: joining the group, and each rank's share of an
epoch in an order that a resumed run can reproduce."""
from __future__ import annotations

import itertools
import os

import torch
import torch.distributed as dist
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler, Sampler


def setup_distributed() -> tuple[int, int, int]:
    """Join the process group that ``torchrun`` describes in the environment.

    Returns ``(rank, world_size, local_rank)``; ``(0, 1, 0)`` for a single process.
    Uses NCCL when CUDA is available, gloo otherwise.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size(), local_rank


def cleanup_distributed() -> None:
    """Leave the process group (call once at the end of a ``torchrun`` job)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class ResumableBatches(Sampler):
    """Batches of one epoch, skipping the first ``skip`` (to resume mid-epoch).

    The order comes from a ``DistributedSampler`` (also for one process), which shuffles
    with ``seed + epoch``: no global RNG is consumed, so the same epoch always gives the
    same order, and each rank gets its own share of the data.
    """

    def __init__(self, sampler: DistributedSampler, batch_size: int):
        self.sampler = sampler
        # Drop the ragged last batch (constant shapes suit compile and BatchNorm) unless
        # the dataset is smaller than one batch.
        self.batches = BatchSampler(sampler, batch_size, drop_last=len(sampler) >= batch_size)
        self.skip = 0

    def __len__(self) -> int:
        return max(0, len(self.batches) - self.skip)

    def __iter__(self):
        return itertools.islice(iter(self.batches), self.skip, None)


class ResumableLoader:
    """This rank's batches of ``data``, epoch by epoch: ``epoch(e, skip)`` iterates over
    epoch ``e`` from its ``skip``-th batch on, in the same order whenever it is asked."""

    def __init__(self, data, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1,
                 num_workers: int = 0, pin_memory: bool = False):
        self.sampler = DistributedSampler(data, num_replicas=world_size, rank=rank, shuffle=True,
                                          seed=seed)
        self.batches = ResumableBatches(self.sampler, batch_size)
        if len(self.batches) == 0:
            raise ValueError("the training set is empty")
        # A private generator: creating an iterator then draws no number from the global
        # RNG, which would shift the model's random stream when a run resumes mid-epoch.
        self.generator, self.seed = torch.Generator(), seed
        self.loader = DataLoader(data, batch_sampler=self.batches, num_workers=num_workers,
                                 pin_memory=pin_memory, generator=self.generator)

    def __len__(self) -> int:
        """Batches in a whole epoch."""
        return len(self.batches.batches)

    def epoch(self, epoch: int, skip: int = 0):
        self.sampler.set_epoch(epoch)
        self.batches.skip = skip
        self.generator.manual_seed(self.seed + epoch)  # worker seeds
        return iter(self.loader)
