"""Forecast quality beyond single days: calibration of period totals and the replenishment backtest."""
