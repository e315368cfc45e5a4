"""Both recommendation tasks run unchanged under `torchrun --nproc_per_node 2` (gloo, CPU)."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from training.checkpoint import config_from_dict, load_checkpoint
from training.models.din import DINConfig, DINModel
from training.models.two_tower import TwoTower, TwoTowerConfig

REPO = Path(__file__).resolve().parents[2]

# Each rank trains on the same small fixture log (injected into the task's data cache, so the test does
# not depend on the generator's speed), then leaves a marker file behind.
SCRIPT = textwrap.dedent(
    """
    import os, sys
    import torch.distributed
    from pathlib import Path
    from tests.training.test_rec_samples import tiny_log
    from training.tasks import din, rec_samples, two_tower
    from training.tasks.base import TrainArgs

    out = Path(sys.argv[1])
    log = tiny_log(n_users=60, n_items=50, per_user=40)
    rec_samples._DATA_CACHE[("tiny", 0, None)] = (log, None)
    args = TrainArgs(profile="tiny", out_dir=out, device="cpu", max_epochs=2)
    reports = [two_tower.run(args), din.run(args)]
    rank = os.environ["RANK"]
    assert (rank == "0") == all(reports), "only rank 0 evaluates and reports"
    (out / f"rank{rank}.done").write_text(os.environ["WORLD_SIZE"])
    torch.distributed.destroy_process_group()
    """
)


@pytest.mark.slow
def test_two_processes_train_and_rank0_writes_checkpoints(tmp_path):
    script = tmp_path / "ddp_entry.py"
    script.write_text(SCRIPT)
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "PYTHONPATH": str(REPO), "SHOPSERVE_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", str(script), str(tmp_path)]
    # Own session, so a hang kills torchrun's workers too, not only torchrun.
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        _, err = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
    assert proc.returncode == 0, err[-4000:]
    assert (tmp_path / "rank0.done").read_text() == "2" and (tmp_path / "rank1.done").read_text() == "2"
    for name, cfg_cls, model_cls in (("two_tower", TwoTowerConfig, TwoTower), ("din", DINConfig, DINModel)):
        ck = load_checkpoint(tmp_path / "checkpoints" / f"{name}.pt")
        model = model_cls(config_from_dict(cfg_cls, ck["config"]))
        model.load_state_dict(ck["state_dict"])  # export rebuilds it from the checkpoint alone
        assert (tmp_path / "reports" / f"{name}.json").is_file()
