"""The machine's speed recorded with a build: real timings of fixed workloads, in the report and
on the card."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from workers.training.card import speed_note
from workers.training.machine_speed import measure_speed, speed_line


def test_the_speed_is_measured_on_the_current_threads() -> None:
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        speed = measure_speed()
    finally:
        torch.set_num_threads(before)
    assert speed["torch_threads"] == 1
    assert 0.0 < speed["python_loop_ms_per_million"] < 10_000
    assert 0.0 < speed["float32_gflops"] < 10_000
    line = speed_line(speed)
    assert "ms per million" in line and "GFLOP/s" in line


def test_a_report_without_a_speed_gets_no_note() -> None:
    assert speed_note({}) == ""
    note = speed_note(
        {"machine_speed": {"python_loop_ms_per_million": 52.0, "float32_gflops": 81.0}}
    )
    assert (
        note == " (a Python loop at 52 ms per million iterations, float32 products at 81 GFLOP/s)"
    )


def test_a_build_records_the_speed_it_ran_at(tiny_model_dir: Path) -> None:
    report = json.loads((tiny_model_dir / "training_report.json").read_text())
    speed = report["machine_speed"]
    assert speed["python_loop_ms_per_million"] > 0 and speed["float32_gflops"] > 0
    card = (tiny_model_dir / "MODEL_CARD.md").read_text()
    assert speed_line(speed) in card
