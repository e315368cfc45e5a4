"""bench/report.py on a fixture run (tests/bench/fixtures/run: CSVs as bench/ writes them, with known figures)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from bench import report
from bench.steps import StepStats

FIXTURE = Path(__file__).parent / "fixtures" / "run"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURE, tmp_path / "raw"))


def test_summary_takes_medians_over_runs(raw: Path) -> None:
    s = report.summarise(raw)
    assert s["load"]["naive"]["best_rps"] == 40.0  # runs 40, 42, 38
    emb = s["load"]["gateway_embedded"]
    assert emb["best_rps"] == 300.0 and emb["best_users"] == 4  # runs 300, 280, 310
    assert emb["runs"] == 3 and emb["runs_meeting_objective"] == 3
    assert [c["users"] for c in emb["curve"]] == [1, 2, 4, 8]
    assert emb["curve"][-1]["met"] == 0
    assert s["fixed"]["batching_on"]["rps"] == 410.0 and s["fixed"]["batching_off"]["rps"] == 205.0


def test_ratios_and_goals(raw: Path) -> None:
    g = report.summarise(raw)["goals"]
    assert g["throughput"]["measured"] == pytest.approx(7.5) and g["throughput"]["met"] is True
    assert g["batching"]["measured"] == pytest.approx(2.0) and g["batching"]["met"] is True
    # over Triton: intent 9.0 - 7.5 = 1.5 ms, recommend 14.0 - (2.0 + 6.0) = 6.0 ms -> the worst, missed
    assert g["overhead"]["measured"] == pytest.approx(6.0) and g["overhead"]["met"] is False
    # the fastest setting at recall >= 0.95 (nprobe=16), not the faster one below it
    assert g["faiss"]["measured"] == pytest.approx(12.0) and g["faiss"]["met"] is True
    assert "nprobe=16" in g["faiss"]["text"]


def test_efficiency_tail_and_in_band_goals(raw: Path) -> None:
    s = report.summarise(raw)
    g = s["goals"]
    # bound: 1 / (0.7 * 2.0 + 0.2 * 3.0 + 0.1 * 1.0 ms) = 476 req/s; the gateway's 300 req/s is 63 % of it
    assert g["efficiency"]["measured"] == pytest.approx(300 / 476.19, rel=1e-3) and g["efficiency"]["met"] is False
    worst = max(v["overhead_ms"] for v in s["overhead"]["in_band"].values())
    assert g["overhead_embedded"]["measured"] == pytest.approx(worst)
    assert g["overhead_embedded"]["met"] is (worst <= 0.5)
    one = next(c for c in s["load"]["gateway_embedded"]["curve"] if c["users"] == 1)
    # No per-endpoint phase in this run: the mixed load's figure.
    assert g["tail"]["measured"] == pytest.approx(one["p99_ms"] / one["p50_ms"]) and "mixed" in g["tail"]["text"]


def test_tail_goal_is_the_worst_endpoint_not_the_mix(raw: Path) -> None:
    """A fast and a slow endpoint, each steady: the mix's p99 / p50 is large, no endpoint's is."""
    s = report.summarise(raw)
    s["latency"] = {"recommend": {"p50_ms": 3.0, "p99_ms": 4.0}, "intent": {"p50_ms": 5.0, "p99_ms": 9.5}}
    tail = report.goals(s, 50.0)["tail"]
    assert tail["measured"] == pytest.approx(1.9) and tail["met"] is True
    assert "worst intent" in tail["text"] and "the mixed load at 1 user" in tail["text"]
    s["latency"]["recommend"]["p99_ms"] = 6.3  # one endpoint with a long tail fails it
    tail = report.goals(s, 50.0)["tail"]
    assert tail["measured"] == pytest.approx(2.1) and tail["met"] is False


def test_bound_section_states_the_bound_and_the_share(raw: Path) -> None:
    text = "\n".join(report.bound_section(report.summarise(raw)))
    assert "**476 req/s**" in text and "63 % of it" in text


def test_overhead_in_band_from_timings(raw: Path) -> None:
    o = report.summarise(raw)["overhead"]
    assert o["in_band"]["recommend"]["overhead_ms"] == pytest.approx(1.2)
    assert o["over_triton"]["intent"]["overhead_ms"] == pytest.approx(1.5)


def test_write_report_markdown_plots_and_json(raw: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    md = report.write_report(raw, results)
    assert md.name == "2cpu-test-cpu-2025-01-01.md"
    text = md.read_text()
    assert "| gateway, embedded ONNX Runtime | 300 | 4 |" in text
    assert "7.50x (300 vs 40 req/s)" in text
    assert "2.00x (410 vs 205 req/s at 32 users)" in text
    assert "perf_analyzer binary was not available" in text
    assert "python -m bench --profile quick" in text
    for name in ("latency", "faiss", "din", "bert"):
        png = results / f"2cpu-test-cpu-2025-01-01-{name}.png"
        assert png.read_bytes()[:8] == PNG
        assert f"]({png.name})" in text
    body = json.loads((results / "2cpu-test-cpu-2025-01-01.json").read_text())
    assert body["goals"]["throughput"]["met"] is True and body["markdown"] == md.name


def test_partial_run_says_what_is_missing(raw: Path, tmp_path: Path) -> None:
    shutil.rmtree(raw / "load" / "naive")
    shutil.rmtree(raw / "micro")
    md = report.write_report(raw, tmp_path / "results")
    text = md.read_text()
    assert "not measured" in text and "naive peer" not in text.split("## Load test")[1].split("Per step")[0]
    assert not (tmp_path / "results" / "2cpu-test-cpu-2025-01-01-faiss.png").exists()


def test_readme_section_between_markers(raw: Path, tmp_path: Path) -> None:
    results = tmp_path / "bench" / "results"
    report.write_report(raw, results)
    readme = tmp_path / "README.md"
    readme.write_text(f"# shop\n\nintro\n\n{report.START}\nold figures\n{report.END}\n\n## Data licence\n")
    report.update_readme(readme, results)
    text = readme.read_text()
    assert text.startswith("# shop\n\nintro\n\n") and text.endswith("\n\n## Data licence\n")
    assert "old figures" not in text
    assert "[bench/results/2cpu-test-cpu-2025-01-01.md](bench/results/2cpu-test-cpu-2025-01-01.md)" in text
    assert "make bench PROFILE=quick" in text and "| gateway, embedded ONNX Runtime | 300 |" in text
    report.update_readme(readme, results)
    assert readme.read_text() == text  # idempotent


def test_readme_without_markers_is_refused(raw: Path, tmp_path: Path) -> None:
    report.write_report(raw, tmp_path / "results")
    readme = tmp_path / "README.md"
    readme.write_text("# shop\n")
    with pytest.raises(ValueError, match="markers"):
        report.update_readme(readme, tmp_path / "results")


def test_newest_result_by_finish_time(raw: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    report.write_report(raw, results, stem="older")
    meta = json.loads((raw / "meta.json").read_text())
    meta["finished"] = "2025-02-01T00:00:00"
    (raw / "meta.json").write_text(json.dumps(meta))
    report.write_report(raw, results, stem="newer")
    assert report.newest_result(results) == results / "newer.json"


def _step(users: int, rps: float, p99: float, met: bool) -> StepStats:
    return StepStats(0, users, "all", 1.0, 10, 0, 0.0, rps, 1.0, 2.0, p99, 1.0, p99, slo_met=met)


def test_a_run_that_never_met_the_objective_counts_as_zero() -> None:
    s = report.summarise_series([[_step(1, 10, 5, True)], [_step(1, 12, 99, False)], [_step(1, 11, 4, True)]])
    assert s["best_rps"] == 10.0  # median of 10, 0, 11
    assert s["runs_meeting_objective"] == 2
    assert math.isnan(report.summarise_series([])["best_rps"])


def test_naive_peer_that_never_met_the_objective_is_compared_at_its_best() -> None:
    naive = report.summarise_series([[_step(1, 30, 80, False)], [_step(1, 34, 90, False)]])
    emb = report.summarise_series([[_step(1, 100, 10, True)], [_step(1, 120, 12, True)]])
    s = {"load": {"naive": naive, "gateway_embedded": emb}, "fixed": {}, "overhead": {"over_triton": {}}, "micro": {}}
    g = report.goals(s, 50.0)["throughput"]
    assert g["measured"] == pytest.approx(110 / 32) and g["met"] is True
    assert "met p99 <= 50 ms at no load" in g["text"]
