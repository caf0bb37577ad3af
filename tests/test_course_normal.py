"""`python3 course.py test --normal`: every lecture in normal mode, then the tests marked
normal and the tests marked slow; a table of times; a failing lecture fails the command. (Commands are recorded here,
not run: the real run takes many minutes.)"""
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_course():
    spec = importlib.util.spec_from_file_location("_course_normal", ROOT / "course.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_recorded(monkeypatch, argv, failing=()):
    course = load_course()
    calls = []

    def call(cmd, cwd=None, env=None):
        calls.append((cmd, env))
        return 1 if any(name in " ".join(cmd) for name in failing) else 0

    monkeypatch.setattr(course, "setup", lambda: Path("/venv/bin/python"))
    monkeypatch.setattr(course.subprocess, "call", call)
    return course.main(argv), calls


def test_every_lecture_runs_in_normal_mode_then_the_normal_tests(monkeypatch, capsys):
    code, calls = run_recorded(monkeypatch, ["test", "--normal"])
    lectures = sorted(p.name for p in (ROOT / "lectures").glob("[0-9][0-9]_*.ipynb"))
    notebooks = [Path(c[-1]).name for c, _ in calls[:-2]]
    assert code == 0 and notebooks == lectures
    assert all(env["DLSTUDIO_LITE_QUICK"] == "0" for _, env in calls[:-1])
    assert calls[-2][0][-3:] == ["-m", "normal", "tests"]
    # then the long integration tests, in quick mode as in `course.py test`
    slow_cmd, slow_env = calls[-1]
    assert slow_cmd[slow_cmd.index("slow") - 1] == "-m" and slow_env["DLSTUDIO_LITE_QUICK"] == "1"
    table = capsys.readouterr().out
    assert "wall s" in table and "CPU s" in table and "all passed" in table
    assert all(Path(name).stem in table for name in lectures)


def test_a_failing_lecture_fails_the_command_and_lecture_numbers_select(monkeypatch, capsys):
    code, calls = run_recorded(monkeypatch, ["test", "--normal", "03", "-x"], failing=["03_"])
    assert code == 1
    assert [Path(c[-2]).name for c, _ in calls[:-2]] == ["03_autoencoder.ipynb"]
    assert calls[0][0][-1] == "-x"                    # other arguments go to pytest
    assert "failed: 03_autoencoder" in capsys.readouterr().out
