"""Train and evaluate the TCN demand forecaster: `python -m training train tcn --profile quick|full`.

Data: the seeded sales generator (`training.data.sales`) for the profile, or `--data DIR` (load_dir).
Time split, no day used twice: the last 28 days are the test; the 28 days before them validate
(early stopping); training targets end before the validation days.

Training windows: a batch of B (series, end day) windows, each context_days + K - 1 days long; every
one of the last K days is a forecast origin for the 28 days after it (forking sequences), so one
encoder pass trains K forecasts. Windows are drawn uniformly over the series that have >= MIN_OBS
observed days, and over end days whose targets all fall before the validation window. Origins with
fewer than MIN_OBS observed days before them, and target days before launch, are masked out.
Loss, in scaled units: pinball loss summed over P10/P50/P90 + squared error of the mean head.

Evaluation on the last 28 days (forecast made on the last history day, with the test days' price,
promo and calendar as known covariates), against seasonal naive (lag 7) and the generator's true
expected demand (oracle): WRMSSE (M5, point forecast = the mean head), MASE (point forecast = P50,
the MAE-optimal one), P10-P90 coverage and weighted quantile loss (training/tasks/tcn_metrics.py).

Period totals: after early stopping, the calibration of 7..28-day demand totals the reorder advice uses
(serving/forecast/calibration.py) is fitted on forecasts from weekly origins inside the validation
window, scored against validation sales only, and stored in the checkpoint (export puts it in the
manifest); the report gives the test coverage of the totals before and after it. Writes
artifacts/checkpoints/tcn.pt and artifacts/reports/tcn.json, and prints a markdown table.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from serving.forecast.calibration import TotalsCalibration
from serving.forecast.features import FeatureSpec, panel_calendar, shift_ids, take_windows, window_features
from training.checkpoint import save_checkpoint, training_source
from training.common import epoch_speed, progress, set_seed, torch_device
from training.data.fingerprints import sales_fingerprint
from training.data.sales import PROFILES as SALES_PROFILES
from training.data.sales import generate, load_dir, split_last_days
from training.data.schema import SalesPanel
from training.forecast.calibration import coverage_table, fit_totals_calibration
from training.models.tcn import TCNConfig, TCNForecaster
from training.report import write_report
from training.tasks.base import EarlyStopping, TrainArgs
from training.tasks.tcn_metrics import HORIZON, evaluate, results_table

MIN_OBS = 28  # observed days before an origin for it to be trained or validated on (a stable scale)
VALID_ORIGIN_STEP = 7  # days between the validation origins the period-total calibration is fitted at
INPUT_NAMES = ("past_features", "future_features", "series_scale", "store_ids", "category_ids")
OUTPUT_NAMES = ("quantiles", "mean")


@dataclass(frozen=True)
class TCNProfile:
    data: str  # training.data.sales profile generated when no --data is given
    channels: int = 32
    dilations: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128)
    kernel_size: int = 2
    batch_windows: int = 16  # windows per step
    origins: int = 128  # K: forecast origins per window
    steps_per_epoch: int = 50
    max_epochs: int = 6
    lr: float = 3e-3
    weight_decay: float = 1e-5
    patience: int = 3
    dropout: float = 0.0
    mean_weight: float = 1.0  # weight of the mean head's squared error against the pinball loss
    eval_batch: int = 256
    price_elasticity: bool = True  # the log-log price head (training/models/tcn.py): /v1/price reads it


PROFILES: dict[str, TCNProfile] = {
    "tiny": TCNProfile(data="tiny", channels=8, dilations=(1, 2, 4, 8), batch_windows=4, origins=8, steps_per_epoch=3),
    "quick": TCNProfile(data="quick", channels=24, steps_per_epoch=60, max_epochs=5),
    "full": TCNProfile(data="full", channels=32, steps_per_epoch=150, max_epochs=14, patience=3),
}


@dataclass
class PanelArrays:
    """A panel plus its calendar table, ready for window cutting (numpy)."""

    units: np.ndarray  # [N, T]
    price: np.ndarray
    promo: np.ndarray
    calendar: np.ndarray  # [pad + T, C]: panel day d at row d + pad
    pad: int
    store: np.ndarray  # [N] model indices
    category: np.ndarray
    first_obs: np.ndarray  # [N] first day with observed units (T when never)

    @classmethod
    def from_panel(cls, panel: SalesPanel, pad: int) -> PanelArrays:
        seen = np.isfinite(panel.units)
        first = np.where(seen.any(axis=1), seen.argmax(axis=1), panel.n_days)
        return cls(
            units=panel.units,
            price=panel.price,
            promo=panel.promo,
            calendar=panel_calendar(panel.start_date, panel.events, pad_before=pad),
            pad=pad,
            store=panel.store,
            category=panel.category,
            first_obs=first,
        )


def make_batch(
    data: PanelArrays, series: np.ndarray, end: np.ndarray, spec: FeatureSpec, n_origins: int, device: str
) -> dict[str, torch.Tensor]:
    """Training/validation tensors for windows whose last origin is day `end` [B] of `series` [B].

    -> past [B, n_past, W] (W = context_days + K - 1), future_windows [B, K, n_future, H], series_scale,
    store_ids, category_ids [B], target [B, K, H] (scaled units) and mask [B, K, H] (1 = count it).
    The K origins are the last K days of the window; scale and reference price are fixed at the first
    origin with MIN_OBS observed days, and only origins from there on count.
    """
    h, k = spec.horizon, n_origins
    w = spec.context_days + k - 1
    units, price, promo, cal = take_windows(
        data.units, data.price, data.promo, data.calendar, data.pad, series, end, past_days=w, future_days=h
    )
    # Scale at the first origin with MIN_OBS observed days (not earlier: a scale taken before launch
    # is 1 and would blow up the targets); origins before it are masked below, so none sees its future.
    n_seen = np.cumsum(np.isfinite(units[:, :w]), axis=1)
    first_ok = np.argmax(n_seen >= MIN_OBS, axis=1)  # window day; 0 when never reached (masked anyway)
    scale_at = np.clip(first_ok, w - k, w - 1) + 1
    feats = window_features(units[:, :w], price, promo, cal, spec, scale_at=scale_at)
    known = np.concatenate([feats["past_features"][:, 2:], feats["future_features"]], axis=2)  # [B, C, W + H]
    # Origin j (window day w - k + j) forecasts days w - k + j + 1 .. w - k + j + h.
    future = np.lib.stride_tricks.sliding_window_view(known[:, :, w - k + 1 :], h, axis=2)  # [B, C, K, H]
    target = np.lib.stride_tricks.sliding_window_view(units[:, w - k + 1 :], h, axis=1)  # [B, K, H]
    origin_ok = np.arange(w - k, w)[None, :] >= scale_at[:, None] - 1  # [B, K]: at or after the scale day
    mask = np.isfinite(target) & (n_seen[:, w - k :] >= MIN_OBS)[:, :, None] & origin_ok[:, :, None]
    scale = feats["series_scale"]

    def t(a: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(a), dtype=dtype, device=device)

    return {
        "past": t(feats["past_features"]),
        "future_windows": t(future.transpose(0, 2, 1, 3)),
        "series_scale": t(scale),
        "store_ids": t(shift_ids(data.store[series], spec.n_stores), torch.int64),
        "category_ids": t(shift_ids(data.category[series], spec.n_categories), torch.int64),
        "target": t(np.nan_to_num(target) / scale[:, None, None]),
        "mask": t(mask),
    }


def forecast_loss(
    quantiles: torch.Tensor,
    mean: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    levels: torch.Tensor,
    mean_weight: float,
) -> torch.Tensor:
    """Pinball loss summed over levels + mean_weight * squared error of the mean, averaged over masked days.

    quantiles [..., H, n_q], mean, target, mask [..., H]; levels [n_q]."""
    diff = target.unsqueeze(-1) - quantiles
    pinball = torch.maximum(levels * diff, (levels - 1.0) * diff).sum(-1)
    per_day = pinball + mean_weight * (mean - target) ** 2
    return (per_day * mask).sum() / mask.sum().clamp(min=1.0)


def build_model(spec: FeatureSpec, prof: TCNProfile) -> tuple[TCNForecaster, TCNConfig]:
    cfg = TCNConfig(
        n_past=spec.n_past,
        n_future=spec.n_future,
        n_stores=spec.n_stores,
        n_categories=spec.n_categories,
        horizon=spec.horizon,
        context_days=spec.context_days,
        channels=prof.channels,
        kernel_size=prof.kernel_size,
        dilations=prof.dilations,
        dropout=prof.dropout,
        price_elasticity=prof.price_elasticity,
    )
    return TCNForecaster(cfg), cfg


@torch.no_grad()
def predict(
    model: TCNForecaster, data: PanelArrays, origin: int, spec: FeatureSpec, device: str, batch: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """Forecast every series from `origin` (its last known day) through the exported forward().

    -> quantiles [N, H, n_q], mean [N, H] in units."""
    model.eval()
    n = data.units.shape[0]
    qs, means = [], []
    for lo in progress(range(0, n, batch), desc="tcn: forecast", total=math.ceil(n / batch), leave=False):
        series = np.arange(lo, min(lo + batch, n))
        units, price, promo, cal = take_windows(
            data.units, data.price, data.promo, data.calendar, data.pad, series, np.full(len(series), origin),
            past_days=spec.context_days, future_days=spec.horizon,
        )  # fmt: skip
        f = window_features(units[:, : spec.context_days], price, promo, cal, spec)
        q, mean = model(
            torch.as_tensor(f["past_features"], device=device),
            torch.as_tensor(f["future_features"], device=device),
            torch.as_tensor(f["series_scale"], device=device),
            torch.as_tensor(shift_ids(data.store[series], spec.n_stores), device=device),
            torch.as_tensor(shift_ids(data.category[series], spec.n_categories), device=device),
        )
        qs.append(q.cpu().numpy())
        means.append(mean.cpu().numpy())
    return np.concatenate(qs), np.concatenate(means)


@torch.no_grad()
def validation_loss(
    model: TCNForecaster,
    data: PanelArrays,
    series: np.ndarray,
    origin: int,
    spec: FeatureSpec,
    prof: TCNProfile,
    device: str,
) -> float:
    """The training objective at one origin for `series` (K = 1), averaged over their days."""
    model.eval()
    levels = torch.tensor(model.cfg.quantiles, device=device)
    total, count = 0.0, 0.0
    for lo in range(0, len(series), prof.eval_batch):
        s = series[lo : lo + prof.eval_batch]
        b = make_batch(data, s, np.full(len(s), origin), spec, 1, device)
        q, mean = model.forecast_origins(
            b["past"], b["future_windows"], b["series_scale"], b["store_ids"], b["category_ids"]
        )
        n = float(b["mask"].sum())
        total += float(forecast_loss(q, mean, b["target"], b["mask"], levels, prof.mean_weight)) * n
        count += n
    return total / max(count, 1.0)


def calibrate_totals(
    model: TCNForecaster,
    data: PanelArrays,
    history: SalesPanel,
    t_train: int,
    spec: FeatureSpec,
    device: str,
    batch: int,
) -> TotalsCalibration:
    """The period-total calibration, fitted on forecasts from origins inside the validation split (its
    first day - 1, then weekly) against validation sales only: the test days stay unseen. Forecasts go
    through the exported forward(), so the calibration fits what is served."""
    t_hist, n = history.n_days, history.n_series
    ok = np.flatnonzero(data.first_obs + MIN_OBS - 1 <= t_train - 1)
    daily, means, actual, usable = [], [], [], []
    for origin in range(t_train - 1, t_hist - 1, VALID_ORIGIN_STEP):  # 4 origins for a 28-day split
        q, m = predict(model, data, origin, spec, device, batch)
        act = np.full((n, spec.horizon), np.nan)
        seen = history.units[:, origin + 1 : min(origin + 1 + spec.horizon, t_hist)]
        act[:, : seen.shape[1]] = seen
        daily.append(q[ok])
        means.append(m[ok])
        actual.append(act[ok])
        usable.append(np.full(ok.size, seen.shape[1]))
    # The means scale slow movers' totals (serving/forecast/calibration.py): the served model outputs them too.
    return fit_totals_calibration(
        np.concatenate(daily),
        np.concatenate(actual),
        np.concatenate(usable),
        model.cfg.quantiles,
        mean=np.concatenate(means),
    )


def load_panel(args: TrainArgs, prof: TCNProfile) -> SalesPanel:
    if args.data_dir is None:
        return generate(SALES_PROFILES[prof.data], seed=args.seed)
    return load_dir(args.data_dir)


def run(args: TrainArgs) -> dict:
    """Train, early-stop on the validation window, evaluate on the test window, write checkpoint + report."""
    if args.profile not in PROFILES:
        raise ValueError(f"unknown profile {args.profile!r}; choose from {', '.join(PROFILES)}")
    prof = PROFILES[args.profile]
    t_start = time.perf_counter()
    set_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    device = torch_device(args.device)

    panel = load_panel(args, prof)
    if panel.n_days < 2 * HORIZON + MIN_OBS + 1:
        raise ValueError(f"the panel has {panel.n_days} days; the TCN needs at least {2 * HORIZON + MIN_OBS + 1}")
    history, test = split_last_days(panel, HORIZON)
    t_hist = history.n_days
    t_train = t_hist - HORIZON  # training targets end before day t_train; days t_train.. validate

    probe = TCNConfig(1, 1, 1, 1, kernel_size=prof.kernel_size, dilations=prof.dilations)
    spec = FeatureSpec(
        context_days=probe.receptive_field,
        horizon=HORIZON,
        event_names=tuple(panel.event_names) or tuple(f"event_{i}" for i in range(panel.events.shape[1])),
        n_stores=int(panel.store.max()) + 1,
        n_categories=int(panel.category.max()) + 1,
    )
    pad = spec.context_days + prof.origins
    # Training and validation see only history; the test forecast uses the full panel's known covariates.
    hist_data = PanelArrays.from_panel(history, pad)
    full_data = PanelArrays.from_panel(panel, pad)
    full_data.units = np.where(np.arange(panel.n_days) < t_hist, panel.units, np.nan)  # test sales hidden

    last_end = t_train - 1 - HORIZON  # latest window end whose targets stay before validation
    lo_end = hist_data.first_obs + MIN_OBS - 1
    trainable = np.flatnonzero(lo_end <= last_end)
    valid_series = np.flatnonzero(hist_data.first_obs + MIN_OBS - 1 <= t_train - 1)
    if trainable.size == 0:
        raise ValueError("no series has enough history before the validation window")

    model, cfg = build_model(spec, prof)
    model.to(device)
    levels = torch.tensor(cfg.quantiles, device=device)
    opt = torch.optim.AdamW(model.parameters(), lr=prof.lr, weight_decay=prof.weight_decay)
    epochs = args.max_epochs or prof.max_epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=prof.lr, total_steps=epochs * prof.steps_per_epoch)
    stopper = EarlyStopping(patience=prof.patience, mode="min")
    history_log = []
    print(
        f"[tcn] {panel.n_series} series x {panel.n_days} days, {trainable.size} trainable; receptive field "
        f"{cfg.receptive_field} days; {sum(p.numel() for p in model.parameters())} parameters; device {device}",
        file=sys.stderr,
    )
    for epoch in range(epochs):
        model.train()
        bar = progress(range(prof.steps_per_epoch), desc=f"tcn: epoch {epoch + 1}/{epochs}")
        running, t0 = 0.0, time.perf_counter()
        for step in bar:
            series = rng.choice(trainable, size=prof.batch_windows)
            end = rng.integers(lo_end[series], last_end + 1)
            b = make_batch(hist_data, series, end, spec, prof.origins, device)
            q, mean = model.forecast_origins(
                b["past"], b["future_windows"], b["series_scale"], b["store_ids"], b["category_ids"]
            )
            loss = forecast_loss(q, mean, b["target"], b["mask"], levels, prof.mean_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            running += loss.item()
            bar.set_postfix(loss=f"{running / (step + 1):.4f}")
        speed = epoch_speed(prof.steps_per_epoch * prof.batch_windows, t0)  # samples: series windows
        val = validation_loss(model, hist_data, valid_series, t_train - 1, spec, prof, device)
        history_log.append({"epoch": epoch + 1, "train_loss": running / prof.steps_per_epoch, "val_loss": val, **speed})
        print(f"[tcn] epoch {epoch + 1}: train {running / prof.steps_per_epoch:.4f}  val {val:.4f}", file=sys.stderr)
        if stopper.update(val, model, epoch):
            break
    stopper.restore(model)
    train_s = time.perf_counter() - t_start

    calibration = calibrate_totals(model, full_data, history, t_train, spec, device, prof.eval_batch)
    quantiles, mean = predict(model, full_data, t_hist - 1, spec, device, prof.eval_batch)
    report = evaluate(history, test, quantiles, mean, cfg.quantiles, calibration)
    report.update(
        profile=args.profile,
        seed=args.seed,
        data={
            "n_series": panel.n_series,
            "n_days": panel.n_days,
            "source": str(args.data_dir or f"generated:{prof.data}"),
        },
        calibration_n_totals={f"{d}d": calibration.n_fit[d - 1] for d in (1, 7, 14, 28)},
        receptive_field_days=cfg.receptive_field,
        parameters=sum(p.numel() for p in model.parameters()),
        best_epoch=stopper.best_epoch + 1,
        epochs=history_log,
        train_seconds=round(train_s, 1),
        total_seconds=round(time.perf_counter() - t_start, 1),
        device=device,
        torch_threads=torch.get_num_threads(),
        config=asdict(cfg),
        profile_settings=asdict(prof),
    )
    tcn = report["methods"]["TCN"]
    metrics = {k: tcn[k] for k in ("wrmsse", "mase", "coverage_p10_p90", "wql", "wrmsse_vs_naive")}
    save_checkpoint(
        args.checkpoint_dir / "tcn.pt",
        model_name="tcn",
        config=cfg,
        state_dict=model.state_dict(),
        metrics=metrics,
        data_fingerprint=sales_fingerprint(panel),
        data_source=training_source("sales", args.data_dir, args.profile, args.seed, sales_fingerprint(panel)),
        extra={
            "feature_spec": spec.to_dict(),
            "scaling": "series_scale = 1 + mean observed units of the last scale_days up to the origin; "
            "outputs are multiplied by it (serving/forecast/features.py)",
            "input_names": list(INPUT_NAMES),
            "output_names": list(OUTPUT_NAMES),
            "quantile_levels": list(cfg.quantiles),
            "totals_calibration": calibration.to_dict(),  # served by /v1/forecast's advice (export: manifest)
            "profile": args.profile,
        },
    )
    path = write_report(args.out_dir, "tcn", report)
    print(results_table(report))
    print(coverage_table(report["lead_time_coverage"]))
    print(f"[tcn] report {path}; checkpoint {args.checkpoint_dir / 'tcn.pt'}", file=sys.stderr)
    return report
