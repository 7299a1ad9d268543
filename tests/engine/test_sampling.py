"""Per-row sampling: exact top-p, own random stream per row, greedy rows untouched."""

from __future__ import annotations

import pytest
import torch

from workers.engine import sampling
from workers.engine.sampling import _inverse_cdf, _nucleus, sample_next


def _reference_top_p(probs: torch.Tensor, top_p: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    sp, si = probs.sort(dim=-1, descending=True)
    keep = (sp.cumsum(-1) - sp) < top_p[:, None]
    return si.gather(1, _inverse_cdf(sp * keep, u)[:, None]).squeeze(-1)


@pytest.mark.parametrize("ladder", [(4,), (2, 16, 64), (100_000,), ()])
def test_top_k_shortcut_gives_exactly_the_full_sort_token(
    monkeypatch: pytest.MonkeyPatch, ladder: tuple[int, ...]
) -> None:
    monkeypatch.setattr(sampling, "TOPK_LADDER", ladder)
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(300, 500, generator=g) * 3, dim=-1)  # (K, V)
    top_p = torch.rand(300, generator=g) * 0.98 + 0.01
    u = torch.rand(300, generator=g, dtype=torch.float64)
    torch.testing.assert_close(_nucleus(probs, top_p, u), _reference_top_p(probs, top_p, u))


def test_rows_draw_from_their_own_generators_and_greedy_rows_take_argmax() -> None:
    logits = torch.randn(4, 50, generator=torch.Generator().manual_seed(1))
    temp = torch.tensor([0.0, 1.0, 0.7, 1.0])
    top_p = torch.tensor([1.0, 1.0, 0.5, 0.9])

    def gens() -> list[torch.Generator | None]:
        return [None, *(torch.Generator().manual_seed(s) for s in (7, 8, 9))]

    both = sample_next(logits, temp, top_p, gens())
    assert both[0] == logits[0].argmax()
    # Row 3 alone, with the same seed, draws the same token.
    alone = sample_next(logits[3:], temp[3:], top_p[3:], [torch.Generator().manual_seed(9)])
    assert alone[0] == both[3]


def test_sampled_frequencies_follow_the_tempered_distribution() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]]).repeat(4000, 1)  # (N, 4)
    temp = torch.full((4000,), 0.5)
    gens = [torch.Generator().manual_seed(i) for i in range(4000)]
    got = sample_next(logits, temp, torch.ones(4000), gens)
    freq = torch.bincount(got, minlength=4).double() / 4000
    want = torch.softmax(logits[0].double() / 0.5, dim=-1)
    assert (freq - want).abs().max() < 4 * (want * (1 - want) / 4000).sqrt().max()
