"""Early stopping for β = 0 trainings (early_stopping.enabled): each decoder read at its best epoch
on an inner validation split held out of training (rine.data.hold_out_inner_validation,
rine.outcome.early_stopped)."""

import pytest
import torch

from rine.data import Split, TaskData, hold_out_inner_validation
from rine.errors import RineError
from rine.outcome import early_stopped


def task_data(n: int) -> TaskData:
    x = torch.arange(n, dtype=torch.float32)[:, None]
    split = Split([x, -x], torch.arange(n) % 3)
    return TaskData("t", split, split, n_classes=3, h_y_bits=1.58, h_y_basis="empirical")


def test_the_inner_split_is_a_seeded_part_of_the_training_split_never_trained_on():
    data = task_data(1000)
    inner = hold_out_inner_validation(data, 0.1, seed=3)
    assert len(inner) == 100 and len(data.train) == 900 and data.inner is inner
    held, kept = set(inner.sources[0][:, 0].tolist()), set(data.train.sources[0][:, 0].tolist())
    assert not held & kept and held | kept == set(range(1000))
    # Each sample keeps its sources and label together, and the rest keeps its order.
    assert torch.equal(inner.sources[1], -inner.sources[0]) and torch.equal(inner.y, inner.sources[0][:, 0].long() % 3)
    assert torch.equal(data.train.sources[0][:, 0], data.train.sources[0][:, 0].sort().values)
    # A random part (not the last 10%: a user's file may be sorted by class), fixed by the seed.
    assert max(held) > 900 and min(held) < 100
    again, other = task_data(1000), task_data(1000)
    assert torch.equal(hold_out_inner_validation(again, 0.1, seed=3).y, inner.y)
    assert not torch.equal(hold_out_inner_validation(other, 0.1, seed=4).sources[0], inner.sources[0])
    with pytest.raises(RineError, match="leaves 5 for the inner validation split"):
        hold_out_inner_validation(task_data(50), 0.1, seed=0)


def test_each_source_is_read_at_its_own_best_inner_epoch():
    inner = {1: [0.5, 0.9, 0.8, 0.7], 2: [0.4, 0.6, 0.7, 0.95]}
    held_out = {1: [0.45, 0.85, 0.6, 0.3], 2: [0.35, 0.5, 0.66, 0.9]}
    history = [{"epoch": e, **{f"inner/usable_info_bits_x{i}": inner[i][e] for i in (1, 2)},
                **{f"val/usable_info_bits_x{i}": held_out[i][e] for i in (1, 2)},
                **{f"val/usable_info_se_bits_x{i}": 0.01 * i for i in (1, 2)},
                **{f"train/usable_info_bits_x{i}": 1.0 + e for i in (1, 2)},
                **{f"val/acc_x{i}": 0.1 * e for i in (1, 2)}} for e in range(4)]
    chosen = early_stopped(history, n_sources=2, n_inner=100)
    assert chosen["early_stopping_epochs"] == [1, 3]
    assert chosen["usable_info_bits"] == [0.85, 0.9] and chosen["usable_info_bits_inner"] == [0.9, 0.95]
    assert chosen["redundancy_bits"] == pytest.approx(0.875)  # at β = 0: their mean
    assert chosen["redundancy_se_bits"] == pytest.approx(0.015)  # the mean SE: an upper bound
    assert chosen["usable_info_bits_train"] == [2.0, 4.0] and chosen["accuracy"] == pytest.approx([0.1, 0.3])
    assert chosen["per_class_redundancy_bits"] is None and chosen["n_inner_validation"] == 100


@pytest.mark.slow  # ~10 s
def test_early_stopping_reads_memorising_decoders_before_they_memorise(train_run):
    # The memorisation case of test_trust (RDNXOR in 256 dimensions, 5,000 samples, β = 0): its
    # last epochs read -0.25 bits (flagged invalid); its decoders peak near the exact 1 bit.
    results, run_dir = train_run("task=embedded", "task.pmf=rdnxor", "task.dim=256", "task.n_samples=5000", "beta=0",
                                 "early_stopping.enabled=true")
    assert results["valid"] is True and results["converged"] is True and results["convergence_warning"] is None
    assert results["redundancy_bits"] == pytest.approx(1.0, abs=0.1)
    assert all(0.85 < u <= 1.0 + 3 * se for u, se in zip(results["usable_info_bits"], results["usable_info_se_bits"]))
    assert all(e < 10 for e in results["early_stopping_epochs"])  # before the fall
    assert results["n_inner_validation"] == 400 and results["n_train"] == 3600
    assert "early stopping" in results["reduction"]
    # The held-out curve itself still shows the fall: the figure is read before it.
    assert results["redundancy_bits_final"] < 0.5


@pytest.mark.slow  # ~6 s
def test_both_engines_stop_at_the_same_epochs_with_the_same_numbers(train_run):
    args = ("task=and", "beta=0", "early_stopping.enabled=true", "trainer.max_epochs=12")
    batched, _ = train_run(*args, name="batched")
    alone, run_dir = train_run(*args, "engine=lightning", name="alone")
    assert batched.get("batched_with") == 1 and "batched_with" not in alone
    assert batched["early_stopping_epochs"] == alone["early_stopping_epochs"]
    for key in ("usable_info_bits", "usable_info_bits_inner"):
        assert batched[key] == pytest.approx(alone[key], abs=1e-3), key
    # AND: I(Xi;Y) = 0.311 bits for each source.
    assert batched["redundancy_bits"] == pytest.approx(0.311, abs=0.03)
    columns = (run_dir / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "inner/usable_info_bits_x1" in columns and "inner/usable_info_bits_x2" in columns


@pytest.mark.slow  # ~15 s
def test_mode_pid_stops_its_beta_0_trainings_early_and_not_its_redundancy(train_run):
    results, run_dir = train_run("task=rdnxor", "mode=pid", "early_stopping.enabled=true", "trainer.max_epochs=10")
    assert "early_stopping_epochs" not in results  # the β = 15 I∩: read at its last epochs
    assert "inner/usable_info_bits_x1" not in (run_dir / "csv" / "metrics.csv").read_text().splitlines()[0]
    for name in ("usable_x1", "usable_x2", "joint"):  # each β = 0 training holds out its inner split
        assert "inner/usable_info_bits_x1" in (run_dir / "pid" / name / "csv" / "metrics.csv").read_text().splitlines()[0]
    assert results["pid"]["unique"] == pytest.approx([0, 0], abs=0.05)  # RDNXOR: no unique information
    assert set(results["pid"]["early_stopping_epochs"]) == {"usable_x1", "usable_x2", "joint"}
    # one decoder each: a source alone, or all sources as one
    assert all(len(epochs) == 1 for epochs in results["pid"]["early_stopping_epochs"].values())


def test_an_early_stopped_figure_far_below_its_training_split_is_flagged_a_loose_lower_bound():
    # A fresh user's: 600 samples of 300 dimensions, the label in one of them. Logistic regression
    # gets 0.84 bits; early stopping read 0.05 held out (0.8 on the training split), unflagged.
    from rine.outcome import generalisation_check

    flagged = generalisation_check({"usable_info_bits": [0.15, -0.049], "usable_info_bits_train": [0.8, 0.1]})
    assert flagged["converged"] is False
    assert "x1 0.800 bits there, 0.150 held out" in flagged["convergence_warning"] and "x2" not in flagged["convergence_warning"]
    # The bench's early-stopped runs leave at most 0.06 bits between the splits: nothing to say.
    assert generalisation_check({"usable_info_bits": [0.94, 0.96], "usable_info_bits_train": [1.0, 0.99]}) == {}
