"""logger=wandb: every run, from either engine, is a W&B run with its composed config, one
history step per epoch and results.json's figures in its summary (offline files, read back)."""

import json
import struct

import pandas as pd
import pytest

from rine.config import compose_config
from rine.run import run, run_many

wandb = pytest.importorskip("wandb")


def offline_run(run_dir):
    """(config, summary, history rows) of the single offline W&B run under run_dir/wandb/.

    wandb.Api is online only, and offline runs keep everything in run-<id>.wandb: a LevelDB-style
    log (a 7-byte file header, 32 KiB blocks, records of (crc, length, type) + data) of
    wandb_internal_pb2.Record messages.
    """
    from wandb.proto import wandb_internal_pb2

    files = list(run_dir.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(files) == 1, files
    data = files[0].read_bytes()
    assert data[:4] == b":W&B"
    records, pending, pos, block = [], b"", 7, 32768
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0:
            pos += block - pos % block
            continue
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""

    def key(item):
        return item.key or "/".join(item.nested_key)

    config, summary, history = {}, {}, []
    for record in records:
        kind = record.WhichOneof("record_type")
        if kind == "run":
            config.update({key(i): json.loads(i.value_json) for i in record.run.config.update})
        elif kind == "config":
            config.update({key(i): json.loads(i.value_json) for i in record.config.update})
        elif kind == "summary":
            summary.update({key(i): json.loads(i.value_json) for i in record.summary.update})
        elif kind == "history":
            history.append({key(i): json.loads(i.value_json) for i in record.history.item})
    return config, summary, history


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")


def check(run_dir, results, task, beta, seed, epochs):
    config, summary, history = offline_run(run_dir)
    assert config["task"]["name"] == task and config["beta"] == beta and config["seed"] == seed
    assert config["gamma"] == 0.97 and config["trainer"]["max_epochs"] == epochs and "model" in config
    for figure in ("redundancy_bits", "disagreement_tv", "constraint_met", "valid", "usable_info_bits"):
        assert summary[figure] == pytest.approx(results[figure]), figure
    epochs_logged = [row for row in history if "val/redundancy_bits" in row]
    metrics = pd.read_csv(run_dir / "csv" / "metrics.csv")
    assert [row["epoch"] for row in epochs_logged] == metrics["epoch"].tolist()
    # Lightning logs an epoch's metrics at its last batch's index; the batched engine does the same.
    assert [row["trainer/global_step"] for row in epochs_logged] == (metrics["step"] - 1).tolist()
    assert [row["val/redundancy_bits"] for row in epochs_logged] == pytest.approx(metrics["val/redundancy_bits"].tolist())


def test_a_single_run_logs_its_config_history_and_figures(tmp_path, offline):
    cfg = compose_config(["task=unq", "beta=5", "seed=3", "trainer.max_epochs=2", "logger=wandb"])
    results = run(cfg, tmp_path / "one")
    check(tmp_path / "one", results, "unq", 5, 3, 2)


def test_each_batched_run_gets_its_own_wandb_run(tmp_path, offline):
    cfgs = [compose_config(["task=rdnxor", f"beta={b}", "trainer.max_epochs=2", "logger=wandb"]) for b in (0, 15)]
    dirs = [tmp_path / "b0", tmp_path / "b15"]
    results = run_many(cfgs, dirs)
    assert [r["batched_with"] for r in results] == [2, 2]
    for run_dir, beta, result in zip(dirs, (0, 15), results):
        check(run_dir, result, "rdnxor", beta, 0, 2)


def test_without_logger_wandb_nothing_is_written(tmp_path, offline):
    run_many([compose_config(["task=unq", "trainer.max_epochs=1"])], [tmp_path / "plain"])
    assert not (tmp_path / "plain" / "wandb").exists()


@pytest.mark.slow  # a train.py sweep: ~15 s
def test_a_batched_sweep_gives_each_job_its_wandb_run(tmp_path):
    import os
    from pathlib import Path

    from conftest import run_warm

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1"}
    proc = run_warm("train.py", "-m", "task=unq", "beta=0,5", "trainer.max_epochs=1", "logger=wandb",
                    f"hydra.sweep.dir={tmp_path}", cwd=root, full_env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    jobs = sorted(p.parent for p in tmp_path.glob("*/results.json"))
    assert len(jobs) == 2
    for job in jobs:
        results = json.loads((job / "results.json").read_text())
        assert results["batched_with"] == 2
        check(job, results, "unq", results["beta"], 0, 1)
