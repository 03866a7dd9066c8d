"""End to end: training the canonical tasks, results.json, the CSV log, and failures."""

import json

import pandas as pd
import pytest

from rine.errors import RineError
from rine.run import format_summary

REQUIRED_KEYS = {
    "status", "task", "beta", "seed", "redundancy_bits", "usable_info_bits", "disagreement_tv",
    "h_y_bits", "reference", "wall_seconds", "redundancy_bits_final",
}


@pytest.mark.slow  # the default settings: ~10 s of CPU (one training, shared with test_trust)
def test_unq_redundancy_is_near_zero(default_unq_run):
    results, run_dir = default_unq_run
    assert (results["status"], results["beta"], results["seed"]) == ("complete", 15, 0)
    # Truth 0; the paper reports 0.011 at beta=15. Each source alone carries 1 bit, so a
    # broken agreement penalty would leave about 1 bit here.
    assert abs(results["redundancy_bits"]) < 0.05
    assert results["disagreement_tv"] < 0.02
    assert results["reference"]["true_redundancy"] == [0.0, 0.0]


@pytest.mark.slow  # the default settings: ~9 s of CPU
def test_rdnxor_redundancy_is_near_one_bit(train_run):
    results, run_dir = train_run("task=rdnxor", "beta=15", "seed=0")
    # Truth 1 bit; the paper reports 0.967. The synergistic bit must not leak in (< 1.05)
    # and the redundant one must be found (> 0.93).
    assert 0.93 < results["redundancy_bits"] < 1.05
    assert all(0.93 < u < 1.05 for u in results["usable_info_bits"])
    assert results["h_y_bits"] == pytest.approx(2.0)


def test_results_file_log_and_config_are_written(train_run):
    results, run_dir = train_run("task=and", "beta=5", "seed=1", "trainer.max_epochs=6")
    on_disk = json.loads((run_dir / "results.json").read_text())
    assert REQUIRED_KEYS <= on_disk.keys()
    assert on_disk["status"] == "complete" and on_disk["task"] == "and" and on_disk["seed"] == 1
    assert on_disk["h_y_bits"] == pytest.approx(0.8113, abs=1e-4)  # exact H(Y) of AND, not 1 bit
    assert on_disk["reference"]["mi_sources"] == pytest.approx([0.3113, 0.3113], abs=1e-4)
    assert len(on_disk["usable_info_bits"]) == 2
    assert (run_dir / "config.yaml").is_file()
    log = pd.read_csv(run_dir / "csv" / "metrics.csv")
    assert list(log["epoch"]) == list(range(6))  # one row per epoch
    # β is annealed per epoch: β(1 - 0.97^epoch).
    assert log["beta"].tolist() == pytest.approx([5 * (1 - 0.97**e) for e in range(6)], rel=1e-5)
    assert log["lr"].tolist() == pytest.approx([0.001 * 0.97**e for e in range(6)], rel=1e-5)
    for column in ["val/redundancy_bits", "train/redundancy_bits", "val/distance", "train/distance",
                   "val/usable_info_bits_x1", "train/usable_info_bits_x2", "val/acc_x1", "train/acc_x2"]:
        assert log[column].notna().all(), column
    # The quoted figure is the mean of the last 5 held-out epochs; the final epoch is kept too.
    assert results["redundancy_bits"] == pytest.approx(log["val/redundancy_bits"].tail(5).mean(), abs=1e-6)
    assert results["redundancy_bits_final"] == pytest.approx(log["val/redundancy_bits"].iloc[-1], abs=1e-6)


def test_fixed_beta_schedule_keeps_beta_constant(train_run):
    results, run_dir = train_run("task=unq", "beta=7", "beta_schedule=fixed", "trainer.max_epochs=2")
    assert results["curve"]["beta"] == [7.0, 7.0]


def test_same_seed_gives_identical_results(train_run):
    first, _ = train_run("task=imperfectrdn", "seed=4", "trainer.max_epochs=2", name="a")
    second, _ = train_run("task=imperfectrdn", "seed=4", "trainer.max_epochs=2", name="b")
    third, _ = train_run("task=imperfectrdn", "seed=5", "trainer.max_epochs=2", name="c")
    assert first["curve"] == second["curve"]
    assert first["curve"] != third["curve"]


