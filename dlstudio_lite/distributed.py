"""Several processes under ``torchrun``: joining and leaving the group, what the ranks
share (checkpoint state, averaged logs, a failure's message), and each rank's share of an
epoch in an order that a resumed run can reproduce.

The rule that keeps a multi-process run from hanging: every collective (DDP's gradient
all-reduce and buffer broadcast, the EMA codebook's all-reduce, the helpers below) is
reached by every rank in the same order; work done by rank 0 alone (evaluation, pictures,
writing files) goes through the unwrapped model in eval mode and contains none. A command
runs inside :func:`session`, which ends the group with a barrier, or, when a rank fails,
posts its message in the group's key-value store so that the others, whose next collective
then breaks, stop with that message instead of a bare "Connection closed by peer".
"""
from __future__ import annotations

import contextlib
import datetime
import hashlib
import itertools
import os
import time

import torch
import torch.distributed as dist
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler, Sampler

TIMEOUT_ENV = "DLSTUDIO_LITE_DIST_TIMEOUT"  # seconds a collective may wait (torch's default: 30 min)
PEER_WAIT = 3.0  # seconds to wait for a peer's message once a collective broke


class PeerFailure(RuntimeError):
    """Another rank failed; the message is that rank's own error."""


def setup_distributed(device: torch.device | None = None) -> tuple[int, int, int]:
    """Join the process group that ``torchrun`` describes in the environment.

    Returns ``(rank, world_size, local_rank)``; ``(0, 1, 0)`` for a single process.
    Uses NCCL when this process trains on ``device``, a GPU (default: when CUDA is
    available), which becomes its current device (the local rank's when no index is
    given), gloo otherwise. ``DLSTUDIO_LITE_DIST_TIMEOUT`` (seconds) bounds how long a rank waits in a
    collective for the others.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        cuda = device.type == "cuda" if device is not None else torch.cuda.is_available()
        backend = "nccl" if cuda else "gloo"
        if cuda:
            index = device.index if device is not None and device.index is not None else None
            torch.cuda.set_device(index if index is not None else local_rank % torch.cuda.device_count())
        seconds = os.environ.get(TIMEOUT_ENV)
        timeout = datetime.timedelta(seconds=float(seconds)) if seconds else None
        dist.init_process_group(backend=backend, timeout=timeout)
    return dist.get_rank(), dist.get_world_size(), local_rank


def active() -> bool:
    """True inside a process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    if active():
        cuda = dist.get_backend() == "nccl"
        dist.barrier(device_ids=[torch.cuda.current_device()] if cuda else None)


def cleanup_distributed() -> None:
    """Wait for every rank, then leave the process group (once, at the end of a job):
    without the barrier a rank that is done would close its connections while rank 0 is
    still writing its outputs."""
    if dist.is_available() and dist.is_initialized():
        barrier()
        dist.destroy_process_group()


# --- what the ranks exchange -----------------------------------------------------------------

def gather(obj) -> list:
    """Every rank's ``obj`` (picklable), in rank order; ``[obj]`` for a single process."""
    if not active():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast(obj, src: int = 0):
    """Rank ``src``'s ``obj`` on every rank (``obj`` is ignored on the others)."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def average(values: torch.Tensor) -> torch.Tensor:
    """The mean of ``values`` over the ranks (a copy; ``values`` itself for one process)."""
    if not active():
        return values
    values = values.clone()
    dist.all_reduce(values)
    return values / dist.get_world_size()


def on_rank0(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` run by rank 0 alone, its result (or its error, raised) on
    every rank: e.g. reading a checkpoint that only rank 0's disk holds."""
    if not active():
        return fn(*args, **kwargs)
    result = None
    if dist.get_rank() == 0:
        try:
            result = fn(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - every rank raises it
            result = err
    result = broadcast(result)
    if isinstance(result, BaseException):
        raise result
    return result


def replicas(model: torch.nn.Module) -> dict:
    """What a checkpoint keeps of every rank (``{}`` for one process): ``{"replicas":
    {"world_size", "rng": each rank's random state, "weights_sha256": each rank's
    :func:`weights_digest`}}``; a resumed run gives each rank its own stream back."""
    if not active():
        return {}
    from .checkpoint import rng_state
    states = gather((rng_state(), weights_digest(model.state_dict())))
    return {"replicas": {"world_size": len(states), "rng": [r for r, _ in states],
                         "weights_sha256": [d for _, d in states]}}


def weights_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a ``state_dict``'s names and bytes: equal digests, identical weights."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous().reshape(-1)
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


# --- failures: one rank's error reaches the others ---------------------------------------------

def _store():
    try:
        return dist.distributed_c10d._get_default_store()
    except Exception:  # noqa: BLE001 - a private helper of torch; without it, no messages
        return None


def _key(rank: int) -> str:
    # torchrun keeps its store across restarts of the workers: a restart starts afresh.
    return f"dlstudio_lite/failed/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/{rank}"


def _peer_message(wait: float) -> tuple[int, str] | None:
    """The first other rank's posted failure, waiting up to ``wait`` seconds for one."""
    store, me = _store(), dist.get_rank()
    if store is None:
        return None
    deadline = time.monotonic() + wait
    while True:
        for rank in range(dist.get_world_size()):
            try:
                if rank != me and store.check([_key(rank)]):
                    return rank, store.get(_key(rank)).decode()
            except Exception:  # noqa: BLE001 - the store's host is gone too
                return None
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)


def failure(err: BaseException) -> BaseException:
    """What this rank should raise for ``err``.

    When another rank has posted its failure (and ``err`` is, as a broken collective is, a
    ``RuntimeError``), a :class:`PeerFailure` carrying that rank's message; otherwise
    ``err`` itself, after posting its message for the others. Idempotent.
    """
    if not active() or getattr(err, "_dlstudio_seen", False) or isinstance(err, PeerFailure):
        return err
    with contextlib.suppress(AttributeError):  # an exception type without a __dict__
        err._dlstudio_seen = True
    peer = _peer_message(PEER_WAIT if isinstance(err, RuntimeError) else 0.0)
    if peer is not None and isinstance(err, RuntimeError):
        rank, message = peer
        return PeerFailure(f"rank {rank} failed: {message}")
    store = _store()
    if store is not None:
        with contextlib.suppress(Exception):
            store.set(_key(dist.get_rank()), f"{type(err).__name__}: {err}")
    return err


@contextlib.contextmanager
def shared_failures():
    """Inside: an error on this rank is posted for the others, and a collective broken by
    another rank's failure raises that rank's message (:func:`failure`)."""
    try:
        yield
    except BaseException as err:
        raised = failure(err)
        if raised is err:
            raise
        raise raised from err


_depth = 0


@contextlib.contextmanager
def session():
    """The life of a command under ``torchrun`` (nests: the outermost one ends the group).

    On success: a barrier, then the group is destroyed. On an error: the error is shared
    (:func:`shared_failures`) and the group destroyed at once, which breaks the others'
    pending collective (gloo) so that they stop with this rank's message.
    """
    global _depth
    _depth += 1
    try:
        with shared_failures():
            yield
    except BaseException:
        _depth -= 1
        if _depth == 0 and dist.is_available() and dist.is_initialized():
            with contextlib.suppress(Exception):
                dist.destroy_process_group()
        raise
    _depth -= 1
    if _depth == 0:
        cleanup_distributed()


# --- each rank's share of the data -------------------------------------------------------------

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
