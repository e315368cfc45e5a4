"""`python -m bench --profile smoke` end to end on the tiny models: every server, the load tests, Triton alone,
the micro-benchmarks and the report. The figures mean nothing; that every part runs and reports does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.servers import ROOT
from tests.bench.helpers import write_tiny_checkpoints
from tests.serving import gateway_helpers as g
from tests.serving.triton.helpers import require_tritonserver

pytestmark = [pytest.mark.slow, pytest.mark.triton, pytest.mark.timeout(600)]  # ~90 s on 2 cores


def test_smoke_profile_end_to_end(tmp_path: Path) -> None:
    require_tritonserver()
    repo = g.build_repository(tmp_path / "model_repository")
    art = write_tiny_checkpoints(g.build_artifacts(tmp_path / "artifacts", repo))
    results = tmp_path / "results"
    cmd = [sys.executable, "-m", "bench", "--profile", "smoke", "--artifacts", str(art), "--repository", str(repo)]
    cmd += ["--results", str(results), "--no-readme", "--machine", "test box"]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=580)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (md,) = results.glob("test-box-*.md")
    text = md.read_text()
    for section in ("## Goals", "## Load test", "## Micro-batching on vs off", "## Triton alone", "## FAISS", "## DIN"):
        assert section in text
    body = json.loads(md.with_suffix(".json").read_text())
    assert set(body["load"]) == {"naive", "gateway_embedded", "gateway_triton"}
    assert body["meta"]["errors"] == {}
    assert {r["model"] for r in body["triton_direct"]} == {"din", "user_tower", "intent_bert"}
    assert set(body["plots"]) >= {"latency", "faiss", "din", "bert"}
