"""The load test's price pool and answer check, over the tiny price-sensitive gateway."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from bench import checks, payloads, price_cost
from serving.app import create_app
from serving.runtime.settings import Settings
from tests.serving.price import helpers as h

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return h.build(tmp_path_factory.mktemp("price_bench"))


def test_price_pool_is_valid_and_answers_pass_the_check(root):
    pool = payloads.build_pool(root / "artifacts", n=12)
    assert len(pool["price"]) == 12 and any("stock" in b for b in pool["price"])
    assert checks.parse_mix("recommend=65,intent=20,forecast=10,price=5")["price"] == 5
    assert "price" not in checks.parse_mix(checks.DEFAULT_MIX)
    with TestClient(create_app(Settings(**h.settings_kw(root)))) as client:
        for body in pool["price"]:
            r = client.post(payloads.ENDPOINTS["price"], json=body)
            assert r.status_code == 200, r.text
            problem, timings = checks.check_price(r.content, body)
            assert problem is None and "model" in timings
        answer = r.json()
    wrong = {**answer, "recommended": {**answer["recommended"], "price": answer["price_ceiling"] * 2}}
    assert "outside the guard rails" in checks.check_price(json.dumps(wrong).encode(), body)[0]
    worse = min(answer["candidates"], key=lambda c: c["profit"])
    if worse["profit"] < answer["recommended"]["profit"]:
        worse_answer = {**answer, "recommended": worse}
        assert "not the best" in checks.check_price(json.dumps(worse_answer).encode(), body)[0]
    over = {**body, "stock": 0.5}
    assert checks.check_price(r.content, over)[0] == "expected units above the stock sent"


def test_price_cost_measures_both_paths_and_checks_they_agree(root):
    r = price_cost.measure(root / "artifacts", root / "model_repository", 5, 2, 0.02, 1)
    assert r["rows"] == 8 and r["plans_model"].endswith("tcn_plans/1/model.onnx")
    assert r["plans_max_rel_diff"] < 1e-5  # the plans stand-in answers each plan as the TCN answers its row
    assert all(r[k] > 0 for k in ("one", "batch", "by_one", "plans", "rows_inputs", "plans_inputs"))
    text = price_cost.markdown(r, "python -m bench.price_cost")
    assert "one row of 8 plans" in text and "all rows in one call" in text
