"""Training on several processes.

The trainer under DistributedDataParallel with two gloo processes on the CPU (forked: fast),
then the README's own ``torchrun`` command end to end: every output written, the same
weights on both ranks, a killed run resumed to the uninterrupted run's weights, stage 2
(``train prior``) on top, and a failure on one rank ending the other with its message.
"""
import contextlib
import multiprocessing
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from dlstudio_lite.checkpoint import load_checkpoint

README = Path(__file__).resolve().parents[1] / "README.md"
ROOT = README.parent
# fork starts in well under a second; spawn re-imports torch in each child (seconds).
METHOD = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _join(env: dict, rank: int) -> None:
    os.environ.update(env, RANK=str(rank), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)


def _run_ranks(target, *args, timeout: float = 90) -> None:
    """``target(rank, *args)`` in two forked processes of one gloo group; fails on a hang."""
    env = dict(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), WORLD_SIZE="2",
               DLSTUDIO_LITE_DEVICE="cpu")
    ctx = multiprocessing.get_context(METHOD)
    procs = [ctx.Process(target=target, args=(env, rank, *args)) for rank in (0, 1)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + timeout
    for p in procs:
        p.join(max(0.1, deadline - time.monotonic()))
    hung = [p for p in procs if p.is_alive()]
    for p in hung:
        p.kill()
    assert not hung, f"{len(hung)} rank(s) still running after {timeout} s: a hang"
    assert [p.exitcode for p in procs] == [0, 0]


def _tiny_vqvae():
    from dlstudio_lite.vqvae import VQVAE
    return VQVAE(image_size=16, latent_size=4, base_channels=8, num_codes=16, code_dim=8)


def _tiny_data(n: int = 32) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.rand(n, 3, 16, 16, generator=g) * 2 - 1)


# --- the trainer, two forked processes -------------------------------------------------------

def _sync_worker(env, rank: int, out: str) -> None:
    _join(env, rank)
    from dlstudio_lite.device import seed_everything
    from dlstudio_lite.train import Trainer, cleanup_distributed

    # Each rank initialises its model differently on purpose: DDP must broadcast rank 0's.
    seed_everything(rank)
    model = _tiny_vqvae()
    trainer = Trainer(model, _tiny_data(), out_dir=out, steps=3, batch_size=4, lr=1e-3,
                      log_every=1, progress=False)
    trainer._loader.sampler.set_epoch(0)
    seen = list(trainer._loader.sampler)
    trainer.fit()
    names, params = zip(*model.named_parameters())
    torch.save({"names": list(names), "params": [p.detach() for p in params], "seen": seen,
                "world": trainer.world_size, "history": trainer.history},
               os.path.join(out, f"rank{rank}.pt"))
    cleanup_distributed()


def test_two_process_ddp_run_trains_in_sync_and_rank0_saves(tmp_path):
    _run_ranks(_sync_worker, str(tmp_path))
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2
    # the DistributedSampler split the epoch between the ranks
    assert len(r0["seen"]) == len(r1["seen"]) == 16 and not set(r0["seen"]) & set(r1["seen"])
    # different data and different initialisations, yet the very same weights: gradients
    # were averaged and rank 0's parameters broadcast
    for a, b in zip(r0["params"], r1["params"]):
        assert torch.equal(a, b)
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ckpt["step"] == 3
    for name, value in zip(r0["names"], r0["params"]):  # rank 0's trained weights
        torch.testing.assert_close(ckpt["model"][name], value)
    assert [s for s, _ in r0["history"]["train/loss"]] == [1, 2, 3]
    # only rank 0 writes files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt", "rank0.pt",
                                                           "rank1.pt"]


def _resume_worker(env, rank: int, out: str) -> None:
    """A VAE (its noise is each rank's own random stream): 6 steps straight, and 3 steps,
    a checkpoint, then 3 more in a new trainer resumed from it."""
    _join(env, rank)
    from dlstudio_lite.device import seed_everything
    from dlstudio_lite.train import Trainer, cleanup_distributed
    from dlstudio_lite.vae import VAE

    def run(steps, folder, resume=None):
        seed_everything(rank)  # rank-dependent on purpose: rank 1's stream must be kept
        model = VAE(image_size=16, latent_size=4, base_channels=8, latent_channels=4)
        trainer = Trainer(model, _tiny_data(24), out_dir=folder, steps=steps, batch_size=4,
                          lr=1e-3, log_every=1, progress=False)
        if resume:
            trainer.resume(resume)
        trainer.fit()
        return [p.detach().clone() for p in model.parameters()]

    straight = run(6, os.path.join(out, "straight"))
    run(3, os.path.join(out, "first"))
    resumed = run(6, os.path.join(out, "second"), os.path.join(out, "first", "checkpoint.pt"))
    torch.save({"straight": straight, "resumed": resumed}, os.path.join(out, f"rank{rank}.pt"))
    cleanup_distributed()


