"""Mixed-policy batched decoding: rows of different tenants share one forward pass.

Our own decoding loop over the model with a KV cache (nanoGPT-style) rather than
`model.generate`, because every row brings its own policy, temperature, top-p, token budget and
random stream. `Engine.generate` runs a fixed set of requests through a `RunningBatch`
(`continuous.py`): all admitted at once, then one step at a time until the last row is done,
finished rows leaving the batch (and the cache) so long rows do not pay for short ones. The
worker's `EngineLoop` (`loop.py`) drives the same `RunningBatch`, admitting rows between steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import astuple

from core.settings import get_settings
from workers.engine.continuous import Joining, RunningBatch
from workers.engine.model import LoadedModel, load_model
from workers.engine.types import BatchStats, GenerationRequest, GenerationResult, RequestTooLong


class Engine:
    """A loaded model plus the batched decoding loop; `generate` is the worker's entry point."""

    def __init__(self, loaded: LoadedModel, *, max_batch_size: int | None = None) -> None:
        self.loaded = loaded
        self.max_batch_size = max_batch_size or get_settings().max_batch_size

    @classmethod
    def from_dir(
        cls, path: str | None = None, *, device: str | None = None, dtype: str | None = None
    ) -> Engine:
        return cls(load_model(path, device=device, dtype=dtype))

    def generate(
        self, requests: Sequence[GenerationRequest]
    ) -> tuple[list[GenerationResult], BatchStats]:
        """Run requests in batches of at most `max_batch_size`, grouped by prompt length.

        Raises `RequestTooLong` before any work when a prompt plus its budget exceeds the
        model's context; call `check` per request first to fail only that one.
        """
        if not requests:
            return [], BatchStats(0, 0, 0, 0, 0.0, 0.0)
        encoded = [self.loaded.encode(r.prompt) for r in requests]
        for req, ids in zip(requests, encoded, strict=True):
            self.check(req, ids)
        order = sorted(range(len(requests)), key=lambda i: len(encoded[i]))
        results: list[GenerationResult | None] = [None] * len(requests)
        parts: list[BatchStats] = []
        for start in range(0, len(order), self.max_batch_size):
            chunk = order[start : start + self.max_batch_size]
            rows, stats = self.generate_batch(
                [requests[i] for i in chunk], [encoded[i] for i in chunk]
            )
            for i, row in zip(chunk, rows, strict=True):
                results[i] = row
            parts.append(stats)
        totals = BatchStats(*(sum(col) for col in zip(*map(astuple, parts), strict=True)))
        return [r for r in results if r is not None], totals

    def check(self, request: GenerationRequest, encoded: list[int] | None = None) -> int:
        """Prompt token count; raises `RequestTooLong` if prompt + budget exceed the context."""
        ids = encoded if encoded is not None else self.loaded.encode(request.prompt)
        limit = self.loaded.max_positions
        total = len(ids) + request.sampling.max_new_tokens
        if limit is not None and total > limit:
            raise RequestTooLong(
                f"prompt ({len(ids)} tokens) + max_new_tokens "
                f"({request.sampling.max_new_tokens}) exceeds the model's context of {limit}"
            )
        return len(ids)

    def generate_batch(
        self, requests: Sequence[GenerationRequest], encoded: Sequence[list[int]] | None = None
    ) -> tuple[list[GenerationResult], BatchStats]:
        """Decode one batch to the end; rows keep their own policy and sampling."""
        encoded = (
            encoded if encoded is not None else [self.loaded.encode(r.prompt) for r in requests]
        )
        batch = RunningBatch(self.loaded)
        results: dict[int, GenerationResult] = {}
        events = batch.admit(
            [Joining(i, r, ids) for i, (r, ids) in enumerate(zip(requests, encoded, strict=True))]
        )
        while events:
            results.update((e.key, e.result) for e in events if e.result is not None)
            events = batch.step()
        c = batch.counters
        stats = BatchStats(
            c.rows,
            c.prompt_tokens,
            c.padded_prompt_tokens,
            c.generated_tokens,
            c.prefill_s,
            c.decode_s,
        )
        return [results[i] for i in range(len(requests))], stats
