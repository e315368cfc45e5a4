"""A seconds-long run of bench/locustfile.py (headless, step load) against a real gateway over tiny models."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import servers
from bench.loadtest import LoadPlan, run_load
from bench.payloads import build_pool, write_pool
from tests.serving import gateway_helpers as g

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]  # a gateway process and two locust runs, ~15 s


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("bench_gateway")
    repo = g.build_repository(tmp / "model_repository")
    art = g.build_artifacts(tmp / "artifacts", repo)
    pool = write_pool(build_pool(art, n=40), tmp / "payloads.json")
    server = servers.gateway(servers.free_port(), tmp / "gateway.log", artifacts=art, repository=repo, cores=None)
    with server:
        yield server.ready_url.rsplit("/", 1)[0], pool, tmp


def test_step_load_meets_a_generous_objective(gateway) -> None:
    host, pool, tmp = gateway
    plan = LoadPlan(steps=(1, 2), step_s=2.0, warmup_s=0.3, slo_p99_ms=5000.0, max_error_rate=0.0)
    r = run_load(host, tmp / "ok" / "run", plan, payloads=pool, cores=None)
    assert r.returncode == 0, Path(f"{r.prefix}.log").read_text()[-3000:]
    assert r.objective_met
    agg = [s for s in r.steps if s.endpoint == "all"]
    assert [s.users for s in agg] == [1, 2]
    assert all(s.requests > 0 and s.failures == 0 and s.slo_met for s in agg)
    assert {s.endpoint for s in r.steps} == {"all", "recommend", "intent"}
    # the gateway's timings_ms give the model share of each answer
    assert all(s.model_p50_ms > 0 for s in r.steps if s.endpoint == "recommend")
    assert r.summary["dropped"] == {"forecast": "no request bodies (artifacts missing)"}
    assert set(r.summary["mix"]) == {"recommend", "intent"}
    for suffix in ("_stats.csv", "_stats_history.csv", ".html"):
        assert Path(f"{r.prefix}{suffix}").is_file()


def test_missed_objective_exits_non_zero(gateway) -> None:
    host, pool, tmp = gateway
    plan = LoadPlan(steps=(2,), step_s=1.5, warmup_s=0.2, slo_p99_ms=0.001)
    r = run_load(host, tmp / "missed" / "run", plan, payloads=pool, cores=None)
    assert r.returncode == 1
    assert not r.objective_met and r.summary["best"] is None
    assert r.steps[0].requests > 0 and not r.steps[0].slo_met
