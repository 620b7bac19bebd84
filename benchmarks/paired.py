"""Paired significance tests for two methods scored on the same videos.

Every row of the quality tables inverts the same (seed, class) pairs: the same stimulus, the same
x* initialisation, the same augmentation draws. So two rows are compared video by video, which
is far more sensitive than comparing their pooled means.

* :func:`mcnemar_exact` — for hits (top-1 right / wrong): the exact two-sided binomial test on the
  discordant pairs (videos one method gets right and the other wrong);
* :func:`sign_flip_test` — for a per-video score (e.g. p(target)): the two-sided paired
  permutation test that flips the sign of each difference at random (exact for n <= 16);
* :func:`compare` — both, with the difference of the means and a verdict at level ``alpha``;
* :func:`paired_t`, :func:`welch` and :func:`two_sided_p` — Student's t tests over per-seed means
  (``benchmarks.preset_heldout``), without scipy.
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
from typing import Sequence


def _check_pairs(a: Sequence, b: Sequence) -> None:
    if len(a) != len(b):
        raise ValueError(f"paired samples need the same length, got {len(a)} and {len(b)}")
    if not len(a):
        raise ValueError("paired samples are empty")


def mcnemar_exact(hits_a: Sequence[bool], hits_b: Sequence[bool]) -> float:
    """Two-sided exact McNemar p-value of paired hits: ``P(|B - n/2| >= |b - n/2|)`` for
    ``B ~ Binomial(n, 1/2)``, n the discordant pairs, b those only ``hits_a`` got. 1.0 when n = 0."""
    _check_pairs(hits_a, hits_b)
    only_a = sum(1 for x, y in zip(hits_a, hits_b) if x and not y)
    only_b = sum(1 for x, y in zip(hits_a, hits_b) if y and not x)
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(only_a, only_b) + 1)) / 2**n
    return min(1.0, 2 * tail)


def sign_flip_test(a: Sequence[float], b: Sequence[float], resamples: int = 20_000, seed: int = 0) -> float:
    """Two-sided paired permutation p-value of ``mean(a - b)``: the fraction of sign flips of the
    differences whose mean is at least as far from 0. Exact (all 2^n flips) for n <= 16, else
    ``resamples`` random flips from ``random.Random(seed)`` counted with the observed one."""
    _check_pairs(a, b)
    d = [float(x) - float(y) for x, y in zip(a, b)]
    observed = abs(sum(d)) - 1e-12 * len(d)  # ties count as "as far": float sums differ in the last bits
    if len(d) <= 16:
        flips = itertools.product((1, -1), repeat=len(d))
        count = sum(abs(sum(s * x for s, x in zip(signs, d))) >= observed for signs in flips)
        return count / 2 ** len(d)
    rng = random.Random(seed)
    count = 1 + sum(abs(sum(x if rng.random() < 0.5 else -x for x in d)) >= observed for _ in range(resamples))
    return count / (resamples + 1)


def compare(a: Sequence, b: Sequence, *, kind: str, alpha: float = 0.05) -> dict:
    """``a`` against ``b`` on the same videos: ``diff`` (mean of a minus mean of b; hits in points
    of %), ``p`` and ``verdict``: ``"a > b"``, ``"a < b"`` or ``"no significant difference"``.

    ``kind`` is ``"hits"`` (booleans, McNemar) or ``"scores"`` (floats, sign-flip test)."""
    if kind == "hits":
        p = mcnemar_exact(a, b)
        diff = 100 * (sum(map(bool, a)) - sum(map(bool, b))) / len(a)
    elif kind == "scores":
        p = sign_flip_test(a, b)
        diff = (sum(map(float, a)) - sum(map(float, b))) / len(a)
    else:
        raise ValueError(f"kind is 'hits' or 'scores', not {kind!r}")
    if p < alpha and diff != 0:
        verdict = "a > b" if diff > 0 else "a < b"
    else:
        verdict = "no significant difference"
    return {"diff": diff, "p": p, "verdict": verdict, "n": len(a)}


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (same order): controls the chance of any false positive
    over the whole family of tests, which a table of many comparisons needs."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    adjusted, running = [0.0] * len(pvalues), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def welch(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Welch's t of mean(b) - mean(a) and its degrees of freedom (Welch–Satterthwaite)."""
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    diff = statistics.fmean(b) - statistics.fmean(a)
    if va + vb == 0:
        return (math.copysign(math.inf, diff) if diff else 0.0), float(len(a) + len(b) - 2)
    t = diff / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1)) if va and vb else len(a) - 1
    return t, df


def two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` degrees of freedom (Simpson's rule; no scipy needed)."""
    if math.isinf(t):
        return 0.0
    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
    pdf = lambda x: c * (1 + x * x / df) ** (-(df + 1) / 2)  # noqa: E731
    n, x = 2000, abs(t)
    h = x / n
    area = pdf(0) + pdf(x) + sum((4 if i % 2 else 2) * pdf(i * h) for i in range(1, n))
    return max(0.0, 1 - 2 * area * h / 3)


def paired_t(a: Sequence[float], b: Sequence[float]) -> float:
    """Paired t of b - a over seeds (both presets ran the same seeds and stimuli)."""
    d = [y - x for x, y in zip(a, b)]
    mean, sd = statistics.fmean(d), statistics.stdev(d)
    if sd == 0:
        return math.copysign(math.inf, mean) if mean else 0.0
    return mean / (sd / math.sqrt(len(d)))
