"""`rcs model train` argument handling: clear errors, no training started."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from workers.training.cli import build_parser, run_train_command


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--tiny", "--demo"],
        ["--tiny", "--steps", "0"],
        ["--tiny", "--steps", "x"],
        ["--tiny", "--seed", "-1"],
        ["--demo", "--bogus"],
    ],
)
def test_bad_arguments_exit_with_usage_error(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        run_train_command(argv)
    assert exc.value.code == 2
    assert "usage: rcs model train" in capsys.readouterr().err


def test_defaults_parse() -> None:
    args = build_parser().parse_args(["--tiny"])
    assert args.tiny and not args.demo and not args.resume and args.out is None


def test_output_path_that_is_a_file_is_refused(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert run_train_command(["--tiny", "--out", str(blocker / "model")]) == 2
    assert "cannot create output directory" in capsys.readouterr().err


def test_resume_without_checkpoint_is_refused(tmp_path: Path, capsys) -> None:
    assert run_train_command(["--tiny", "--resume", "--out", str(tmp_path / "new")]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_default_threads_drop_to_one_when_the_cores_are_busy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from workers.training import cli

    monkeypatch.setattr(cli, "busy_cores", lambda: 0.1)
    assert cli.default_threads() == 2
    monkeypatch.setattr(cli, "busy_cores", lambda: 1.4)
    assert cli.default_threads() == 1


def test_busy_cores_are_read_now_from_proc_stat(tmp_path: Path, monkeypatch) -> None:
    """Ticks counted between two readings, not the load average of the last minute."""
    from workers.training import cli

    assert 0.0 <= cli.busy_cores(0.05) <= (os.cpu_count() or 1)  # this machine's, for real
    readings = iter(
        [
            "cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 ...\n",
            "cpu  250 0 150 1000 0 0 0 0 0 0\ncpu0 ...\n",  # 200 busy of 400 ticks
        ]
    )
    stat = tmp_path / "stat"

    def next_reading(_: float) -> None:
        stat.write_text(next(readings))

    next_reading(0)
    monkeypatch.setattr(cli.time, "sleep", next_reading)
    monkeypatch.setattr(cli.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(cli.os, "getloadavg", lambda: (4.6, 4.0, 3.0))  # stale: not used
    assert cli.busy_cores(stat=stat) == pytest.approx(1.0)
    assert cli.busy_cores(stat=tmp_path / "missing") == 4.6  # no /proc: the load average


def test_the_tiny_recipe_trains_on_fixed_threads_whatever_the_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its weights differ between one and two threads; the fixture must not follow the load."""
    from workers.training import cli

    for busy in (0.1, 1.4):
        monkeypatch.setattr(cli, "busy_cores", lambda busy=busy: busy)
        assert cli.training_threads(None, tiny=True) == cli.TINY_THREADS
        assert cli.training_threads(3, tiny=True) == 3
    assert cli.training_threads(None, tiny=False) == 1  # the demo still follows the load
