"""bench.faiss_scale on tiny catalogues: the report's structure, the skip rule and the 100M extrapolation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench import faiss_scale as fs
from export import retrieval

pytestmark = pytest.mark.timeout(120)


def test_chunked_exact_topk_matches_the_flat_index(monkeypatch):
    monkeypatch.setattr(fs, "CHUNK", 700)  # several slices, so the merge is exercised
    vectors, queries = fs.catalogue(3_000, 16, 20)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    ours, flat = fs.exact_topk(vectors, queries, 50), retrieval.exact_topk(vectors, queries, 50)
    assert retrieval.ann_recall_at_k(ours, flat) == pytest.approx(1.0)


def test_power_fit_recovers_a_power_law():
    a, b = fs.power_fit([1e6, 3e6, 1e7], [2.0 * n**0.5 for n in (1e6, 3e6, 1e7)])
    assert a == pytest.approx(2.0, rel=1e-6) and b == pytest.approx(0.5, abs=1e-9)


def test_tiny_run_writes_table_plot_and_100m_estimate(tmp_path):
    out = tmp_path / "scale.md"
    argv = ["--sizes", "4000,8000", "--dim", "16", "--kinds", "ivf_flat,ivf_pq,hnsw", "--k", "10"]
    argv += ["--queries", "40", "--single-queries", "5", "--threads", "1", "--max-build-s", "0", "--out", str(out)]
    assert fs.main(argv) == 0
    res = json.loads(out.with_suffix(".json").read_text())
    assert out.with_suffix(".png").stat().st_size > 0
    rows = res["rows"]
    assert [(x["items"], x["index"]) for x in rows] == [(n, k) for n in (4_000, 8_000) for k in ("ivf_flat", "ivf_pq")]
    for x in rows:
        assert 0 < x["recall"] <= 1 and x["single_qps"] > 0 and x["batch_qps"] > 0 and x["build_s"] > 0
        assert x["memory_mb"] == pytest.approx(x["estimate_mb"], rel=0.05)  # export's formula vs the real file
        assert x["curve"] and x["setting"] in {c["setting"] for c in x["curve"]}
    # a --max-build-s of 0 leaves HNSW out everywhere, with the pilot's prediction as the reason
    assert [(s["items"], s["index"]) for s in res["skipped"]] == [(4_000, "hnsw"), (8_000, "hnsw")]
    assert all("predicted build" in s["why"] for s in res["skipped"])
    est = res["extrapolation"]
    assert est["items"] == 100_000_000 and set(est["kinds"]) == {"ivf_flat", "ivf_pq"}
    for e in est["kinds"].values():
        assert e["memory_mb"]["value"] > 0 and 0.9 < e["memory_mb"]["exponent"] < 1.1
        assert {"build_s", "single_qps", "batch_qps"} <= set(e) and e["estimate_mb"] > 0
    text = out.read_text()
    assert "Extrapolation to 100,000,000 items (not a measurement)" in text
    assert "| 8,000 | ivf_pq |" in text and "Not built: hnsw at 4,000 items" in text and f"]({out.stem}.png)" in text
