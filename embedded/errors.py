"""Why the embedded stack cannot start, in one line an operator can act on."""

from __future__ import annotations


class StartupError(RuntimeError):
    """A condition that stops `rcs serve` before it starts; the message is the whole story."""
