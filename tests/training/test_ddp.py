"""Both recommendation tasks run unchanged under torchrun (gloo, CPU): two processes of one launcher, and two
launchers as two nodes would run them (`--nnodes 2 --node_rank i` against one rendezvous address, here
localhost), the README's multi-node command."""

import contextlib
import os
import signal
import socket
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _launchers(mode: str, script: Path, out: Path) -> list[list[str]]:
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    if mode == "one_node":
        return [[torchrun, "--standalone", "--nproc_per_node", "2", str(script), str(out)]]
    rendezvous = ["--nnodes", "2", "--nproc_per_node", "1", "--master_addr", "127.0.0.1"]
    rendezvous += ["--master_port", str(_free_port())]
    return [[torchrun, *rendezvous, "--node_rank", str(i), str(script), str(out)] for i in range(2)]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["one_node", "two_nodes"])
def test_two_processes_train_and_rank0_writes_checkpoints(tmp_path, mode):
    script = tmp_path / "ddp_entry.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO), "SHOPSERVE_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    # Own sessions, so a hang kills torchrun's workers too, not only torchrun.
    procs = [
        subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        for cmd in _launchers(mode, script, tmp_path)
    ]
    errors = []
    for proc in procs:
        try:
            _, err = proc.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            for p in procs:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
            _, err = proc.communicate()
        errors.append(err)
    assert all(p.returncode == 0 for p in procs), "\n".join(e[-3000:] for e in errors)
    assert (tmp_path / "rank0.done").read_text() == "2" and (tmp_path / "rank1.done").read_text() == "2"
    for name, cfg_cls, model_cls in (("two_tower", TwoTowerConfig, TwoTower), ("din", DINConfig, DINModel)):
        ck = load_checkpoint(tmp_path / "checkpoints" / f"{name}.pt")
        model = model_cls(config_from_dict(cfg_cls, ck["config"]))
        model.load_state_dict(ck["state_dict"])  # export rebuilds it from the checkpoint alone
        assert (tmp_path / "reports" / f"{name}.json").is_file()
