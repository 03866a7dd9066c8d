"""Every config file composes, and the objects it names can be built."""

from pathlib import Path

import pytest
from hydra.utils import instantiate

from rine.config import CONFIG_DIR, compose_config, validate_config

GROUP_OPTIONS = [
    (group.name, path.stem)
    for group in sorted(Path(CONFIG_DIR).iterdir()) if group.is_dir()
    for path in sorted(group.glob("*.yaml"))
]


def test_default_config_is_rdnxor_at_beta_15_for_30_epochs():
    cfg = compose_config()
    validate_config(cfg)
    assert (cfg.task.name, cfg.beta, cfg.beta_schedule, cfg.gamma) == ("rdnxor", 15, "constrained", 0.97)
    assert cfg.trainer.max_epochs == 30
    assert (cfg.distance.normalize, cfg.distance.smoothing) == ("tv", 0.1)
    assert cfg.model.optimizer._target_ == "torch.optim.AdamW"


@pytest.mark.parametrize("experiment", ["table1", "table6", "figure3", "figure1_left", "figure1_right"])
def test_paper_experiments_pin_the_papers_objective(experiment):
    cfg = compose_config([f"experiment={experiment}"])
    assert (cfg.beta_schedule, cfg.distance.normalize, cfg.distance.smoothing) in [("annealed", "classes", 0),
                                                                                   ("fixed", "classes", 0)]
    if not experiment.startswith("figure1"):
        assert cfg.model.optimizer._target_ == "torch.optim.SGD" and list(cfg.model.decoder.hidden) == [25, 15, 10]


@pytest.mark.parametrize("group, option", GROUP_OPTIONS, ids=[f"{g}={o}" for g, o in GROUP_OPTIONS])
def test_every_group_option_composes(group, option):
    cfg = compose_config([f"{group}={option}"])
    if group == "model" and cfg.model.optimizer._target_.endswith("SGD"):
        # The paper's SGD recipes go with the paper's objective (validation refuses the constrained one).
        cfg = compose_config([f"{group}={option}", "objective=paper"])
    validate_config(cfg)
    assert group in ("experiment", "objective") or cfg[group] is not None  # those two are @package _global_


# The discrete tasks; arrays reads a user's data file (tested in test_arrays.py); embedded and
# the MNIST tasks are tested in test_embedded.py and test_mnist.py.
DISCRETE_TASKS = [o for g, o in GROUP_OPTIONS
                  if g == "task" and o not in ("arrays", "embedded") and not o.startswith(("cifar_", "digits_", "mnist_"))]


@pytest.mark.parametrize("task", DISCRETE_TASKS)
def test_every_task_builds_with_exact_references(task):
    # task=pmf reads any CSV; give it a shipped table.
    extra = [f"pmf_file={Path(CONFIG_DIR).parent / 'rine' / 'pmfs' / 'and.csv'}"] if task == "pmf" else []
    data = instantiate(compose_config([f"task={task}", *extra]).task).setup(seed=0)
    assert len(data.train) == 8000 and len(data.heldout) == 2000  # 10,000 samples, 80/20
    assert data.h_y_basis == "exact"
    assert set(data.reference) >= {"h_y", "mi_sources", "mi_joint", "i_wedge", "true_redundancy"}
    assert all(x.shape[1] >= 2 and set(x.unique().tolist()) <= {0.0, 1.0} for x in data.train.sources)  # one-hot


def test_top_level_overrides_read_as_written():
    cfg = compose_config(["task=unq", "beta=5", "seed=3", "width=20", "trainer.max_epochs=7"])
    assert (cfg.task.name, cfg.beta, cfg.seed, cfg.width, cfg.trainer.max_epochs) == ("unq", 5, 3, 20, 7)
