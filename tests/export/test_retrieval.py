"""FAISS index choice, recall against exact search, and the saved file loading back on CPU."""

from __future__ import annotations

import numpy as np
import pytest

from export import retrieval


def clustered(n: int, dim: int = 16, clusters: int = 20, seed: int = 0) -> np.ndarray:
    """Vectors with cluster structure, like trained embeddings (IVF relies on it)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))
    return (centres[rng.integers(0, clusters, n)] + 0.4 * rng.standard_normal((n, dim))).astype(np.float32)


def test_choice_by_catalogue_size():
    assert retrieval.choose_index(1_000, 64).kind == "flat"
    ivf = retrieval.choose_index(1_000_000, 64)
    assert ivf.kind == "ivf_flat" and ivf.params["nlist"] == 4000
    pq = retrieval.choose_index(10_000_000, 64)  # IVF-Flat's 2.4 GiB is over the default 2 GiB
    assert pq.kind == "ivf_pq" and 64 % pq.params["m"] == 0
    assert retrieval.choose_index(1_000, 64, "hnsw").params["M"] == 32
    assert retrieval.choose_index(1_000, 64, "ivf_flat", nlist=8).params["nlist"] == 8
    with pytest.raises(ValueError, match="index kind"):
        retrieval.choose_index(10, 4, "lsh")


def test_default_budget_keeps_the_profiles_choices():
    # the quick (5k), full (50k) and catalog1m (1M) catalogues pick what they picked before the budget existed
    assert [retrieval.choose_index(n, 64).kind for n in (5_000, 50_000, 1_000_000)] == ["flat", "flat", "ivf_flat"]


def test_budget_moves_down_the_ladder_and_fails_clearly():
    assert retrieval.choose_index(40_000, 64, memory_mb=11).kind == "flat"  # 9.8 MiB
    assert retrieval.choose_index(40_000, 64, memory_mb=9).kind == "ivf_pq"  # IVF-Flat is larger than flat (ids)
    assert retrieval.choose_index(1_000_000, 64, memory_mb=100).kind == "ivf_pq"  # 38 MiB of codes and ids
    assert retrieval.choose_index(3_000_000, 64).kind == "ivf_flat"  # 755 MiB: the old 2M cap is gone
    with pytest.raises(retrieval.IndexBudgetError, match=r"ivf_pq, the smallest kind, needs about 3,8\d\d MiB"):
        retrieval.choose_index(100_000_000, 64)
    with pytest.raises(retrieval.IndexBudgetError, match="--index-memory-mb"):
        retrieval.choose_index(1_000_000, 64, "hnsw", memory_mb=100)  # an explicit kind must fit too
    assert retrieval.choose_index(100_000_000, 64, memory_mb=4096).kind == "ivf_pq"


@pytest.mark.parametrize("kind", retrieval.KINDS)
def test_memory_estimate_matches_the_serialised_index(kind):
    x = clustered(6_000)
    choice = retrieval.choose_index(len(x), x.shape[1], kind)
    index, _ = retrieval.build_index(x, choice, use_gpu=False)
    size = retrieval.faiss.serialize_index(index).size
    assert size == pytest.approx(retrieval.estimate_bytes(len(x), x.shape[1], choice), rel=0.03)


def test_build_report_records_the_budget():
    _, report = retrieval.build_and_measure(clustered(2_000), "auto", k=10, n_queries=20, memory_mb=64)
    assert report["memory_budget_mb"] == 64 and 0 < report["memory_estimate_mb"] < 64


def test_ann_recall_at_k_counts_overlap():
    truth = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    found = np.array([[4, 3, 9, 9], [5, 6, 7, 8]])
    assert retrieval.ann_recall_at_k(found, truth) == pytest.approx((2 / 4 + 1) / 2)


def test_exact_index_has_full_recall_and_unit_norm_scores():
    x = clustered(2_000)
    index, report = retrieval.build_and_measure(x, "auto", k=20, n_queries=100)
    assert report["index_type"] == "flat" and report["recall_at_20"] == 1.0 and report["queries_per_s"] > 0
    scores, ids = index.search(retrieval.normalise(x[:5]), 1)
    assert (ids[:, 0] == np.arange(5)).all() and np.allclose(scores[:, 0], 1.0, atol=1e-5)


@pytest.mark.parametrize("kind", ["ivf_flat", "hnsw"])
def test_approximate_index_is_tuned_to_the_recall_target(kind):
    x = clustered(4_000)
    _, report = retrieval.build_and_measure(x, kind, k=20, n_queries=200, target=0.9)
    assert report["recall_at_20"] >= 0.9, report["tuning"]
    assert report["tuning"] and report["tuning"][-1]["recall"] == pytest.approx(report["recall_at_20"])
    # the chosen setting is the first that reached the target: every earlier one fell short
    assert all(row["recall"] < 0.9 for row in report["tuning"][:-1])


def test_ivf_pq_reports_an_unreached_target_honestly():
    x = clustered(1_500, dim=8)
    # Compressed codes cap recall below exact search; asking for 0.99 cannot be met at any nprobe.
    _, report = retrieval.build_and_measure(x, "ivf_pq", k=10, n_queries=100, target=0.99, nlist=16)
    assert report["index_params"]["m"] == 4 and 0.0 < report["recall_at_10"] < 0.99
    assert not report["target_reached"] and report["index_params"]["nprobe"] == 16  # tried up to every list


def test_saved_index_loads_on_cpu_and_searches_the_same(tmp_path):
    x = clustered(3_000)
    index, report = retrieval.build_and_measure(x, "ivf_flat", k=10, n_queries=50, use_gpu=False)
    path = retrieval.save_index(index, tmp_path / "items.faiss")
    loaded = retrieval.load_index(path)
    q = retrieval.normalise(x[:20])
    assert loaded.ntotal == 3_000 and loaded.d == 16
    assert (loaded.search(q, 10)[1] == index.search(q, 10)[1]).all()
    assert retrieval.faiss.extract_index_ivf(loaded).nprobe == report["index_params"]["nprobe"]


@pytest.mark.gpu
@pytest.mark.skipif(not retrieval.gpu_available(), reason="needs faiss with GPU support and a GPU")
def test_gpu_built_index_loads_on_cpu(tmp_path):
    x = clustered(5_000)
    index, report = retrieval.build_and_measure(x, "ivf_flat", k=10, n_queries=50)
    assert report["built_on"] == "gpu"
    loaded = retrieval.load_index(retrieval.save_index(index, tmp_path / "gpu.faiss"))
    assert type(loaded).__name__ == "IndexIVFFlat"
