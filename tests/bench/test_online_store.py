"""A seconds-long run of bench/online_store.py (in-process store and redis-server in turns) on the tiny models."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench import online_store
from tests.serving import gateway_helpers as g


def _result(rps: float, requests: int, errors: int = 0) -> dict:
    return {"ok_per_s": rps, "requests": requests, "errors": errors}


def test_verdict_needs_the_ratio_and_clean_answers() -> None:
    assert online_store.verdict({"memory": _result(100, 1000), "redis": _result(95, 950)}, 0.9) == (0.95, True)
    assert not online_store.verdict({"memory": _result(100, 1000), "redis": _result(85, 850)}, 0.9)[1]
    assert not online_store.verdict({"memory": _result(100, 1000), "redis": _result(99, 990, errors=5)}, 0.9)[1]


@pytest.mark.slow
@pytest.mark.timeout(180)  # two gateway processes and a redis-server, ~10 s
def test_both_stores_measured_and_a_missed_ratio_exits_non_zero(tmp_path: Path) -> None:
    repo = g.build_repository(tmp_path / "model_repository")
    art = g.build_artifacts(tmp_path / "artifacts", repo)
    out = tmp_path / "online_store.md"
    argv = ["--seconds", "1.2", "--rounds", "2", "--warmup", "0.2", "--concurrency", "2", "--users", "20"]
    argv += ["--events-per-user", "4"]
    argv += ["--artifacts", str(art), "--repository", str(repo), "--server-cores", "none", "--load-cores", "none"]
    rc = online_store.main([*argv, "--min-ratio", "1000", "--out", str(out)])  # a ratio no store can reach
    assert rc == 1
    text = out.read_text()
    assert text.startswith("# /v1/recommend with the Redis online store vs in-process")
    known, new = map(int, re.search(r"20 users \((\d+) known to the export, (\d+) new\)", text).groups())
    assert known + new == 20 and known > 0 and new > 0
    rows = {m[0]: m[1:] for m in re.findall(r"^\| (memory|redis) \| ([\d,]+) \| ([\d.]+) \| ([\d.]+) \|", text, re.M)}
    assert set(rows) == {"memory", "redis"}
    assert all(float(rps.replace(",", "")) > 0 and float(p50) <= float(p99) for rps, p50, p99 in rows.values())
    # every answer passed the checks: personalised from the online events, never degraded
    assert all(re.search(rf"^\| {name} \|.* \| 0 \|$", text, re.M) for name in rows) and "Failed" not in text
    ratio = re.search(
        r"Redis / in-process throughput: ([\d.]+)\*\* \(objective >= 1000 .*: missed\); per round: (.*)\.$", text, re.M
    )
    assert ratio and 0 < float(ratio[1]) < 1000 and len(ratio[2].split(", ")) == 2
