"""Per-class redundancy: H(Y) − the held-out mean CE of the samples of each class, in bits."""

import json

import pytest
import torch
from hydra.utils import instantiate

from rine.config import compose_config


def test_canonical_per_class_values_average_to_the_redundancy(train_run):
    results, run_dir = train_run("task=unq", "beta=5", "seed=0", "trainer.max_epochs=3")
    on_disk = json.loads((run_dir / "results.json").read_text())
    per_class = on_disk["per_class_redundancy_bits"]
    assert len(per_class) == 4 and all(v is not None for v in per_class)
    # H(Y) − mean CE is linear in the CE, so the class-frequency-weighted mean of the
    # per-class values is the overall figure.
    data = instantiate(compose_config(["task=unq"]).task).setup(seed=0)
    freq = torch.bincount(data.heldout.y, minlength=4).double() / len(data.heldout)
    assert sum(f * v for f, v in zip(freq.tolist(), per_class)) == pytest.approx(on_disk["redundancy_bits"], abs=1e-5)
    assert on_disk["class_names"] == [str(c) for c in data.class_names]
