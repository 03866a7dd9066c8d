"""Per-class redundancy: H(Y) − the held-out mean CE of the samples of each class, in bits."""

import json
import math

import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from rine.estimator import RedundancyEstimator
from rine.run import compose_config, summarize


class ConstantLogits(nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.logits = nn.Parameter(torch.tensor(logits))

    def forward(self, x):
        return self.logits.expand(len(x), -1)


def test_per_class_bits_by_hand_and_absent_class_is_nan_then_null():
    # Decoder 1 is uniform over 4 classes (CE = 2 bits for every sample); decoder 2 puts
    # 1/2 on class 0 (CE = 1 bit for y = 0, log2(6) bits otherwise). H(Y) = 2 bits.
    module = RedundancyEstimator(
        [ConstantLogits([0.0] * 4), ConstantLogits([math.log(3.0), 0.0, 0.0, 0.0])],
        h_y_bits=2.0, optimizer=torch.optim.SGD,
    )
    y = torch.tensor([0, 0, 1, 0])  # classes 2 and 3 never appear
    # Two validation batches: the sums must carry across batches.
    for part in (y[:2], y[2:]):
        module.validation_step(([torch.zeros(len(part), 1)] * 2, part), 0)
    metrics = module._epoch_metrics("val")
    assert metrics["val/redundancy_bits_class0"] == pytest.approx(2 - (2 + 1) / 2)
    assert metrics["val/redundancy_bits_class1"] == pytest.approx(2 - (2 + math.log2(6)) / 2)
    assert math.isnan(metrics["val/redundancy_bits_class2"]) and math.isnan(metrics["val/redundancy_bits_class3"])
    metrics.update({"val/usable_info_bits_x1": 0.0, "val/usable_info_bits_x2": 0.0, "beta": 0.0})
    summary = summarize([metrics], last_epochs=1, n_sources=2)
    assert summary["per_class_redundancy_bits"][:2] == pytest.approx([0.5, 2 - (2 + math.log2(6)) / 2])
    assert summary["per_class_redundancy_bits"][2:] == [None, None]


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
