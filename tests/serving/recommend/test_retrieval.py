"""Retrieval: the one-query path gives exactly what the batched path gives, exclusions and blocks included."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from serving.recommend.retrieval import Retriever, normalise


@pytest.fixture(scope="module")
def retriever() -> Retriever:
    vectors = normalise(np.random.default_rng(0).standard_normal((300, 8)).astype(np.float32))
    index = faiss.IndexFlatIP(8)
    index.add(vectors)
    return Retriever(index, gpu="off")


@pytest.mark.parametrize("seed", range(12))
def test_one_query_equals_the_batched_search(retriever: Retriever, seed: int) -> None:
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((1, 8)).astype(np.float32)
    k = int(rng.choice([1, 10, 200, 400]))  # 400 > items: padded with -1 / -inf
    exclude = rng.choice(300, size=int(rng.integers(0, 60)), replace=False) if seed % 3 else None
    blocked = rng.random(300) < (0.5 if seed % 2 else 0.0)  # half blocked: the search must widen
    one = retriever.search(q, k, exclude, blocked)
    # the same query twice takes the batched path; its first row is the reference
    two = retriever.search(np.repeat(q, 2, axis=0), k, exclude, blocked)
    np.testing.assert_array_equal(one[1][0], two[1][0])
    np.testing.assert_array_equal(one[0][0], two[0][0])
    assert one[1].shape == (1, k) and one[0].dtype == np.float32 and one[1].dtype == np.int64
    kept = one[1][0][one[1][0] >= 0]
    if exclude is not None:
        assert not np.isin(kept, exclude).any()
    assert not blocked[kept].any()
