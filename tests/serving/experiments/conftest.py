"""Tiny gateway files with a second DIN (`din_b`, other weights) for the experiment tests, and a real redis-server
(serving/runtime/online_store/server.py), one per session on a free port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from serving.runtime.online_store.server import RedisServer
from tests.serving import gateway_helpers as g


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("experiments")
    repo = g.build_repository(root / "model_repository")
    g.add_din(repo, scale=3.0, name="din_b")  # two versions of DIN: the same tensors, other scores
    g.build_artifacts(root / "artifacts", repo)
    return root
