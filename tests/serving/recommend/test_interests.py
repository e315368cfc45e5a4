"""Multi-interest retrieval: K searches merged by each item's best score equal ranking by the max score."""

import faiss
import numpy as np

from serving.recommend.interests import merge_best, search_interests
from serving.recommend.retrieval import Retriever


def test_merge_keeps_each_items_best_score_in_score_order():
    scores = np.array([[0.9, 0.5, 0.1], [0.8, 0.7, -np.inf]], np.float32)
    ids = np.array([[4, 2, 7], [2, 9, -1]])
    s, i = merge_best(scores, ids, 4)
    assert i.tolist() == [[4, 2, 9, 7]]
    np.testing.assert_allclose(s, [[0.9, 0.8, 0.7, 0.1]])
    s, i = merge_best(scores, ids, 6)  # fewer distinct items than k: padded like Retriever.search
    assert i.tolist() == [[4, 2, 9, 7, -1, -1]] and np.isneginf(s[0, 4:]).all()


def test_search_over_interests_equals_an_exhaustive_max_over_the_user_vectors():
    rng = np.random.default_rng(0)
    items = rng.normal(size=(300, 8)).astype(np.float32)
    items /= np.linalg.norm(items, axis=1, keepdims=True)
    flat = faiss.IndexFlatIP(8)
    flat.add(items)
    index = Retriever(flat)
    users = rng.normal(size=(1, 3, 8)).astype(np.float32)
    users /= np.linalg.norm(users, axis=-1, keepdims=True)
    seen = np.array([5, 17])
    blocked = np.zeros(300, bool)
    blocked[[1, 2, 3]] = True
    best = (items @ users[0].T).max(axis=1)
    best[seen] = best[blocked] = -np.inf
    want = np.argsort(-best, kind="stable")[:20]
    scores, ids = search_interests(index, users, 20, seen, blocked)
    assert ids[0].tolist() == want.tolist()
    np.testing.assert_allclose(scores[0], best[want], rtol=1e-5)
    # One vector ([1, dim] or [1, 1, dim]) is the plain search.
    one = users[:, :1]
    assert np.array_equal(
        search_interests(index, one, 20, seen, blocked)[1], index.search(one[0], 20, seen, blocked)[1]
    )


class _CountingGpu:
    """The same FAISS index posing as a GPU engine (none here): counts calls to check the batched branch."""

    device = "gpu"

    def __init__(self, inner: Retriever):
        self.inner, self.calls = inner, 0

    def search(self, queries, k, exclude=None, blocked=None):
        self.calls += 1
        return self.inner.search(queries, k, exclude, blocked)


def test_cpu_searches_one_query_at_a_time_a_gpu_one_batch_with_the_same_answer():
    rng = np.random.default_rng(1)
    items = rng.normal(size=(200, 8)).astype(np.float32)
    flat = faiss.IndexFlatIP(8)
    flat.add(items / np.linalg.norm(items, axis=1, keepdims=True))
    cpu = Retriever(flat, gpu="off")
    users = rng.normal(size=(1, 4, 8)).astype(np.float32)
    gpu = _CountingGpu(cpu)
    on_gpu = search_interests(gpu, users, 15, np.array([3]))
    assert gpu.calls == 1
    assert np.array_equal(on_gpu[1], search_interests(cpu, users, 15, np.array([3]))[1])