def test_nan_loss_stops_with_the_epoch_and_a_failed_results_file(train_run, tmp_path):
    with pytest.raises(RineError, match=r"NaN/inf in epoch 0"):
        # SGD (the paper's recipe) at an absurd lr; Adam's normalised steps would not diverge.
        train_run("task=unq", "objective=paper", "model=mlp_paper", "model.optimizer.lr=1e12", "trainer.max_epochs=3")
    on_disk = json.loads((tmp_path / "run" / "results.json").read_text())
    assert on_disk["status"] == "failed"
    assert "NaN" in on_disk["error"]


def test_a_held_out_figure_that_becomes_nan_stops_the_run_too(train_run, tmp_path):
    # A fresh user's: AdamW at lr 1e12 kept a finite training loss (~3e11) while the recalibrated
    # BatchNorm overflowed held out: the run printed "I∩ = nan bits", complete and valid.
    with pytest.raises(RineError, match=r"held-out cross-entropy became NaN/inf in epoch 0"):
        train_run("task=rdnxor", "model.optimizer.lr=1e12", "trainer.max_epochs=3")
    assert json.loads((tmp_path / "run" / "results.json").read_text())["status"] == "failed"
    # Lightning's engine stays finite there (its figure, ~-4e11 bits, is flagged invalid).
    results, _ = train_run("task=rdnxor", "model.optimizer.lr=1e12", "trainer.max_epochs=3", "engine=lightning",
                           name="lightning")
    assert results["valid"] is False


def test_summary_line_names_task_estimate_truth_and_folder():
    line = format_summary({
        "task": "rdnxor", "beta": 15, "redundancy_bits": 0.9712, "run_dir": "outputs/x",
        "reference": {"true_redundancy": [1.0, 1.0]},
    })
    assert line == "rdnxor  beta=15  I∩ = 0.97 bits  (exact 1.00)  -> outputs/x"
    interval = format_summary({
        "task": "and", "beta": 5, "redundancy_bits": 0.0, "run_dir": "d",
        "reference": {"true_redundancy": [0.0, 0.3113]},
    })
    assert "(exact 0.00–0.31)" in interval
    # A user's pmf: no agreed truth, the smallest and the largest common measure instead.
    bounds = format_summary({"task": "mine", "beta": 15, "redundancy_bits": 0.1, "run_dir": "d",
                             "reference": {"true_redundancy": None, "i_wedge": 0.0, "min_mi_sources": 0.3113}})
    assert "(I∧ 0.00, MMI 0.31)" in bounds
    # A negative figure within its tolerance is valid, but never printed as a plain number.
    noisy = format_summary({"task": "and", "beta": 15, "redundancy_bits": -0.14, "redundancy_se_bits": 0.07,
                            "valid": True, "run_dir": "d"})
    assert "I∩ = -0.14 bits (below 0 within its noise: SE 0.07)" in noisy
    # β = 0 asks no agreement: the mean usable information, against the exact mean I(Xi;Y).
    usable = format_summary({"task": "unq", "beta": 0, "redundancy_bits": 0.998, "run_dir": "d",
                             "reference": {"true_redundancy": [0.0, 0.0], "mi_sources": [1.0, 1.0]}})
    assert usable.startswith("unq  beta=0  mean usable information = 1.00 bits (β = 0: not a redundancy)  (exact 1.00)")


def test_a_complete_run_is_not_trained_again_unless_its_config_changed(train_run):
    first, run_dir = train_run("task=unq", "trainer.max_epochs=2")
    again, _ = train_run("task=unq", "trainer.max_epochs=2")
    assert again["skipped"] is True and again["redundancy_bits"] == first["redundancy_bits"]
    changed, _ = train_run("task=unq", "trainer.max_epochs=3")
    assert "skipped" not in changed and changed["epochs"] == 3
