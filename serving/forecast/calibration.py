"""Calibrated quantiles of demand totals over a period (numpy only: serving, training and export share it).

Why: the reorder advice rests on the quantiles of total demand over the lead time (and lead time +
review period), not of single days. Summing the daily P10/P90 assumes every day errs the same way and
adding them in quadrature assumes independent days; neither holds (a real panel covered 27-54 % with
P10-P90 totals, the generator 68-98 %). So the spread of the totals is recalibrated on a validation
split held out of training (split-conformal quantile scaling, one set of scores per period length):

- base interval of an L-day total: the summed daily quantiles (replenishment's rho = 1): median m,
  upper spread up = q_hi - m and lower spread down = m - q_lo of the outermost levels, each floored at
  `spread_floor(m)` so a series with P10 = P50 still has a scale;
- score of a validation total y: u = (y - m) / up when y >= m, else (y - m) / down;
- calibrated level-l quantile of a total: m + Q_l * (up if Q_l >= 0 else down), with Q_l the empirical
  l-quantile of the scores for that L. Monotone in l (Q_l is), and floored at 0 units;
- scores are kept per group (Mondrian conformal): totals whose summed P10 is 0 (slow movers, mostly
  zero totals) and the others, so the slow movers' many ties do not set the regular series' bounds
  (quick data, pooled: 14-day totals covered 74 % for slow movers and 87 % for the rest; grouped, the
  14-day coverage went from 83.4 % to 81.6 %). A group with too few validation totals uses the pooled
  scores.

Slow movers (`slow_scale = "mean"`): where the daily quantiles are all but zero (a series selling on a few
days in a hundred has P10 = P50 = P90 = 0 every day, rightly), their sums say nothing about the total's spread,
and the floor gives every such series the same absolute interval whatever it sells. With the model's daily mean
forecast at hand, a total in the "summed P10 = 0" group is centred at its mean total M (the sum of the daily
means) with spread sqrt(M), its Poisson sd: the score is a standardised residual, and the calibrated bounds
M + Q_l sqrt(M) grow with what the series sells. A
calibration fitted that way needs the mean wherever it is used; one fitted without it (`"floor"`, older
checkpoints) ignores it.

Scores are fitted per whole day count L = 1..H (training/forecast/calibration.py); a fractional L
interpolates between its neighbours, L > H uses H's scores (the days past the horizon are filled by
replenishment's week repetition and flagged there), L < 1 uses L = 1's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# Levels the calibrated totals are given at: dense around the service levels the advice asks for.
CALIBRATED_LEVELS: tuple[float, ...] = (0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98)
METHOD = "split-conformal scaling of summed daily quantiles, per period length"
SLOW_SCALES = ("floor", "mean")  # the spread of a slow mover's total: spread_floor only, or the mean's Poisson sd


def spread_floor(median: np.ndarray) -> np.ndarray:
    """Smallest spread a score is divided by: a tenth of a Poisson sd, plus a little for zero demand."""
    return 1e-3 + 0.1 * np.sqrt(np.maximum(median, 0.0))


GROUPS: tuple[str, ...] = ("summed P10 = 0", "summed P10 > 0")


def _regular(summed_lowest: np.ndarray) -> np.ndarray:
    """True where a period's summed lowest quantile is > 0 (GROUPS[1]); group_of and base_totals share it."""
    return summed_lowest > 1e-9


def group_of(daily: np.ndarray, days: np.ndarray) -> np.ndarray:
    """Calibration group (index into GROUPS) of each period total [...]: 1 when its summed lowest quantile is > 0."""
    weight = np.clip(np.asarray(days, dtype=np.float64)[..., None] - np.arange(daily.shape[-2]), 0.0, 1.0)
    return _regular((daily[..., 0] * weight).sum(axis=-1)).astype(np.int64)


