import logging
import os
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

# Set before anything imports wandb: tests never reach the network.
os.environ.setdefault("WANDB_MODE", "disabled")
torch.set_num_threads(1)
logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)


@pytest.fixture(autouse=True)
def _quiet_lightning():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@pytest.fixture
def train_run(tmp_path):
    """Train through rine.run.run with the given overrides; returns (results, run_dir)."""
    from rine.config import compose_config
    from rine.run import run

    def _run(*overrides: str, name: str = "run"):
        run_dir = tmp_path / name
        return run(compose_config(list(overrides)), run_dir), run_dir

    return _run


@pytest.fixture(scope="session")
def default_unq_run(tmp_path_factory):
    """task=unq at every default setting (β = 15, seed 0, 30 epochs): (results, run_dir).
    Trained once per test process for the tests that read it (test_train, test_trust)."""
    from rine.config import compose_config
    from rine.run import run

    run_dir = tmp_path_factory.mktemp("default_unq") / "run"
    return run(compose_config(["task=unq"]), run_dir), run_dir


@pytest.fixture(autouse=True, scope="session")
def _private_reference_cache(tmp_path_factory):
    """dit results computed by tests go to a throw-away cache, not the user's."""
    os.environ["RINE_CACHE_DIR"] = str(tmp_path_factory.mktemp("rine-cache"))
    yield


CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _write_cifar_batch(path: Path, images: np.ndarray, labels: list[int]) -> None:
    # The official files are Python 2 pickles of dicts with a flat [N, 3072] uint8 'data'
    # (1024 red, 1024 green, 1024 blue values, row-major) and a 'labels' list.
    batch = {"batch_label": path.name, "data": images.reshape(len(images), -1), "labels": labels,
             "filenames": [f"{i}.png" for i in range(len(labels))]}
    with path.open("wb") as f:
        pickle.dump(batch, f, protocol=2)


@pytest.fixture
def tiny_cifar(tmp_path):
    """data_dir with cifar-10-batches-py/: 5 x 4 training images, 9 test images with no 'truck' (9)."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i in range(1, 6):
        _write_cifar_batch(folder / f"data_batch_{i}", rng.integers(0, 256, (4, 3, 32, 32), dtype=np.uint8),
                           [(4 * (i - 1) + j) % 10 for j in range(4)])
    _write_cifar_batch(folder / "test_batch", rng.integers(0, 256, (9, 3, 32, 32), dtype=np.uint8), list(range(9)))
    with (folder / "batches.meta").open("wb") as f:
        pickle.dump({"label_names": CIFAR_CLASSES, "num_cases_per_batch": 4, "num_vis": 3072}, f, protocol=2)
    return tmp_path / "data"


def write_fake_run(root: Path, name: str, overrides: list[str] | None = None, metrics: dict | None = None,
                   raw_results: str | None = None, **results) -> Path:
    """A logged run folder as train.py leaves it, without training: results.json (complete,
    annealed, seed 0 unless given), config.yaml composed from `overrides` (none when None),
    csv/metrics.csv from `metrics` (column -> per-epoch values). raw_results: the file's text as is."""
    import json

    run_dir = root / name
    run_dir.mkdir(parents=True)
    base = {"status": "complete", "beta_schedule": "annealed", "distance_normalization": "classes", "seed": 0}
    (run_dir / "results.json").write_text(raw_results if raw_results is not None else json.dumps({**base, **results}))
    if overrides is not None:
        from omegaconf import OmegaConf

        from rine.config import compose_config

        OmegaConf.save(compose_config(overrides), run_dir / "config.yaml")
    if metrics is not None:
        import pandas as pd

        (run_dir / "csv").mkdir()
        pd.DataFrame(metrics).to_csv(run_dir / "csv" / "metrics.csv", index=False)
    return run_dir


@pytest.fixture(scope="session")
def fake_run():
    """write_fake_run, as a fixture: logged runs for the table and figure scripts."""
    return write_fake_run


ROOT = Path(__file__).resolve().parent.parent


def python_env(**extra: str) -> dict[str, str]:
    """A child python's environment: this checkout's rine first on the path (also in the
    processes Hydra's launchers start), W&B off, one thread per process, plus `extra`."""
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", **extra}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return env


def run_python(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """python <args> from the repo root, as a user runs it (train.py ..., scripts/...): the
    finished process, with its stdout and stderr as text. env: variables set on top of python_env."""
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=python_env(**(env or {})), capture_output=True,
                          text=True, timeout=timeout)


def start_python(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """run_python, started and not awaited (to kill it midway)."""
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=python_env(**(env or {})), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def assert_one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The command-line contract for bad input: exit status 2 and a single `error: ...` line on
    stderr, no traceback anywhere. Returns that line."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    return lines[0]


@pytest.fixture(scope="session")
def script():
    """run_python, as a fixture."""
    return run_python
