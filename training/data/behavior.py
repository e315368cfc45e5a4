"""Seeded e-commerce behaviour log with known ground truth, for the two-tower and DIN models.

`generate(cfg, seed) -> (BehaviorLog, BehaviorOracleImpl)`; `save_dir` / `load_dir` write and read a
folder in the documented user schema (see `behavior_io`); `main` is the CLI
(`python -m training.data behavior --profile quick --out data/behavior`).

The generative model
--------------------
Catalogue. Categories have Zipf-like sizes. Each category splits into latent clusters ("running
shoes" inside "shoes") and every item has a unit latent vector = its cluster's direction (near its
category's) + its brand's direction + noise, so similarity is graded: same cluster > same category >
elsewhere. Brands are nested in categories; price is log-normal per category with a brand premium;
item popularity is Zipf-like over a random ranking and item quality correlates with it.

Users. Region -> segment -> device (categorical features, `user_features` columns in that order).
Interests are sparse: a few categories drawn from the segment's category prior with Dirichlet
weights (set A). Interests drift: a second set B replaces a user-specific share of A's categories
and weights, and a session at position f in the user's active window uses the mixture
(1 - w) A + w B with w = sigmoid((f - tau_u) / width).

Sessions. Each step SHOWS one item, proposed by a mixture: "similar to a recent positive" (an anchor
from the last K positives, recency-weighted, then an item of its cluster or category by popularity),
"from my current interests" (a category from the session's mixture, then an item by popularity) or
"globally popular". The user clicks it with

    logit p_click = base + user bias + device bias + quality_i + segment-category affinity
                    - segment price sensitivity * price_z_i + w_sim * max(0, max_k cos(v_i, v_h_k))

where h_k are the last K positives: the click depends on the subset of history that is relevant to
the candidate (DIN's premise), not on a user-level average, and NOT on the drifting interest state,
so the true click probability is a function of (user, history, candidate) alone. A click may go on
to a cart and a buy of the same item. Unclicked shows are 'view' events; click/cart/buy are
positives and enter the history. Timestamps strictly increase per user; sessions are >= 30 min apart.

The oracle (`BehaviorOracleImpl`, implements `schema.BehaviorOracle`)
- click_prob: exact, given the user's K most recent positives (any history of length >= K, or the
  full history when shorter; longer histories are cut to their last K).
- next_item_scores: log(proposal(i) * p_click(i)) + const = the true log-probability of item i being
  the next clicked item (the next new positive interaction; the cart/buy that may follow a click is
  not "next"). The proposal's "my interests" part needs the user's latent drift state; the oracle
  uses the state of the session of the user's LAST positive in the generated log, which is exact for
  the item held out by `splits.leave_last_out` and an approximation for earlier points. This is
  the documented ceiling: a model knows only the history.
Both also use each user's latent click bias (a model can learn it through a user-id embedding).
The event mix is held near 70/20/7/3 % (view/click/cart/buy): `target_click_rate` calibrates
base_logit on pilot runs, because clicks feed the history that drives later clicks.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numba
import numpy as np
import pandas as pd

from training.common import progress
from training.data.behavior_io import load_behavior
from training.data.event_log import is_event_log
from training.data.fingerprints import behavior_dataset_fingerprint
from training.data.schema import EVENT_TYPES, BehaviorLog, Catalogue

USER_ID_BASE = 10_000_000  # generated shop ids = base + model index, so that sorting them keeps the index
ITEM_ID_BASE = 100_000_000
USER_FEATURE_NAMES = ("region", "segment", "device")
SESSION_GAP_S = 1800  # minimum gap between two sessions of one user
FORMAT_VERSION = 1


@dataclass
class BehaviorConfig:
    """Sizes and knobs of the behaviour generator (defaults: the 'quick' profile)."""

    n_users: int = 5_000
    n_items: int = 5_000
    n_categories: int = 60
    n_brands: int = 400
    mean_events_per_user: float = 80.0
    start_date: str = "2024-01-01"
    days: int = 60
    # catalogue
    latent_dim: int = 32
    items_per_cluster: int = 40
    category_zipf: float = 1.0  # category size ~ rank^-a
    item_zipf: float = 0.75  # item popularity ~ rank^-a
    # users
    n_regions: int = 10
    n_segments: int = 8
    n_devices: int = 3
    interests_per_user: int = 4  # categories in each interest set
    interest_concentration: float = 0.6  # Dirichlet alpha of the interest weights (small = focused)
    drift: float = 0.9  # share of interests replaced from set A to set B is U(drift/2, drift); 0 = none
    drift_width: float = 0.08  # sigmoid width of the A -> B switch, in fractions of the user's window
    # sessions and exposure
    session_len: float = 12.0  # mean shows per session
    p_similar: float = 0.4  # show "similar to a recent positive"
    p_interest: float = 0.35  # show "from my current interests"; the rest is "globally popular"
    similar_same_cluster: float = 0.6  # a similar item comes from the anchor's cluster (else its category)
    anchor_decay: float = 0.7  # anchor weight ~ decay^age over the last K positives
    history_k: int = 8  # K: positives that drive clicks and "similar" exposure
    # click, cart and buy models
    target_click_rate: float | None = 0.22  # clicks / shows; base_logit is calibrated to it (None: keep)
    base_logit: float = -4.6  # the calibration's starting point
    similarity_weight: float = 2.5
    quality_weight: float = 0.5
    segment_weight: float = 0.6
    price_weight: float = 0.5
    user_bias_std: float = 0.3
    cart_logit: float = -1.1
    buy_logit: float = -0.5

    def __post_init__(self) -> None:
        if self.n_items < self.n_categories or self.n_categories < 1:
            raise ValueError("need n_items >= n_categories >= 1")
        if self.n_users < 1 or self.n_brands < 1 or self.days < 1 or self.mean_events_per_user <= 2:
            raise ValueError("need n_users, n_brands, days >= 1 and mean_events_per_user > 2")
        if not (min(self.p_similar, self.p_interest) >= 0 and self.p_similar + self.p_interest < 1):
            raise ValueError("p_similar + p_interest must be < 1: the popular part keeps every item reachable")
        if not 0 <= self.drift <= 1:
            raise ValueError("drift must be in [0, 1]")

    @property
    def p_popular(self) -> float:
        return 1.0 - self.p_similar - self.p_interest


PROFILES: dict[str, BehaviorConfig] = {
    "tiny": BehaviorConfig(n_users=200, n_items=300, n_categories=12, n_brands=40, mean_events_per_user=60, days=30),
    "quick": BehaviorConfig(),
    "full": BehaviorConfig(
        n_users=30_000, n_items=50_000, n_categories=200, n_brands=3_000, mean_events_per_user=80, days=90
    ),
    "catalog1m": BehaviorConfig(
        n_users=20_000, n_items=1_000_000, n_categories=1_000, n_brands=20_000, mean_events_per_user=50, days=90
    ),
}


# ------------------------------------------------------------------------------------------ oracle


@dataclass
class BehaviorOracleImpl:
    """Ground truth of one generated log. Arrays are indexed by model indices (items I, users U,
    clusters S, categories C, segments G, devices D, interest slots M)."""

    item_vec: np.ndarray  # float32 [I, d] unit latent vectors
    item_quality: np.ndarray  # float32 [I]
    item_price_z: np.ndarray  # float32 [I] log price standardised within the category
    item_category: np.ndarray  # int32 [I]
    item_cluster: np.ndarray  # int32 [I]
    item_pop: np.ndarray  # float64 [I] popularity weights (sum 1)
    user_segment: np.ndarray  # int32 [U]
    user_device: np.ndarray  # int32 [U]
    user_bias: np.ndarray  # float32 [U]
    interest_a_cat: np.ndarray  # int32 [U, M]
    interest_a_w: np.ndarray  # float32 [U, M], rows sum to 1
    interest_b_cat: np.ndarray  # int32 [U, M]
    interest_b_w: np.ndarray  # float32 [U, M]
    interest_weight: np.ndarray  # float32 [U] drift state w used by next_item_scores (see module doc)
    segment_affinity: np.ndarray  # float32 [G, C]
    segment_price: np.ndarray  # float32 [G]
    device_bias: np.ndarray  # float32 [D]
    item_ids: np.ndarray  # int64 [I] shop ids, to check that a loaded log maps onto these indices
    user_ids: np.ndarray  # int64 [U]
    config: BehaviorConfig
    seed: int

    @property
    def n_items(self) -> int:
        return int(self.item_category.shape[0])

    # -- click model ------------------------------------------------------------------------------

    def _anchors(self, hist: np.ndarray, hist_len: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Last K positives as (items [B, K], valid [B, K], age [K]); age 0 = most recent."""
        hist = np.asarray(hist)
        k = self.config.history_k
        end = np.minimum(np.asarray(hist_len), hist.shape[1])
        n = np.minimum(end, k)
        age = np.arange(k)
        pos = np.clip(end[:, None] - 1 - age[None, :], 0, max(hist.shape[1] - 1, 0))
        valid = age[None, :] < n[:, None]
        items = np.take_along_axis(hist, pos, axis=1) if hist.shape[1] else np.zeros((hist.shape[0], k), np.int64)
        return np.where(valid, items, 0), valid, age

    def _user_logit(self, user: np.ndarray) -> np.ndarray:
        """The per-user part of the click logit: float64 [B]."""
        return (
            self.config.base_logit
            + self.user_bias[user].astype(np.float64)
            + self.device_bias[self.user_device[user]].astype(np.float64)
        )

    def click_logit(self, user: np.ndarray, hist: np.ndarray, hist_len: np.ndarray, cand: np.ndarray) -> np.ndarray:
        """True click logit of `cand` [B] shown to `user` [B] with history `hist` [B, L] -> float64 [B]."""
        user, cand = np.asarray(user), np.asarray(cand)
        anchors, valid, _ = self._anchors(hist, hist_len)
        sims = np.einsum("bkd,bd->bk", self.item_vec[anchors], self.item_vec[cand], dtype=np.float64)
        rel = np.maximum(np.where(valid, sims, 0.0).max(axis=1), 0.0)  # invalid slots: 0 never beats the floor
        seg = self.user_segment[user]
        cfg = self.config
        return (
            self._user_logit(user)
            + cfg.quality_weight * self.item_quality[cand]
            + self.segment_affinity[seg, self.item_category[cand]]
            - self.segment_price[seg] * self.item_price_z[cand]
            + cfg.similarity_weight * rel
        )

    def click_prob(self, user: np.ndarray, hist: np.ndarray, hist_len: np.ndarray, cand: np.ndarray) -> np.ndarray:
        """True probability that `user` [B] clicks the shown `cand` [B] given `hist` [B, L] -> float64 [B]."""
        return 1.0 / (1.0 + np.exp(-self.click_logit(user, hist, hist_len, cand)))

    # -- next item ----------------------------------------------------------------------------------

    def proposal(self, user: np.ndarray, hist: np.ndarray, hist_len: np.ndarray) -> np.ndarray:
        """Probability that each item is the next one SHOWN -> float64 [B, I] (rows sum to 1)."""
        cfg = self.config
        user = np.asarray(user)
        b = user.shape[0]
        anchors, valid, age = self._anchors(hist, hist_len)
        has = valid[:, 0]
        p_int = cfg.p_interest / (cfg.p_interest + cfg.p_popular)
        p_a = np.where(has, cfg.p_similar, 0.0)
        p_b = np.where(has, cfg.p_interest, p_int)
        p_c = np.where(has, cfg.p_popular, 1.0 - p_int)
        z_cl = np.bincount(self.item_cluster, weights=self.item_pop, minlength=int(self.item_cluster.max()) + 1)
        n_cat = self.segment_affinity.shape[1]
        z_cat = np.bincount(self.item_category, weights=self.item_pop, minlength=n_cat)
        # "similar": anchor weights decay^age, then the anchor's cluster or category by popularity.
        w_anchor = np.where(valid, cfg.anchor_decay ** age[None, :], 0.0)
        w_anchor /= np.maximum(w_anchor.sum(axis=1, keepdims=True), 1e-300)
        rows = np.repeat(np.arange(b), anchors.shape[1])
        a_cl, a_cat = self.item_cluster[anchors].ravel(), self.item_category[anchors].ravel()
        cl_mass = np.zeros((b, z_cl.size))
        np.add.at(cl_mass, (rows, a_cl), (w_anchor.ravel() * cfg.similar_same_cluster) / z_cl[a_cl])
        cat_mass = np.zeros((b, n_cat))
        np.add.at(cat_mass, (rows, a_cat), (w_anchor.ravel() * (1 - cfg.similar_same_cluster)) / z_cat[a_cat])
        # "my interests": the drift mixture of sets A and B, then an item of that category by popularity.
        w = self.interest_weight[user].astype(np.float64)[:, None]
        int_mass = np.zeros((b, n_cat))
        m = self.interest_a_cat.shape[1]
        rows_m = np.repeat(np.arange(b), m)
        for cats, wts, share in (
            (self.interest_a_cat[user], self.interest_a_w[user], 1 - w),
            (self.interest_b_cat[user], self.interest_b_w[user], w),
        ):
            np.add.at(int_mass, (rows_m, cats.ravel()), (wts * share).ravel() / z_cat[cats.ravel()])
        cat_part = p_a[:, None] * cat_mass + p_b[:, None] * int_mass
        return self.item_pop[None, :] * (
            p_a[:, None] * cl_mass[:, self.item_cluster] + cat_part[:, self.item_category] + p_c[:, None]
        )

    def next_item_scores(
        self, user: np.ndarray, hist: np.ndarray, hist_len: np.ndarray, chunk: int = 16_384
    ) -> np.ndarray:
        """log(proposal x p_click) of every item being the next click (up to a per-row constant).

        user [B], hist [B, L], hist_len [B] -> float32 [B, I]. Items are processed in chunks of `chunk`
        so a 1M-item catalogue needs only B x chunk x K floats of scratch."""
        user = np.asarray(user)
        cfg = self.config
        log_prop = np.log(self.proposal(user, hist, hist_len))
        anchors, valid, _ = self._anchors(hist, hist_len)
        # Zero vectors for the empty slots: their similarity 0 never beats the max(0, .) floor.
        a_vec = self.item_vec[anchors] * valid[:, :, None].astype(np.float32)  # [B, K, d]
        seg = self.user_segment[user]
        base = self._user_logit(user)[:, None]
        out = np.empty((user.shape[0], self.n_items), dtype=np.float32)
        for lo in range(0, self.n_items, chunk):
            hi = min(lo + chunk, self.n_items)
            sims = (a_vec.reshape(-1, a_vec.shape[2]) @ self.item_vec[lo:hi].T).reshape(*valid.shape, hi - lo)  # BLAS
            rel = np.maximum(sims.max(axis=1), 0.0)
            logit = (
                base
                + cfg.quality_weight * self.item_quality[None, lo:hi]
                + self.segment_affinity[seg][:, self.item_category[lo:hi]]
                - self.segment_price[seg][:, None] * self.item_price_z[None, lo:hi]
                + cfg.similarity_weight * rel
            )
            out[:, lo:hi] = log_prop[:, lo:hi] - np.logaddexp(0.0, -logit)
        return out

    # -- persistence ----------------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        arrays = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("config", "seed")}
        np.savez(path, **arrays, config=np.array(json.dumps(asdict(self.config))), seed=np.array(self.seed))

    @classmethod
    def load(cls, path: Path) -> BehaviorOracleImpl:
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files if k not in ("config", "seed")}
            cfg = BehaviorConfig(**json.loads(str(z["config"])))
            return cls(**arrays, config=cfg, seed=int(z["seed"]))


