"""Slow clients against a real gateway process: a connection whose request headers are not complete within
SERVING_HEADER_TIMEOUT_S (counted from the connection, or from the first byte of a further request on a
kept-alive one) gets 408 and is closed; trickling bytes does not extend the deadline; normal requests and a
client that sends its headers in time are not affected."""

from __future__ import annotations

import select
import socket
import time

import httpx
import pytest

from tests.serving import gateway_process as gp

pytestmark = [pytest.mark.timeout(90), pytest.mark.slow]

TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    root = gp.build(tmp_path_factory.mktemp("slow_clients"))
    with gp.gateway(root, header_timeout_s=TIMEOUT_S) as gateway:
        gateway.wait_ready()
        yield gateway


def _connect(gw: gp.Gateway) -> socket.socket:
    return socket.create_connection(("127.0.0.1", gw.port), timeout=TIMEOUT_S + 5)  # recv gives up past this


def _read_answer(sock: socket.socket) -> bytes:
    """One whole HTTP answer (headers and a Content-Length body)."""
    data = b""
    while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < _length(data):
        chunk = sock.recv(65536)
        assert chunk, f"closed after {data!r}"
        data += chunk
    return data


def _length(data: bytes) -> int:
    head = data.partition(b"\r\n\r\n")[0].lower()
    return next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.startswith(b"content-length:"))


def _read_until_closed(sock: socket.socket) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and when it closed (perf_counter)."""
    data = b""
    while chunk := sock.recv(65536):  # socket.timeout (a test failure) if the server holds the connection
        data += chunk
    return data, time.perf_counter()


def test_partial_headers_are_cut_off(gw):
    with _connect(gw) as sock:
        t0 = time.perf_counter()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: gw\r\nX-Slow: ")  # never the blank line
        data, closed = _read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 408 "), data
    assert TIMEOUT_S * 0.8 <= closed - t0 <= TIMEOUT_S + 1.5, closed - t0


def test_a_silent_connection_is_cut_off(gw):
    with _connect(gw) as sock:
        t0 = time.perf_counter()
        data, closed = _read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 408 "), data
    assert TIMEOUT_S * 0.8 <= closed - t0 <= TIMEOUT_S + 1.5, closed - t0


def test_trickling_bytes_does_not_extend_the_deadline(gw):
    request = b"GET /healthz HTTP/1.1\r\nHost: gw\r\nX-Slow: " + b"x" * 200
    with _connect(gw) as sock:
        t0 = time.perf_counter()
        for byte in request:  # a byte every 50 ms: ~12 s for all of them, far past the deadline
            if select.select([sock], [], [], 0.05)[0]:
                break  # the server answered or closed
            sock.sendall(bytes([byte]))
        data, closed = _read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 408 "), data
    assert TIMEOUT_S * 0.8 <= closed - t0 <= TIMEOUT_S + 1.5, closed - t0


def test_a_further_request_on_a_kept_alive_connection_has_its_own_deadline(gw):
    with _connect(gw) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
        first = _read_answer(sock)
        assert first.startswith(b"HTTP/1.1 200 "), first
        time.sleep(TIMEOUT_S * 1.5)  # idle between requests: uvicorn's keep-alive timeout (5 s) applies, not ours
        t0 = time.perf_counter()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHo")
        data, closed = _read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 408 "), data
    assert TIMEOUT_S * 0.8 <= closed - t0 <= TIMEOUT_S + 1.5, closed - t0


def test_requests_in_time_are_served(gw):
    with _connect(gw) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n")
        time.sleep(TIMEOUT_S * 0.5)
        sock.sendall(b"\r\n")  # the headers complete within the deadline
        answer = _read_answer(sock)
        assert answer.startswith(b"HTTP/1.1 200 "), answer
    with httpx.Client(base_url=gw.base, timeout=5) as client:  # several requests on one connection
        for _ in range(3):
            assert client.get("/healthz").status_code == 200
            time.sleep(TIMEOUT_S * 0.6)  # more than the deadline in total: each request has its own
    body = {"history": ["i1"], "item_ids": ["i2", "i3"]}
    assert httpx.post(f"{gw.base}/v1/rank", json=body, timeout=5).status_code == 200
