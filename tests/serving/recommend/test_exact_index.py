"""The CuPy retrieval path: ExactIndex answers as exact FAISS search does, and the Retriever picks its engine.

Every test but the last runs the exact engine's code with numpy (the CPU fallback of exactly the GPU code); the
last compares CuPy's answers with numpy's where CuPy sees a CUDA device.
"""

from __future__ import annotations

import logging
import subprocess
import sys

import faiss
import numpy as np
import pytest

from export import retrieval as export_retrieval
from serving.recommend import retrieval as retrieval_module
from serving.recommend.exact_index import PAD_SCORE, ExactIndex, cupy_device
from serving.recommend.retrieval import Retriever, normalise

N, D = 50, 8


def _vectors(n: int = N, d: int = D, seed: int = 0) -> np.ndarray:
    return normalise(np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32))


def _flat(x: np.ndarray) -> faiss.IndexFlatIP:
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    return index


@pytest.mark.parametrize("k", [5, N, N + 7])  # k < n, k = n, k > n (padded as FAISS pads)
@pytest.mark.parametrize("b", [1, 7])
@pytest.mark.parametrize("chunk_rows", [3, 16, 1 << 21])  # several chunks (k > chunk too), one chunk
def test_search_equals_faiss_flat(k: int, b: int, chunk_rows: int) -> None:
    x = _vectors()
    q = np.random.default_rng(1).standard_normal((b, D)).astype(np.float32)
    want_scores, want_ids = _flat(x).search(q, k)
    index = ExactIndex(x, np, chunk_rows=chunk_rows, score_elements=8)  # a query block of 1-2 rows
    scores, ids = index.search(q, k)
    assert scores.dtype == np.float32 and ids.dtype == np.int64 and ids.shape == scores.shape == (b, k)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-6)
    assert (scores[:, N:] == PAD_SCORE).all() and (ids[:, N:] == -1).all()


def test_ties_go_to_the_lower_id_in_every_chunking() -> None:
    x = np.repeat(_vectors(6), 4, axis=0)  # each vector four times: ids 4i..4i+3 score the same
    q = x[[0, 9, 22]]
    base = np.arange(24)
    for chunk_rows in (1, 3, 5, 24):
        scores, ids = ExactIndex(x, chunk_rows=chunk_rows).search(q, 6)
        for row, s in zip(ids, scores, strict=True):
            assert (np.diff(s) <= 0).all()
            for value in np.unique(s):  # within a run of equal scores, ids ascend
                same = row[s == value]
                assert (np.diff(same) > 0).all()
        # the query's own group comes first, lowest id first, then the lowest ids of the next best group
        assert list(ids[0][:4]) == list(base[:4]) and list(ids[1][:4]) == list(base[8:12])


@pytest.mark.parametrize("c", [1000, 1003])  # whole blocks, and a padded last block
def test_the_block_pre_selection_keeps_the_exact_top_k(c: int) -> None:
    from serving.recommend.exact_index import _chunk_top, _select_top

    s = np.random.default_rng(3).standard_normal((5, c)).astype(np.float32)
    s[1, 10:30] = s[1].max()  # a row whose best scores are tied across blocks: the lowest columns still win
    want = _select_top(np, s, 10)
    got = _chunk_top(np, s, 10, width=4)  # 4 * k * width = 160 <= c: the pre-selection runs
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[0], want[0])


def test_empty_index_and_bad_input() -> None:
    empty = ExactIndex(np.zeros((0, D), np.float32))
    scores, ids = empty.search(np.ones((2, D), np.float32), 3)
    assert (ids == -1).all() and (scores == PAD_SCORE).all() and empty.ntotal == 0 and empty.d == D
    with pytest.raises(ValueError, match="queries must be"):
        ExactIndex(_vectors()).search(np.ones((1, D + 1), np.float32), 3)
    with pytest.raises(ValueError, match="k must be"):
        ExactIndex(_vectors()).search(np.ones((1, D), np.float32), 0)


