import logging
import os
import warnings

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
