"""task=arrays and the Python API: your own data from .npz/.csv, through train.py's code path."""

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error

import rine
from rine.tasks.arrays import ArraysTask
from rine.errors import RineError

N = 2000


def redundant_bit(seed=0):
    """y is one bit that both sources carry; x2 is image-shaped to exercise any shape."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, N)
    x1 = np.stack([y + 0.1 * rng.standard_normal(N), rng.standard_normal(N)], axis=1)
    x2 = 5.0 * y[:, None, None] + 100.0 + 0.5 * rng.standard_normal((N, 2, 3))  # far from standardised
    return x1, x2, y


def unique_bits(seed=0):
    """y = 2·b1 + b2: x1 carries only b1, x2 only b2 (like UNQ): no redundancy, 1 unique bit each."""
    rng = np.random.default_rng(seed)
    b1, b2 = rng.integers(0, 2, N), rng.integers(0, 2, N)
    return b1 + 0.1 * rng.standard_normal(N), b2 + 0.1 * rng.standard_normal(N), 2 * b1 + b2


@pytest.mark.slow  # train.py and two API runs of 10 epochs: ~10 s of CPU
def test_npz_round_trip_cli_and_api_give_the_same_estimate(tmp_path, script):
    x1, x2, y = redundant_bit()
    data = tmp_path / "my.npz"
    np.savez(data, x1=x1, x2=x2, y=y)
    run_dir = tmp_path / "cli"
    proc = script("train.py", "task=arrays", f"data_file={data}", "trainer.max_epochs=10", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("arrays  beta=15") and " I∩ = " in proc.stdout and " TV = " in proc.stdout
    cli = json.loads((run_dir / "results.json").read_text())
    assert cli["h_y_basis"] == "empirical" and cli["data_file"] == str(data)
    assert cli["n_train"] == 1600 and cli["n_heldout"] == 400
    # Both sources carry the whole bit: I∩ ≈ H(Y) ≈ 1.
    assert cli["h_y_bits"] == pytest.approx(1.0, abs=0.01)
    assert 0.9 < cli["redundancy_bits"] <= cli["h_y_bits"] + 0.01

    result = rine.estimate_redundancy([x1, x2], y, seeds=[0, 1], epochs=10)
    # The same code path: seed 0 reproduces the CLI's number.
    assert result.per_seed[0] == pytest.approx(cli["redundancy_bits"], abs=1e-6)
    assert result.bits == pytest.approx(np.mean(result.per_seed))
    low, high = result.ci
    assert low < result.bits < high
    # 95% t-interval with 1 degree of freedom: t = 12.706.
    assert high - result.bits == pytest.approx(12.706 * result.std / math.sqrt(2), rel=1e-3)
    assert len(result.usable) == 2 and all(u.bits > 0.9 for u in result.usable)
    assert result.disagreement.mean < 0.02 and result.disagreement.unit == ""
    frame = result.to_frame()
    assert list(frame.index) == ["redundancy", "usable_x1", "usable_x2", "disagreement"]
    assert list(frame.columns) == ["mean", "std", "ci_low", "ci_high", "n"]
    assert result.run_dirs is None  # temporary folder, removed


@pytest.mark.slow  # 4 trainings (rine.decompose): ~7 s of CPU
def test_decompose_finds_two_unique_bits_and_keeps_its_runs(tmp_path):
    x1, x2, y = unique_bits()
    atoms = rine.decompose([x1, x2], y, seeds=1, run_dir=tmp_path / "runs")
    assert abs(atoms.redundancy.bits) < 0.06
    assert atoms.unique[0].bits == pytest.approx(1.0, abs=0.06)
    assert atoms.unique[1].bits == pytest.approx(1.0, abs=0.06)
    assert abs(atoms.synergy.bits) < 0.06
    assert atoms.joint.bits == pytest.approx(2.0, abs=0.05)
    assert math.isnan(atoms.redundancy.std)  # one seed: no spread
    assert list(atoms.to_frame().index) == [
        "redundancy", "unique_x1", "unique_x2", "synergy", "joint", "usable_x1", "usable_x2", "disagreement"]
    run_dir = Path(atoms.run_dirs[0])
    assert (run_dir / "pid.png").is_file() and (run_dir / "pid" / "joint").is_dir()


def test_disagreeing_decoders_raise_a_warning(tmp_path):
    x1, x2, y = unique_bits()
    # The paper's annealed β after 3 epochs is far too small to make decoders of unique bits agree.
    with pytest.warns(rine.DisagreementWarning, match="still disagree"):
        result = rine.estimate_redundancy([x1, x2], y, beta=1, seeds=1, epochs=3,
                                          overrides=["objective=paper", "model=mlp_paper"])
    assert result.results[0]["constraint_met"] is False


def test_beta_zero_measures_usable_information_and_does_not_warn(tmp_path):
    x1, x2, y = unique_bits()
    with warnings.catch_warnings():
        warnings.simplefilter("error", rine.DisagreementWarning)
        result = rine.estimate_redundancy([x1, x2], y, beta=0, seeds=1, epochs=3)
    assert result.results[0]["constraint_met"] is None and result.results[0]["warning"] is None


def test_csv_column_groups_standardised_and_seeded_stratified_split(tmp_path):
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 7], [50, 30, 20])
    table = np.column_stack([rng.normal(5, 3, 100), rng.normal(-2, 1, 100), rng.normal(0, 9, 100), y])
    path = tmp_path / "my.csv"
    np.savetxt(path, table, delimiter=",", header="x1_a,x1_b,x2,y", comments="")
    task = ArraysTask(str(path))
    data = task.setup(seed=0)
    assert [tuple(s.shape[1:]) for s in data.train.sources] == [(2,), (1,)]
    assert data.n_classes == 3 and data.class_names == ["0", "1", "7"]
    # Stratified: 20% of every class held out.
    assert np.bincount(data.heldout.y.numpy()).tolist() == [10, 6, 4]
    for s in data.train.sources:
        assert s.mean(0).abs().max() < 1e-5 and (s.std(0, unbiased=False) - 1).abs().max() < 1e-4
    again, other = task.setup(seed=0), task.setup(seed=1)
    assert (again.heldout.sources[0] == data.heldout.sources[0]).all()
    assert not (other.heldout.y.numpy().tolist() == data.heldout.y.numpy().tolist()
                and (other.heldout.sources[0] == data.heldout.sources[0]).all())


def _npz(tmp_path, **arrays):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    return str(path)


GOOD_Y = np.array([0, 0, 1, 1, 2, 2])
GOOD_X = np.arange(6.0)


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"x1": GOOD_X, "x2": GOOD_X[:5], "y": GOOD_Y}, "x2 has 5 rows but y has 6 labels"),
        ({"x1": GOOD_X, "x2": GOOD_X, "y": GOOD_Y + 0.5}, "labels y must be integers"),
        ({"x1": GOOD_X, "x2": GOOD_X, "y": GOOD_Y + 1j}, "give class labels as integers, text or booleans"),
        ({"x1": GOOD_X, "x2": GOOD_X, "y": np.array([0, 0, 1, 1, 1, 2])}, "class(es) 2 of y have a single sample"),
        ({"x1": GOOD_X, "x2": np.where(GOOD_X == 3, np.nan, GOOD_X), "y": GOOD_Y}, "x2 contains NaN or inf (first in row 3)"),
        ({"x1": np.where(GOOD_X == 1, np.inf, GOOD_X), "x2": GOOD_X, "y": GOOD_Y}, "x1 contains NaN or inf (first in row 1)"),
        ({"x1": GOOD_X, "y": GOOD_Y}, "found 1 source(s); a redundancy needs at least two"),
        ({"x1": GOOD_X, "x3": GOOD_X, "y": GOOD_Y}, "sources must be named x1, x2, ... without gaps"),
        ({"x1": GOOD_X, "x2": GOOD_X}, "no array named y"),
    ],
)
def test_bad_arrays_are_one_line_errors(tmp_path, arrays, message):
    with pytest.raises(RineError) as error:
        ArraysTask(_npz(tmp_path, **arrays))
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_missing_file_and_missing_data_file(tmp_path):
    with pytest.raises(RineError, match="data file not found: '.*nope.npz'"):
        ArraysTask(str(tmp_path / "nope.npz"))
    with pytest.raises(RineError, match="task=arrays needs data: add data_file="):
        ArraysTask(None)


def test_api_rejects_a_single_source_before_training():
    with pytest.raises(RineError, match="rine.estimate_redundancy: found 1 source"):
        rine.estimate_redundancy([GOOD_X], GOOD_Y)


def test_cli_bad_data_is_one_line_and_writes_nothing(tmp_path, script):
    data = _npz(tmp_path, x1=GOOD_X, x2=np.where(GOOD_X == 3, np.nan, GOOD_X), y=GOOD_Y)
    run_dir = tmp_path / "bad"
    proc = script("train.py", "task=arrays", f"data_file={data}", f"hydra.run.dir={run_dir}")
    line = assert_one_line_error(proc)
    assert line == f"error: {data}: x2 contains NaN or inf (first in row 3); remove or impute those rows"
    assert not (run_dir / "results.json").exists()


def test_kept_runs_are_reused_only_for_the_same_data(tmp_path):
    x1, x2, y = redundant_bit()
    first = rine.estimate_redundancy([x1, x2], y, seeds=1, epochs=1, run_dir=tmp_path)
    again = rine.estimate_redundancy([x1, x2], y, seeds=1, epochs=1, run_dir=tmp_path)
    assert again.results[0].get("skipped") is True and again.per_seed == first.per_seed
    changed = rine.estimate_redundancy([x1, x2[::-1]], y, seeds=1, epochs=1, run_dir=tmp_path)
    assert "skipped" not in changed.results[0]
    assert len(list(tmp_path.glob("data-*.npz"))) == 2


def test_api_takes_three_sources_and_the_to_mean_distance():
    x1, x2, y = redundant_bit()
    result = rine.estimate_redundancy([x1, x2, x1[:, :1]], y, seeds=1, epochs=1, overrides=["distance.pairs=to_mean"])
    assert len(result.usable) == 3
    assert result.results[0]["n_sources"] == 3 and result.results[0]["distance_pairs"] == "to_mean"
