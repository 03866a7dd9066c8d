import logging
import os
import pickle
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
    from rine.run import compose_config, run

    def _run(*overrides: str, name: str = "run"):
        run_dir = tmp_path / name
        return run(compose_config(list(overrides)), run_dir), run_dir

    return _run


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
