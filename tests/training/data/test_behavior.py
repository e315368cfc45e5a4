"""The behaviour generator: statistics of the tiny profile, the oracle's exactness, files and CLI."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from training.data import behavior
from training.data.behavior import PROFILES, BehaviorOracleImpl, generate, load_dir, oracle_metrics, save_dir
from training.data.fingerprints import behavior_dataset_fingerprint
from training.data.schema import EVENT_TYPES
from training.data.splits import event_histories, leave_last_out, positive_histories
from training.metrics.ranking import auc, recall_at_k, target_ranks

TINY = PROFILES["tiny"]


@pytest.fixture(scope="module")
def tiny():
    return generate(TINY, seed=0)


def _halves(log):
    """bool [n_events]: the event is in the first half of its user's events."""
    users = np.arange(log.n_users)
    mid = (np.searchsorted(log.user, users) + np.searchsorted(log.user, users, side="right")) // 2
    return np.arange(log.n_events) < mid[log.user]


def test_event_mix_is_realistic(tiny):
    log, _ = tiny
    share = np.bincount(log.event, minlength=4) / log.n_events
    view, click, cart, buy = share
    assert view > click > cart > buy > 0
    assert 0.6 < view < 0.8 and 0.12 < click < 0.3 and 0.03 < cart < 0.12 and 0.01 < buy < 0.06
    # A cart always follows a click of the same item, a buy a cart.
    for later, earlier in ((2, 1), (3, 2)):
        rows = np.flatnonzero(log.event == later)
        assert np.all(log.event[rows - 1] == earlier) and np.all(log.item[rows - 1] == log.item[rows])


def test_ids_in_range_and_time_order(tiny):
    log, _ = tiny
    cat = log.catalogue
    assert log.n_users == TINY.n_users and cat.n_items == TINY.n_items
    assert log.user.min() >= 0 and log.user.max() < log.n_users and np.all(np.diff(log.user) >= 0)
    assert log.item.min() >= 0 and log.item.max() < cat.n_items
    assert np.bincount(cat.category, minlength=cat.n_categories).min() >= 1  # every category has items
    assert np.bincount(cat.brand, minlength=cat.n_brands).min() >= 1
    assert cat.price.min() > 0
    same_user = log.user[1:] == log.user[:-1]
    assert np.all(np.diff(log.timestamp)[same_user] > 0)  # strictly increasing per user
    start = int(np.datetime64(TINY.start_date, "s").astype(np.int64))
    assert log.timestamp.min() >= start and log.timestamp.max() < start + TINY.days * 86_400
    assert log.user_features.shape == (log.n_users, len(log.user_feature_cardinalities))
    assert np.all(log.user_features.max(axis=0) < np.array(log.user_feature_cardinalities))
    assert np.unique(log.user).size == log.n_users  # every user has events


def test_seeded_and_deterministic(tiny):
    log, _ = tiny
    again, _ = generate(TINY, seed=0)
    other, _ = generate(TINY, seed=1)
    for name in ("user", "item", "event", "timestamp"):
        assert np.array_equal(getattr(log, name), getattr(again, name))
    assert not np.array_equal(log.item[:500], other.item[:500])


def test_interests_drift_between_first_and_second_half(tiny):
    log, oracle = tiny
    rows = np.arange(log.n_users)[:, None]
    in_a = np.zeros((log.n_users, log.catalogue.n_categories), dtype=bool)
    in_b = np.zeros_like(in_a)
    in_a[rows, oracle.interest_a_cat] = True
    in_b[rows, oracle.interest_b_cat] = True
    first = _halves(log)
    a_only = (in_a & ~in_b)[log.user, log.category]
    b_only = (in_b & ~in_a)[log.user, log.category]
    assert a_only[first].mean() > 1.2 * a_only[~first].mean()  # old interests fade ...
    assert b_only[~first].mean() > 1.2 * b_only[first].mean()  # ... new ones grow
    # Visible without the latent truth too: category mixes differ more between halves than without drift.
    still, _ = generate(replace(TINY, drift=0.0), seed=0)

    def half_distance(lg):
        first = _halves(lg)
        n_cat = lg.catalogue.n_categories
        dist = np.zeros((2, lg.n_users, n_cat))
        np.add.at(dist, (first.astype(int), lg.user, lg.category), 1.0)
        dist /= dist.sum(axis=2, keepdims=True)
        return 0.5 * np.abs(dist[0] - dist[1]).sum(axis=1).mean()

    assert half_distance(log) > half_distance(still) + 0.02


