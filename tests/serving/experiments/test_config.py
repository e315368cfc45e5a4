"""The experiment's configuration and assignment (serving/contracts/experiments.py): stable across processes,
shared by weight, and every bad configuration refused when the settings are read, naming the field."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from serving.contracts.experiments import MAX_CANDIDATES, ExperimentConfig, unit_hash
from serving.recommend.schemas import MAX_CANDIDATES as REQUEST_MAX_CANDIDATES
from serving.runtime.settings import Settings

TWO = {"name": "depth", "arms": [{"name": "control", "weight": 1}, {"name": "deep", "weight": 3, "candidates": 400}]}


def test_assignment_is_stable_across_processes_and_follows_the_weights():
    cfg = ExperimentConfig.model_validate(TWO)
    users = list(range(20_000))
    arms = [cfg.assign(u).name for u in users]
    assert arms == [cfg.assign(u).name for u in users]
    assert abs(arms.count("deep") / len(users) - 0.75) < 0.015
    assert cfg.assign(123) == cfg.assign("123")  # ids as text, as the id maps treat them
    # Another interpreter (another PYTHONHASHSEED): the same arms; Python's salted hash() would differ.
    code = (
        "import json, sys; from serving.contracts.experiments import ExperimentConfig as E;"
        f"c = E.model_validate({TWO!r}); print(json.dumps([c.assign(u).name for u in range(500)]))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert json.loads(out.stdout) == arms[:500]
    # Pinned: a change of the hash would move every user of a running experiment to another arm.
    assert unit_hash("depth", 10000017) == pytest.approx(0.2682197214941278, abs=1e-15)


def test_zero_weight_arms_get_no_users_and_a_new_name_reshuffles():
    cfg = ExperimentConfig.model_validate({"name": "x", "arms": [{"name": "a", "weight": 0}, {"name": "b"}]})
    assert {cfg.assign(u).name for u in range(1000)} == {"b"}
    other = ExperimentConfig.model_validate({**TWO, "name": "depth-2"})
    moved = sum(ExperimentConfig.model_validate(TWO).assign(u) != other.assign(u) for u in range(2000))
    assert 400 < moved < 1100  # independent draws: 2 * 0.25 * 0.75 = 37.5 % change arm


def test_settings_read_json_text_a_file_or_the_environment(tmp_path, monkeypatch):
    assert Settings(experiment=json.dumps(TWO)).experiment.arms[1].candidates == 400
    path = tmp_path / "experiment.json"
    path.write_text(json.dumps(TWO))
    assert Settings(experiment=str(path)).experiment.name == "depth"
    monkeypatch.setenv("SERVING_EXPERIMENT", json.dumps(TWO))
    assert Settings().experiment.rankers == ("din",)
    monkeypatch.setenv("SERVING_EXPERIMENT", "")
    assert Settings().experiment is None


BAD = [
    ("{not json", "not valid JSON"),
    ("missing.json", "neither JSON text nor a readable JSON file: missing.json"),
    ('["a"]', "expected a JSON object"),
    ({"name": "x", "arms": []}, "experiment.arms\n  Tuple should have at least 1 item"),
    ({"name": "x", "arms": [{"name": "a", "wieght": 2}]}, "experiment.arms.0.wieght\n  Extra inputs are not permitted"),
    ({"name": "x", "arms": [{"name": "a", "weight": 0}]}, "at least one arm needs a weight > 0"),
    ({"name": "x", "arms": [{"name": "a"}, {"name": "a"}]}, "arm names must differ (the shadow's too): a"),
    ({"name": "x", "arms": [{"name": "a"}], "shadow": {"name": "a", "share": 0.1}}, "arm names must differ"),
    ({"name": "x y", "arms": [{"name": "a"}]}, "experiment.name\n  String should match pattern"),
    ({"name": "x", "arms": [{"name": "a", "candidates": 5000}]}, "experiment.arms.0.candidates\n  Input should be"),
    ({"name": "x", "arms": [{"name": "a"}], "shadow": {"name": "s"}}, "experiment.shadow.share\n  Field required"),
    ({"name": "x", "arms": [{"name": "a"}], "shadow": {"name": "s", "share": 0}}, "experiment.shadow.share"),
]


@pytest.mark.parametrize(("value", "message"), BAD, ids=[m[:30] for _, m in BAD])
def test_a_bad_experiment_is_refused_when_the_settings_are_read(value, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValidationError) as err:
        Settings(experiment=value if isinstance(value, str) else json.dumps(value))
    assert message in str(err.value), str(err.value)


def test_the_arm_depth_limit_is_the_requests():
    assert MAX_CANDIDATES == REQUEST_MAX_CANDIDATES
