"""Every gateway a test starts serves gRPC on a free port (SERVING_GRPC_PORT=0), so apps that run at the
same time, or a gateway already running on this machine, never fight over port 50051. One real redis-server
(serving/runtime/online_store/server.py) serves every test that needs the Redis online store."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from serving.runtime.online_store.server import RedisServer


@pytest.fixture(scope="session", autouse=True)
def _grpc_on_a_free_port() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SERVING_GRPC_PORT", "0")
        yield


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server for the online-store tests: one per session, on a free port."""
    with RedisServer() as server:
        yield server
