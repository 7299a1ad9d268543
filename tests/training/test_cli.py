"""`rcs model train` argument handling: clear errors, no training started."""

from __future__ import annotations

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

    monkeypatch.setattr(cli.os, "getloadavg", lambda: (0.3, 0.2, 0.1))
    assert cli.default_threads() == 2
    monkeypatch.setattr(cli.os, "getloadavg", lambda: (4.6, 4.0, 3.0))
    assert cli.default_threads() == 1


def test_the_tiny_recipe_trains_on_fixed_threads_whatever_the_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its weights differ between one and two threads; the fixture must not follow the load."""
    from workers.training import cli

    for load in (0.3, 4.6):
        monkeypatch.setattr(cli.os, "getloadavg", lambda load=load: (load, load, load))
        assert cli.training_threads(None, tiny=True) == cli.TINY_THREADS
        assert cli.training_threads(3, tiny=True) == 3
    assert cli.training_threads(None, tiny=False) == 1  # the demo still follows the load
