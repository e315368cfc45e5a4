"""Two real `python -m serving` processes on one real redis-server: each reads the other's events at once
(read-your-writes across processes), and SIGTERM writes every accepted event to the shared log folder."""

from __future__ import annotations

import json
import signal

import httpx
import pytest

from serving.contracts.events import LOG_GLOB
from tests.serving import gateway_process as gp

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]  # two gateway processes, ~10 s


def test_two_gateways_on_one_redis_see_each_others_events_and_lose_none_at_sigterm(tmp_path, redis_server):
    root = gp.build(tmp_path)
    store = {"online_store": redis_server.url, "online_timeout_ms": "1000", "event_log_flush_s": "60"}
    with gp.gateway(root, **store) as a, gp.gateway(root, **store) as b:
        a.wait_ready()
        b.wait_ready()
        with httpx.Client(base_url=a.base, timeout=10) as ca, httpx.Client(base_url=b.base, timeout=10) as cb:

            def events(c: httpx.Client, *batch: dict) -> int:
                r = c.post("/v1/events", json={"events": list(batch)})
                assert r.status_code == 200, r.text
                return r.json()["accepted"]

            def top(c: httpx.Client, **body) -> list:
                r = c.post("/v1/recommend", json={"user_id": "two-proc", "k": 5, **body})
                assert r.status_code == 200, r.text
                return r.json()["items"]

            sent = events(ca, *[{"user_id": "two-proc", "item_id": i, "event_type": "click"} for i in ("i3", "i8")])
            assert top(cb) == top(cb, history=["i3", "i8"]) == top(ca)  # A's events, read on B at once
            skipped = top(ca)[0]["item_id"]
            sent += events(cb, {"user_id": "two-proc", "item_id": skipped, "event_type": "skip"})
            assert skipped not in [i["item_id"] for i in top(ca)]  # B's skip, on A
            for n in range(10):  # 1,000 more, half on each
                batch = [
                    {"user_id": f"u{n}-{j % 9}", "item_id": f"i{j % 45}", "event_type": "view"} for j in range(100)
                ]
                sent += events(ca if n % 2 else cb, *batch)
        for gw in (a, b):
            gw.proc.send_signal(signal.SIGTERM)
        for gw in (a, b):
            assert gw.proc.wait(timeout=30) in (0, -signal.SIGTERM)
    lines = [json.loads(x) for f in (root / "events").glob(LOG_GLOB) for x in f.read_text().splitlines()]
    assert sent == 1003 and len(lines) == sent
    assert len({f.name.rsplit("-", 1)[0] for f in (root / "events").glob(LOG_GLOB)}) == 2  # one file stem each
    for gw in (a, b):
        assert "Traceback" not in gw.log.read_text()
