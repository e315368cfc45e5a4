"""A real redis-server for the online-store tests: one per session, on a free port
(serving/runtime/online_store/server.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from serving.runtime.online_store.server import RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server
