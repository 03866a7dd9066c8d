"""The objective's parts: the agreement distance, the β schedule, and the reported bits."""

import math

import pytest
import torch
from torch import nn

from rine.estimator import BetaSchedule, RedundancyEstimator
from rine.objective import ConstraintControl, prediction_distance, scheduled_beta
from rine.outcome import summarize


def test_distance_two_sources_by_hand():
    p1 = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    p2 = torch.tensor([[0.0, 1.0], [0.5, 0.5]])
    probs = torch.stack([p1, p2])
    # Per-sample L1: 2 and 0; batch mean 1; divided by K=2: 0.5.
    assert prediction_distance(probs, "none").item() == pytest.approx(1.0)
    assert prediction_distance(probs, "classes").item() == pytest.approx(0.5)
    assert prediction_distance(probs, "tv").item() == pytest.approx(0.5)  # ½ L1: total variation


def test_distance_of_two_sources_per_run_with_its_gradient():
    # Batched runs [R, n=2, batch, K] (n = 2 takes slices, more sources index pairs): one D a run,
    # the ½ L1 mean over the batch, with the gradient of that formula.
    logits = torch.randn(3, 2, 5, 4, generator=torch.Generator().manual_seed(1), requires_grad=True)
    d = prediction_distance(logits.softmax(-1), "tv")
    probs = logits.softmax(-1)
    by_hand = 0.5 * (probs[:, 0] - probs[:, 1]).abs().sum(-1).mean(-1)
    assert d.shape == (3,) and torch.equal(d, by_hand)
    assert torch.equal(torch.autograd.grad(d.sum(), logits)[0], torch.autograd.grad(by_hand.sum(), logits)[0])


def test_distance_three_sources_is_the_mean_over_pairs():
    a = torch.tensor([[1.0, 0.0, 0.0]])
    b = torch.tensor([[0.0, 1.0, 0.0]])
    c = torch.tensor([[1.0, 0.0, 0.0]])
    probs = torch.stack([a, b, c])
    # Pairs (a,b)=2, (a,c)=0, (b,c)=2 -> mean 4/3; / K=3 -> 4/9.
    assert prediction_distance(probs, "none").item() == pytest.approx(4 / 3)
    assert prediction_distance(probs, "classes").item() == pytest.approx(4 / 9)


def test_distance_is_zero_for_identical_predictions_and_one_source():
    p = torch.softmax(torch.randn(2, 5, 4, generator=torch.Generator().manual_seed(0)), -1)
    same = torch.stack([p[0], p[0]])
    assert prediction_distance(same).item() == 0.0
    assert prediction_distance(p[:1]).item() == 0.0


def test_beta_schedule_values():
    assert scheduled_beta(15, 0, 0.97, "annealed") == 0.0
    assert scheduled_beta(15, 1, 0.97, "annealed") == pytest.approx(15 * 0.03)
    assert scheduled_beta(50, 29, 0.97, "annealed") == pytest.approx(50 * (1 - 0.97**29))
    assert scheduled_beta(50, 29, 0.97, "annealed") == pytest.approx(0.59 * 50, abs=0.2)
    assert scheduled_beta(50, 0, 0.97, "fixed") == 50.0
    assert scheduled_beta(50, 10, 1.0, "annealed") == 0.0  # gamma = 1: never switched on (validation rejects it)
    # constrained: the annealed ramp times the multiplier; the annealed schedule ignores it
    assert scheduled_beta(10, 2, 0.5, "constrained", factor=3.0) == pytest.approx(10 * 0.75 * 3)
    assert scheduled_beta(10, 2, 0.5, "annealed", factor=3.0) == pytest.approx(10 * 0.75)


