"""The TCN's input features: the one definition, shared by training, export and the gateway.

numpy only (no torch, no training imports) so serving can use it as it is.

A forecast is made at an origin day t (the last day with known sales) for days t+1 .. t+H.

Model inputs (ONNX tensor names, B = batch of series, L = context days, H = horizon):

    past_features    float32 [B, n_past, L]    days t-L+1 .. t, oldest first
    future_features  float32 [B, n_future, H]  days t+1 .. t+H (known in advance)
    series_scale     float32 [B]               per-series scale (outputs are multiplied back by it)
    store_ids        int64   [B]               store index + ID_OFFSET (0 = unknown store)
    category_ids     int64   [B]               category index + ID_OFFSET (0 = unknown category)

Per-day "known" channels (past and future alike), in this order:
    log_price_ratio  log(price / reference price), clipped to +-3; 0 where the price is unknown
    promo            promotion flag or discount share in [0, 1]; 0 where unknown
    dow_0..dow_6     weekday one-hot, Monday first
    month_1..12      month one-hot
    year_sin/cos     position in the year (365.25-day period)
    event_<name>     the panel's calendar events, 0/1
past_features = [units_scaled, observed] + known; future_features = known.
    units_scaled     units / series_scale, 0 where not observed (before launch, padding)
    observed         1 where units is a real observation, else 0

Scaling rule (per series, at the origin t): series_scale = 1 + mean of the observed units over the
last `scale_days` days up to t (1 when none is observed); the reference price is the mean known
price over the last `context_days` days up to t (the mean of all known prices in the window when
none, 1.0 when no price is known at all). Training windows with several origins compute both at one
origin (the first one with enough observed days) and train only the origins from there on, so no
origin's scale sees its own future.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from serving.contracts.ids import ID_OFFSET

N_CALENDAR_BASE = 7 + 12 + 2  # weekday one-hot, month one-hot, year sin/cos
PRICE_CLIP = 3.0
DAYS_PER_YEAR = 365.25


@dataclass(frozen=True)
class FeatureSpec:
    """Everything that fixes the feature layout; stored in the checkpoint (plain values only)."""

    context_days: int
    horizon: int = 28
    scale_days: int = 91
    event_names: tuple[str, ...] = ()
    n_stores: int = 1
    n_categories: int = 1

    @property
    def known_channels(self) -> tuple[str, ...]:
        return (
            "log_price_ratio",
            "promo",
            *(f"dow_{i}" for i in range(7)),
            *(f"month_{i}" for i in range(1, 13)),
            "year_sin",
            "year_cos",
            *(f"event_{e}" for e in self.event_names),
        )

    @property
    def past_channels(self) -> tuple[str, ...]:
        return ("units_scaled", "observed", *self.known_channels)

    @property
    def future_channels(self) -> tuple[str, ...]:
        return self.known_channels

    @property
    def n_past(self) -> int:
        return len(self.past_channels)

    @property
    def n_future(self) -> int:
        return len(self.future_channels)

    def to_dict(self) -> dict:
        return {**asdict(self), "event_names": list(self.event_names)}

    @classmethod
    def from_dict(cls, d: dict) -> FeatureSpec:
        return cls(**{**d, "event_names": tuple(d.get("event_names", ()))})


def calendar_features(dates: np.ndarray, events: np.ndarray) -> np.ndarray:
    """dates datetime64[D] [T], events [T, E] 0/1 -> float32 [T, N_CALENDAR_BASE + E]."""
    days = np.asarray(dates, dtype="datetime64[D]")
    events = np.asarray(events, dtype=np.float32).reshape(len(days), -1)
    day_num = days.astype(np.int64)
    weekday = (day_num + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    month = days.astype("datetime64[M]").astype(np.int64) % 12  # 0 = January
    phase = 2.0 * np.pi * (day_num % DAYS_PER_YEAR) / DAYS_PER_YEAR
    out = np.zeros((len(days), N_CALENDAR_BASE + events.shape[1]), dtype=np.float32)
    rows = np.arange(len(days))
    out[rows, weekday] = 1.0
    out[rows, 7 + month] = 1.0
    out[:, 19] = np.sin(phase)
    out[:, 20] = np.cos(phase)
    out[:, N_CALENDAR_BASE:] = events
    return out


def panel_calendar(start_date: np.datetime64, events: np.ndarray, pad_before: int, pad_after: int = 0) -> np.ndarray:
    """Calendar features for a panel's days plus `pad_before` / `pad_after` days without events.

    events [T, E] -> float32 [pad_before + T + pad_after, C]; panel day d sits at row d + pad_before.
    """
    n = events.shape[0]
    dates = np.datetime64(start_date, "D") + np.arange(-pad_before, n + pad_after)
    padded = np.zeros((pad_before + n + pad_after, events.shape[1]), dtype=np.float32)
    padded[pad_before : pad_before + n] = events
    return calendar_features(dates, padded)


def shift_ids(ids: np.ndarray, n: int) -> np.ndarray:
    """Model index 0..n-1 -> embedding row 1..n; anything else (unknown, negative) -> 0."""
    ids = np.asarray(ids, dtype=np.int64)
    return np.where((ids >= 0) & (ids < n), ids + ID_OFFSET, 0)


def _recent_mask(shape: tuple[int, int], end: np.ndarray | None, days: int | None) -> np.ndarray:
    """bool [B, P]: window days in [end - days, end) per row (end None = P, days None = all before end)."""
    b, p = shape
    stop = np.full(b, p) if end is None else np.broadcast_to(np.asarray(end), (b,))
    idx = np.arange(p)[None, :]
    inside = idx < stop[:, None]
    return inside if days is None else inside & (idx >= stop[:, None] - days)


def _masked_mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Row means of the finite values where mask is set -> [B], NaN for rows with none."""
    seen = mask & np.isfinite(values)
    n = seen.sum(axis=1)
    return np.divide(np.where(seen, values, 0.0).sum(axis=1), n, out=np.full(len(values), np.nan), where=n > 0)