def test_oracle_outputs_are_probabilities(tiny):
    log, oracle = tiny
    rng = np.random.default_rng(0)
    b, length = 64, 12
    user = rng.integers(0, log.n_users, b)
    hist = rng.integers(0, log.catalogue.n_items, (b, length))
    hist_len = rng.integers(0, length + 1, b)  # includes empty histories
    p = oracle.click_prob(user, hist, hist_len, rng.integers(0, log.catalogue.n_items, b))
    assert p.shape == (b,) and np.all((p >= 0) & (p <= 1))
    prop = oracle.proposal(user, hist, hist_len)
    np.testing.assert_allclose(prop.sum(axis=1), 1.0, rtol=1e-6)
    scores = oracle.next_item_scores(user, hist, hist_len, chunk=100)  # chunking must not change results
    assert scores.shape == (b, log.catalogue.n_items) and np.all(np.isfinite(scores))
    np.testing.assert_allclose(scores, oracle.next_item_scores(user, hist, hist_len), rtol=1e-5)
    # Entries at or beyond hist_len are ignored.
    noisy = np.where(np.arange(length)[None, :] < hist_len[:, None], hist, rng.integers(0, 300, (b, length)))
    np.testing.assert_array_equal(
        oracle.click_prob(user, noisy, hist_len, hist[:, 0]), oracle.click_prob(user, hist, hist_len, hist[:, 0])
    )


def test_oracle_click_prob_is_informative_and_calibrated(tiny):
    log, oracle = tiny
    shows = np.flatnonzero(log.event <= 1)
    hist, hist_len = event_histories(log, 20, shows)
    p = oracle.click_prob(log.user[shows], hist, hist_len, log.item[shows])
    clicked = log.event[shows] == 1
    assert auc(clicked, p) > 0.75
    edges = np.quantile(p, np.linspace(0, 1, 11))
    bins = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, 9)
    for b in range(10):
        sel = bins == b
        mean_p = p[sel].mean()
        se = np.sqrt(mean_p * (1 - mean_p) / sel.sum())
        assert abs(clicked[sel].mean() - mean_p) < 4 * se + 0.01, f"bin {b}"


def test_oracle_proposal_matches_what_was_shown():
    """Shown items, aggregated per latent cluster, follow the oracle's proposal (drift off, so the
    oracle's interest state is exact at every show)."""
    log, oracle = generate(replace(TINY, drift=0.0, n_users=400, mean_events_per_user=20), seed=3)
    shows = np.flatnonzero(log.event <= 1)
    hist, hist_len = event_histories(log, 8, shows)
    prop = oracle.proposal(log.user[shows], hist, hist_len)
    n_cl = int(oracle.item_cluster.max()) + 1
    expected = np.zeros(n_cl)
    np.add.at(expected, oracle.item_cluster, prop.sum(axis=0))
    observed = np.bincount(oracle.item_cluster[log.item[shows]], minlength=n_cl)
    assert np.all(np.abs(observed - expected) < 4 * np.sqrt(expected) + 3)
    # And the proposal is far from uniform over clusters, so the check has teeth.
    uniform = shows.size * np.bincount(oracle.item_cluster, minlength=n_cl) / oracle.n_items
    assert np.any(np.abs(observed - uniform) > 4 * np.sqrt(uniform) + 3)


def test_click_depends_on_the_relevant_subset_of_history(tiny):
    _, oracle = tiny
    vec, cl, cat = oracle.item_vec, oracle.item_cluster, oracle.item_category
    cand = int(np.argmax(np.bincount(cl)[cl]))  # an item in the largest cluster
    sims = vec @ vec[cand]
    same_cluster = np.flatnonzero((cl == cl[cand]) & (np.arange(len(cl)) != cand))
    relevant = int(same_cluster[np.argmax(sims[same_cluster])])
    unrelated = np.flatnonzero((cat != cat[cand]) & (sims < 0.1))[:4]
    user = np.array([0])

    def p(items):
        return float(oracle.click_prob(user, np.array([items]), np.array([len(items)]), np.array([cand]))[0])

    base = list(unrelated[:2])
    assert p([*base, relevant]) - p(base) > 0.1  # a relevant item in the history matters ...
    assert abs(p([*base, relevant, unrelated[2]]) - p([*base, relevant])) < 0.01  # ... an unrelated one hardly
    assert abs(p([relevant, *base]) - p([*base, relevant])) < 1e-12  # position within the last K does not
    # Beyond the last K positives an item no longer counts.
    k = oracle.config.history_k
    filler = [int(unrelated[i % 2]) for i in range(k)]
    assert p([relevant, *filler]) < p([*filler[1:], relevant]) - 0.1


