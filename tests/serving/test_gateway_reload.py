"""Model reload while requests keep coming: zero failed requests, the manifest decides the version."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from serving.app import create_app
from serving.runtime.settings import Settings
from tests.serving import gateway_helpers as g

pytestmark = [pytest.mark.timeout(60), pytest.mark.asyncio]

TOKEN = {"x-admin-token": "t"}
BODY = {"history": ["i1", "i2"], "item_ids": ["i5", "i9", "i20", "i33"]}


def _expected(scale: float) -> list[float]:
    e = g.item_table() * scale
    h = e[[2, 3]].mean(0)
    bias = np.linspace(-0.2, 0.2, g.N_CATS + 1)
    c = np.array([5, 9, 20, 33])
    return sorted((1 / (1 + np.exp(-(e[c + 1] @ h + bias[c % g.N_CATS + 1])))).tolist(), reverse=True)


async def test_reload_under_load_drops_nothing(tmp_path):
    repo = tmp_path / "model_repository"
    g.add_din(repo, scale=1.0)
    g.build_artifacts(tmp_path / "artifacts", repo)  # the manifest pins din v1
    settings = Settings(
        model_repository=repo, artifacts=tmp_path / "artifacts", admin_token="t", execution_provider="cpu"
    )
    app = create_app(settings)
    v1, v2 = _expected(1.0), _expected(1.5)
    stop = asyncio.Event()

    async with g.serve(app) as c:

        async def client_loop() -> list[tuple[int, list[float]]]:
            seen = []
            while not stop.is_set():
                r = await c.post("/v1/rank", json=BODY)
                seen.append((r.status_code, [it["score"] for it in r.json().get("items", [])]))
            return seen

        loops = [asyncio.ensure_future(client_loop()) for _ in range(4)]
        await asyncio.sleep(0.1)
        g.add_din(repo, version=2, scale=1.5)
        same = await c.post("/admin/reload", headers=TOKEN)  # manifest still says v1: nothing changes
        assert same.status_code == 200 and same.json()["changed"] == {}
        g.write_repo_manifest(tmp_path / "artifacts", repo)  # export publishes v2
        await asyncio.sleep(0.1)
        swapped = await c.post("/admin/reload", headers=TOKEN)
        assert swapped.status_code == 200, swapped.text
        assert swapped.json()["changed"] == {"din": {"from": 1, "to": 2}}
        await asyncio.sleep(0.1)
        stop.set()
        results = [r for loop in await asyncio.gather(*loops) for r in loop]
        after = (await c.post("/v1/rank", json=BODY)).json()
        models = (await c.get("/v1/models")).json()

    assert len(results) > 20
    assert all(code == 200 for code, _ in results), {code for code, _ in results}
    for _, scores in results:  # every answer is wholly one version's
        assert np.allclose(scores, v1, atol=1e-5) or np.allclose(scores, v2, atol=1e-5)
    assert any(np.allclose(s, v1, atol=1e-5) for _, s in results)
    assert any(np.allclose(s, v2, atol=1e-5) for _, s in results)
    np.testing.assert_allclose([it["score"] for it in after["items"]], v2, atol=1e-5)
    assert after["model_versions"] == {"din": 2}
    assert next(m for m in models["models"] if m["name"] == "din")["version"] == 2


async def test_reload_with_a_broken_manifest_is_refused_and_old_versions_serve(tmp_path):
    repo = tmp_path / "model_repository"
    g.add_din(repo)
    g.build_artifacts(tmp_path / "artifacts", repo)
    settings = Settings(
        model_repository=repo, artifacts=tmp_path / "artifacts", admin_token="t", execution_provider="cpu"
    )
    app = create_app(settings)
    async with g.serve(app) as c:
        (tmp_path / "artifacts" / "retrieval" / "items.faiss").write_bytes(b"garbage")
        r = await c.post("/admin/reload", headers=TOKEN)
        assert r.status_code == 409 and "items.faiss" in r.json()["detail"]
        ok = await c.post("/v1/rank", json=BODY)
        assert ok.status_code == 200 and ok.json()["model_versions"] == {"din": 1}
        metrics = (await c.get("/metrics")).text
        assert 'gateway_reloads_total{outcome="failed"} 1.0' in metrics
