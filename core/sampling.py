"""Per-request decoding parameters and their defaults, written once: the API's request bodies,
the stored `generations.params` and the engine's rows all take them from here."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SamplingParams:
    """Per-row decoding parameters; temperature 0 is greedy, seed None draws a fresh seed."""

    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 64
    seed: int | None = None
    ignore_eos: bool = False  # benchmarks: always generate max_new_tokens

    def __post_init__(self) -> None:
        if not self.temperature >= 0.0 or not math.isfinite(self.temperature):
            raise ValueError("temperature must be finite and >= 0")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError("top_p must be in (0, 1]")
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be >= 1")

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> SamplingParams:
        """From a generation's stored `params` (the API's `max_tokens`, `temperature`, `top_p`,
        `seed`); a missing one takes its default."""
        return cls(
            temperature=float(params.get("temperature", DEFAULT.temperature)),
            top_p=float(params.get("top_p", DEFAULT.top_p)),
            max_new_tokens=int(params.get("max_tokens", DEFAULT.max_new_tokens)),
            seed=params.get("seed"),
        )


DEFAULT = SamplingParams()
