"""The course's torch thread count: half the cores (1 to 4), and an explicit setting wins."""
import pytest
import torch

from dlstudio_lite.threads import THREAD_ENVS, default_threads, use_course_threads


def test_half_the_cores_at_least_one_at_most_four():
    assert [default_threads(n) for n in (1, 2, 3, 4, 8, 16, 64)] == [1, 1, 1, 2, 4, 4, 4]
    with pytest.raises(ValueError, match="at least 1"):
        default_threads(0)


@pytest.fixture
def restore_threads(monkeypatch):
    before = torch.get_num_threads()
    for name in THREAD_ENVS:
        monkeypatch.delenv(name, raising=False)
    yield monkeypatch
    torch.set_num_threads(before)


def test_the_course_choice_applies_without_an_explicit_setting(restore_threads, monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert use_course_threads() == 4


def test_an_explicit_setting_wins(restore_threads):
    torch.set_num_threads(3)
    restore_threads.setenv("OMP_NUM_THREADS", "3")
    assert use_course_threads() == 3                      # left alone
    restore_threads.setenv("DLSTUDIO_LITE_THREADS", "2")
    assert use_course_threads() == 2
    restore_threads.setenv("DLSTUDIO_LITE_THREADS", "many")
    with pytest.raises(ValueError, match="positive integer"):
        use_course_threads()


@pytest.mark.parametrize("target", ["vqgan", "prior", "maskgit", "pixelcnn"])
def test_every_training_command_takes_threads_and_applies_them(restore_threads, target):
    from dlstudio_lite import cli
    from dlstudio_lite.commands.train import use_threads
    args = cli.build_parser().parse_args(["train", target, "--threads", "3", "--out", "x"])
    assert args.threads == 3
    use_threads(args)
    assert torch.get_num_threads() == 3
    with pytest.raises(SystemExit):             # argparse's error: not a positive whole number
        cli.build_parser().parse_args(["train", target, "--threads", "0", "--out", "x"])
