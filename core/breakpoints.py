"""Per-category breakpoints of the decision rules, and the cuts through them calibration needs.

With every other category's value fixed, each prompt has one *key* for category c: where along
c's own parameter its decision flips to c (+inf: never). The rate of c is then a count of keys
on one side of a cut (threshold, greedy bias) or a sum of sigmoids around them (sampled bias).
All functions are O(N) over prompts (the curve sorts once), numpy only; loops run over
categories. Functions that look at every category take (C, n) arrays, one contiguous row each.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np

from core.summary import N_CATEGORIES, logsumexp

#: Sampled-bias curves are evaluated on at most this many (evenly strided) prompts.
CURVE_ROWS = 200_000
#: Singular values of the Newton system below this share of the largest count as zero.
RANK_TOLERANCE = 1e-9


def threshold_keys(probs_t: np.ndarray, s_t: np.ndarray, values: np.ndarray, c: int) -> np.ndarray:
    """(n,) -p_c where c would win if eligible, else +inf: c is decided iff -tau_c >= key.

    probs_t, s_t: (C, n) probabilities and logits by category. c wins unless another eligible
    category has a larger logit (or an equal one and a lower index), as `threshold_decision`.
    """
    sc = s_t[c]
    blocked = np.zeros(sc.shape, dtype=bool)
    for k in range(N_CATEGORIES):
        if k != c:
            ahead = s_t[k] >= sc if k < c else s_t[k] > sc
            blocked |= ahead & (probs_t[k] >= values[k])
    return np.where(blocked, np.inf, -probs_t[c])


def greedy_rivals(s_t: np.ndarray, values: np.ndarray, c: int) -> tuple[np.ndarray, np.ndarray]:
    """(n,) each: the largest biased refusal logit of the categories before c, and after c."""

    def best(cats: range) -> np.ndarray:
        out = np.full(s_t.shape[1], -np.inf)
        for k in cats:
            np.maximum(out, s_t[k] + values[k], out=out)
        return out

    return best(range(c)), best(range(c + 1, N_CATEGORIES))


def greedy_keys(sc: np.ndarray, m: np.ndarray, rivals: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """(n,) the bias b_c above which c is the greedy first token; +inf where s_c = -inf.

    Exactly at a key the decision also depends on index ties, so solutions never sit on one.
    """
    with np.errstate(invalid="ignore"):
        key = np.maximum(np.maximum(m, rivals[0]), rivals[1]) - sc
    return np.where(sc == -np.inf, np.inf, key)


def greedy_wins(
    sc: np.ndarray, m: np.ndarray, rivals: tuple[np.ndarray, np.ndarray], bias: float
) -> np.ndarray:
    """(n,) bool: c is the greedy first token at bias b_c, as `greedy_bias_decision` decides."""
    top = sc + bias
    return (top > m) & (top > rivals[0]) & (top >= rivals[1])


def sampled_keys(
    s: np.ndarray, lt: np.ndarray, temperature: np.ndarray, values: np.ndarray, c: int
) -> np.ndarray:
    """(n,) a with P(c) = sigmoid((b_c - a) / T): T * logsumexp(L_T, (s_k + b_k)/T, k != c) - s_c."""
    sc = s[:, c]
    others = np.arange(N_CATEGORIES) != c
    biased = s[:, others] + values[others]  # (n, C-1)
    scaled = np.concatenate([biased / temperature[:, None], lt[:, None]], axis=1)  # (n, C)
    with np.errstate(invalid="ignore"):
        key = temperature * logsumexp(scaled, axis=1) - sc
    return np.where(np.isneginf(sc), np.inf, key)


def nearest_count(keys: np.ndarray, goal: float) -> tuple[int, float, float]:
    """The achievable count #{keys <= x} nearest `goal` (the lower one on equal distance).

    Returns (count, largest included key or -inf, smallest excluded key or +inf); +inf keys are
    never included. One `np.partition`, so O(N): the two counts bracketing the goal's rank are
    the only candidates, however the keys tie.
    """
    finite = keys[np.isfinite(keys)]
    if finite.size == 0:
        return 0, -np.inf, np.inf
    k = min(max(math.ceil(goal), 1), finite.size)
    v = np.partition(finite, k - 1)[k - 1]
    below, above = finite < v, finite > v
    low, high = int(below.sum()), finite.size - int(above.sum())
    if high - goal < goal - low:
        return high, float(v), float(finite[above].min()) if above.any() else np.inf
    return low, float(finite[below].max()) if low else -np.inf, float(v)


def sampled_total(b: float, a: np.ndarray, temp: np.ndarray) -> tuple[float, float]:
    """Sum over prompts of sigmoid((b - a) / T), and its derivative in b."""
    sig = 0.5 * (1.0 + np.tanh(0.5 * (b - a) / temp))
    return float(sig.sum()), float((sig * (1.0 - sig) / temp).sum())


def solve_sampled(a: np.ndarray, temp: np.ndarray, goal: float, start: float) -> float:
    """Bias b with `sampled_total(b) = goal`: bracketed Newton from `start`, bisection fallback.

    Stops when the total is within 1e-12 (relative) of the goal or the bracket is 1e-10 wide.
    goal <= 0 gives -inf ("off"); a goal beyond reach gives the bias 40 T above every key.
    """
    ok = np.isfinite(a)
    a, temp = a[ok], temp[ok]
    if goal <= 0.0 or a.size == 0:
        return -np.inf
    low, high = float(a.min() - 40.0 * temp.max()), float(a.max() + 40.0 * temp.max())
    if goal >= sampled_total(high, a, temp)[0]:
        return high
    if goal <= sampled_total(low, a, temp)[0]:
        return low
    b = start if low < start < high else 0.5 * (low + high)
    for _ in range(200):
        value, slope = sampled_total(b, a, temp)
        if abs(value - goal) <= 1e-12 * max(goal, 1.0):
            return b
        low, high = (b, high) if value < goal else (low, b)
        if high - low <= 1e-10 * max(1.0, abs(b)):
            return b
        step = b - (value - goal) / slope if slope > 0 else np.nan
        b = step if low < step < high else 0.5 * (low + high)
    return b


def curve(
    method: str, keys: np.ndarray, temp: np.ndarray, n_eff: int, points: int
) -> list[tuple[float, float]]:
    """At most `points` (value, rate) pairs along c's own parameter, for charts.

    Thresholds and greedy biases are exact counts at evenly spaced breakpoints; sampled-bias rates
    are sums of sigmoids over at most `CURVE_ROWS` evenly strided candidate prompts.
    """
    ok = np.isfinite(keys)
    if not ok.any():
        return []
    if method == "sampled_bias":
        stride = max(1, int(ok.sum()) // CURVE_ROWS)
        a, t = keys[ok][::stride], temp[ok][::stride]
        scale = ok.sum() / a.size / n_eff  # the strided rows stand for every candidate row
        bs = np.unique(np.quantile(a, np.linspace(0.0, 1.0, points)))
        return [(float(b), sampled_total(float(b), a, t)[0] * scale) for b in bs]
    finite = np.sort(keys[ok])
    picks = finite[np.unique(np.linspace(0, finite.size - 1, points - 2).astype(int))]
    if method == "threshold":  # rate(tau) = #{p >= tau}
        values = np.unique(np.concatenate([[0.0, 1.0], -picks]))
        counts = np.searchsorted(finite, -values, side="right")
    else:  # rate(b) = #{key < b}
        values = np.unique(np.concatenate([picks, [finite[-1] + 1.0]]))
        counts = np.searchsorted(finite, values, side="left")
    return [(float(v), float(k) / n_eff) for v, k in zip(values, counts, strict=True)]


def joint_newton_step(
    probs: np.ndarray,
    weights: np.ndarray,
    temperature: np.ndarray,
    cats: np.ndarray,
    errors: np.ndarray,
    values: np.ndarray,
) -> np.ndarray:
    """(C,) bias change that zeroes the sampled rate `errors` of `cats` to first order.

    probs: (N, C+1) sampled probabilities; each rate is sum_i weights[i, c] * P_ic, so
    d rate_c / d b_k = sum_i w_ic P_ic (delta_ck - P_ik) / T_i. Categories that are "off" or have
    (almost) no slope left are held still. The step is the least-squares one of least norm: along
    a direction that moves no rate (a prompt with no respond mass: a common shift of its
    categories' biases) the Jacobian is singular or nearly so, and the step takes nothing along
    it instead of failing or shooting off along it.
    """
    p = probs[:, :N_CATEGORIES]  # (N, C)
    a = weights * p / temperature[:, None]  # (N, C)
    jac = np.diag(a.sum(axis=0)) - a.T @ p  # (C, C)
    free = np.isfinite(values[cats]) & (np.diag(jac)[cats] > 1e-12)
    idx, step = cats[free], np.zeros(N_CATEGORIES)
    if idx.size:
        with contextlib.suppress(np.linalg.LinAlgError):
            sub = jac[np.ix_(idx, idx)]
            step[idx] = np.linalg.lstsq(sub, -errors[free], rcond=RANK_TOLERANCE)[0]
    return step
