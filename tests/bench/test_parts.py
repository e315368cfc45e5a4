"""The pieces under the load test: per-step bookkeeping, answer checks, request pools, perf_analyzer files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench import checks, inputs, payloads, triton_direct
from bench.servers import n_cores, pinned
from bench.steps import ALL, StepRecorder, read_steps_csv, server_timing_ms, write_steps_csv
from serving.intent.schemas import IntentRequest
from serving.recommend.features import user_tower_inputs
from serving.recommend.schemas import RecommendRequest
from tests.serving import gateway_helpers as g


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_recorder_leaves_out_the_warmup_and_judges_each_step() -> None:
    clock = Clock()
    rec = StepRecorder(warmup_s=1.0, slo_p99_ms=50.0, max_error_rate=0.01, clock=clock)
    rec.begin(0, users=2)
    clock.t += 0.5
    rec.record("recommend", 400.0, True)  # started before the step: warm-up
    clock.t += 1.5
    for ms in (10.0, 20.0, 30.0):
        rec.record("recommend", ms, True, server_ms=ms - 2, model_ms=ms - 4)
    rec.record("intent", 5.0, False)
    clock.t += 1.0
    rows = rec.close()
    agg = rows[0]
    assert agg.endpoint == ALL and [r.endpoint for r in rows[1:]] == ["intent", "recommend"]
    assert agg.requests == 4 and agg.failures == 1 and agg.window_s == pytest.approx(2.0)
    assert agg.rps == pytest.approx(1.5)  # failures are not throughput
    assert not agg.slo_met  # 25 % errors
    rec_row = rows[2]
    assert rec_row.p50_ms == 20.0 and rec_row.overhead_p50_ms == 4.0 and rec_row.slo_met
    rec.begin(1, users=4)
    clock.t += 2.0
    rec.record("intent", 60.0, True)
    rec.close()
    assert rec.best() is None  # step 1: p99 60 ms > 50


def test_recorder_splits_the_overhead_by_the_time_in_the_app() -> None:
    clock = Clock()
    rec = StepRecorder(warmup_s=0.0, slo_p99_ms=50.0, max_error_rate=0.0, clock=clock)
    rec.begin(0, users=1)
    clock.t += 1.0
    for latency, app, model in ((10.0, 8.0, 5.0), (12.0, 9.0, 5.0), (14.0, 13.0, 6.0)):
        rec.record("forecast", latency, True, server_ms=app - 1, model_ms=model, app_ms=app)
    rec.record("forecast", 9.0, True, model_ms=4.0)  # no header: counts for the overhead only
    row = rec.close()[1]
    assert row.overhead_p50_ms == 6.0  # of 5, 7, 8, 5
    assert row.app_overhead_p50_ms == 4.0 and row.transport_p50_ms == 2.0  # of (3, 4, 7) and (2, 3, 1)


@pytest.mark.parametrize(
    ("header", "want"),
    [
        ("app;dur=1.234", 1.234),
        ("db;dur=3, app;desc=gateway;dur=0.5", 0.5),
        ("app", None),
        ("app;dur=x", None),
        (None, None),
        ("total;dur=2", None),
    ],
)
def test_server_timing_header(header, want) -> None:
    assert server_timing_ms(header) == want


def test_steps_csv_round_trip(tmp_path: Path) -> None:
    clock = Clock()
    rec = StepRecorder(0.0, 50.0, 0.0, clock=clock)
    rec.begin(0, 1)
    clock.t += 1.0
    rec.record("intent", 3.0, True)
    rec.close()
    path = write_steps_csv(rec.rows, tmp_path / "s.csv")
    back = read_steps_csv(path)
    assert [(r.endpoint, r.requests, r.slo_met) for r in back] == [("all", 1, True), ("intent", 1, True)]
    assert np.isnan(back[0].model_p50_ms)


def _recommend(items: list[tuple[str, float]]) -> bytes:
    body = {
        "items": [{"item_id": i, "score": s} for i, s in items],
        "fallback": False,
        "model_versions": {"din": 1},
        "timings_ms": {"features": 0.2, "user_tower": 1.0, "retrieval": 0.5, "ranking": 2.0},
    }
    return json.dumps(body).encode()


def test_checks_reject_wrong_answers() -> None:
    req = {"user_id": 1, "k": 2}
    ok, timings = checks.check_recommend(_recommend([("a", 0.9), ("b", 0.5)]), req)
    assert ok is None and sum(v for k, v in timings.items() if k in checks.MODEL_STAGES) == pytest.approx(3.5)
    assert checks.check_recommend(_recommend([("a", 0.5), ("b", 0.9)]), req)[0] == "items not sorted by score"
    assert "items for k=2" in checks.check_recommend(_recommend([("a", 0.9), ("b", 0.8), ("c", 0.1)]), req)[0]
    assert checks.check_recommend(_recommend([("a", 0.9), ("a", 0.8)]), req)[0] == "duplicate items"
    bad = json.dumps({"results": [], "model_versions": {}, "timings_ms": {}}).encode()
    assert checks.check_intent(bad, {"text": "hi"})[0] == "0 results for 1 texts"
    batch = {"events": [{"user_id": 1, "item_id": 2, "event_type": "view"}] * 3}
    assert checks.check_events(b'{"accepted": 3, "unknown_items": 0}', batch) == (None, {})
    assert checks.check_events(b'{"accepted": 2, "unknown_items": 0}', batch)[0] == "2 events accepted of 3"


def test_mix() -> None:
    assert checks.parse_mix("recommend=70,intent=20,forecast=10") == {"recommend": 70, "intent": 20, "forecast": 10}
    with pytest.raises(ValueError, match="unknown endpoint"):
        checks.parse_mix("checkout=5")


def test_pool_from_tiny_artifacts_is_valid(tmp_path: Path) -> None:
    art = g.build_artifacts(tmp_path / "artifacts", g.build_repository(tmp_path / "repo"))
    pool = payloads.build_pool(art, n=50)
    assert len(pool["recommend"]) == 50 and pool["forecast"] == []  # the tiny artifacts have no sales store
    for body in pool["recommend"]:
        RecommendRequest.model_validate(body)
    guests = [b for b in pool["recommend"] if str(b["user_id"]).startswith("guest")]
    assert guests and all(b["history"] for b in guests)
    IntentRequest.model_validate(pool["intent"][0])
    assert len(pool["events"]) == 50 and all(len(b["events"]) == payloads.EVENTS_PER_BATCH for b in pool["events"])
    kinds = {e["event_type"] for b in pool["events"] for e in b["events"]}
    assert kinds <= set(payloads.EVENT_MIX) and "click" in kinds
    back = payloads.load_pool(payloads.write_pool(pool, tmp_path / "p.json"))
    assert back == pool


def test_perf_analyzer_files(tmp_path: Path) -> None:
    arrays = {"input_ids": np.array([[5, 6, 0]], dtype=np.int64), "hist_len": np.array([[3]], dtype=np.int64)}
    data = json.loads(triton_direct.perf_analyzer_input_file(arrays, tmp_path / "in.json").read_text())
    assert data == {
        "data": [{"input_ids": {"content": [5, 6, 0], "shape": [3]}, "hist_len": {"content": [3], "shape": [1]}}]
    }
    csv_text = (
        "Concurrency,Inferences/Second,Client Send,p50 latency,p90 latency,p95 latency,p99 latency\n"
        "4,2000.0,10,5000,6000,7000,9000\n"
    )
    (tmp_path / "pa.csv").write_text(csv_text)
    (row,) = triton_direct.parse_perf_analyzer_csv(tmp_path / "pa.csv", "din", rows=200)
    assert row.concurrency == 4 and row.rps == pytest.approx(10.0) and row.rows_per_s == 2000.0
    assert (row.p50_ms, row.p99_ms) == (5.0, 9.0)


def test_served_lengths_and_history_cut(tmp_path: Path) -> None:
    repo = g.build_repository(tmp_path / "repo")
    art = g.build_artifacts(tmp_path / "artifacts", repo)
    assert inputs.served_lengths(repo, "din") == {"hist_item_ids": g.MAX_HIST, "hist_cat_ids": g.MAX_HIST}
    assert inputs.served_lengths(repo, "nope") == {}
    fs = inputs.FeatureStore.load(art)
    longest = int(np.diff(fs.users.hist_offsets).max())
    assert longest > 3
    x = inputs.user_tower_batch(fs, 100, n_features=2, max_hist=3)
    assert x["hist_item_ids"].shape[1] == 3 and x["hist_len"].max() == 3 and x["user_features"].shape[1] == 2
    padding = np.arange(3)[None, :] >= x["hist_len"][:, None]
    assert (x["hist_item_ids"][padding] == 0).all() and (x["hist_item_ids"][~padding] > 0).all()
    # Each batch row is the gateway's own row for that user (serving/recommend/features.py), zero-padded.
    for row, user in enumerate(inputs.users_with_history(fs)):
        own = user_tower_inputs(fs.users.history(int(user)), fs.items, 3, fs.user_features(int(user), 2))
        width = own["hist_item_ids"].shape[1]
        assert (x["hist_item_ids"][row, :width] == own["hist_item_ids"][0]).all()
        assert (x["user_features"][row] == own["user_features"][0]).all() and x["hist_len"][row] == own["hist_len"][0]


def test_request_inputs_follow_the_server_shapes(tmp_path: Path) -> None:
    art = g.build_artifacts(tmp_path / "artifacts", g.build_repository(tmp_path / "repo"))
    meta = {
        "inputs": [
            {"name": "hist_item_ids", "shape": [-1, -1]},
            {"name": "hist_cat_ids", "shape": [-1, -1]},
            {"name": "hist_len", "shape": [-1, 1]},  # dims [1] + reshape []: travels as [batch, 1]
            {"name": "cand_item_ids", "shape": [-1, 1]},
            {"name": "cand_cat_ids", "shape": [-1, 1]},
        ]
    }
    x = triton_direct.request_inputs("din", art, meta, rows=7)
    assert x["hist_item_ids"].shape[0] == 7 and x["hist_len"].shape == (7, 1) and x["cand_item_ids"].shape == (7, 1)
    assert (x["hist_item_ids"][:, : int(x["hist_len"][0, 0])] > 0).all()


def test_pinning_helpers() -> None:
    assert n_cores("0") == 1 and n_cores("0-3") == 4 and n_cores("0,2-3") == 3
    assert pinned(["x"], None) == ["x"]


def test_bench_needs_built_models(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bench.__main__ import main

    assert main(["--artifacts", str(tmp_path), "--results", str(tmp_path / "results")]) == 2
    assert "make serve" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()
