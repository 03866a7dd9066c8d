"""The Python API's surface: what a notebook sees, named sources, text labels, a pmf in memory,
and logged runs as a table."""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import rine
from rine.errors import RineError
from rine.pmf import SHIPPED_DIR

N = 600


def test_dir_lists_the_api_and_the_version_is_the_packages():
    from importlib.metadata import version

    names = dir(rine)
    for name in ["estimate_redundancy", "estimate_pmf", "decompose", "decompose_pmf", "load_runs", "Estimate",
                 "RedundancyResult", "Decomposition", "DisagreementWarning", "InvalidEstimateWarning",
                 "NegativeAtomWarning", "__version__"]:
        assert name in names, name
        assert getattr(rine, name) is not None
    assert rine.__version__ == version("rine")
    assert set(rine.__all__) <= set(names)


def named_redundant_bit(seed=0):
    """Both sources carry y, a label given as text."""
    rng = np.random.default_rng(seed)
    bit = rng.integers(0, 2, N)
    y = np.where(bit == 1, "yes", "no").astype(object)  # as a pandas column of text arrives
    return {"left": bit + 0.1 * rng.standard_normal(N), "right": bit + 0.1 * rng.standard_normal(N)}, y


@pytest.mark.slow  # ~10 s
def test_named_sources_and_text_labels_reach_results_and_frames(tmp_path):
    sources, y = named_redundant_bit()
    result = rine.estimate_redundancy(sources, pd.Series(y), seeds=1, epochs=2, run_dir=tmp_path)
    on_disk = json.loads((Path(result.run_dirs[0]) / "results.json").read_text())
    assert on_disk["source_names"] == ["left", "right"] == result.source_names
    assert on_disk["class_names"] == ["no", "yes"]  # sorted, as scikit-learn's LabelEncoder numbers them
    assert on_disk["n_classes"] == 2 and on_disk["h_y_bits"] == pytest.approx(1.0, abs=0.01)
    assert list(result.to_frame().index) == ["redundancy", "usable_left", "usable_right", "disagreement"]
    # The stored data keeps the labels as text (no pickled objects) and the classes' order.
    stored = np.load(next(tmp_path.glob("data-*.npz")), allow_pickle=False)
    assert stored["y"].dtype.kind == "U" and set(stored["y"]) == {"no", "yes"}


def test_unnamed_sources_are_x1_x2_and_bad_names_or_labels_are_one_line():
    from rine.tasks.arrays import check_arrays

    _, codes, labels = check_arrays([np.arange(6.0), np.arange(6.0)], [True, False, True, False, True, False])
    assert labels.tolist() == [False, True] and codes.tolist() == [1, 0, 1, 0, 1, 0]
    _, codes, labels = check_arrays([np.arange(6.0), np.arange(6.0)], ["b", "a", "c", "b", "a", "c"])
    assert labels.tolist() == ["a", "b", "c"] and codes.tolist() == [1, 0, 2, 1, 0, 2]
    with pytest.raises(RineError, match="rine.estimate_redundancy: labels y mix types"):
        rine.estimate_redundancy([np.arange(6.0), np.arange(6.0)], np.array([1, "a", 1, "a", 2, 2], dtype=object))
    with pytest.raises(RineError, match="the sources' names: \\['a', ''\\] does not name the 2 sources") as error:
        rine.estimate_redundancy({"a": np.arange(6.0), "": np.arange(6.0)}, [0, 0, 1, 1, 2, 2])
    assert "\n" not in str(error.value)


def test_a_cli_run_names_its_sources_x1_to_xn(train_run):
    results, _ = train_run("task=unq", "trainer.max_epochs=1")
    assert results["source_names"] == ["x1", "x2"]


def rdnxor_table() -> pd.DataFrame:
    return pd.read_csv(SHIPPED_DIR / "rdnxor.csv", comment="#", dtype=str)


@pytest.mark.slow  # ~10 s
def test_a_pmf_as_a_table_or_a_dit_distribution_trains_as_task_pmf(tmp_path):
    import dit

    table = rdnxor_table()
    quick = ["task.n_samples=2000", "task.reference_timeout_s=0"]  # dit's measures: from the caches only
    from_table = rine.estimate_pmf(table, seeds=1, epochs=2, run_dir=tmp_path / "table", overrides=quick)
    written = list((tmp_path / "table").glob("pmf-*.csv"))
    assert len(written) == 1 and from_table.results[0]["pmf_file"] == str(written[0])
    reference = from_table.results[0]["reference"]
    assert reference["i_wedge"] == pytest.approx(1.0) and reference["mi_joint"] == pytest.approx(2.0)
    assert from_table.results[0]["task"] == "pmf"

    distribution = dit.Distribution([tuple(row[:3]) for row in table[["x1", "x2", "y"]].itertuples(index=False)],
                                    [float(eval(p)) for p in table["p"]])  # noqa: S307 (the shipped fractions)
    from_dit = rine.estimate_pmf(distribution, seeds=1, epochs=2, overrides=quick, name="xor")
    assert from_dit.results[0]["task"] == "xor"
    assert from_dit.results[0]["reference"]["mi_sources"] == pytest.approx(reference["mi_sources"])
    # The same distribution, seed and settings: the same sampled data, the same estimate.
    assert from_dit.bits == pytest.approx(from_table.bits, abs=1e-6)


def test_a_malformed_pmf_is_named_in_the_callers_terms(tmp_path):
    with pytest.raises(RineError) as error:
        rine.estimate_pmf(rdnxor_table().drop(columns="p"), run_dir=tmp_path)
    assert str(error.value) == "rine.estimate_pmf: missing column(s) p; expected columns x1..xn, y, p"
    with pytest.raises(RineError, match="rine.estimate_pmf: give the pmf as a pandas DataFrame"):
        rine.estimate_pmf({"x1": [0]})
    assert not list(tmp_path.glob("seed*"))  # nothing trained


def test_load_runs_gives_usable_runs_and_lists_the_others(tmp_path, fake_run):
    sources, y = named_redundant_bit()
    result = rine.estimate_redundancy(sources, y, seeds=[0, 1], epochs=1, run_dir=tmp_path / "api")
    fake_run(tmp_path, "failed", status="failed", error="RineError: boom")
    with pytest.warns(UserWarning, match="1 run\\(s\\) under .* left out .*failed: RineError: boom"):
        runs = rine.load_runs(tmp_path)
    assert sorted(runs["run_dir"]) == sorted(result.run_dirs)
    assert runs["redundancy_bits"].tolist() == pytest.approx(
        [r["redundancy_bits"] for r in sorted(result.results, key=lambda r: r["run_dir"])])
    assert {"seed", "beta", "source_names", "config"} <= set(runs.columns)
    assert runs.attrs["skipped"] == [(str(tmp_path / "failed"), "failed: RineError: boom")]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(rine.load_runs(tmp_path / "api")) == 2  # nothing left out: no warning
    with pytest.raises(RineError, match="no runs folder"):
        rine.load_runs(tmp_path / "nope")
