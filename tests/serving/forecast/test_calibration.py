"""Calibrated period totals: what the replenishment advice plans with when the artifacts carry a calibration."""

import numpy as np
import pytest

from serving.forecast.calibration import CALIBRATED_LEVELS, TotalsCalibration, base_totals
from serving.forecast.replenishment import plan_replenishment
from serving.forecast.source import StoredSales

H = 6
BASE = (0.1, 0.5, 0.9)
LEVELS = (0.1, 0.5, 0.9, 0.95)


def _cal(scale: float = 1.0, days: int = H, shift: float = 0.0) -> TotalsCalibration:
    # Scores -1 / 0 / +1 reproduce the summed daily P10 / P50 / P90; `scale` widens both sides.
    row = np.array([-1.0, 0.0, 1.0, 1.5]) * scale + shift
    return TotalsCalibration(LEVELS, tuple(range(1, days + 1)), np.tile(row, (days, 1)), BASE, (50,) * days)


def _daily(n_days: int = H) -> np.ndarray:
    return np.tile([[2.0, 5.0, 9.0]], (n_days, 1))  # P10 2, P50 5, P90 9 every day


def test_unit_scores_give_back_the_summed_daily_quantiles():
    out = _cal().totals(_daily(), np.array(4.0))
    np.testing.assert_allclose(out[:3], [8.0, 20.0, 36.0])  # 4 x (2, 5, 9)
    assert out[3] == pytest.approx(20.0 + 1.5 * 16.0)


def test_scores_scale_the_spread_around_the_summed_median_and_floor_at_zero():
    wide = _cal(scale=3.0).totals(_daily(), np.array(4.0))
    assert wide[1] == pytest.approx(20.0) and wide[2] == pytest.approx(20.0 + 3 * 16.0)
    assert wide[0] == 0.0  # 20 - 3 x 12 < 0: no negative demand
    assert np.all(np.diff(wide) >= 0)


def test_fractional_and_long_periods_interpolate_and_hold_the_last_row():
    scores = np.tile(np.array([-1.0, 0.0, 1.0, 1.5]), (H, 1)) * np.arange(1, H + 1)[:, None]
    cal = TotalsCalibration(LEVELS, tuple(range(1, H + 1)), scores, BASE)
    np.testing.assert_allclose(cal.scores_for(np.array([2.5, 40.0, 0.2]))[:, 2], [2.5, float(H), 1.0])
    assert np.all(cal.totals(_daily(), np.array(0.0)) == 0.0)  # no days, no demand


@pytest.mark.parametrize(
    "change, match",
    [
        ({"scores": [[0.0, -1.0, 1.0, 2.0]] * H}, "decrease"),
        ({"scores": [[np.nan, 0.0, 1.0, 2.0]] * H}, "finite"),
        ({"scores": [[-1.0, 0.0, 1.0]] * H}, "scores must be"),
        ({"levels": [0.1, 0.4, 0.9, 0.95]}, "median"),
        ({"days": [2, 3, 4, 5, 6, 7]}, "days"),
        ({"base_levels": [0.1]}, "base_levels"),
    ],
)
def test_a_malformed_calibration_is_refused(change, match):
    d = {**_cal().to_dict(), **change}
    with pytest.raises(ValueError, match=match):
        TotalsCalibration.from_dict(d)
    with pytest.raises(ValueError, match="malformed"):
        TotalsCalibration.from_dict({"levels": [0.5]})


def test_round_trip_through_plain_values():
    cal = _cal(scale=1.7)
    back = TotalsCalibration.from_dict(cal.to_dict())
    np.testing.assert_allclose(back.scores, cal.scores)
    assert back.levels == cal.levels and back.n_fit == cal.n_fit


def test_advice_uses_the_calibrated_totals():
    q = _daily(28)
    plain = plan_replenishment(q, 0.0, 4, 0.95, review_days=2)
    same = plan_replenishment(q, 0.0, 4, 0.95, review_days=2, calibration=_cal(days=28))
    wide = plan_replenishment(q, 0.0, 4, 0.95, review_days=2, calibration=_cal(scale=2.0, days=28))
    # Unit scores at P95 = 1.5 x the P90 spread: the served level is read at 0.95, not extrapolated.
    assert float(same.reorder_point) == pytest.approx(20.0 + 1.5 * 16.0)
    assert float(plain.reorder_point) != pytest.approx(float(same.reorder_point))
    assert float(wide.reorder_point) == pytest.approx(20.0 + 3.0 * 16.0)
    assert float(wide.order_up_to) == pytest.approx(30.0 + 3.0 * 24.0)
    assert float(wide.lead_time_demand_median) == pytest.approx(20.0)
    assert float(wide.safety_stock) == pytest.approx(48.0)


def test_advice_refuses_a_calibration_of_other_levels():
    cal = TotalsCalibration(LEVELS, tuple(range(1, 29)), np.zeros((28, 4)), (0.2, 0.5, 0.8))
    with pytest.raises(ValueError, match="calibration is fitted on levels"):
        plan_replenishment(_daily(28), 0.0, 4, 0.95, calibration=cal)


def test_base_spreads_are_floored_for_flat_forecasts():
    med, down, up = base_totals(np.zeros((3, 3)), np.array(3.0), BASE)
    assert med == 0.0 and down > 0 and up > 0
    assert len(CALIBRATED_LEVELS) > 3 and 0.95 in CALIBRATED_LEVELS


def test_the_sales_store_loads_the_manifest_calibration_and_hands_it_to_the_advice(tmp_path):
    from tests.serving.forecast.test_source import SPEC, _store

    src = _store()
    arrays = {k: getattr(src, k) for k in ("units", "price", "promo", "events")}
    arrays.update(
        store_ids=np.array(["s1", "s2"]),
        item_ids=np.array([10, 11, 12]),
        series_store=src.series_store,
        series_item=src.series_item,
        series_category=src.series_category,
        event_names=np.array(["sale"]),
        first_date=np.asarray(str(src.first_date)),
        origin_date=np.asarray(str(src.origin_date)),
    )
    np.savez(tmp_path / "sales.npz", **arrays)
    section = {"feature_spec": SPEC.to_dict(), "quantiles": list(BASE)}
    assert StoredSales.load(tmp_path / "sales.npz", section).build("s1", 10, None).calibration is None  # older export
    cal = _cal(days=SPEC.horizon)
    loaded = StoredSales.load(tmp_path / "sales.npz", {**section, "totals_calibration": cal.to_dict()})
    built = loaded.build("s1", 10, None)
    assert built.calibration is not None and np.allclose(built.calibration.scores, cal.scores)
    with pytest.raises(ValueError, match="does not fit the TCN"):  # fitted for another horizon
        StoredSales.load(tmp_path / "sales.npz", {**section, "totals_calibration": _cal(days=9).to_dict()})
    with pytest.raises(ValueError, match="decrease"):
        bad = {**cal.to_dict(), "scores": [[1.0, 0.0, 0.0, 0.0]] * SPEC.horizon}
        StoredSales.load(tmp_path / "sales.npz", {**section, "totals_calibration": bad})
