"""`python -m bench.gpu --dry-run`: the GPU machine's script, every step on the CPU at toy sizes, on the tiny
models, so the script is known to run before a GPU is lent. The figures mean nothing; that every step runs,
reports and is judged as the GPU run would be does. The goals table's judgement is tested on made-up figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.gpu.report import GPU_END, GPU_START, goals, update_readme
from bench.servers import ROOT
from tests.bench.helpers import write_tiny_checkpoints
from tests.serving import gateway_helpers as g


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_dry_run_end_to_end(tmp_path: Path) -> None:
    repo = g.build_repository(tmp_path / "model_repository")
    art = write_tiny_checkpoints(g.build_artifacts(tmp_path / "artifacts", repo))
    results = tmp_path / "results"
    cmd = [sys.executable, "-m", "bench.gpu", "--dry-run", "--artifacts", str(art), "--repository", str(repo)]
    cmd += ["--results", str(results), "--sizes", "5000", "--machine", "test box"]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=580)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (md,) = results.glob("test-box-*.md")
    body = json.loads(md.with_suffix(".json").read_text())
    assert body["meta"]["errors"] == {}
    res = body["results"]
    models = {row["model"] for row in res["parity"]}
    assert models >= {"user_tower", "item_tower", "din", "intent_bert", "tcn"}
    assert all(row["fp32"]["ok"] for row in res["parity"]), res["parity"]
    # The fixture's ONNX files are not export's from these checkpoints, and there is no TCN checkpoint.
    assert {row["source"] for row in res["parity"]} == {"checkpoint, exported here", "tiny random model"}
    assert set(res["gateway"]["load"]) == {"gateway_embedded"} and set(res["gateway"]["fixed"]) == {
        "batching_on",
        "batching_off",
    }
    exact = [row for row in res["retrieval"] if row["method"] == "exact top-k"]
    assert exact and exact[0]["equal_to_faiss_flat"] and exact[0]["items"] == 5000
    speed = {row["model"]: row for row in res["training"]["speed"]}
    assert set(speed) == {"din", "two_tower", "tcn"} and all(row["samples_per_s"] > 0 for row in speed.values())
    assert res["training"]["ddp"]["ok"] and res["training"]["ddp"]["backend"] == "gloo"
    assert res["pytest"]["exit"] == 0 and "skipped" in res["pytest"]["summary"]
    assert all(row["met"] == "not judged (dry run)" for row in body["goals"])
    text = md.read_text()
    for section in (
        "## Goals",
        "## Export parity",
        "## Gateway",
        "## Retrieval",
        "## Training speed",
        "## pytest -m gpu",
    ):
        assert section in text
    assert md.with_suffix(".png").is_file()


def _results(rps: float, p99: float, din: float, bert: float, items: int, ms: float, on: float, off: float) -> dict:
    curve = [{"users": 1, "rps": rps / 4, "p99_ms": 2.0}, {"users": 32, "rps": rps, "p99_ms": p99}]
    return {
        "gateway": {
            "load": {"gateway_embedded": {"curve": curve}},
            "fixed": {"batching_on": {"rps": on}, "batching_off": {"rps": off}},
        },
        "parity": [
            {"model": "din", "fp32": {"ok": True, "provider": "CUDAExecutionProvider", "rows_per_s_at_1024": din}},
            {
                "model": "intent_bert",
                "fp16": {"ok": True, "provider": "CUDAExecutionProvider", "rows_per_s_at_64": bert},
            },
        ],
        "retrieval": [
            {"method": "exact top-k", "items": items, "batch": 64, "ms_per_batch": ms, "device": "gpu (cupy)"}
        ],
    }


def test_goals_are_judged_on_the_figures() -> None:
    good = [row["met"] for row in goals(_results(2500, 9.0, 2e6, 8000, 10_000_000, 3.0, 900, 300))]
    assert good == ["yes"] * 5
    bad = goals(_results(2500, 12.0, 5e5, 4000, 10_000_000, 7.0, 300, 300))
    assert [row["met"] for row in bad] == ["no"] * 5
    assert bad[0]["measured"].startswith("625 req/s")  # the fastest step inside p99 <= 10 ms, not the peak
    small = goals(_results(2500, 9.0, 2e6, 8000, 1_000_000, 1.0, 900, 300))[3]
    assert small["met"] == "no" and "1,000,000 items" in small["measured"]  # 10M was not measured


def test_the_readme_gets_the_goals_between_its_markers(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{GPU_START}\nNo GPU run yet.\n{GPU_END}\nrest\n")
    md = tmp_path / "bench" / "results" / "nvidia-h200-2026-12-03.md"
    meta = {"command": "python -m bench.gpu --build", "facts": {"gpu": "NVIDIA H200", "cpus": 16}, "date": "2026-12-03"}
    update_readme(readme, md, _results(2500, 9.0, 2e6, 8000, 10_000_000, 3.0, 900, 300), {**meta, "dry_run": False})
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("rest\n") and "No GPU run yet" not in text
    assert "(bench/results/nvidia-h200-2026-12-03.md)" in text and text.count("| yes |") == 5