def test_constraint_control_raises_beta_only_after_start_epoch_and_above_target_up_to_the_cap():
    control = ConstraintControl(target=0.01, growth=2.0, max_factor=5.0, start_epoch=2)
    assert control.factor([]) == 1.0
    assert control.factor([0.5, 0.5]) == 1.0  # epochs 0 and 1: before start_epoch
    assert control.factor([0.5, 0.5, 0.5]) == 2.0
    assert control.factor([0.5, 0.5, 0.5, 0.005, 0.02]) == 4.0  # the met epoch leaves it, never lowers it
    assert control.factor([0.5] * 10) == 5.0  # capped


def test_smoothing_is_huber_on_each_class_difference_and_leaves_far_differences_as_l1():
    p = torch.tensor([[[0.5, 0.5]], [[0.5, 0.5]]])
    assert prediction_distance(p, "tv", smoothing=0.2).item() == 0.0
    near = torch.tensor([[[0.52, 0.48]], [[0.5, 0.5]]])  # |d| = 0.02 < ε = 0.2 / 2 classes
    assert prediction_distance(near, "tv", smoothing=0.2).item() == pytest.approx(0.5 * 2 * 0.02**2 / (2 * 0.1))
    far = torch.tensor([[[0.9, 0.1]], [[0.5, 0.5]]])  # |d| = 0.4 > ε: L1 less ε/2 per class
    assert prediction_distance(far, "tv", smoothing=0.2).item() == pytest.approx(0.5 * 2 * (0.4 - 0.05))
    assert prediction_distance(far, "tv").item() == pytest.approx(0.4)


def test_beta_callback_sets_the_module_beta_each_epoch_and_checkpoints_it():
    callback = BetaSchedule(beta=10, gamma=0.5, schedule="annealed")
    module = nn.Module()
    module.history = []

    class FakeTrainer:
        current_epoch = 2

    callback.on_train_epoch_start(FakeTrainer(), module)
    assert module.beta == pytest.approx(10 * (1 - 0.25))
    restored = BetaSchedule(beta=10, gamma=0.5)
    restored.load_state_dict(callback.state_dict())
    assert restored.current_beta == pytest.approx(7.5)


