"""A run killed mid-training resumes from its checkpoint and ends where an unbroken run ends."""

import json
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import start_warm

ARGS = ["task=unq", "beta=5", "seed=2", "trainer.max_epochs=10"]


def start(run_dir: Path, *extra: str) -> subprocess.Popen:
    return start_warm("train.py", *ARGS, *extra, f"hydra.run.dir={run_dir}")


def kill_once_written(proc: subprocess.Popen, checkpoint: Path) -> None:
    """SIGKILL the process as soon as its first checkpoint exists (or when it ends)."""
    deadline = time.time() + 300
    while not checkpoint.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


# Each engine checkpoints after every epoch: the batched one (MLP runs, engine=auto) its group's
# state, Lightning's (engine=lightning, and every image run) its own.
ENGINES = [("engine=auto", "batched_group.ckpt"), ("engine=lightning", "last.ckpt")]


@pytest.mark.slow  # 3 train.py processes: ~25 s of CPU
@pytest.mark.parametrize("engine, checkpoint", ENGINES, ids=["batched", "lightning"])
def test_sigkill_then_same_command_resumes_and_matches_an_unbroken_run(tmp_path, engine, checkpoint):
    killed_dir, unbroken_dir = tmp_path / "killed", tmp_path / "unbroken"
    kill_once_written(start(killed_dir, engine), killed_dir / "checkpoints" / checkpoint)
    status = json.loads((killed_dir / "results.json").read_text())["status"]
    if status == "complete":
        pytest.skip("the run finished before it could be killed")
    assert status == "running"  # a killed run never claims completion

    resumed = start(killed_dir, engine)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    unbroken = start(unbroken_dir, engine)
    assert unbroken.wait(timeout=300) == 0, unbroken.stderr.read()

    after = json.loads((killed_dir / "results.json").read_text())
    reference = json.loads((unbroken_dir / "results.json").read_text())
    assert after["status"] == "complete" and after.get("resumed") is True
    # β, lr, weights, optimizer state and batch order all continue where they were.
    assert after["curve"]["beta"] == reference["curve"]["beta"]
    assert after["curve"]["redundancy_bits"] == pytest.approx(reference["curve"]["redundancy_bits"], abs=1e-5)
    assert after["redundancy_bits"] == pytest.approx(reference["redundancy_bits"], abs=1e-5)
    # The CSV log keeps every epoch, from before and after the kill.
    log = pd.read_csv(killed_dir / "csv" / "metrics.csv")
    assert list(log["epoch"]) == list(range(10))


SWEEP = ["-m", "task=rdnxor", "seed=0,1", "trainer.max_epochs=8", "hydra.launcher.n_jobs=1", "hydra.sweep.subdir=s${seed}"]


def sweep(sweep_dir: Path) -> subprocess.Popen:
    return start_warm("train.py", *SWEEP, f"hydra.sweep.dir={sweep_dir}")


@pytest.mark.slow  # 3 train.py processes: ~24 s of CPU
def test_a_killed_batched_sweep_resumes_its_group_and_matches_an_unbroken_one(tmp_path):
    killed_dir, unbroken_dir = tmp_path / "killed", tmp_path / "unbroken"
    checkpoint = killed_dir / "s0" / "checkpoints" / "batched_group.ckpt"
    kill_once_written(sweep(killed_dir), checkpoint)
    statuses = [json.loads((killed_dir / s / "results.json").read_text())["status"] for s in ("s0", "s1")]
    if statuses == ["complete", "complete"]:
        pytest.skip("the sweep finished before it could be killed")
    assert statuses == ["running", "running"]

    resumed = sweep(killed_dir)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    unbroken = sweep(unbroken_dir)
    assert unbroken.wait(timeout=300) == 0, unbroken.stderr.read()
    assert not checkpoint.exists()  # a finished group leaves no checkpoint behind
    for s in ("s0", "s1"):
        after = json.loads((killed_dir / s / "results.json").read_text())
        reference = json.loads((unbroken_dir / s / "results.json").read_text())
        assert after["status"] == "complete" and after["batched_with"] == 2 and after.get("resumed") is True
        assert after["curve"]["beta"] == reference["curve"]["beta"]
        assert after["curve"]["redundancy_bits"] == pytest.approx(reference["curve"]["redundancy_bits"], abs=1e-6)
        assert list(pd.read_csv(killed_dir / s / "csv" / "metrics.csv")["epoch"]) == list(range(8))
