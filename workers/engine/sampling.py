"""Per-row sampling: greedy, temperature and top-p, each row with its own random stream.

A seeded row must give the same tokens alone and inside any batch, so every sampled row draws
exactly one uniform number per step from its own CPU `torch.Generator`, and the token is found
by inverse-CDF lookup on that row's probabilities only. Rows with top-p < 1 are looked up in
probability-sorted order, rows with top-p = 1 in vocabulary order (no sort); which path a row
takes depends only on its own parameters, never on its neighbours.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

#: Rows with top-p < 1 look for their nucleus among this many most probable tokens first.
TOPK_LADDER: tuple[int, ...] = (64, 1024)


def _draw(generators: Sequence[torch.Generator], device: torch.device) -> torch.Tensor:
    """One uniform in [0, 1) per row from its own generator; (S,) float64."""
    u = torch.cat([torch.rand(1, generator=g, dtype=torch.float64) for g in generators])  # (S,)
    return u.to(device)


def _inverse_cdf(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Index j with cdf[j-1] <= u * total < cdf[j] per row; probs (S, V), u (S,) -> (S,)."""
    cdf = probs.double().cumsum(dim=-1)  # (S, V)
    target = (u * cdf[:, -1])[:, None]  # (S, 1)
    j = torch.searchsorted(cdf, target, right=True)  # (S, 1)
    return j.clamp_(max=probs.shape[-1] - 1).squeeze(-1)  # (S,)


def sample_next(
    logits: torch.Tensor,
    temperature: torch.Tensor,
    top_p: torch.Tensor,
    generators: Sequence[torch.Generator | None],
) -> torch.Tensor:
    """Next token per row from processed logits (B, V); temperature 0 means argmax; (B,)."""
    tokens = logits.argmax(dim=-1)  # (B,)
    sampled = temperature > 0  # (B,)
    if not bool(sampled.any()):
        return tokens
    rows = sampled.nonzero().squeeze(-1)  # (S,)
    z = logits.index_select(0, rows) / temperature.index_select(0, rows)[:, None]  # (S, V)
    probs = torch.softmax(z, dim=-1)  # (S, V)
    p = top_p.index_select(0, rows)  # (S,)
    u = _draw([generators[i] for i in rows.tolist()], logits.device)  # (S,)
    full = p >= 1.0  # (S,)
    n_full = int(full.sum())
    if n_full == len(rows):  # common cases first: one path for every row, no masking
        picked = _inverse_cdf(probs, u)  # (S,)
    elif n_full == 0:
        picked = _nucleus(probs, p, u)  # (S,)
    else:
        picked = torch.empty_like(rows)  # (S,)
        picked[full] = _inverse_cdf(probs[full], u[full])
        picked[~full] = _nucleus(probs[~full], p[~full], u[~full])
    tokens[rows] = picked
    return tokens


def _nucleus(probs: torch.Tensor, top_p: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Top-p draw on (K, V) probs. Rows whose nucleus lies inside their k most probable tokens
    (k up the `TOPK_LADDER`; almost always the first rung) skip the full sort: `topk` is exact
    there and far cheaper; the rest fall through to a full sort."""
    picked = torch.empty(probs.shape[0], dtype=torch.long, device=probs.device)  # (K,)
    todo = torch.arange(probs.shape[0], device=probs.device)  # (R,) rows not drawn yet
    for k in TOPK_LADDER:
        if k >= probs.shape[-1]:
            break
        sp, si = probs[todo].topk(k, dim=-1)  # (R, k) each, sorted descending
        inside = sp.sum(dim=-1) >= top_p[todo]  # (R,) nucleus within the top k
        done = todo[inside]
        picked[done] = _pick_sorted(sp[inside], si[inside], top_p[done], u[done])
        todo = todo[~inside]
        if len(todo) == 0:
            return picked
    sp, si = probs[todo].sort(dim=-1, descending=True)  # (R, V) each
    picked[todo] = _pick_sorted(sp, si, top_p[todo], u[todo])
    return picked


def _pick_sorted(
    sp: torch.Tensor, si: torch.Tensor, top_p: torch.Tensor, u: torch.Tensor
) -> torch.Tensor:
    """Inverse-CDF draw over the descending-sorted probs `sp` cut at mass `top_p`; (K,)."""
    keep = (sp.cumsum(dim=-1) - sp) < top_p[:, None]  # (K, k) mass before < top_p
    j = _inverse_cdf(sp * keep, u)  # (K,)
    return si.gather(1, j[:, None]).squeeze(-1)  # (K,)
