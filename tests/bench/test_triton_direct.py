"""bench/triton_direct.py against a real local tritonserver over the tiny models (Triton alone, gateway-shaped)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench import servers, triton_direct
from tests.serving import gateway_helpers as g
from tests.serving.triton.helpers import require_tritonserver

pytestmark = [pytest.mark.triton, pytest.mark.slow, pytest.mark.timeout(180)]


def test_triton_alone_at_fixed_concurrency(tmp_path: Path) -> None:
    require_tritonserver()
    repo = g.build_repository(tmp_path / "model_repository")
    art = g.build_artifacts(tmp_path / "artifacts", repo)
    ports = servers.TritonPorts.pick()
    tri = servers.triton(ports, tmp_path / "triton.log", repository=repo, build_dir=tmp_path / "build", cores=None)
    out = tmp_path / "direct.csv"
    cmd = [sys.executable, "-m", "bench.triton_direct", "--url", f"127.0.0.1:{ports.grpc}", "--artifacts", str(art)]
    cmd += ["--repository", str(repo), "--models", "din,intent_bert", "--concurrency", "1,2", "--seconds", "0.5"]
    cmd += ["--warmup", "0.2", "--din-rows", "20", "--tool", "tritonclient", "--out", str(out)]
    with tri:
        r = subprocess.run(cmd, cwd=servers.ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = triton_direct.read_rows(out)
    assert [(x.model, x.concurrency) for x in rows] == [("din", 1), ("din", 2), ("intent_bert", 1), ("intent_bert", 2)]
    assert all(x.tool == "tritonclient" and x.requests > 0 and x.p50_ms > 0 for x in rows)
    assert rows[0].rows == 20 and rows[0].rows_per_s == pytest.approx(rows[0].rps * 20)
