"""The training loop: batches are a function of (seed, step), and --resume continues exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import LlamaForCausalLM

from workers.training.checkpoint import has_checkpoint
from workers.training.data import generate, iter_texts, split
from workers.training.tiny import small_llama
from workers.training.tokenizer import add_control_tokens, train_tiny_tokenizer
from workers.training.train import (
    TrainConfig,
    batch_indices,
    collate,
    encode,
    train,
)


@pytest.fixture(scope="module")
def small_setup():
    examples = split(generate(0, examples_per_class=20))[0]
    tok = train_tiny_tokenizer(iter_texts(examples), vocab_size=400)
    add_control_tokens(tok)
    return tok, encode(examples, tok, max_response_tokens=12)


def _model(vocab: int) -> LlamaForCausalLM:
    torch.manual_seed(123)
    return LlamaForCausalLM(small_llama(vocab, hidden=32, layers=1, heads=2))


def test_batches_depend_only_on_seed_and_step() -> None:
    assert batch_indices(50, 8, 7, seed=1) == batch_indices(50, 8, 7, seed=1)
    assert batch_indices(50, 8, 7, seed=1) != batch_indices(50, 8, 7, seed=2)
    epoch = [i for s in range(5) for i in batch_indices(40, 8, s, seed=3)]
    assert sorted(epoch) == list(range(40))


def test_collate_targets_cover_the_response_and_mark_the_first_token(small_setup) -> None:
    tok, data = small_setup
    batch = collate(data[:4], tok.pad_token_id)
    for row, enc in enumerate(data[:4]):
        first = batch["first"][row].nonzero().flatten().tolist()
        assert first == [enc.prompt_len - 1]
        assert batch["targets"][row, enc.prompt_len - 1].item() == enc.ids[enc.prompt_len]
        assert batch["in_prompt"][row, : enc.prompt_len - 1].all()


def test_resume_after_interruption_gives_the_same_weights(small_setup, tmp_path: Path) -> None:
    tok, data = small_setup
    cfg = TrainConfig(steps=6, batch_size=4, lr=1e-3, warmup=2, log_every=1, checkpoint_every=3)

    straight = _model(len(tok))
    train(straight, data, cfg, pad_id=tok.pad_token_id, out_dir=tmp_path / "a", log=lambda _: None)

    def interrupt_at_step_4(line: str) -> None:
        if "step 4/6" in line:
            raise KeyboardInterrupt

    out = tmp_path / "b"
    with pytest.raises(KeyboardInterrupt):
        train(
            _model(len(tok)),
            data,
            cfg,
            pad_id=tok.pad_token_id,
            out_dir=out,
            log=interrupt_at_step_4,
        )
    assert has_checkpoint(out)
    lines: list[str] = []
    resumed = _model(len(tok))
    summary = train(
        resumed, data, cfg, pad_id=tok.pad_token_id, out_dir=out, resume=True, log=lines.append
    )
    assert summary["start_step"] == 3
    assert "resumed" in lines[0]
    for (name, a), (_, b) in zip(
        straight.state_dict().items(), resumed.state_dict().items(), strict=True
    ):
        assert torch.allclose(a, b, atol=1e-6), name
