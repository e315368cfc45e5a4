"""bench/triton_queue.py: variant parsing, the config rewrite, one short A/B over the tiny models on a real Triton."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from bench import triton_queue as tq
from serving.contracts.model_specs import SPECS
from serving.contracts.triton_config import build_config
from tests.serving import gateway_helpers as g
from tests.serving.triton.helpers import require_tritonserver

DIN_CONFIG = text_format.MessageToString(build_config(SPECS["din"], g.spec_config()))


def test_variants_parse_to_delays_and_preferred_sizes() -> None:
    assert tq.parse_variant("shipped") == {}
    assert tq.parse_variant("din=2000/512,1024; tcn=100") == {"din": (2000, (512, 1024)), "tcn": (100, ())}
    for bad in ("din", "din=fast", "=100", "din=100/a", ";"):
        with pytest.raises(ValueError):
            tq.parse_variant(bad)
    assert tq.named_variant("waiting:din=5000", 1) == ("waiting", "din=5000")
    assert tq.named_variant("din=5000", 2) == ("v2", "din=5000")
    assert tq.named_variant("shipped", 0) == ("shipped", "shipped")
    with pytest.raises(SystemExit):
        tq.parse_args(["--variant", "a:din=1", "--variant", "a:din=2"])
    with pytest.raises(SystemExit):  # nothing would be measured: each step leaves its first 2 s out
        tq.parse_args(["--seconds", "2"])


def test_the_rewrite_changes_only_the_batching_settings() -> None:
    before = text_format.Parse(DIN_CONFIG, mc.ModelConfig())
    after = text_format.Parse(tq.with_batching(DIN_CONFIG, 5000, (512, 1024)), mc.ModelConfig())
    assert after.dynamic_batching.max_queue_delay_microseconds == 5000
    assert list(after.dynamic_batching.preferred_batch_size) == [512, 1024]
    after.dynamic_batching.CopyFrom(before.dynamic_batching)
    assert after == before
    with pytest.raises(ValueError, match="max_batch_size"):
        tq.with_batching(DIN_CONFIG, 100, (before.max_batch_size + 1,))


@pytest.mark.parametrize("same_fs", [True, False])  # hard links, or copies across file systems
def test_a_variant_repository_is_a_copy_and_the_shipped_one_stays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, same_fs: bool
) -> None:
    monkeypatch.setattr(tq, "_same_fs", lambda a, b: same_fs)
    repo = tmp_path / "repo"
    (repo / "din" / "1").mkdir(parents=True)
    (repo / "din" / "config.pbtxt").write_text(DIN_CONFIG)
    (repo / "din" / "1" / "model.onnx").write_bytes(b"onnx")
    assert tq.variant_repository(repo, {}, tmp_path) == repo
    copy = tq.variant_repository(repo, {"din": (7000, ())}, tmp_path)
    assert copy != repo and (copy / "din" / "1" / "model.onnx").read_bytes() == b"onnx"
    assert (copy / "din" / "1" / "model.onnx").stat().st_nlink == (2 if same_fs else 1)
    assert "max_queue_delay_microseconds: 7000" in (copy / "din" / "config.pbtxt").read_text()
    assert (repo / "din" / "config.pbtxt").read_text() == DIN_CONFIG
    with pytest.raises(ValueError, match="tcn"):
        tq.variant_repository(repo, {"tcn": (100, ())}, tmp_path)


@pytest.mark.triton
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_two_variants_through_the_gateway_over_triton(tmp_path: Path) -> None:
    require_tritonserver()
    repo = g.build_repository(tmp_path / "model_repository")
    art = g.build_artifacts(tmp_path / "artifacts", repo)
    out = tmp_path / "report.md"
    argv = ["--variant", "shipped", "--variant", "slow:din=20000", "--users", "1", "--seconds", "3", "--rounds", "1"]
    argv += ["--mix", "recommend=1"]  # the tiny artifacts hold no stored sales for /v1/forecast
    argv += ["--artifacts", str(art), "--repository", str(repo), "--server-cores", "none", "--load-cores", "none"]
    assert tq.main([*argv, "--out", str(out)]) == 0
    rows = [line.split("|") for line in out.read_text().splitlines() if line.startswith(("| shipped", "| slow"))]
    assert [r[1].strip() for r in rows] == ["shipped", "slow"]
    assert all(r[6].strip().startswith("0 of ") for r in rows)  # every answer checked and correct
    p50 = {r[1].strip(): float(r[4]) for r in rows}
    assert p50["slow"] > p50["shipped"] + 10  # a 20 ms queue delay on DIN shows in every recommendation
