"""A real pip tritonserver over the Python-backend view of a tiny repository (one server for the module):
answers over gRPC and HTTP equal ONNX Runtime's, the ensemble answers, bad ids get an error without failing
their neighbours, and concurrent requests are batched (Triton's own metrics say so)."""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from serving.triton import TritonServer
from tests.serving.triton.helpers import require_tritonserver, wire_inputs
from tests.serving.triton.tiny import N_IDS, example, write_repository

pytestmark = pytest.mark.triton
MODELS = ("tiny", "prep", "pipeline")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    require_tritonserver()
    root = tmp_path_factory.mktemp("triton")
    repo = write_repository(root / "model_repository")
    with TritonServer(repo, build_dir=root / "build", instance_count=1) as running:
        yield running


@pytest.fixture(scope="module")
def reference(server: TritonServer) -> ort.InferenceSession:
    """ONNX Runtime on the file Triton serves (version 2: the config's policy is latest:1)."""
    return ort.InferenceSession(str(server.repository / "tiny" / "2" / "model.onnx"))


def infer_grpc(url: str, arrays: dict[str, np.ndarray], model: str = "tiny") -> dict[str, np.ndarray]:
    with grpcclient.InferenceServerClient(url) as client:
        result = client.infer(model, wire_inputs(grpcclient, arrays))
        return {"embedding": result.as_numpy("embedding"), "score": result.as_numpy("score")}


def expected(session: ort.InferenceSession, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    embedding, score = session.run(["embedding", "score"], arrays)
    return {"embedding": embedding, "score": score[:, None]}  # score travels as [batch, 1] (dims [1])


def test_server_and_every_model_are_ready(server: TritonServer) -> None:
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        assert client.is_server_ready()
        assert all(client.is_model_ready(m) for m in MODELS)
        config = client.get_model_config("tiny").config
    assert config.backend == "python"
    assert [t.name for t in config.input] == ["features", "item_ids", "hist"]
    assert server.models == sorted(MODELS)
    assert server.startup_s is not None and server.startup_s < 60


@pytest.mark.parametrize(("batch", "hist_len"), [(1, 1), (3, 7), (16, 2)])
def test_grpc_answers_equal_onnxruntime(
    server: TritonServer, reference: ort.InferenceSession, batch: int, hist_len: int
) -> None:
    arrays = example(batch, hist_len, seed=batch)
    got, want = infer_grpc(server.grpc_url, arrays), expected(reference, arrays)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-6, atol=1e-6)


def test_http_answers_equal_onnxruntime(server: TritonServer, reference: ort.InferenceSession) -> None:
    arrays = example(4, 3, seed=7)
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        result = client.infer("tiny", wire_inputs(httpclient, arrays))
    finally:
        client.close()
    want = expected(reference, arrays)
    np.testing.assert_allclose(result.as_numpy("score"), want["score"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(result.as_numpy("embedding"), want["embedding"], rtol=1e-6, atol=1e-6)


def test_ensemble_runs_the_python_model_then_the_onnx_model(
    server: TritonServer, reference: ort.InferenceSession
) -> None:
    arrays = example(2, 4, seed=3)
    raw = {"raw": arrays["features"], "item_ids": arrays["item_ids"], "hist": arrays["hist"]}
    inputs = [i for i in wire_inputs(grpcclient, raw)]
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        score = client.infer("pipeline", inputs).as_numpy("score")
    want = expected(reference, {**arrays, "features": arrays["features"] * 2.0})["score"]  # prep doubles them
    np.testing.assert_allclose(score, want, rtol=1e-6, atol=1e-6)


def test_a_bad_request_gets_an_error_and_its_batch_neighbours_do_not(
    server: TritonServer, reference: ort.InferenceSession
) -> None:
    good = [example(1, 5, seed=s) for s in range(6)]
    bad = example(1, 5, seed=99)
    bad["item_ids"][:] = N_IDS + 50  # past the embedding table: ORT's Gather refuses it

    with ThreadPoolExecutor(len(good) + 1) as pool:  # sent together, so they can share a batch
        futures = [pool.submit(infer_grpc, server.grpc_url, a) for a in [*good, bad]]
        with pytest.raises(InferenceServerException) as err:
            futures[-1].result()
        answers = [f.result() for f in futures[:-1]]

    assert err.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "tiny" in err.value.message() and "indices" in err.value.message()
    for arrays, got in zip(good, answers, strict=True):
        np.testing.assert_allclose(got["score"], expected(reference, arrays)["score"], rtol=1e-6, atol=1e-6)


def counters(server: TritonServer, model: str = "tiny") -> tuple[int, int]:
    """(inferences, executions) of a model from Triton's Prometheus metrics endpoint."""
    text = urllib.request.urlopen(server.metrics_url, timeout=5).read().decode()

    def value(metric: str) -> int:
        m = re.search(rf'^{metric}{{model="{model}",version="\d+"}} (\d+)', text, re.M)
        assert m, f"{metric} for {model} not in the metrics"
        return int(m.group(1))

    return value("nv_inference_count"), value("nv_inference_exec_count")


def test_concurrent_requests_are_batched(server: TritonServer, reference: ort.InferenceSession) -> None:
    # 32 clients x 4 single-row requests; two history lengths, so batches mix shapes (one ORT call per shape).
    requests = [example(1, 5 if i % 2 else 8, seed=100 + i) for i in range(128)]
    count0, exec0 = counters(server)

    def client_loop(chunk: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        with grpcclient.InferenceServerClient(server.grpc_url) as client:
            return [{"score": client.infer("tiny", wire_inputs(grpcclient, a)).as_numpy("score")} for a in chunk]

    with ThreadPoolExecutor(32) as pool:
        chunks = [requests[i::32] for i in range(32)]
        results = [r for chunk_results in pool.map(client_loop, chunks) for r in chunk_results]
    count1, exec1 = counters(server)

    order = [a for i in range(32) for a in requests[i::32]]
    for arrays, got in zip(order, results, strict=True):
        np.testing.assert_allclose(got["score"], expected(reference, arrays)["score"], rtol=1e-6, atol=1e-6)
    inferences, executions = count1 - count0, exec1 - exec0
    assert inferences == 128
    assert executions < inferences, f"no batching: {executions} executions for {inferences} inferences"


def test_log_streams_to_a_file(server: TritonServer) -> None:
    text = Path(server.log_path).read_text()
    assert "successfully loaded 'tiny'" in text