@pytest.mark.slow  # the README command's test below also kills and resumes a run
def test_two_process_resume_repeats_the_uninterrupted_run_exactly(tmp_path):
    _run_ranks(_resume_worker, str(tmp_path))
    for rank in (0, 1):
        r = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        # Same operations in the same order on the same data and noise, on a CPU with one
        # thread per rank: bit for bit equal, so no tolerance is needed.
        for a, b in zip(r["straight"], r["resumed"]):
            assert torch.equal(a, b), f"rank {rank}: resumed weights differ"


class _BreaksOnRankOne(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.calls = 0

    def compute_loss(self, x):
        self.calls += 1
        if os.environ["RANK"] == "1" and self.calls == 3:
            raise ValueError("rank one broke on purpose")
        return self.layer(x).pow(2).mean(), {}


def _failing_worker(env, rank: int, out: str) -> None:
    _join(env, rank)
    from dlstudio_lite import distributed
    from dlstudio_lite.train import Trainer
    try:
        with distributed.session():
            Trainer(_BreaksOnRankOne(), TensorDataset(torch.randn(32, 4)), steps=8, batch_size=2,
                    progress=False).fit()
        message = "finished"
    except Exception as err:  # noqa: BLE001 - the test reads what each rank ended with
        message = f"{type(err).__name__}: {err}"
    Path(out, f"rank{rank}.txt").write_text(message)


def test_a_failure_on_one_rank_ends_the_other_with_its_message(tmp_path):
    _run_ranks(_failing_worker, str(tmp_path), timeout=60)
    r0, r1 = (Path(tmp_path, f"rank{r}.txt").read_text() for r in (0, 1))
    assert r1 == "ValueError: rank one broke on purpose"
    assert "rank 1" in r0 and "rank one broke on purpose" in r0, r0


# --- the README's command, through torchrun ---------------------------------------------------

def readme_command() -> tuple[dict, list[str]]:
    """The README's two-process quick command: its environment and its arguments."""
    match = re.search(r"^\s*((?:\w+=\S+ )*)torchrun (.*--nproc_per_node 2 .*train vqvae.*)$",
                      README.read_text(), re.MULTILINE)
    assert match, "the README shows no two-process `torchrun ... train vqvae` command"
    env = dict(item.split("=", 1) for item in match.group(1).split())
    assert env.get("DLSTUDIO_LITE_QUICK") == "1", "the README's command should be a quick run"
    return env, shlex.split(match.group(2))


def _with_out(argv: list[str], out: Path) -> list[str]:
    argv = list(argv)
    argv[argv.index("--out") + 1] = str(out)
    return argv


def _torchrun(argv: list[str], env: dict | None = None):
    """``torchrun ARGV`` (the same program as ``python -m torch.distributed.run``), its
    output into a file (a pipe nobody reads would fill up and stall the ranks)."""
    # Two CPU processes (gloo) even where there are GPUs.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
           "DLSTUDIO_LITE_DEVICE": "cpu", **(env or {})}
    log = tempfile.TemporaryFile("w+")
    proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", *argv], cwd=ROOT,
                            env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    proc.log = log
    return proc