def test_oracle_next_item_scores_beat_popularity(tiny):
    log, oracle = tiny
    train, held = leave_last_out(log)
    users, first = np.unique(held.user, return_index=True)
    target = held.item[first]
    hist, hist_len = positive_histories(train, 20)
    oracle_ranks = target_ranks(oracle.next_item_scores(users, hist[users], hist_len[users]), target)
    pop = np.bincount(train.item, minlength=log.catalogue.n_items).astype(float)
    pop_ranks = target_ranks(np.broadcast_to(pop, (users.size, pop.size)), target)
    assert recall_at_k(oracle_ranks, 10) > recall_at_k(pop_ranks, 10) + 0.15


def test_oracle_metrics_report(tiny):
    log, oracle = tiny
    report = oracle_metrics(log, oracle, k=20)
    assert 0.75 < report["auc"] <= 1.0 and 0.0 < report["recall@20"] <= 1.0 and report["users"] > 0


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_save_load_round_trip(tiny, tmp_path, fmt):
    log, oracle = tiny
    save_dir(log, oracle, tmp_path, fmt=fmt)
    assert (tmp_path / f"events.{fmt}").exists() and (tmp_path / "oracle.npz").exists()
    loaded, restored = load_dir(tmp_path)
    for name in ("user", "item", "event", "timestamp", "user_ids", "user_features"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(log, name), err_msg=name)
    for name in ("category", "brand", "price", "item_ids"):
        np.testing.assert_array_equal(getattr(loaded.catalogue, name), getattr(log.catalogue, name), err_msg=name)
    assert loaded.catalogue.n_categories == log.catalogue.n_categories
    assert loaded.catalogue.n_brands == log.catalogue.n_brands
    assert loaded.user_feature_cardinalities == log.user_feature_cardinalities
    assert isinstance(restored, BehaviorOracleImpl) and restored.config == oracle.config
    rows = np.flatnonzero(loaded.event <= 1)[:500]
    hist, hist_len = event_histories(loaded, 10, rows)
    np.testing.assert_array_equal(
        restored.click_prob(loaded.user[rows], hist, hist_len, loaded.item[rows]),
        oracle.click_prob(log.user[rows], hist, hist_len, log.item[rows]),
    )
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["counts"]["events"] == log.n_events and meta["seed"] == 0
    assert meta["fingerprint"] == behavior_dataset_fingerprint(loaded)
    assert meta["user_features"] == list(behavior.USER_FEATURE_NAMES)


def test_events_file_uses_the_documented_schema(tiny, tmp_path):
    log, oracle = tiny
    save_dir(log, oracle, tmp_path, fmt="csv")
    header = (tmp_path / "events.csv").read_text().splitlines()[0]
    assert header == "user_id,item_id,category_id,event_type,timestamp"
    assert (tmp_path / "items.csv").read_text().splitlines()[0] == "item_id,category_id,brand_id,price"


def test_load_dir_refuses_an_oracle_of_other_data(tiny, tmp_path):
    log, oracle = tiny
    save_dir(log, oracle, tmp_path, fmt="csv")
    _, other = generate(replace(TINY, n_items=TINY.n_items + 5), seed=0)
    other.save(tmp_path / "oracle.npz")
    with pytest.raises(ValueError, match="do not match"):
        load_dir(tmp_path)


def test_cli_writes_a_folder_and_a_summary(tmp_path, capsys):
    out = tmp_path / "gen"
    assert (
        behavior.main(["--profile", "tiny", "--out", str(out), "--users", "40", "--seed", "2", "--format", "csv"]) == 0
    )
    summary = capsys.readouterr().out
    log, oracle = load_dir(out)
    assert log.n_users == 40 and oracle is not None and oracle.seed == 2
    assert f"{log.n_events:,} events" in summary and "40 users" in summary
    assert set(EVENT_TYPES) <= set(json.loads((out / "meta.json").read_text())["event_mix"])
