"""The retraining loop, end to end on tiny data: events in -> durable log -> train -> export -> reload -> serves.

A gateway process serves the tiny export (random-weight models on the tiny generated shop); the storefront
replays the shop's behaviour file through POST /v1/events, plus a shopper the export never saw. SIGTERM
writes the log (the periodic flush is a minute away: what the shutdown does not write is missing). The
shop's items file goes beside the log, which has no category_id, and `python -m training train` reads that
folder as it is; `python -m export` writes new versions into the same repository and artifacts; a second
gateway, started on the old export, takes them with POST /admin/reload. Each step leaves its own mark:
the log holds every accepted event, the manifest's behaviour fingerprint is the log's, the versions move,
and the new shopper, a cold start before the reload (its online events died with the first process), is
personalised from the export's stored history after it.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from serving.contracts.events import LOG_GLOB
from tests.export.tiny_pipeline import export_tiny
from tests.serving import gateway_process as gp
from training.data import behavior
from training.data.fingerprints import behavior_fingerprint

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]  # two gateways, two trainings, two exports: ~30 s

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "retrain-loop-token"
NEW_USER = 10_990_001  # an id of the shop's kind (int) that the generated data set does not hold
BATCH = 1000  # events per POST (the API's limit)


def run_cli(*args: str | Path, cwd: Path = ROOT) -> str:
    """`python -m <args>` as an operator runs it; its output in the failure message."""
    proc = subprocess.run([sys.executable, "-m", *map(str, args)], cwd=cwd, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(map(str, args))} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def shop_events(shop: Path) -> list[dict]:
    """The generated shop's behaviour file as the storefront would send it, then the new shopper's visit."""
    frame = pd.read_csv(shop / "events.csv")
    events = [
        {"user_id": int(u), "item_id": int(i), "event_type": str(t), "timestamp": float(ts)}
        for u, i, t, ts in frame[["user_id", "item_id", "event_type", "timestamp"]].itertuples(index=False)
    ]
    items = pd.read_csv(shop / "items.csv")["item_id"].to_numpy()
    start = float(frame["timestamp"].max()) + 3600
    visit = ["view", "click", "view", "skip", "click", "cart", "view", "click", "view", "click"]
    for j, kind in enumerate(visit):
        events.append(
            {"user_id": NEW_USER, "item_id": int(items[7 * j + 3]), "event_type": kind, "timestamp": start + 60 * j}
        )
    return events


def read_log(folder: Path) -> list[dict]:
    return [json.loads(x) for f in sorted(folder.glob(LOG_GLOB)) for x in f.read_text().splitlines()]


def recommend(client: httpx.Client, **body: object) -> dict:
    r = client.post("/v1/recommend", json={"k": 5, "candidates": 50, **body})
    assert r.status_code == 200, r.text
    return r.json()


def test_events_to_log_to_training_to_export_to_reload(tmp_path):
    root = tmp_path
    export_tiny(root)  # root/model_repository, root/artifacts, root/checkpoints: the export now serving
    old_manifest = json.loads((root / "artifacts" / "manifest.json").read_text())
    shop = root / "shop"
    generated, _ = behavior.generate(behavior.PROFILES["tiny"], seed=0)  # the data set export_tiny trained on
    behavior.save_dir(generated, None, shop, fmt="csv")
    events = shop_events(shop)
    log_dir = root / "events"
    settings = {"event_log": str(log_dir), "event_log_flush_s": "60", "admin_token": TOKEN, "grpc_enabled": "false"}

    # 1. events in: a gateway on the old export takes the shop's events and, at SIGTERM, writes them to the log
    with gp.gateway(root, **settings) as gw:
        gw.wait_ready()
        with httpx.Client(base_url=gw.base, timeout=30) as client:
            assert recommend(client, user_id=NEW_USER)["fallback"]  # the export never saw this shopper
            accepted = 0
            for s in range(0, len(events), BATCH):
                r = client.post("/v1/events", json={"events": events[s : s + BATCH]})
                assert r.status_code == 200, r.text
                accepted += r.json()["accepted"]
            assert not recommend(client, user_id=NEW_USER)["fallback"]  # read-your-writes, from the online store
        # Buffered, not yet written (an early write only past 1 MiB): the shutdown must write the rest.
        assert len(read_log(log_dir)) < accepted
        gw.proc.send_signal(signal.SIGTERM)
        assert gw.proc.wait(timeout=30) in (0, -signal.SIGTERM)
    lines = read_log(log_dir)
    assert accepted == len(events) == len(lines)
    assert all("category_id" not in line for line in lines) and sum(x["event_type"] == "skip" for x in lines) > 0

    # 2. train on the log: the shop's items file beside it gives each item its category
    shutil.copy(shop / "items.csv", log_dir / "items.csv")
    for model in ("two_tower", "din"):  # both, so that the ranker's inputs fit the retrained features
        run_cli("training", "train", model, "--profile", "tiny", "--data", log_dir, "--out", root, "--max-epochs", "1")
    log, _ = behavior.load_dir(log_dir)
    log_fp = behavior_fingerprint(log)
    assert NEW_USER in log.user_ids.tolist() and log.n_events == len(events)
    assert log_fp != old_manifest["data"]["behavior"]

    # 3. a gateway on the old export (fresh process: the online store is empty again), 4. export, 5. reload
    with gp.gateway(root, **settings) as gw:
        gw.wait_ready()
        with httpx.Client(base_url=gw.base, timeout=30) as client:
            before = recommend(client, user_id=NEW_USER)
            assert before["fallback"] and before["fallback_reason"] == "unknown user without history"
            run_cli(
                "export", "--checkpoints", root / "checkpoints", "--repo", root / "model_repository",
                "--artifacts", root / "artifacts", "--models", "user_tower", "item_tower", "din",
                "--exporter", "torchscript", "--no-latency", "--no-int8", "--recall-k", "20",
            )  # fmt: skip
            r = client.post("/admin/reload", headers={"x-admin-token": TOKEN})
            assert r.status_code == 200, r.text
            changed = r.json()["changed"]
            assert changed["user_tower"] == {"from": 1, "to": 2} and changed["din"] == {"from": 1, "to": 2}

            # 6. the new model serves: its versions, the log's fingerprint, the new shopper a known user
            models = client.get("/v1/models").json()
            assert models["manifest"]["data"]["behavior"] == log_fp
            assert models["manifest"]["data"]["sales"] == old_manifest["data"]["sales"]  # the TCN carried over
            served = {m["name"]: m["version"] for m in models["models"]}
            assert served == {"user_tower": 2, "din": 2, "tcn": 1, "tcn_plans": 1}  # the forecasters carried over
            after = recommend(client, user_id=NEW_USER)
            assert not after["fallback"] and not after["degraded"]
            assert after["model_versions"] == {"user_tower": 2, "din": 2}
            # The stored history is the log's: the shopper's clicks/carts, oldest first (the store has no events).
            mine = [e for e in events if e["user_id"] == NEW_USER]
            clicked = [e["item_id"] for e in mine if e["event_type"] in ("click", "cart", "buy")]
            assert after["items"] == recommend(client, user_id=NEW_USER, history=clicked)["items"]
            assert not {i["item_id"] for i in after["items"]} & set(clicked)  # its history is left out
            assert client.get("/readyz").status_code == 200
    manifest = json.loads((root / "artifacts" / "manifest.json").read_text())
    assert manifest["features"]["n_users"] == log.n_users == generated.n_users + 1
    assert np.isin(NEW_USER, np.load(root / "artifacts" / "features" / "users.npz")["user_ids"])
