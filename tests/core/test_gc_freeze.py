"""Start-up objects leave the cyclic collector's reach, once per process."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from core.settings import PROJECT_ROOT


def test_freezes_what_is_alive_once_per_process() -> None:
    # A fresh interpreter: this test process may have frozen already.
    script = textwrap.dedent(
        """
        import gc
        from core.gc_freeze import freeze_startup_objects
        before = gc.get_freeze_count()
        kept = [[i] for i in range(1000)]
        freeze_startup_objects()
        first = gc.get_freeze_count()
        more = [[i] for i in range(1000)]
        freeze_startup_objects()
        print(before, first, gc.get_freeze_count())
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    )
    before, first, second = map(int, out.stdout.split())
    assert before == 0
    assert first >= 1000  # everything alive, the list above included
    assert second == first  # the second call froze nothing new
