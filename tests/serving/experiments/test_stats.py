"""The report's figures: the Wilson interval against published values, latency quantiles from bucket counts."""

from __future__ import annotations

import numpy as np
import pytest

from serving.experiments.stats import LATENCY_EDGES_MS, agreement, bucket_quantile, latency_bucket, wilson


def test_wilson_interval_against_known_values():
    # Newcombe (1998), Table I: 81/263 -> 0.2553..0.3662; and the textbook 10/100 -> 0.0552..0.1744 at 95 %.
    assert wilson(81, 263) == pytest.approx((0.2553, 0.3662), abs=5e-5)
    assert wilson(10, 100) == pytest.approx((0.0552, 0.1744), abs=5e-5)
    assert wilson(0, 10) == (0.0, pytest.approx(0.2775, abs=5e-5))  # exactly 0, never below
    assert wilson(10, 10)[1] == 1.0
    assert wilson(0, 0) is None
    narrow, wide = wilson(10, 100, 0.8), wilson(10, 100, 0.99)
    assert wide[0] < narrow[0] < 0.1 < narrow[1] < wide[1]


def test_bucket_quantiles_are_within_a_bucket_of_the_exact_ones():
    values = np.random.default_rng(0).lognormal(np.log(20), 1.0, 5000)  # ms
    counts = np.bincount([latency_bucket(v) for v in values], minlength=len(LATENCY_EDGES_MS) + 1)
    for q in (0.5, 0.9, 0.99):
        assert bucket_quantile(counts.tolist(), q) == pytest.approx(np.quantile(values, q), rel=0.13)
    assert bucket_quantile([0] * 10, 0.5) is None
    assert bucket_quantile([0] * len(LATENCY_EDGES_MS) + [3], 0.5) == LATENCY_EDGES_MS[-1]  # slower than 10 s


def test_agreement_is_the_share_of_the_live_items_kept():
    assert agreement(["a", "b", "c", "d"], ["d", "c", "x", "y"]) == 0.5
    assert agreement([], []) == 1.0 and agreement([], ["a"]) == 0.0