# --------------------------------------------------------------------------------------- catalogue


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _zipf_weights(n: int, a: float, rng: np.random.Generator) -> np.ndarray:
    """Weights ~ rank^-a over a random ranking (so index 0 is not special), summing to 1."""
    w = (np.arange(n) + 1.0) ** -a
    w = w[rng.permutation(n)]
    return w / w.sum()


def _categorical(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One draw per row of the probability rows p [N, K] -> int [N] (vectorised inverse CDF)."""
    cdf = np.cumsum(p, axis=1)
    u = rng.random(p.shape[0])[:, None] * cdf[:, -1:]
    return np.minimum((u >= cdf).sum(axis=1), p.shape[1] - 1)


def _make_catalogue(cfg: BehaviorConfig, rng: np.random.Generator) -> dict[str, Any]:
    n, c, d = cfg.n_items, cfg.n_categories, cfg.latent_dim
    cat_w = _zipf_weights(c, cfg.category_zipf, rng)
    # Every category gets at least one item, so loaded files reproduce the same category indices.
    category = np.concatenate([np.arange(c), rng.choice(c, size=n - c, p=cat_w)])
    category = category[rng.permutation(n)].astype(np.int32)
    cat_size = np.bincount(category, minlength=c)
    n_cl = np.maximum(1, np.round(cat_size / cfg.items_per_cluster)).astype(np.int64)
    cl_offset = np.concatenate([[0], np.cumsum(n_cl)[:-1]])
    cluster = (cl_offset[category] + np.floor(rng.random(n) * n_cl[category])).astype(np.int32)
    cl_cat = np.repeat(np.arange(c), n_cl)
    # Latent geometry: cos(cluster, category) ~ 0.78, cos(item, cluster) ~ 0.9 before the brand term.
    cat_dir = _unit(rng.normal(size=(c, d)))
    cl_dir = _unit(cat_dir[cl_cat] + 0.8 * _unit(rng.normal(size=(cl_cat.size, d))))
    # Brands nested in categories: each category owns at least one brand, the rest follow category size.
    n_brands = max(cfg.n_brands, c)
    brand_cat = np.concatenate([np.arange(c), rng.choice(c, size=n_brands - c, p=cat_size / n)])
    brand_cat = np.sort(brand_cat)
    b_count = np.bincount(brand_cat, minlength=c)
    b_offset = np.concatenate([[0], np.cumsum(b_count)[:-1]])
    local = np.minimum(np.floor(b_count[category] * rng.random(n) ** 2), b_count[category] - 1)  # skewed to 0
    brand_raw = (b_offset[category] + local).astype(np.int64)
    used, brand = np.unique(brand_raw, return_inverse=True)  # drop brands that got no item
    brand_dir = _unit(rng.normal(size=(used.size, d)))
    vec = _unit(cl_dir[cluster] + 0.5 * _unit(rng.normal(size=(n, d))) + 0.3 * brand_dir[brand])
    # Price: log-normal per category with a brand premium; z = position within the category.
    mu = rng.normal(3.3, 0.8, size=c)
    sd = rng.uniform(0.25, 0.6, size=c)
    premium = rng.normal(0.0, 0.3, size=used.size)
    log_price = mu[category] + premium[brand] + sd[category] * rng.normal(size=n)
    price = np.maximum(np.round(np.exp(log_price), 2), 0.5).astype(np.float32)
    price_z = ((np.log(price) - mu[category]) / sd[category]).astype(np.float32)
    pop = _zipf_weights(n, cfg.item_zipf, rng)
    lp = np.log(pop)
    quality = 0.6 * (lp - lp.mean()) / lp.std() + 0.8 * rng.normal(size=n)
    quality = ((quality - quality.mean()) / quality.std()).astype(np.float32)
    return dict(
        category=category,
        cluster=cluster,
        brand=brand.astype(np.int32),
        n_brands=int(used.size),
        vec=vec,
        price=price,
        price_z=price_z,
        pop=pop,
        quality=quality,
        cat_w=cat_w,
    )


def _make_users(cfg: BehaviorConfig, cat_w: np.ndarray, rng: np.random.Generator) -> dict[str, Any]:
    u, c, m = cfg.n_users, cfg.n_categories, min(cfg.interests_per_user, cfg.n_categories)
    region = rng.choice(cfg.n_regions, size=u, p=_zipf_weights(cfg.n_regions, 0.8, rng))
    seg_given_region = rng.dirichlet(np.ones(cfg.n_segments), size=cfg.n_regions)
    segment = _categorical(seg_given_region[region], rng)
    dev_given_seg = rng.dirichlet(2.0 * np.ones(cfg.n_devices), size=cfg.n_segments)
    device = _categorical(dev_given_seg[segment], rng)
    # Segment category priors: sparse around the catalogue's popular categories.
    phi = rng.dirichlet(np.maximum(0.5 * c * cat_w, 1e-3), size=cfg.n_segments)
    base = 0.6 * phi + 0.4 * cat_w[None, :]
    log_base = np.log(base).astype(np.float32)

    def draw_sets() -> np.ndarray:  # m distinct categories per user (Gumbel top-m)
        g = log_base[segment] + rng.gumbel(size=(u, c)).astype(np.float32)
        return np.argpartition(-g, m - 1, axis=1)[:, :m].astype(np.int32)

    def dirichlet_rows() -> np.ndarray:
        x = rng.gamma(cfg.interest_concentration, size=(u, m)) + 1e-9
        return x / x.sum(axis=1, keepdims=True)

    a_cat, a_w = draw_sets(), dirichlet_rows()
    lam = rng.uniform(0.5 * cfg.drift, cfg.drift, size=u)
    b_cat = np.where(rng.random((u, m)) < lam[:, None], draw_sets(), a_cat).astype(np.int32)
    b_w = (1 - lam[:, None]) * a_w + lam[:, None] * dirichlet_rows()
    lb = np.log(phi * c + 0.05)
    affinity = cfg.segment_weight * np.clip((lb - lb.mean(1, keepdims=True)) / lb.std(1, keepdims=True), -2, 2)
    mean_shows = max(cfg.mean_events_per_user / 1.1 - 2.0, 0.5)  # ~10% of events are carts and buys
    activity = rng.gamma(1.5, mean_shows / 1.5, size=u)
    return dict(
        region=region.astype(np.int32),
        segment=segment.astype(np.int32),
        device=device.astype(np.int32),
        a_cat=a_cat,
        a_w=a_w.astype(np.float32),
        b_cat=b_cat,
        b_w=b_w.astype(np.float32),
        tau=rng.uniform(0.2, 0.8, size=u),
        join=np.floor(rng.uniform(0.0, 0.6, size=u) * cfg.days * 86_400).astype(np.int64),
        n_shows=(2 + rng.poisson(activity)).astype(np.int64),
        bias=rng.normal(0.0, cfg.user_bias_std, size=u).astype(np.float32),
        affinity=affinity.astype(np.float32),
        seg_price=(cfg.price_weight * rng.uniform(-0.3, 1.0, size=cfg.n_segments)).astype(np.float32),
        dev_bias=rng.normal(0.0, 0.2, size=cfg.n_devices).astype(np.float32),
    )


# -------------------------------------------------------------------------------------- simulation


@numba.njit(cache=True)
def _seed_numba(seed: int) -> None:
    np.random.seed(seed)


@numba.njit(cache=True)
def _draw_in_range(cum: np.ndarray, order: np.ndarray, lo: int, hi: int) -> int:
    """An item from sorted positions [lo, hi) with probability ~ popularity (cum = running sum)."""
    base = cum[lo - 1] if lo > 0 else 0.0
    x = base + np.random.random() * (cum[hi - 1] - base)
    j = lo + np.searchsorted(cum[lo:hi], x, side="right")
    return order[min(j, hi - 1)]


@numba.njit(cache=True)
def _relevance(vec: np.ndarray, item: int, ring: np.ndarray, n_valid: int) -> float:
    """max(0, max cosine between `item` and the valid history entries in `ring`)."""
    best = 0.0
    for k in range(n_valid):
        h = ring[k]
        s = 0.0
        for t in range(vec.shape[1]):
            s += vec[item, t] * vec[h, t]
        best = max(best, s)
    return best


@numba.njit(cache=True)
def _simulate(
    u0, u1, n_shows, join, window_end, tau, drift_width, segment, device, user_bias,
    a_cat, a_w, b_cat, b_w,
    vec, quality, price_z, category, cluster, order, cum, cat_lo, cat_hi, cl_lo, cl_hi,
    affinity, seg_price, dev_bias,
    base_logit, sim_w, quality_w, p_similar, p_interest, same_cluster, decay, k_hist, cart_logit, buy_logit,
    session_len,
    out_user, out_item, out_event, out_time, out_sess, w_last,
):  # fmt: skip
    """Simulate users [u0, u1) into the out_* arrays from position 0; returns the number of events.

    out_time receives absolute seconds since the window start."""
    p = 0
    m = a_cat.shape[1]
    ring = np.empty(k_hist, dtype=np.int32)  # last K positives, ring[0] = most recent after rotation
    recent = np.empty(k_hist, dtype=np.int32)
    mix_cat = np.empty(2 * m, dtype=np.int32)
    mix_cdf = np.empty(2 * m, dtype=np.float64)
    p_pop = 1.0 - p_similar - p_interest
    for u in range(u0, u1):
        n = n_shows[u]
        # Session boundaries first: their positions in the window set the drift state.
        sess = np.empty(n, dtype=np.int64)
        s = 0
        for j in range(n):
            if j > 0 and np.random.random() < 1.0 / session_len:
                s += 1
            sess[j] = s
        frac = np.sort(np.random.random(s + 1))
        w_sess = 1.0 / (1.0 + np.exp(-(frac - tau[u]) / drift_width))
        n_pos = 0
        first = p
        t_rel = 0
        cur = -1
        for j in range(n):
            if sess[j] != cur:
                if cur >= 0:
                    t_rel += 1800
                cur = sess[j]
                w = w_sess[cur]
                acc = 0.0
                for q in range(m):
                    mix_cat[q] = a_cat[u, q]
                    acc += (1.0 - w) * a_w[u, q]
                    mix_cdf[q] = acc
                for q in range(m):
                    mix_cat[m + q] = b_cat[u, q]
                    acc += w * b_w[u, q]
                    mix_cdf[m + q] = acc
            n_valid = min(n_pos, k_hist)
            for k in range(n_valid):  # recent[k] = positive of age k
                recent[k] = ring[(n_pos - 1 - k) % k_hist]
            # Exposure: similar / interests / popular.
            r = np.random.random()
            if n_valid > 0:
                pa, pb = p_similar, p_interest
            else:
                pa, pb = 0.0, p_interest / (p_interest + p_pop)
            if r < pa:
                total = (1.0 - decay**n_valid) / (1.0 - decay)
                x = np.random.random() * total
                age = 0
                acc = 1.0
                while x > acc and age < n_valid - 1:
                    age += 1
                    acc += decay**age
                anchor = recent[age]
                if np.random.random() < same_cluster:
                    c = cluster[anchor]
                    item = _draw_in_range(cum, order, cl_lo[c], cl_hi[c])
                else:
                    c = category[anchor]
                    item = _draw_in_range(cum, order, cat_lo[c], cat_hi[c])
            elif r < pa + pb:
                x = np.random.random() * mix_cdf[2 * m - 1]
                q = 0
                while q < 2 * m - 1 and x >= mix_cdf[q]:
                    q += 1
                c = mix_cat[q]
                item = _draw_in_range(cum, order, cat_lo[c], cat_hi[c])
            else:
                item = _draw_in_range(cum, order, 0, order.shape[0])
            # Click: depends on the relevant subset of recent positives, never on the drift state.
            rel = _relevance(vec, item, recent, n_valid)
            g = segment[u]
            logit = (
                base_logit + user_bias[u] + dev_bias[device[u]] + quality_w * quality[item]
                + affinity[g, category[item]] - seg_price[g] * price_z[item] + sim_w * rel
            )  # fmt: skip
            clicked = np.random.random() < 1.0 / (1.0 + np.exp(-logit))
            out_user[p], out_item[p], out_time[p], out_sess[p] = u, item, t_rel, cur
            if not clicked:
                out_event[p] = 0
                p += 1
                t_rel += 3 + int(np.random.exponential(25.0))
                continue
            out_event[p] = 1
            p += 1
            ring[n_pos % k_hist] = item
            n_pos += 1
            t_rel += 5 + int(np.random.exponential(60.0))
            if np.random.random() < 1.0 / (1.0 + np.exp(-(cart_logit + 0.5 * rel - 0.3 * price_z[item]))):
                out_user[p], out_item[p], out_event[p], out_time[p], out_sess[p] = u, item, 2, t_rel, cur
                p += 1
                ring[n_pos % k_hist] = item
                n_pos += 1
                t_rel += 3 + int(np.random.exponential(40.0))
                if np.random.random() < 1.0 / (1.0 + np.exp(-(buy_logit - 0.3 * price_z[item]))):
                    out_user[p], out_item[p], out_event[p], out_time[p], out_sess[p] = u, item, 3, t_rel, cur
                    p += 1
                    ring[n_pos % k_hist] = item
                    n_pos += 1
                    t_rel += 10 + int(np.random.exponential(90.0))
            w_last[u] = w_sess[cur]
        if n_pos == 0:
            w_last[u] = w_sess[cur]
        # Place the sessions: sorted fractions of the free time, plus the time already used.
        free = max(window_end - join[u] - t_rel, 0)
        for e in range(first, p):
            out_time[e] += join[u] + int(frac[out_sess[e]] * free)
    return p


def _simulate_users(
    cfg: BehaviorConfig, cat: dict[str, Any], users: dict[str, Any], index: dict[str, np.ndarray],
    u0: int, u1: int, base_logit: float, w_last: np.ndarray,
) -> tuple[np.ndarray, ...]:  # fmt: skip
    """Run the numba kernel for users [u0, u1) -> (user, item, event, time since window start)."""
    cap = int(3 * users["n_shows"][u0:u1].sum())  # a show yields at most click + cart + buy
    out = (np.empty(cap, np.int32), np.empty(cap, np.int32), np.empty(cap, np.int8), np.empty(cap, np.int64))
    sess = np.empty(cap, np.int64)
    k = _simulate(
        u0, u1, users["n_shows"], users["join"], cfg.days * 86_400 - 1, users["tau"], cfg.drift_width,
        users["segment"], users["device"], users["bias"],
        users["a_cat"], users["a_w"], users["b_cat"], users["b_w"],
        cat["vec"], cat["quality"], cat["price_z"], cat["category"], cat["cluster"], index["order"], index["cum"],
        index["cat_lo"], index["cat_hi"], index["cl_lo"], index["cl_hi"],
        users["affinity"], users["seg_price"], users["dev_bias"],
        base_logit, cfg.similarity_weight, cfg.quality_weight, cfg.p_similar, cfg.p_interest,
        cfg.similar_same_cluster, cfg.anchor_decay, cfg.history_k, cfg.cart_logit, cfg.buy_logit,
        cfg.session_len, *out, sess, w_last,
    )  # fmt: skip
    return tuple(a[:k].copy() for a in out)


def _calibrate(cfg: BehaviorConfig, cat: dict[str, Any], users: dict[str, Any], index: dict[str, np.ndarray]) -> float:
    """base_logit that gives cfg.target_click_rate, from pilot runs on the first users.

    The click rate feeds back on itself (clicks grow the history that drives later clicks), so a
    fixed base_logit would give different event mixes for different catalogue sizes."""
    base = cfg.base_logit
    if cfg.target_click_rate is None:
        return base
    n_pilot = min(cfg.n_users, 1_500)
    target = math.log(cfg.target_click_rate / (1 - cfg.target_click_rate))
    for _ in range(4):
        _, _, event, _ = _simulate_users(cfg, cat, users, index, 0, n_pilot, base, np.zeros(cfg.n_users, np.float32))
        rate = np.clip(np.mean(event[event <= 1] == 1), 1e-3, 1 - 1e-3)
        base += target - math.log(rate / (1 - rate))
    return float(base)


def generate(cfg: BehaviorConfig, seed: int = 0) -> tuple[BehaviorLog, BehaviorOracleImpl]:
    """Generate a behaviour log and its oracle. Deterministic in (cfg, seed).

    The returned oracle's config carries the calibrated base_logit (see `target_click_rate`)."""
    rng = np.random.default_rng(seed)
    cat = _make_catalogue(cfg, rng)
    users = _make_users(cfg, cat["cat_w"], rng)
    order = np.argsort(cat["cluster"], kind="stable")  # clusters are numbered category by category
    sorted_cat, sorted_cl = cat["category"][order], cat["cluster"][order]
    n_cl = int(cat["cluster"].max()) + 1
    index = dict(
        order=order,
        cum=np.cumsum(cat["pop"][order]),
        cat_lo=np.searchsorted(sorted_cat, np.arange(cfg.n_categories), side="left"),
        cat_hi=np.searchsorted(sorted_cat, np.arange(cfg.n_categories), side="right"),
        cl_lo=np.searchsorted(sorted_cl, np.arange(n_cl), side="left"),
        cl_hi=np.searchsorted(sorted_cl, np.arange(n_cl), side="right"),
    )
    pilot_seed, main_seed = (int(x) for x in rng.integers(2**31 - 1, size=2))
    _seed_numba(pilot_seed)
    base_logit = _calibrate(cfg, cat, users, index)
    cfg = replace(cfg, base_logit=base_logit, target_click_rate=None)
    _seed_numba(main_seed)
    w_last = np.zeros(cfg.n_users, dtype=np.float32)
    chunk = max(1, min(2_000, cfg.n_users // 20))
    parts: list[tuple[np.ndarray, ...]] = []
    with progress(total=cfg.n_users, desc="behaviour: users", unit="user") as bar:
        for u0 in range(0, cfg.n_users, chunk):
            u1 = min(u0 + chunk, cfg.n_users)
            parts.append(_simulate_users(cfg, cat, users, index, u0, u1, base_logit, w_last))
            bar.update(u1 - u0)
    user, item, event, rel_time = (np.concatenate([p[i] for p in parts]) for i in range(4))
    start = int(np.datetime64(cfg.start_date, "s").astype(np.int64))
    item_ids = ITEM_ID_BASE + np.arange(cfg.n_items, dtype=np.int64)
    user_ids = USER_ID_BASE + np.arange(cfg.n_users, dtype=np.int64)
    catalogue = Catalogue(
        category=cat["category"],
        brand=cat["brand"],
        price=cat["price"],
        n_categories=cfg.n_categories,
        n_brands=cat["n_brands"],
        item_ids=item_ids,
    )
    log = BehaviorLog(
        user=user,
        item=item,
        event=event,
        timestamp=start + rel_time,
        catalogue=catalogue,
        user_ids=user_ids,
        user_features=np.stack([users[f] for f in USER_FEATURE_NAMES], axis=1).astype(np.int32),
        user_feature_cardinalities=(cfg.n_regions, cfg.n_segments, cfg.n_devices),
    )
    oracle = BehaviorOracleImpl(
        item_vec=cat["vec"],
        item_quality=cat["quality"],
        item_price_z=cat["price_z"],
        item_category=cat["category"],
        item_cluster=cat["cluster"],
        item_pop=cat["pop"],
        user_segment=users["segment"],
        user_device=users["device"],
        user_bias=users["bias"],
        interest_a_cat=users["a_cat"],
        interest_a_w=users["a_w"],
        interest_b_cat=users["b_cat"],
        interest_b_w=users["b_w"],
        interest_weight=w_last,
        segment_affinity=users["affinity"],
        segment_price=users["seg_price"],
        device_bias=users["dev_bias"],
        item_ids=item_ids,
        user_ids=user_ids,
        config=cfg,
        seed=seed,
    )
    return log, oracle


# ------------------------------------------------------------------------------------ yardsticks


def oracle_metrics(
    log: BehaviorLog, oracle: BehaviorOracleImpl, k: int = 200, max_users: int = 5_000, seed: int = 0
) -> dict[str, float]:
    """The ceilings a model is measured against, on the same splits the models use.

    auc: oracle click_prob vs. clicked on (up to 300k sampled) shows, history = positives before the show.
    recall@k: rank of each user's leave-last-out item under next_item_scores (history = the rest).
    """
    from training.data.splits import event_histories, leave_last_out, positive_histories
    from training.metrics.ranking import auc, recall_at_k, target_ranks

    rng = np.random.default_rng(seed)
    shows = np.flatnonzero(log.event <= 1)
    if shows.size > 300_000:
        shows = np.sort(rng.choice(shows, 300_000, replace=False))
    hist, hist_len = event_histories(log, oracle.config.history_k, shows)
    p = oracle.click_prob(log.user[shows], hist, hist_len, log.item[shows])
    train, held = leave_last_out(log)
    users, first = np.unique(held.user, return_index=True)
    target = held.item[first]
    if users.size > max_users:
        pick = np.sort(rng.choice(users.size, max_users, replace=False))
        users, target = users[pick], target[pick]
    u_hist, u_len = positive_histories(train, oracle.config.history_k)
    ranks = []
    for i in range(0, users.size, 256):
        u = users[i : i + 256]
        ranks.append(target_ranks(oracle.next_item_scores(u, u_hist[u], u_len[u]), target[i : i + 256], rng))
    ranks = np.concatenate(ranks)
    return {"auc": auc(log.event[shows] == 1, p), f"recall@{k}": recall_at_k(ranks, k), "users": int(users.size)}


# ---------------------------------------------------------------------------------------- files


def event_mix(log: BehaviorLog) -> dict[str, float]:
    """Share of each event type."""
    counts = np.bincount(log.event, minlength=len(EVENT_TYPES)) / max(log.n_events, 1)
    return {name: round(float(x), 4) for name, x in zip(EVENT_TYPES, counts, strict=True)}


def save_dir(log: BehaviorLog, oracle: BehaviorOracleImpl | None, out: Path, fmt: str = "parquet") -> None:
    """Write events/items/users (`fmt` = parquet or csv) in the user schema, oracle.npz and meta.json."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cat = log.catalogue
    events = pd.DataFrame(
        {
            "user_id": log.user_ids[log.user],
            "item_id": cat.item_ids[log.item],
            "category_id": cat.category[log.item],
            "event_type": np.asarray(EVENT_TYPES, dtype=object)[log.event],
            "timestamp": log.timestamp,
        }
    )
    items = pd.DataFrame(
        {"item_id": cat.item_ids, "category_id": cat.category, "brand_id": cat.brand, "price": cat.price}
    )
    users = pd.DataFrame({"user_id": log.user_ids})
    names = (
        USER_FEATURE_NAMES
        if log.user_features is not None and log.user_features.shape[1] == len(USER_FEATURE_NAMES)
        else ()
    )
    if log.user_features is not None:
        names = names or tuple(f"feature_{j}" for j in range(log.user_features.shape[1]))
        for j, name in enumerate(names):
            users[name] = log.user_features[:, j]
    for name, frame in (("events", events), ("items", items), ("users", users)):
        if fmt == "parquet":
            frame.to_parquet(out / f"{name}.parquet", index=False)
        elif fmt == "csv":
            frame.to_csv(out / f"{name}.csv", index=False)
        else:
            raise ValueError(f"fmt must be parquet or csv, got {fmt!r}")
    if oracle is not None:
        oracle.save(out / "oracle.npz")
    meta = {
        "format_version": FORMAT_VERSION,
        "generator": "training.data.behavior",
        "config": asdict(oracle.config) if oracle is not None else None,
        "seed": oracle.seed if oracle is not None else None,
        "counts": {
            "events": log.n_events,
            "users": log.n_users,
            "items": cat.n_items,
            "categories": cat.n_categories,
            "brands": cat.n_brands,
        },
        "event_mix": event_mix(log),
        "user_features": list(names),
        "user_feature_cardinalities": list(log.user_feature_cardinalities),
        "fingerprint": behavior_dataset_fingerprint(log),
        "format": fmt,
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")


def _find(path: Path, name: str) -> Path | None:
    for suffix in (".parquet", ".csv"):
        if (path / f"{name}{suffix}").exists():
            return path / f"{name}{suffix}"
    return None


def load_dir(path: Path) -> tuple[BehaviorLog, BehaviorOracleImpl | None]:
    """Read a folder written by `save_dir` through the user-file loader; restore the oracle if present.
    A folder holding the gateway's event log (events-*.jsonl) and the catalogue (items.parquet|csv) loads too."""
    path = Path(path)
    events = _find(path, "events")
    if events is None and is_event_log(path):
        events = path
    if events is None:
        raise FileNotFoundError(f"{path}: no events.parquet, events.csv or event log (events-*.jsonl)")
    log = load_behavior(events, _find(path, "items"), _find(path, "users"))
    meta_path = path / "meta.json"
    if meta_path.exists() and log.user_features is not None:
        # A feature value that no user happens to hold would shrink the loader's cardinality.
        meta_cards = json.loads(meta_path.read_text()).get("user_feature_cardinalities") or []
        if len(meta_cards) == len(log.user_feature_cardinalities):
            log.user_feature_cardinalities = tuple(
                max(a, b) for a, b in zip(meta_cards, log.user_feature_cardinalities, strict=True)
            )
    oracle = None
    if (path / "oracle.npz").exists():
        oracle = BehaviorOracleImpl.load(path / "oracle.npz")
        same_items = np.array_equal(np.asarray(log.catalogue.item_ids), oracle.item_ids)
        if not (same_items and np.array_equal(np.asarray(log.user_ids), oracle.user_ids)):
            raise ValueError(f"{path}: the files' item/user ids do not match oracle.npz (edited after generation?)")
    return log, oracle


# ------------------------------------------------------------------------------------------- CLI


def config_from_args(args: argparse.Namespace) -> BehaviorConfig:
    cfg = PROFILES[args.profile]
    overrides = {
        "n_users": args.users,
        "n_items": args.items,
        "n_categories": args.categories,
        "n_brands": args.brands,
        "mean_events_per_user": args.events_per_user,
        "days": args.days,
        "start_date": args.start_date,
    }
    return BehaviorConfig(**{**asdict(cfg), **{k: v for k, v in overrides.items() if v is not None}})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.data behavior", description="Generate a seeded behaviour log with its oracle."
    )
    parser.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--users", type=int)
    parser.add_argument("--items", type=int)
    parser.add_argument("--categories", type=int)
    parser.add_argument("--brands", type=int)
    parser.add_argument("--events-per-user", type=float)
    parser.add_argument("--days", type=int)
    parser.add_argument("--start-date")
    parser.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    parser.add_argument("--oracle-report", action="store_true", help="also print the oracle AUC and recall@200")
    args = parser.parse_args(argv)
    cfg = config_from_args(args)
    t0 = time.perf_counter()
    log, oracle = generate(cfg, seed=args.seed)
    t_gen = time.perf_counter() - t0
    save_dir(log, oracle, args.out, fmt=args.format)
    mix = " ".join(f"{k}={v:.1%}" for k, v in event_mix(log).items())
    print(
        f"behavior: {log.n_events:,} events, {log.n_users:,} users, {log.catalogue.n_items:,} items ({mix}) "
        f"in {t_gen:.1f} s (+{time.perf_counter() - t0 - t_gen:.1f} s writing) -> {args.out}"
    )
    if args.oracle_report:
        t1 = time.perf_counter()
        report = oracle_metrics(log, oracle)
        print(
            f"oracle: AUC {report['auc']:.4f} on shows, recall@200 {report['recall@200']:.4f} "
            f"on {report['users']:,} leave-last-out users ({time.perf_counter() - t1:.1f} s)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
