"""The inference engine: torch and transformers live here and nowhere else in the service.

Modules (import them directly; this package imports nothing, so `workers.engine.types` stays
free of torch):

* `model` — `load_model(path) -> LoadedModel`: weights, left-padding tokenizer, checked manifest;
  `ModelLoadError` for an unservable directory.
* `processor` — `RefusalPolicyProcessor`: per-row bias/threshold rule at step 0, control tokens
  masked afterwards; `first_token_summary` from raw logits.
* `sampling` — `sample_next`: greedy / temperature / top-p, one random stream per row.
* `continuous` — `RunningBatch`: rows join (`admit`) between decode steps (`step`) and leave
  when done; per-row `RowEvent`s carry tokens, the decision and results.
* `loop` — `EngineLoop`: a thread driving a `RunningBatch`; `submit(request) -> Future`.
* `admission` — `FairQueue`: deficit round robin across tenants, weighted by share.
* `batch` — `Engine.generate(requests) -> (results, stats)`: a fixed set of requests to the end.
* `prefill` — `left_pad`, `summaries_to_rows`: shared by decoding and scoring.
* `scoring` — `score_prompts(lm, items)`: streamed prefill-only summaries for calibration.
* `types` — `GenerationRequest`, `RowPolicy`, `SamplingParams`, `GenerationResult`,
  `FirstTokenSummary`, `BatchStats`, `stack_summaries`.
"""