@pytest.mark.parametrize("kind", export_retrieval.KINDS)
def test_from_faiss_gives_each_exported_kinds_vectors(kind: str) -> None:
    x = _vectors(1_000, D, seed=2)
    choice = export_retrieval.choose_index(len(x), D, kind)
    index, _ = export_retrieval.build_index(x, choice, use_gpu=False)
    x = export_retrieval.normalise(x)  # the vectors export stored (normalised once more: ulps apart)
    exact = ExactIndex.from_faiss(index, np, chunk_rows=512)
    assert (exact.ntotal, exact.d) == (len(x), D)
    if kind == "ivf_pq":  # PQ keeps codes: the vectors are their decoding, close to the originals
        faiss.extract_index_ivf(index).make_direct_map()  # reconstruct by id, the other way to the vectors
        decoded = np.stack([index.reconstruct(i) for i in (0, 777, 999)])
        np.testing.assert_array_equal(exact.vectors[[0, 777, 999]], decoded)
        assert np.abs(exact.vectors - x).mean() < 0.2
    else:
        np.testing.assert_array_equal(exact.vectors, x)
    q = _vectors(5, D, seed=3)
    want_scores, want_ids = _flat(exact.vectors).search(q, 10)
    scores, ids = exact.search(q, 10)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def flat_and_exact() -> tuple[Retriever, Retriever]:
    x = _vectors(300, D, seed=4)
    flat = Retriever(_flat(x), gpu="off")
    exact = Retriever(_flat(x), gpu="cupy", xp=np)  # the CuPy path's code, on numpy
    return flat, exact


@pytest.mark.parametrize("seed", range(8))
def test_retriever_on_exact_search_answers_as_on_flat_faiss(flat_and_exact, seed: int) -> None:
    flat, exact = flat_and_exact
    rng = np.random.default_rng(seed)
    b = 1 if seed % 2 else 3
    q = rng.standard_normal((b, D)).astype(np.float32)
    k = int(rng.choice([1, 10, 200, 400]))  # 400 > items: padded with -1 / -inf
    exclude = rng.choice(300, size=int(rng.integers(0, 60)), replace=False) if seed % 3 else None
    blocked = rng.random(300) < (0.5 if seed % 4 < 2 else 0.0)  # half blocked: the search widens
    want, got = flat.search(q, k, exclude, blocked), exact.search(q, k, exclude, blocked)
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-6)
    assert got[0].dtype == np.float32 and got[1].dtype == np.int64 and got[1].shape == (b, k)


def test_describe_names_the_engine(flat_and_exact) -> None:
    flat, exact = flat_and_exact
    assert flat.describe() | {"items": 0} == {
        "kind": "flat",
        "source_kind": "flat",
        "engine": "faiss",
        "items": 0,
        "dim": D,
        "device": "cpu",
        "nprobe": None,
        "ef_search": None,
    }
    info = exact.describe()
    assert (info["kind"], info["source_kind"], info["engine"], info["device"]) == ("exact", "flat", "numpy", "cpu")
    assert info["items"] == 300 and info["dim"] == D
    assert isinstance(exact.index, ExactIndex)


def test_search_settings_do_not_apply_to_exact_search() -> None:
    x = _vectors(2_000, D, seed=5)
    index, _ = export_retrieval.build_index(x, export_retrieval.choose_index(len(x), D, "ivf_flat"), use_gpu=False)
    r = Retriever(index, nprobe=4, gpu="cupy", xp=np)
    assert r.describe()["kind"] == "exact" and r.describe()["source_kind"] == "ivf"
    assert r.nprobe is None and r.ef_search is None
    direct = Retriever(ExactIndex(x), nprobe=4, ef_search=8)  # an ExactIndex is searched as it is
    assert direct.kind == "exact" and direct.nprobe is None and direct.engine == "numpy"


