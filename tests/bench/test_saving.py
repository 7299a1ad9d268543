"""Saved benchmark figures carry the machine's speed, measured when they are saved."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import saving


@pytest.fixture
def results_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(saving, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(saving, "PROJECT_ROOT", tmp_path)
    return tmp_path / "results"


def test_an_object_of_figures_gets_the_machine_speed(results_dir: Path) -> None:
    path = saving.save_results("x.json", {"requests_per_s": 12.5})
    saved = json.loads(path.read_text())
    assert path.parent == results_dir and saved["requests_per_s"] == 12.5
    assert saved["machine_speed"]["python_loop_ms_per_million"] > 0
    assert saved["machine_speed"]["float32_gflops"] > 0


def test_a_speed_already_given_and_a_list_are_kept_as_they_are(results_dir: Path) -> None:
    given = {"machine_speed": {"python_loop_ms_per_million": 1.0}}
    assert json.loads(saving.save_results("a.json", given).read_text()) == given
    assert json.loads(saving.save_results("b.json", [1, 2]).read_text()) == [1, 2]