class ConstantLogits(nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.logits = nn.Parameter(torch.tensor(logits))

    def forward(self, x):
        return self.logits.expand(len(x), -1)


def heldout_metrics(decoders, y, h_y_bits, eval_batch_size=None, **kwargs) -> dict:
    """One epoch through Lightning's loop, as a run trains (lr 0: the decoders stay as given);
    returns the epoch's row of the module's history."""
    import functools

    import lightning.pytorch as pl

    from rine.data import Split, TensorBatches

    module = RedundancyEstimator(decoders, h_y_bits=h_y_bits, optimizer=functools.partial(torch.optim.SGD, lr=0.0),
                                 **kwargs)
    split = Split([torch.zeros(len(y), 1) for _ in decoders], y)
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(module, TensorBatches(split, len(y), shuffle=True),
                TensorBatches(split, eval_batch_size or len(y), shuffle=False))
    assert len(module.history) == 1
    return module.history[0]


def test_reported_bits_are_h_y_minus_mean_cross_entropy():
    # Decoder 1 predicts uniform over 4 classes (CE = 2 bits); decoder 2 puts prob 1/2 on
    # the true class 0 and 1/6 elsewhere (CE = 1 bit). With H(Y) = 2 bits:
    # usable = 0 and 1 bits, redundancy = 2 - 1.5 = 0.5 bits.
    uniform = ConstantLogits([0.0, 0.0, 0.0, 0.0])
    half = ConstantLogits([math.log(3.0), 0.0, 0.0, 0.0])
    y = torch.zeros(8, dtype=torch.long)
    metrics = heldout_metrics([uniform, half], y, h_y_bits=2.0, distance_normalization="classes")
    assert metrics["val/usable_info_bits_x1"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["val/usable_info_bits_x2"] == pytest.approx(1.0, abs=1e-6)
    assert metrics["val/redundancy_bits"] == pytest.approx(0.5, abs=1e-6)
    # |(1/4,1/4,1/4,1/4) - (1/2,1/6,1/6,1/6)|_1 = 1/2, divided by K = 4; the disagreement is ½ L1.
    assert metrics["val/distance"] == pytest.approx(0.5 / 4, abs=1e-6)
    assert metrics["val/disagreement_tv"] == pytest.approx(0.25, abs=1e-6)
    # Every sample has the same CE: the held-out standard errors are 0.
    assert metrics["val/redundancy_se_bits"] == pytest.approx(0.0, abs=1e-4)


def test_standard_error_of_the_heldout_mean_by_hand():
    # One decoder, uniform over 2 classes except for its confident class 0: per-sample CE is
    # -ln p(y): ln(1/0.8) for y = 0 and ln(1/0.2) for y = 1.
    y = torch.tensor([0, 0, 0, 1])
    metrics = heldout_metrics([ConstantLogits([math.log(4.0), 0.0])], y, h_y_bits=1.0)
    ce_bits = torch.tensor([math.log2(1 / 0.8)] * 3 + [math.log2(1 / 0.2)], dtype=torch.float64)
    assert metrics["val/redundancy_bits"] == pytest.approx(1.0 - ce_bits.mean().item(), abs=1e-6)
    assert metrics["val/redundancy_se_bits"] == pytest.approx((ce_bits.std(unbiased=True) / 2).item(), rel=1e-4)


def test_to_mean_distance_equals_all_pairs_for_two_sources_and_by_hand_for_three():
    p = torch.softmax(torch.randn(2, 6, 3, generator=torch.Generator().manual_seed(1)), -1)
    for normalize in ("classes", "none"):
        assert prediction_distance(p, normalize, "to_mean").item() == pytest.approx(
            prediction_distance(p, normalize, "all").item(), rel=1e-6)
    a = torch.tensor([[1.0, 0.0, 0.0]])
    b = torch.tensor([[0.0, 1.0, 0.0]])
    c = torch.tensor([[1.0, 0.0, 0.0]])
    # Mean (2/3, 1/3, 0); distances to it 2/3, 4/3, 2/3 -> mean 8/9, times 2 = 16/9.
    probs = torch.stack([a, b, c])
    assert prediction_distance(probs, "none", "to_mean").item() == pytest.approx(16 / 9)


def test_t_interval_by_hand():
    from rine.stats import t_interval

    values = [1.0, 2.0, 3.0, 4.0, 5.0]  # mean 3, sample std √2.5; t_{0.975, 4} = 2.7764
    low, high = t_interval(values)
    half = 2.7764 * math.sqrt(2.5) / math.sqrt(5)
    assert (low, high) == pytest.approx((3 - half, 3 + half), abs=1e-4)
    assert all(math.isnan(v) for v in t_interval([1.0]))


def test_per_class_bits_by_hand_and_absent_class_is_nan_then_null():
    # Decoder 1 is uniform over 4 classes (CE = 2 bits for every sample); decoder 2 puts
    # 1/2 on class 0 (CE = 1 bit for y = 0, log2(6) bits otherwise). H(Y) = 2 bits.
    y = torch.tensor([0, 0, 1, 0])  # classes 2 and 3 never appear
    # Two held-out batches of 2: the sums must carry across batches.
    metrics = heldout_metrics([ConstantLogits([0.0] * 4), ConstantLogits([math.log(3.0), 0.0, 0.0, 0.0])], y,
                              h_y_bits=2.0, eval_batch_size=2)
    assert metrics["val/redundancy_bits_class0"] == pytest.approx(2 - (2 + 1) / 2)
    assert metrics["val/redundancy_bits_class1"] == pytest.approx(2 - (2 + math.log2(6)) / 2)
    assert math.isnan(metrics["val/redundancy_bits_class2"]) and math.isnan(metrics["val/redundancy_bits_class3"])
    summary = summarize([metrics], last_epochs=1, n_sources=2)
    assert summary["per_class_redundancy_bits"][:2] == pytest.approx([0.5, 2 - (2 + math.log2(6)) / 2])
    assert summary["per_class_redundancy_bits"][2:] == [None, None]