def series_scale(units: np.ndarray, scale_days: int, end: np.ndarray | None = None) -> np.ndarray:
    """units [B, P] (NaN = not observed) -> float32 [B]: 1 + mean observed units of the scale_days days
    before `end` [B] (default P, i.e. the whole window's last scale_days)."""
    units = np.asarray(units, dtype=np.float64)
    mean = _masked_mean(units, _recent_mask(units.shape, end, scale_days))
    return (1.0 + np.nan_to_num(mean, nan=0.0)).astype(np.float32)


def reference_price(price: np.ndarray, recent_days: int, end: np.ndarray | None = None) -> np.ndarray:
    """price [B, P] (NaN or <= 0 = unknown) -> float64 [B]: mean known price of the recent_days days
    before `end` (default P); else of all days before `end`; else 1.0."""
    price = np.asarray(price, dtype=np.float64)
    price = np.where(price > 0, price, np.nan)
    ref = _masked_mean(price, _recent_mask(price.shape, end, recent_days))
    ref = np.where(np.isfinite(ref), ref, _masked_mean(price, _recent_mask(price.shape, end, None)))
    return np.where(np.isfinite(ref), ref, 1.0)


def known_features(price: np.ndarray, promo: np.ndarray, calendar: np.ndarray, ref_price: np.ndarray) -> np.ndarray:
    """price, promo [B, T]; calendar [T, C] or [B, T, C]; ref_price [B] -> float32 [B, 2 + C, T]."""
    price = np.asarray(price, dtype=np.float64)
    ratio = np.log(np.where(price > 0, price, np.nan) / ref_price[:, None])
    b, t = price.shape
    calendar = np.asarray(calendar, dtype=np.float32)
    # One array filled in place: the gateway builds these per request, where the broadcast, transpose and
    # concatenate of the obvious version cost more than the arithmetic (serving/forecast/source.py).
    out = np.empty((b, 2 + calendar.shape[-1], t), dtype=np.float32)
    out[:, 0] = np.clip(np.nan_to_num(ratio, nan=0.0), -PRICE_CLIP, PRICE_CLIP)
    out[:, 1] = np.clip(np.nan_to_num(np.asarray(promo, dtype=np.float64), nan=0.0), 0.0, 1.0)
    out[:, 2:] = np.swapaxes(calendar, -1, -2)
    return out