def _kill(proc) -> None:
    # torchrun starts each rank in its own session: kill the ranks themselves, at once, as a
    # lost node would (their agent then stops too).
    for pid in [*_descendants(proc.pid), proc.pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait()


def _finish(proc, timeout: float = 150) -> str:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(proc)
        pytest.fail("torchrun did not finish in time (a hang?)")
    proc.log.seek(0)
    out = proc.log.read()
    assert proc.returncode == 0, out[-3000:]
    return out


def _descendants(pid: int) -> list[int]:
    """``pid``'s child processes and theirs (Linux: /proc/PID/task/TID/children)."""
    kids = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids += [int(k) for k in (task / "children").read_text().split()]
        except OSError:
            pass
    return kids + [d for k in kids for d in _descendants(k)]


def _replicas_agree(ckpt: dict) -> None:
    """Every rank's weights, as each rank hashed them when the checkpoint was written, are
    the weights in the file."""
    from dlstudio_lite.distributed import weights_digest
    digests = ckpt["replicas"]["weights_sha256"]
    assert len(digests) == ckpt["replicas"]["world_size"] == 2
    assert set(digests) == {weights_digest(ckpt["model"])}


def _check_outputs(out: Path) -> None:
    import json
    for name in ("checkpoint.pt", "config.json", "metrics.json", "history.json",
                 "reconstructions.png", "loss_curves.png"):
        assert (out / name).is_file(), f"{name} missing"
    config = json.loads((out / "config.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert config["world_size"] == 2 and config["quick_mode"]
    assert metrics["step"] == config["train"]["steps"] and not metrics["interrupted"]
    for key in ("mse", "psnr", "perplexity", "recon_fd", "recon_valid_shape_rate"):
        assert isinstance(metrics[key], float), key
    history = json.loads((out / "history.json").read_text())
    assert history["test/loss"], "no evaluation during training"
    _replicas_agree(load_checkpoint(out / "checkpoint.pt"))


@pytest.mark.slow  # about 50 CPU-s: two torchrun launches and a kill (CI and `test --normal` run it)
@pytest.mark.skipif(not sys.platform.startswith("linux"),
                    reason="finds torchrun's worker processes through /proc")
def test_the_readme_torchrun_command_finishes_and_a_killed_run_resumes_to_it(tmp_path):
    # One test, not a shared fixture: pytest-xdist would run a module fixture once per worker.
    env, argv = readme_command()
    reference = tmp_path / "straight"
    _finish(_torchrun(_with_out(argv, reference), env))
    _check_outputs(reference)

    # The same command with a checkpoint every 5 steps, killed after the first one ...
    out = tmp_path / "killed"
    checkpoint = out / "checkpoint.pt"
    proc = _torchrun([*_with_out(argv, out), "--checkpoint-every", "5"], env)
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    _kill(proc)
    stopped_at = load_checkpoint(checkpoint)["step"]
    assert not (out / "metrics.json").exists() and stopped_at < 20
    # ... and restarted with --resume auto.
    _finish(_torchrun([*_with_out(argv, out), "--checkpoint-every", "5", "--resume", "auto"], env))
    _check_outputs(out)
    resumed, straight = (load_checkpoint(p / "checkpoint.pt") for p in (out, reference))
    assert resumed["step"] == straight["step"]
    # Bit for bit: the same operations in the same order on the same batches, each rank's
    # random stream restored, one thread per rank on a CPU.
    assert resumed["model"].keys() == straight["model"].keys()
    for name, value in straight["model"].items():
        assert torch.equal(resumed["model"][name], value), name


@pytest.mark.slow  # one more torchrun launch (about 15 CPU-s) for the stage-2 command
def test_train_prior_under_torchrun(tmp_path):
    import json

    from dlstudio_lite.train import Trainer
    vq = tmp_path / "vq"  # a tiny VQ-VAE of 16x16 images (4x4 codes), trained here
    Trainer(_tiny_vqvae(), _tiny_data(), out_dir=vq, steps=2, batch_size=8,
            progress=False).fit()
    env, argv = readme_command()
    launcher = argv[:argv.index("-m")]  # torchrun's own options, as in the README
    out = tmp_path / "prior"
    _finish(_torchrun([*launcher, "-m", "dlstudio_lite.cli", "train", "prior", "--vq-checkpoint",
                       str(vq / "checkpoint.pt"), "--num-images", "256", "--out", str(out),
                       "--no-progress"], env))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_bits_per_code"] > 0 and (out / "samples.png").is_file()
    _replicas_agree(load_checkpoint(out / "checkpoint.pt"))


def test_sweep_points_run_under_torchrun_and_the_sweep_itself_does_not(tmp_path, capsys,
                                                                       monkeypatch):
    from dlstudio_lite import cli
    assert cli.main(["sweep", "vqvae", "--grid", "lr=1e-3,1e-4", "--out", str(tmp_path),
                     "--nproc-per-point", "2", "--print-commands"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(
        " torchrun --standalone --nproc_per_node=2 -m dlstudio_lite.cli train vqvae " in f" {line}"
        for line in lines)
    monkeypatch.setenv("WORLD_SIZE", "2")  # the sweep started under torchrun: refused
    assert cli.main(["sweep", "vqvae", "--grid", "lr=1e-3", "--out", str(tmp_path)]) == 2
    assert "not under torchrun" in capsys.readouterr().err
