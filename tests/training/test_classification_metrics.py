"""Classification metrics against cases worked out by hand, and temperature scaling on a known miscalibration."""

import math

import numpy as np
import pytest

from training.metrics.classification import (
    accuracy,
    choose_threshold,
    ece,
    fit_temperature,
    handoff_curve,
    macro_f1,
    nll,
    softmax,
)


def test_accuracy_by_hand():
    assert accuracy(np.array([0, 1, 2, 1]), np.array([0, 2, 2, 1])) == pytest.approx(0.75)
    with pytest.raises(ValueError):
        accuracy(np.array([]), np.array([]))


def test_macro_f1_by_hand():
    # class 0: TP 1, 2 true, 2 predicted -> 2/4; class 1: TP 2, 2 true, 3 predicted -> 4/5; class 2: TP 0 -> 0
    y_true = np.array([0, 0, 1, 1, 2])
    y_pred = np.array([0, 1, 1, 1, 0])
    assert macro_f1(y_true, y_pred) == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    # a class that is neither present nor predicted (3 of n_labels=4) does not dilute the mean
    assert macro_f1(y_true, y_pred, n_labels=4) == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert macro_f1(y_true, y_true) == pytest.approx(1.0)


def test_softmax_and_nll():
    logits = np.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    p = softmax(logits)
    assert np.allclose(p.sum(axis=1), 1.0)
    assert np.allclose(p[1], 1 / 3)
    # a higher temperature flattens the distribution
    assert softmax(logits, 4.0)[0, 0] < p[0, 0]
    # uniform logits: NLL = log(C) whatever the label
    assert nll(np.zeros((3, 5)), np.array([0, 2, 4])) == pytest.approx(math.log(5))
    assert nll(logits[:1], np.array([0])) == pytest.approx(-math.log(p[0, 0]))


def test_ece_by_hand():
    probs = np.array([[0.95, 0.05], [0.75, 0.25], [0.65, 0.35], [0.3, 0.7]])
    y = np.array([0, 1, 0, 1])
    # 5 bins: 0.95 -> (0.8, 1], correct: |1 - 0.95|; 0.75, 0.65, 0.7 -> (0.6, 0.8], 2 of 3 correct: |2 - 2.1|
    assert ece(probs, y, n_bins=5) == pytest.approx((0.05 + 0.1) / 4)
    one_hot = np.eye(3)[[0, 2, 1]]
    assert ece(one_hot, np.array([0, 2, 1])) == pytest.approx(0.0)
    assert ece(one_hot, np.array([1, 0, 2])) == pytest.approx(1.0)


def test_temperature_scaling_repairs_overconfidence():
    rng = np.random.default_rng(0)
    n, c, scale = 4000, 6, 3.0
    z = rng.normal(0.0, 1.5, size=(n, c))  # calibrated logits: labels are drawn from softmax(z)
    p = softmax(z)
    y = (rng.random(n)[:, None] > np.cumsum(p, axis=1)).sum(axis=1)
    overconfident = scale * z
    t = fit_temperature(overconfident, y)
    assert t == pytest.approx(scale, rel=0.15)
    assert nll(overconfident, y, t) < nll(overconfident, y) - 0.1
    assert ece(softmax(overconfident, t), y) < ece(softmax(overconfident), y)
    # the search lands on the minimum: nudging T either way does not lower the NLL
    assert nll(overconfident, y, t) <= min(nll(overconfident, y, t * 1.05), nll(overconfident, y, t / 1.05))


def test_handoff_curve_by_hand():
    conf = np.array([0.9, 0.4, 0.8, 0.6])
    correct = np.array([True, False, True, False])
    curve = handoff_curve(conf, correct, np.array([0.0, 0.5, 0.7, 0.95]))
    assert np.allclose(curve["handoff_share"], [0.0, 0.25, 0.5, 1.0])
    assert np.allclose(curve["automated_accuracy"][:3], [0.5, 2 / 3, 1.0])
    assert np.isnan(curve["automated_accuracy"][3])  # nothing left to answer automatically
    # a message exactly at the threshold is answered automatically
    assert handoff_curve(conf, correct, np.array([0.8]))["handoff_share"][0] == pytest.approx(0.5)


def test_choose_threshold_hands_off_as_little_as_possible():
    conf = np.array([0.9, 0.4, 0.8, 0.6])
    correct = np.array([True, False, True, False])
    assert choose_threshold(conf, correct, 1.0) == pytest.approx(0.8)
    assert choose_threshold(conf, correct, 0.6) == pytest.approx(0.6)
    assert choose_threshold(conf, correct, 0.5) == pytest.approx(0.0)  # already met with no hand-off
    assert choose_threshold(conf, np.zeros(4, dtype=bool), 0.5) == math.inf
