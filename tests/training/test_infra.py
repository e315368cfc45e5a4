"""Checkpoint round trip (weights_only-safe), reports, early stopping, fingerprints."""

import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from training.checkpoint import config_from_dict, load_checkpoint, save_checkpoint
from training.common import fingerprint
from training.report import format_table, write_report
from training.tasks.base import EarlyStopping


@dataclass
class _Cfg:
    dim: int = 4
    hidden: tuple[int, ...] = (8, 4)


def test_checkpoint_roundtrip_is_weights_only(tmp_path):
    model = torch.nn.Linear(3, 2)
    path = save_checkpoint(
        tmp_path / "m.pt",
        model_name="m",
        config=_Cfg(),
        state_dict=model.state_dict(),
        metrics={"auc": np.float32(0.5)},
        data_fingerprint="abc",
    )
    ck = load_checkpoint(path)  # torch.load(weights_only=True) inside
    assert ck["model"] == "m" and ck["data_fingerprint"] == "abc"
    assert config_from_dict(_Cfg, ck["config"]) == _Cfg()
    assert ck["metrics"]["auc"] == pytest.approx(0.5)
    assert torch.equal(ck["state_dict"]["weight"], model.weight)


def test_missing_checkpoint_names_the_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m training train"):
        load_checkpoint(tmp_path / "nope.pt")


def test_report_and_table(tmp_path):
    p = write_report(tmp_path, "x", {"auc": np.float64(0.75), "rows": [1, 2]})
    body = json.loads(p.read_text())
    assert body["auc"] == 0.75 and body["model"] == "x"
    table = format_table([{"model": "a", "auc": 0.5}, {"model": "b", "auc": 0.25}])
    assert table.splitlines()[0] == "| model | auc |" and "0.2500" in table


class _Weights(torch.nn.Module):
    def __init__(self, value: float):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([value]))


def test_early_stopping_keeps_best_state():
    es = EarlyStopping(patience=2, mode="max")
    assert not es.update(0.5, _Weights(1.0), epoch=0)
    assert not es.update(0.4, _Weights(2.0), epoch=1)
    assert es.update(0.45, _Weights(3.0), epoch=2)
    assert es.best == 0.5 and es.best_epoch == 0 and es.best_state["w"].item() == 1.0


@pytest.mark.parametrize(
    ("mode", "metrics", "best"), [("max", [0.3, 0.9, 0.5, 0.4], 1), ("min", [2.0, 1.0, 0.5, 0.7, 0.9], 2)]
)
def test_early_stopping_restores_the_best_epochs_weights(mode, metrics, best):
    """One model trained in place: after stopping, restore() gives back the weights it had at the best epoch."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    es = EarlyStopping(patience=2, mode=mode)
    snapshots, stopped_at = [], None
    for epoch, metric in enumerate(metrics):
        loss = model(torch.randn(8, 3)).pow(2).sum()  # changes the weights and the BatchNorm statistics
        opt.zero_grad()
        loss.backward()
        opt.step()
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        if es.update(metric, model, epoch):
            stopped_at = epoch
            break
    assert stopped_at == best + 2 and es.best_epoch == best and es.improved is False
    assert not torch.equal(model[0].weight, snapshots[best]["0.weight"])  # training moved on after the best epoch
    assert es.restore(model)
    for name, value in model.state_dict().items():
        assert torch.equal(value, snapshots[best][name]), name


def test_early_stopping_restore_before_any_update_leaves_the_model():
    model = _Weights(4.0)
    assert not EarlyStopping().restore(model) and model.w.item() == 4.0


def test_fingerprint_sees_content_and_dtype():
    a = np.arange(5, dtype=np.int32)
    assert fingerprint(a) == fingerprint(a.copy())
    assert fingerprint(a) != fingerprint(a.astype(np.int64))
    assert fingerprint(np.array(["x", "y"], dtype=object)) != fingerprint(np.array(["x", "z"], dtype=object))


def test_progress_bars_are_quiet_when_stderr_is_not_a_terminal(monkeypatch):
    import io

    from training import common

    monkeypatch.delenv("SHOPSERVE_NO_PROGRESS", raising=False)
    monkeypatch.setattr(common.sys, "stderr", io.StringIO())  # a log file, CI
    assert common.progress(range(3), desc="x").disable

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(common.sys, "stderr", Terminal())
    assert not common.progress(range(3), desc="x").disable