def window_features(
    units: np.ndarray,
    price: np.ndarray,
    promo: np.ndarray,
    calendar: np.ndarray,
    spec: FeatureSpec,
    scale_at: int | np.ndarray | None = None,
    scale: np.ndarray | None = None,
    ref_price: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Features of windows with P past days followed by F known-future days.

    units [B, P] (NaN = not observed); price, promo [B, P + F]; calendar [P + F, C] or [B, P + F, C].
    scale_at: int or [B]; scale and reference price use the days before it (default P: the origin is
    the last past day; training windows with several origins pass the first origin + 1 or later).
    scale, ref_price [B]: series_scale and reference_price of these windows, when the caller has them
    (StoredWindows computes them once per panel).
    -> {"past_features": [B, n_past, P], "future_features": [B, n_future, F], "series_scale": [B]}.
    """
    units = np.asarray(units, dtype=np.float64)
    b, p = units.shape
    if price.shape != promo.shape or price.shape[0] != b or price.shape[1] < p:
        raise ValueError(f"price {price.shape} and promo {promo.shape} must be [B={b}, P={p} + F]")
    if scale is None:
        scale = series_scale(units, spec.scale_days, scale_at)
    if ref_price is None:
        ref_price = reference_price(np.asarray(price)[:, :p], spec.context_days, scale_at)
    known = known_features(price, promo, calendar, ref_price)
    if known.shape[1] != spec.n_future:
        raise ValueError(f"calendar has {known.shape[1] - 2} channels, the spec expects {spec.n_future - 2}")
    seen = np.isfinite(units)
    past = np.empty((b, 2 + known.shape[1], p), dtype=np.float32)
    past[:, 0] = np.where(seen, units, 0.0) / scale[:, None]
    past[:, 1] = seen
    past[:, 2:] = known[:, :, :p]
    return {"past_features": past, "future_features": known[:, :, p:], "series_scale": scale}


def take_windows(
    units: np.ndarray,
    price: np.ndarray,
    promo: np.ndarray,
    calendar: np.ndarray,
    cal_offset: int,
    series: np.ndarray,
    end: np.ndarray,
    past_days: int,
    future_days: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cut windows out of a panel: days end-past_days+1 .. end+future_days of `series`.

    units, price, promo [N, T]; calendar [cal_offset + T + pad_after, C] (panel day d at row
    d + cal_offset); series, end int [B]. Days before the panel are unobserved (NaN units and price,
    promo 0); days after it must be covered by the arrays. -> units, price, promo [B, W], calendar
    [B, W, C] with W = past_days + future_days.
    """
    pos = np.asarray(end)[:, None] - past_days + 1 + np.arange(past_days + future_days)[None, :]
    if pos.min() < -cal_offset or pos.max() >= calendar.shape[0] - cal_offset:
        raise ValueError(f"windows reach days {pos.min()}..{pos.max()}, outside the calendar")
    inside = pos >= 0
    safe = np.clip(pos, 0, units.shape[1] - 1)
    rows = np.asarray(series)[:, None]
    u = np.where(inside, units[rows, safe], np.nan)
    pr = np.where(inside, price[rows, safe], np.nan)
    pm = np.where(inside, promo[rows, safe], 0.0)
    return u, pr, pm, calendar[pos + cal_offset]


def request_features(
    units: np.ndarray,
    price: np.ndarray,
    promo: np.ndarray,
    first_date: np.datetime64,
    events: np.ndarray,
    store: np.ndarray,
    category: np.ndarray,
    spec: FeatureSpec,
) -> dict[str, np.ndarray]:
    """The model's named inputs for a forecast right after the last day of `units` (serving and export).

    units [B, P] daily sales up to the origin (any P >= 1; cropped or NaN-padded on the left to
    context_days); price, promo [B, P + H] for the same days plus the H forecast days (the plan);
    first_date: date of units[:, 0]; events [P + H, E] in spec.event_names order; store, category int
    [B] model indices (-1 or out of range = unknown). -> dict keyed by the ONNX input names.
    """
    units, price, promo, cal = _request_window(units, price, promo, first_date, events, spec)
    out = window_features(units, price, promo, cal, spec)
    out["store_ids"] = shift_ids(store, spec.n_stores)
    out["category_ids"] = shift_ids(category, spec.n_categories)
    return out


@dataclass(frozen=True)
class StoredWindows:
    """request_features for the series of one stored panel, with what every request would repeat done once:
    the window's cut, its calendar, and each series' scale and reference price (the gateway's stored sales)."""

    units: np.ndarray  # [N, L]
    price: np.ndarray  # [N, L + H]
    promo: np.ndarray  # [N, L + H]
    calendar: np.ndarray  # [L + H, C]
    scale: np.ndarray  # [N] series_scale
    ref_price: np.ndarray  # [N] reference_price
    spec: FeatureSpec

    @classmethod
    def prepare(
        cls,
        units: np.ndarray,
        price: np.ndarray,
        promo: np.ndarray,
        first_date: np.datetime64,
        events: np.ndarray,
        spec: FeatureSpec,
    ) -> StoredWindows:
        """The panel as request_features takes it: units [N, P], price and promo [N, P + H], events [P + H, E]."""
        u, pr, pm, cal = _request_window(units, price, promo, first_date, events, spec)
        scale, ref = series_scale(u, spec.scale_days), reference_price(pr[:, : u.shape[1]], spec.context_days)
        return cls(u, pr, pm, cal, scale, ref, spec)

    def features(self, row: int, store: int, category: int) -> dict[str, np.ndarray]:
        """request_features of series `row` (batch of 1) with this store and category model index."""
        rows = slice(row, row + 1)
        out = window_features(
            self.units[rows],
            self.price[rows],
            self.promo[rows],
            self.calendar,
            self.spec,
            scale=self.scale[rows],
            ref_price=self.ref_price[rows],
        )
        out["store_ids"] = shift_ids(np.array([store]), self.spec.n_stores)
        out["category_ids"] = shift_ids(np.array([category]), self.spec.n_categories)
        return out


def plan_features(
    units: np.ndarray,
    price: np.ndarray,
    promo: np.ndarray,
    plan_price: np.ndarray,
    plan_promo: np.ndarray,
    first_date: np.datetime64,
    events: np.ndarray,
    store: int,
    category: int,
    spec: FeatureSpec,
) -> dict[str, np.ndarray]:
    """One series' inputs for K plans of its horizon (model_specs.TCN_PLANS): the past once, every plan's days.

    units [P]; price, promo [P + H] as in request_features (the horizon's values are replaced by the plans);
    plan_price, plan_promo [K, H]. -> past_features [1, n_past, L], future_plans [1, K, n_future, H],
    series_scale, store_ids, category_ids [1]. Plan k is request_features' future_features with plan k as the
    horizon's price and promo: the reference price and calendar come from the same window (tests/serving/price).
    """
    units, price, promo, cal = _request_window(units[None], price[None], promo[None], first_date, events, spec)
    one = window_features(units, price, promo, cal, spec)
    p, k = units.shape[1], len(plan_price)
    ref = reference_price(price[:, :p], spec.context_days)  # window_features' own: the past days only
    future = known_features(plan_price, plan_promo, cal[p:], np.repeat(ref, k))
    return {
        "past_features": one["past_features"],
        "future_plans": future[None],
        "series_scale": one["series_scale"],
        "store_ids": shift_ids(np.array([store]), spec.n_stores),
        "category_ids": shift_ids(np.array([category]), spec.n_categories),
    }


def _request_window(
    units: np.ndarray,
    price: np.ndarray,
    promo: np.ndarray,
    first_date: np.datetime64,
    events: np.ndarray,
    spec: FeatureSpec,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """request_features' window: the last context_days of the past (NaN-padded on the left when shorter) and
    the horizon -> units [B, L], price and promo [B, L + H] (float64), calendar [L + H, C]."""
    units = np.asarray(units, dtype=np.float64)
    price, promo = np.asarray(price, dtype=np.float64), np.asarray(promo, dtype=np.float64)
    b, p = units.shape
    h, lctx = spec.horizon, spec.context_days
    if price.shape != (b, p + h) or promo.shape != (b, p + h):
        raise ValueError(f"price and promo must be [B={b}, P + H={p + h}], got {price.shape} and {promo.shape}")
    events = np.asarray(events).reshape(p + h, -1)
    if events.shape[1] != len(spec.event_names):
        raise ValueError(f"events must have {len(spec.event_names)} columns ({', '.join(spec.event_names)})")
    pad = max(lctx - p, 0)  # too short a history: unobserved days (no events, unknown price) on the left
    if pad:
        units = np.concatenate([np.full((b, pad), np.nan), units], axis=1)
        price = np.concatenate([np.full((b, pad), np.nan), price], axis=1)
        promo = np.concatenate([np.zeros((b, pad)), promo], axis=1)
        events = np.concatenate([np.zeros((pad, events.shape[1])), events], axis=0)
    dates = np.datetime64(first_date, "D") - pad + np.arange(pad + p + h)
    cut = pad + p - lctx  # too long a history: keep the last context_days
    return units[:, cut:], price[:, cut:], promo[:, cut:], calendar_features(dates[cut:], events[cut:])
