"""The report's figures: the Wilson interval of a rate, latency quantiles from bucket counts, top-k agreement."""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from statistics import NormalDist

# Shadow latencies are tallied in buckets, so the Redis ledger can sum them over processes: 0.1 ms .. 10 s, ten a
# decade (a quantile is within one bucket, ±12 %); the last bucket holds everything slower.
LATENCY_EDGES_MS: tuple[float, ...] = tuple(10 ** (i / 10) for i in range(-10, 41))


def wilson(successes: float, n: float, confidence: float = 0.95) -> tuple[float, float] | None:
    """The Wilson score interval of successes / n (sound near 0 and 1, unlike p ± z·se); None when n = 0."""
    if n <= 0:
        return None
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p, z2 = successes / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    # At 0 or n successes the bound is exactly 0 or 1 (the formula leaves a rounding residue).
    return (0.0 if successes <= 0 else centre - half), (1.0 if successes >= n else centre + half)


def latency_bucket(ms: float) -> int:
    """Index of the bucket holding `ms`: edges[i - 1] < ms <= edges[i]; len(edges) = slower than the last edge."""
    return bisect.bisect_left(LATENCY_EDGES_MS, ms)


def bucket_quantile(counts: Sequence[float], q: float) -> float | None:
    """The q-quantile (ms) of values tallied by `latency_bucket`, interpolated geometrically within its bucket."""
    total = sum(counts)
    if total <= 0:
        return None
    rank, seen = q * total, 0.0
    edges = LATENCY_EDGES_MS
    for i, c in enumerate(counts):
        if c > 0 and seen + c >= rank:
            if i >= len(edges):
                return edges[-1]  # a lower bound: slower than the last edge
            frac = (rank - seen) / c
            return edges[i] * frac if i == 0 else edges[i - 1] * (edges[i] / edges[i - 1]) ** frac
        seen += c
    return edges[-1]


def agreement(live: Sequence[object], shadow: Sequence[object]) -> float:
    """Share of the live answer's items that the shadow's answer holds too (overlap@k)."""
    if not live:
        return 1.0 if not shadow else 0.0
    return len(set(live) & set(shadow)) / len(live)
