"""Actor strings recorded in `policy_versions.created_by` and `audit_log.actor`.

The form is ``<kind>:<ref>`` (``key:<uuid>``, ``calibration:<uuid>``) or a bare kind for
system actors (``auto-tuner``, ``system``).
"""

from __future__ import annotations

import uuid

AUTO_TUNER = "auto-tuner"
SYSTEM = "system"


def key_actor(key_id: uuid.UUID) -> str:
    """The actor string of a change made with an API key."""
    return f"key:{key_id}"


def calibration_actor(run_id: uuid.UUID) -> str:
    """The actor string of a policy version produced by a calibration run."""
    return f"calibration:{run_id}"


def cli_actor(user: str) -> str:
    """The actor string of a change made from the `rcs` command line."""
    return f"cli:{user}"