def test_auto_on_a_box_without_gpus_is_faiss_on_the_cpu(monkeypatch) -> None:
    monkeypatch.setattr(retrieval_module, "gpu_count", lambda: 0)
    monkeypatch.setattr(retrieval_module, "cupy_device", lambda: None)
    r = Retriever(_flat(_vectors()), gpu="auto")
    assert (r.kind, r.engine, r.device) == ("flat", "faiss", "cpu") and isinstance(r.index, faiss.Index)


@pytest.mark.parametrize("gpu", ["cupy", "faiss"])
def test_an_absent_engine_falls_back_to_the_cpu_with_a_warning(monkeypatch, caplog, gpu: str) -> None:
    monkeypatch.setattr(retrieval_module, "gpu_count", lambda: 0)
    monkeypatch.setattr(retrieval_module, "cupy_device", lambda: None)
    with caplog.at_level(logging.WARNING, logger="serving.recommend.retrieval"):
        r = Retriever(_flat(_vectors()), gpu=gpu)
    assert (r.engine, r.device) == ("faiss", "cpu")
    assert any(f"gpu={gpu}" in m and "CPU" in m for m in caplog.messages)


def test_auto_prefers_cupy_exact_search_to_the_cpu_where_faiss_has_no_gpu(monkeypatch) -> None:
    monkeypatch.setattr(retrieval_module, "gpu_count", lambda: 0)
    monkeypatch.setattr(retrieval_module, "cupy_device", lambda: np)  # numpy standing in for CuPy
    r = Retriever(_flat(_vectors()), gpu="auto")
    assert r.kind == "exact" and r.engine == "numpy"
    assert Retriever(_flat(_vectors()), gpu="off").engine == "faiss"


def test_an_unknown_choice_is_an_error() -> None:
    with pytest.raises(ValueError, match="gpu must be"):
        Retriever(_flat(_vectors()), gpu="yes")


def test_the_setting_reads_the_new_and_the_old_variable(monkeypatch) -> None:
    from serving.runtime.settings import Settings

    assert Settings(_env_file=None).retrieval_gpu == "auto" and Settings(retrieval_gpu="cupy").retrieval_gpu == "cupy"
    monkeypatch.setenv("SERVING_FAISS_GPU", "off")
    assert Settings(_env_file=None).retrieval_gpu == "off"
    monkeypatch.setenv("SERVING_RETRIEVAL_GPU", "cupy")
    assert Settings(_env_file=None).retrieval_gpu == "cupy"


def test_the_retrieval_modules_do_not_import_cupy() -> None:
    code = "import sys, serving.recommend.retrieval; assert 'cupy' not in sys.modules, 'cupy imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.gpu
@pytest.mark.skipif(cupy_device() is None, reason="needs cupy and a CUDA device")
def test_cupy_answers_as_numpy() -> None:
    cupy = cupy_device()
    x = _vectors(100_000, 64, seed=6)
    q = _vectors(33, 64, seed=7)
    want_scores, want_ids = ExactIndex(x, np).search(q, 50)
    gpu = ExactIndex(x, cupy, chunk_rows=30_000)  # four chunks, the last a short one
    assert gpu.device == "gpu" and isinstance(gpu.vectors, cupy.ndarray)
    scores, ids = gpu.search(q, 50)
    assert isinstance(ids, np.ndarray) and isinstance(scores, np.ndarray)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-5)
    differ = ids != want_ids  # only where two items' scores are within float32 rounding of each other
    assert differ.mean() < 0.01 and np.allclose(scores[differ], want_scores[differ], atol=1e-5)
    r = Retriever(_flat(x), gpu="cupy")
    assert (r.engine, r.device) == ("cupy", "gpu")
    np.testing.assert_array_equal(r.search(q[:1], 10)[1], Retriever(_flat(x), gpu="off").search(q[:1], 10)[1])
