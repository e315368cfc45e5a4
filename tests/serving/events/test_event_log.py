"""The durable event log: buffered, flushed on a timer, on reload and at shutdown; rotated by size; nothing
accepted is lost at shutdown."""

from __future__ import annotations

import asyncio
import json

import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.contracts.events import LOG_GLOB
from serving.runtime.event_log import EventLog
from serving.runtime.settings import Settings
from tests.serving import gateway_helpers as g

pytestmark = pytest.mark.timeout(60)


def lines(folder) -> list[dict]:
    return [json.loads(x) for f in sorted(folder.glob(LOG_GLOB)) for x in f.read_text().splitlines()]


def record(i: int) -> dict:
    return {"user_id": i % 7, "item_id": f"i{i}", "event_type": "view", "timestamp": 1.7e9 + i}


@pytest.mark.asyncio
async def test_buffered_lines_reach_the_disk_on_the_timer_and_at_close_rotating_by_size(tmp_path):
    log = EventLog(tmp_path / "log", max_bytes=4096, flush_s=0.05)
    await log.start()
    log.write(record(i) for i in range(10))
    assert not list((tmp_path / "log").glob(LOG_GLOB))  # nothing written on the request path
    await asyncio.sleep(0.2)
    assert len(lines(tmp_path / "log")) == 10 and log.written == 10
    for start in range(10, 400, 30):
        log.write(record(i) for i in range(start, start + 30))
        await log.flush()
    log.write(record(i) for i in range(400, 450))
    await log.close()  # the last 50 were only buffered
    files = sorted((tmp_path / "log").glob(LOG_GLOB))
    assert len(files) > 3 and all(f.stat().st_size <= 4096 for f in files[:-1])
    assert [r["item_id"] for r in lines(tmp_path / "log")] == [f"i{i}" for i in range(450)]


@pytest.mark.asyncio
async def test_a_failed_write_keeps_the_lines_for_the_next_try(tmp_path):
    blocker = tmp_path / "log"
    blocker.write_text("a file where the folder should be")
    log = EventLog(blocker, flush_s=10)
    log.write([record(1), record(2)])
    assert await log.flush() == 0 and log.pending == 2  # logged, kept
    blocker.unlink()
    assert await log.flush() == 2 and log.pending == 0
    await log.close()
    assert len(lines(blocker)) == 2


def test_n_events_accepted_then_shutdown_are_n_lines_in_the_log(tmp_path):
    repo = g.build_repository(tmp_path / "model_repository")
    g.build_artifacts(tmp_path / "artifacts", repo)
    settings = Settings(
        model_repository=repo,
        artifacts=tmp_path / "artifacts",
        execution_provider="cpu",
        grpc_enabled=False,
        event_log_flush_s=60,  # no timer flush during the test: shutdown must write everything
        admin_token="t",
    )
    n, batches = 0, [[{"user_id": u, "item_id": f"i{(u * 7 + j) % 45}", "event_type": "click"} for j in range(50)]
                     for u in range(12)]  # fmt: skip
    with TestClient(create_app(settings)) as c:
        for batch in batches[:6]:
            n += c.post("/v1/events", json={"events": batch}).json()["accepted"]
        assert c.post("/admin/reload", headers={"X-Admin-Token": "t"}).status_code == 200
        assert len(lines(tmp_path / "events")) == n == 300  # a reload flushes first
        for batch in batches[6:]:
            n += c.post("/v1/events", json={"events": batch}).json()["accepted"]
        metrics = c.get("/metrics").text
    written = lines(tmp_path / "events")  # the default folder: beside artifacts/
    assert len(written) == n == 600
    assert written[0] == {"user_id": 0, "item_id": "i0", "event_type": "click", "timestamp": written[0]["timestamp"]}
    assert "gateway_event_log_lines_total 300.0" in metrics