def base_totals(
    daily: np.ndarray, days: np.ndarray, levels: Sequence[float], mean: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Summed daily quantiles over the first `days` [...] (fractional) of daily [..., n_days, k]; with the
    daily mean forecast [..., n_days], slow movers are centred at their mean total, spread its sqrt (module docstring).

    -> median, lower spread, upper spread of the total, each [...] (spreads floored, > 0)."""
    lv = np.asarray(levels, dtype=np.float64)
    mid = int(np.argmin(np.abs(lv - 0.5)))
    weight = np.clip(np.asarray(days, dtype=np.float64)[..., None] - np.arange(daily.shape[-2]), 0.0, 1.0)
    total = (daily * weight[..., None]).sum(axis=-2)  # [..., k]: rho = 1, the sum of the quantiles
    med = total[..., mid]
    floor = spread_floor(med)
    down, up = np.maximum(med - total[..., 0], floor), np.maximum(total[..., -1] - med, floor)
    if mean is None:
        return med, down, up
    # Slow movers (group_of's group 0): centre at the mean total, spread its Poisson sd, so a score is a
    # standardised residual whose quantiles hold at any rate.
    m_total = np.maximum((np.asarray(mean, dtype=np.float64) * weight).sum(axis=-1), 0.0)
    slow = ~_regular(total[..., 0])
    sd = np.maximum(spread_floor(m_total), np.sqrt(m_total))
    return np.where(slow, m_total, med), np.where(slow, sd, down), np.where(slow, sd, up)


def scores(actual_total: np.ndarray, med: np.ndarray, down: np.ndarray, up: np.ndarray) -> np.ndarray:
    """Conformal score of observed totals against their base interval (0 at the median, +-1 at its ends)."""
    diff = np.asarray(actual_total, dtype=np.float64) - med
    return np.where(diff >= 0, diff / up, diff / down)


@dataclass(frozen=True)
class TotalsCalibration:
    """Scores Q_l per period length and group: scores[i, g, j] for a total of days[i] days in GROUPS[g] at
    levels[j] (a 2-D [days, levels] array is one set for both groups)."""

    levels: tuple[float, ...]
    days: tuple[int, ...]  # 1, 2, ..., H
    scores: np.ndarray  # float64 [len(days), len(GROUPS), len(levels)], non-decreasing along levels
    base_levels: tuple[float, ...]  # the daily quantile levels the base interval is built from
    n_fit: tuple[int, ...] = ()  # validation totals behind each row
    method: str = METHOD
    slow_scale: str = "floor"  # SLOW_SCALES: "mean" needs the daily mean forecast in totals()

    def __post_init__(self) -> None:
        s = np.asarray(self.scores, dtype=np.float64)
        lv = np.asarray(self.levels, dtype=np.float64)
        if s.ndim == 2:
            s = np.repeat(s[:, None, :], len(GROUPS), axis=1)
        want = (len(self.days), len(GROUPS), len(self.levels))
        if s.shape != want or s.size == 0:
            raise ValueError(f"scores must be [{want[0]} days, ({want[1]} groups,) {want[2]} levels], got {s.shape}")
        if not np.all(np.isfinite(s)):
            raise ValueError("calibration scores must be finite")
        if np.any(np.diff(s, axis=-1) < -1e-9):
            raise ValueError("calibration scores must not decrease along the levels")
        if lv.ndim != 1 or np.any(lv <= 0) or np.any(lv >= 1) or np.any(np.diff(lv) <= 0):
            raise ValueError(f"calibration levels must increase within (0, 1), got {list(self.levels)}")
        if not np.any(np.isclose(lv, 0.5)):
            raise ValueError("calibration levels must include the median 0.5")
        if self.slow_scale not in SLOW_SCALES:
            raise ValueError(f"slow_scale must be one of {SLOW_SCALES}, got {self.slow_scale!r}")
        if list(self.days) != list(range(1, len(self.days) + 1)):
            raise ValueError("calibration days must be 1, 2, ..., H")
        bl = np.asarray(self.base_levels, dtype=np.float64)
        if bl.ndim != 1 or bl.size < 2 or not np.any(np.isclose(bl, 0.5)):
            raise ValueError(f"base_levels must hold at least two levels including 0.5, got {list(self.base_levels)}")
        object.__setattr__(self, "scores", s)

    @property
    def horizon(self) -> int:
        return len(self.days)

    def scores_for(self, days: np.ndarray, group: np.ndarray | int = 1) -> np.ndarray:
        """Scores for (fractional) period lengths [...] in `group` ([...] or one index) -> [..., n_levels]."""
        x = np.clip(np.asarray(days, dtype=np.float64), 1.0, float(self.horizon))
        g = np.broadcast_to(np.asarray(group, dtype=np.int64), x.shape)
        lo = np.floor(x).astype(np.int64)
        hi = np.minimum(lo + 1, self.horizon)
        frac = (x - lo)[..., None]
        return self.scores[lo - 1, g] * (1.0 - frac) + self.scores[hi - 1, g] * frac

    def totals(self, daily: np.ndarray, days: np.ndarray, mean: np.ndarray | None = None) -> np.ndarray:
        """Calibrated quantiles at `levels` of total demand over the first `days` [...] of daily
        [..., n_days, len(base_levels)] (units) -> [..., len(levels)], >= 0 and non-decreasing. `mean`
        [..., n_days]: the daily mean forecast, required when slow_scale is "mean", else not used."""
        daily = np.asarray(daily, dtype=np.float64)
        if daily.shape[-1] != len(self.base_levels):
            raise ValueError(f"daily quantiles have {daily.shape[-1]} levels, the calibration {len(self.base_levels)}")
        if self.slow_scale == "mean":
            if mean is None:
                raise ValueError("this calibration scales slow movers by the mean forecast: pass the daily means")
            if np.shape(mean) != daily.shape[:-1]:
                raise ValueError(f"mean must be {list(daily.shape[:-1])}, got {list(np.shape(mean))}")
        days = np.asarray(days, dtype=np.float64)
        days = np.broadcast_to(days, daily.shape[:-2])
        med, down, up = base_totals(daily, days, self.base_levels, mean if self.slow_scale == "mean" else None)
        q = self.scores_for(days, group_of(daily, days))
        out = med[..., None] + np.where(q >= 0, q * up[..., None], q * down[..., None])
        # No demand period (0 days) has a zero total, whatever the floor says.
        return np.where(days[..., None] > 0, np.maximum(out, 0.0), 0.0)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (the checkpoint's extra and the manifest's forecast section)."""
        return {
            "method": self.method,
            "levels": list(self.levels),
            "days": list(self.days),
            "groups": list(GROUPS),
            "scores": np.round(self.scores, 6).tolist(),
            "base_levels": list(self.base_levels),
            "n_fit": list(self.n_fit),
            "slow_scale": self.slow_scale,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TotalsCalibration:
        """Raises ValueError for a malformed entry (missing key, wrong shape, NaN, unordered scores)."""
        if "groups" in d and list(d["groups"]) != list(GROUPS):
            raise ValueError(f"calibration groups {d['groups']} are not {list(GROUPS)}")
        try:
            return cls(
                levels=tuple(float(x) for x in d["levels"]),
                days=tuple(int(x) for x in d["days"]),
                scores=np.asarray(d["scores"], dtype=np.float64),
                base_levels=tuple(float(x) for x in d["base_levels"]),
                n_fit=tuple(int(x) for x in d.get("n_fit", ())),
                method=str(d.get("method", METHOD)),
                slow_scale=str(d.get("slow_scale", "floor")),  # older calibrations: the floor
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed totals calibration: {exc!r}") from None
