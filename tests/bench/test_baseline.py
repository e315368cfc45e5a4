"""The naive peer answers the gateway's API with the same bodies, so the load test's checks accept it."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from fastapi.testclient import TestClient  # noqa: E402

from bench import checks  # noqa: E402
from bench.baseline.app import create_app  # noqa: E402
from tests.bench.helpers import write_tiny_checkpoints  # noqa: E402
from tests.serving import gateway_helpers as g  # noqa: E402


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    """Tiny random eager models over the tiny gateway artifacts (40 items, 5 categories, 2 user features)."""
    art = write_tiny_checkpoints(g.build_artifacts(tmp_path_factory.mktemp("naive") / "artifacts"))
    return TestClient(create_app(art))


def test_readyz_names_what_it_cannot_serve(client: TestClient) -> None:
    body = client.get("/readyz").json()
    assert body["ready"] and body["components"]["retriever"] == "ok" and body["components"]["intent"] == "ok"
    assert body["components"]["forecast"] != "ok"  # no TCN checkpoint and no sales store here
    assert client.post("/v1/forecast", json={"store_id": 1, "item_id": 2}).status_code == 503


@pytest.mark.parametrize(
    "req",
    [
        {"user_id": 105, "k": 5},  # stored history
        {"user_id": "guest", "history": ["i3", "i7", "i9"], "k": 3},  # session history only
        {"user_id": 100, "k": 4},  # known user, no history: personalised by user features
        {"user_id": "nobody", "k": 4},  # popularity fallback
    ],
)
def test_recommend_passes_the_load_test_checks(client: TestClient, req: dict) -> None:
    resp = client.post("/v1/recommend", json=req)
    assert resp.status_code == 200, resp.text
    problem, timings = checks.check_recommend(resp.content, req)
    assert problem is None
    seen = set(req.get("history", []))
    assert not seen & {i["item_id"] for i in resp.json()["items"]}
    assert f"i{g.N_ITEMS - 1}" not in {i["item_id"] for i in resp.json()["items"]}  # out of stock
    assert timings


def test_intent_passes_the_load_test_checks(client: TestClient) -> None:
    req = {"text": "my card is lost"}
    resp = client.post("/v1/intent", json=req)
    assert resp.status_code == 200, resp.text
    assert checks.check_intent(resp.content, req)[0] is None
    assert resp.json()["results"][0]["intent"] in g.LABELS
    many = {"texts": ["where is my card", "refund please"]}
    assert checks.check_intent(client.post("/v1/intent", json=many).content, many)[0] is None


def test_unknown_history_item_is_a_422(client: TestClient) -> None:
    assert client.post("/v1/recommend", json={"user_id": 1, "history": ["nope"]}).status_code == 422
