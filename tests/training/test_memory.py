"""The training process fixes glibc's mmap threshold before it caches prompts (`memory.py`)."""

from __future__ import annotations

import subprocess
import sys


def test_the_threshold_is_set_in_a_fresh_process() -> None:
    code = "from workers.training.memory import map_large_blocks; print(map_large_blocks())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"  # glibc accepted the setting (this machine is Linux)
