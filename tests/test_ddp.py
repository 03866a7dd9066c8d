"""trainer=ddp: one run over several processes (gloo on the CPU here) is the one-process run."""

import json

import pytest
import torch
from conftest import assert_one_line_error

from rine.data import Split, TensorBatches
from rine.errors import RineError
from rine.config import compose_config, validate_config
from rine.run import run

# Short RDNXOR runs. BatchNorm off: without SyncBatchNorm (GPU only) each process would
# normalise its half-batch by its own statistics, and the comparison below is exact.
SMALL = ["trainer.max_epochs=3", "task.n_samples=2000", "model.decoder.batch_norm=false"]


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("world_size", [2, 3])
def test_process_shares_make_up_the_one_process_batches(shuffle, world_size):
    split = Split([torch.arange(1037.0)[:, None]], torch.arange(1037))
    whole = [y for _, y in TensorBatches(split, 128, shuffle, seed=3)]
    shares = [[y for _, y in TensorBatches(split, 128, shuffle, seed=3, rank=r, world_size=world_size)]
              for r in range(world_size)]
    assert all(len(s) == len(whole) for s in shares)  # no process waits for a batch that never comes
    for b, batch in enumerate(whole):
        parts = [s[b] for s in shares]
        assert torch.equal(torch.cat(parts), batch)
        assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_a_tail_too_small_to_share_is_dropped_in_training():
    split = Split([torch.zeros(131, 1)], torch.zeros(131, dtype=torch.long))  # tail of 3 samples
    assert len(TensorBatches(split, 128, shuffle=True, world_size=1)) == 2
    assert len(TensorBatches(split, 128, shuffle=True, world_size=2)) == 1  # one process would get 1
    assert len(TensorBatches(split, 128, shuffle=False, world_size=2)) == 2  # held-out: every sample


@pytest.mark.slow  # 3 processes: ~8 s of CPU
def test_two_gloo_processes_give_the_one_process_result(tmp_path, train_run, script):
    run_dir = tmp_path / "ddp"
    proc = script("train.py", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", *SMALL,
                  f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.strip().splitlines()) == 1  # rank 0 reports, once
    assert "sync_dist" not in proc.stderr
    assert (run_dir / "train_ddp_process_1.log").is_file(), "Lightning did not start a second process"
    ddp = json.loads((run_dir / "results.json").read_text())
    one, _ = train_run(*SMALL, name="one")
    assert ddp["status"] == one["status"] == "complete"
    assert ddp["epochs"] == 3 and ddp["n_train"] == one["n_train"]
    # Same batches, gradients averaged over the two halves: the one-process numbers.
    for key in ("redundancy_bits", "disagreement_tv"):
        assert ddp["curve"][key] == pytest.approx(one["curve"][key], abs=1e-5)
    assert ddp["per_class_redundancy_bits"] == pytest.approx(one["per_class_redundancy_bits"], abs=1e-5)
    assert ddp["accuracy"] == pytest.approx(one["accuracy"], abs=1e-6)
    logged = (run_dir / "csv" / "metrics.csv").read_text().strip().splitlines()
    assert len(logged) == 1 + 3  # header and one row per epoch: rank 0 alone writes


def test_ddp_follower_resumes_where_rank_zero_decided(tmp_path, monkeypatch):
    one_epoch = compose_config(["trainer.max_epochs=1", "report.last_epochs=1", "engine=lightning"])
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(RineError, match="found no run begun by rank 0"):
        run(one_epoch, tmp_path)
    monkeypatch.delenv("LOCAL_RANK")
    first = run(one_epoch, tmp_path)  # rank 0's first epoch, and its checkpoint
    checkpoint = tmp_path / "checkpoints" / "last.ckpt"
    running = {"status": "running", "resume_from": str(checkpoint)}
    (tmp_path / "results.json").write_text(json.dumps(running))
    monkeypatch.setenv("LOCAL_RANK", "1")
    results = run(compose_config(["trainer.max_epochs=2", "report.last_epochs=1", "engine=lightning"]), tmp_path)
    # The follower continued rank 0's checkpoint (epoch 0 is the one already trained) ...
    assert results["epochs"] == 2
    assert results["curve"]["redundancy_bits"][0] == pytest.approx(first["curve"]["redundancy_bits"][0], abs=1e-9)
    # ... and wrote nothing: results.json is rank 0's.
    assert json.loads((tmp_path / "results.json").read_text()) == running

def test_pid_mode_and_ddp_are_refused_together():
    with pytest.raises(RineError, match="mode=pid cannot run under trainer=ddp"):
        validate_config(compose_config(["mode=pid", "trainer=ddp"]))


def test_ddp_in_a_multirun_is_one_line_error(tmp_path, script):
    proc = script("train.py", "-m", "trainer=ddp", "seed=0,1", f"hydra.sweep.dir={tmp_path}")
    assert assert_one_line_error(proc) == "error: trainer=ddp trains one run on several devices; start each point without -m"


@pytest.mark.slow  # 3 processes and ResNet-18s: ~9 s of CPU
def test_a_cifar_point_trains_under_ddp(tmp_path, tiny_cifar, script):
    """The image path: raw images kept on each process's device, views cut from its share."""
    run_dir = tmp_path / "cifar"
    proc = script("train.py", "task=cifar_crop", "width=8", f"task.data_dir={tiny_cifar}", "trainer=ddp",
                  "trainer.accelerator=cpu", "trainer.devices=2", "trainer.max_epochs=1", "model.batch_size=8",
                  "model.eval_batch_size=5", "report.last_epochs=1", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr
    results = json.loads((run_dir / "results.json").read_text())
    assert (results["status"], results["epochs"], results["n_train"], results["n_heldout"]) == ("complete", 1, 20, 9)
    # Every held-out sample counted once across the two processes: 'truck' is absent from it.
    per_class = results["per_class_redundancy_bits"]
    assert per_class[9] is None and all(isinstance(v, float) for v in per_class[:9])
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
