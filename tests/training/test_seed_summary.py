"""Seed summary: mean ± sd per system and metric over several training reports."""

from pathlib import Path

import pytest

from training.report import write_report
from training.seed_summary import load_reports, main, mean_sd, metrics_table


def _out(tmp_path, name: str, model: str, metrics: dict, **extra) -> str:
    write_report(tmp_path / name, model, {"metrics": metrics, "table": "x", **extra})
    return str(tmp_path / name)


def test_din_reports_give_mean_sd_and_paired_differences(tmp_path, capsys):
    dirs = [
        _out(tmp_path, f"s{i}", "din", {"din": {"auc": a, "gauc": g}, "item_ctr": {"auc": c, "gauc": c}}, best_epoch=i)
        for i, (a, g, c) in enumerate([(0.80, 0.70, 0.75), (0.82, 0.72, 0.76), (0.84, 0.74, 0.77)])
    ]
    assert main(["--model", "din", *dirs, "--versus", "item_ctr"]) == 0
    out = capsys.readouterr().out
    assert "| system | n | auc | gauc |" in out
    assert "| din | 3 | 0.820 ± 0.020 | 0.720 ± 0.020 |" in out
    assert "| item_ctr | 3 | 0.760 ± 0.010 | 0.760 ± 0.010 |" in out
    assert "| din − item_ctr | 3 | 0.060 ± 0.010 | -0.040 ± 0.010 |" in out
    assert "| best_epoch | 3 | 1.000 ± 1.000 |" in out


def test_two_tower_reports_and_a_system_missing_from_one_run(tmp_path):
    a = {"two_tower": {"recall@50": 0.5, "ndcg@10": 0.2}, "popularity": {"recall@50": 0.4, "ndcg@10": 0.1}}
    b = {"two_tower": {"recall@50": 0.6, "ndcg@10": 0.3}}
    paths = [_out(tmp_path, "a", "two_tower", a), _out(tmp_path, "b", "two_tower", b)]
    reports = load_reports([Path(p) for p in paths], "two_tower")
    table = metrics_table(reports)
    assert "| two_tower | 2 | 0.550 ± 0.071 | 0.250 ± 0.071 |" in table
    assert "| popularity | 1 | 0.400 | 0.100 |" in table  # one run: no sd


def test_errors(tmp_path, capsys):
    assert main(["--model", "din", str(tmp_path / "none")]) == 2
    assert "no report" in capsys.readouterr().err
    d = _out(tmp_path, "x", "din", {"din": {"auc": 0.8}})
    assert main(["--model", "din", d, "--versus", "oracle"]) == 2
    assert "no such system" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert main(["--model", "din", str(bad)]) == 2
    assert mean_sd([1.0])[0] == 1.0
    with pytest.raises(ZeroDivisionError):
        mean_sd([])
