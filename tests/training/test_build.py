"""Side-by-side training (training/build.py): lane planning, and the runner on stand-in commands.

The runner is tested with short `python -c` commands instead of real training runs: what is under test
is the scheduling (order, logs, failure handling), and real runs of all four models would take minutes."""

import sys
from pathlib import Path

import pytest

from training.build import main, plan_lanes, run_lanes


def test_lanes_take_the_longest_job_first_and_balance():
    lanes = plan_lanes(["two_tower", "din", "tcn", "intent"], jobs=2)
    assert lanes[0] == ["intent"]  # the longest job runs in the foreground lane
    assert sorted(lanes[1]) == ["din", "tcn", "two_tower"]
    assert plan_lanes(["tcn", "din"], jobs=1) == [["din", "tcn"]]
    assert plan_lanes(["tcn"], jobs=4) == [["tcn"]]  # never more lanes than models


def _command(script: dict[str, str]):
    return lambda model: [sys.executable, "-c", script[model]]


def test_runner_runs_every_model_and_logs_the_background_lanes(tmp_path: Path):
    marks = tmp_path / "marks"
    marks.mkdir()
    script = {m: f"import os; open({str(marks / m)!r}, 'w').write(os.environ['OMP_NUM_THREADS']); print('hi {m}')"
              for m in ("a", "b", "c")}  # fmt: skip
    rc = run_lanes([["a"], ["b", "c"]], _command(script), tmp_path / "logs", threads=1, poll_s=0.01)
    assert rc == 0
    assert sorted(p.name for p in marks.iterdir()) == ["a", "b", "c"]
    assert (marks / "b").read_text() == "1"
    assert "hi b" in (tmp_path / "logs" / "train_b.log").read_text()
    assert not (tmp_path / "logs" / "train_a.log").exists()  # the foreground lane prints to the terminal


def test_a_failure_stops_the_build_and_shows_the_log(tmp_path: Path, capsys):
    script = {
        "slow": "import time; time.sleep(30)",
        "bad": "import sys; print('broken input'); sys.exit(3)",
        "never": f"open({str(tmp_path / 'never')!r}, 'w')",
    }
    rc = run_lanes([["slow"], ["bad", "never"]], _command(script), tmp_path / "logs", threads=1, poll_s=0.01)
    assert rc == 3
    err = capsys.readouterr().err
    assert "bad failed (exit 3)" in err and "broken input" in err
    assert not (tmp_path / "never").exists()  # the lane stopped at its failure


def test_existing_checkpoints_are_skipped_and_unknown_models_refused(tmp_path: Path, capsys):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "tcn.pt").write_bytes(b"")
    assert main(["tcn", "--out", str(tmp_path)]) == 0
    assert "using" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["nonsense", "--out", str(tmp_path)])
