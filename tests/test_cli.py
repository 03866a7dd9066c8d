"""train.py as a user runs it: Hydra overrides, multirun, W&B, and one-line errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def train(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "train.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )


def test_single_run_prints_one_summary_line_and_respects_run_dir(tmp_path):
    run_dir = tmp_path / "unq_run"
    proc = train("task=unq", "beta=5", "seed=3", "trainer.max_epochs=2", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines() == [proc.stdout.strip()]  # exactly one line
    assert proc.stdout.startswith("unq  beta=5  I∩ = ")
    assert proc.stdout.strip().endswith(f"-> {run_dir}")
    results = json.loads((run_dir / "results.json").read_text())
    assert (results["status"], results["task"], results["beta"], results["seed"]) == ("complete", "unq", 5, 3)
    assert results["epochs"] == 2
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert (run_dir / "csv" / "metrics.csv").is_file()


def test_multirun_writes_one_results_file_per_job(tmp_path):
    proc = train("-m", "task=unq,and", "beta=0,5", "trainer.max_epochs=1", f"hydra.sweep.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    found = sorted((json.loads(p.read_text())["task"], json.loads(p.read_text())["beta"])
                   for p in tmp_path.glob("*/results.json"))
    assert found == [("and", 0), ("and", 5), ("unq", 0), ("unq", 5)]


def test_wandb_logger_runs_offline_beside_the_csv_log(tmp_path):
    pytest.importorskip("wandb")
    run_dir = tmp_path / "wb"
    proc = train("task=unq", "trainer.max_epochs=1", "logger=wandb", f"hydra.run.dir={run_dir}",
                 env_extra={"WANDB_MODE": "offline", "WANDB_SILENT": "true"})
    assert proc.returncode == 0, proc.stderr
    assert list((run_dir / "wandb").glob("offline-run-*")), "no offline W&B run was written"
    assert (run_dir / "csv" / "metrics.csv").is_file()


@pytest.mark.parametrize(
    "override, message",
    [
        ("task=nope", "unknown task 'nope'; choose one of: and, cifar_channels, cifar_crop, cifar_freq, digits_crop, imperfectrdn, pmf, rdnxor, unq"),
        ("beta=-1", "beta=-1 is invalid"),
        ("gamma=1.5", "gamma=1.5 is invalid"),
        ("gamma=0", "gamma=0 is invalid"),
        ("trainer.max_epochs=0", "trainer.max_epochs=0 is invalid"),
    ],
)
def test_bad_input_is_one_line_without_traceback(tmp_path, override, message):
    run_dir = tmp_path / "bad"
    proc = train(override, f"hydra.run.dir={run_dir}")
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {proc.stderr.strip()[len('error: '):]}"
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (run_dir / "results.json").exists()
