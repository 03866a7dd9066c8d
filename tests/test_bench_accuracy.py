"""scripts/bench_accuracy.py and the estimators it compares RINE with (rine.baselines)."""

import importlib.util
import json
import math
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, assert_one_line_error

import rine.tasks.mnist as mnist
from rine.baselines import (broja_bits, empirical_cluster_pmf, gaussian_copula_mmi, hoi_available, kmeans_broja,
                            kmeans_labels)
from rine.errors import RineError
from rine.pmf import load_pmf
from rine.tasks.embedded import EmbeddedTask

ESTIMATORS = {"RINE", "MMI (RINE β=0)", "CVX (k-means + BROJA)", "GC-MMI (hoi)"}
FAKE_ACCURACY = 0.875  # a stand-in digit classifier's accuracy: the bench must report this one


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench_accuracy", ROOT / "scripts" / "bench_accuracy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _stub_digit_classifier() -> None:
    """Seed the (test-private) disk cache of the digit classifier: the runs read it instead of
    training one (minutes on a busy CPU), and the table must carry its accuracy."""
    path, key = mnist._recognition_cache()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({key: {"heldout_accuracy": FAKE_ACCURACY, "per_digit_accuracy": [FAKE_ACCURACY] * 10,
                                      "classifier": "stub", "note": "stub"}}))


@pytest.mark.slow
def test_quick_bench_writes_every_estimators_row_beside_the_truth_and_reuses_its_runs(tmp_path, script):
    _stub_digit_classifier()
    out = tmp_path / "bench"
    args = ["scripts/bench_accuracy.py", "--quick", "--epochs", "1", "--dims", "16", "--ns", "300",
            "--mnist-n", "200", "--workers", "1", "--out", str(out)]
    proc = script(*args)
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(out / "accuracy.csv")
    assert list(table.columns[:9]) == ["task", "d", "n", "truth", "estimator", "mean", "std", "abs_error",
                                      "seconds_per_estimate"]
    for (task, d, n), rows in table.groupby(["task", "d", "n"]):
        assert set(rows["estimator"]) == ESTIMATORS, (task, d, n)
    assert {(t, d, n) for t, d, n in table[["task", "d", "n"]].itertuples(index=False)} == {
        ("rdnxor", 16, 300), ("mnist_embedded (rdnxor)", 784, 200)}
    # RDNXOR's redundancy is exactly 1 bit, for its embedded and its MNIST views alike.
    assert (table["truth_low"] == 1.0).all() and (table["truth_high"] == 1.0).all()
    assert (table["truth"].astype(float) == 1.0).all()
    measured = table[table["mean"].notna()]
    assert len(measured) >= 6
    assert np.allclose(measured["abs_error"], (measured["mean"] - 1.0).clip(lower=0) + (1.0 - measured["mean"]).clip(lower=0))
    assert (measured["seconds_per_estimate"] > 0).all()
    # each failed estimate says why (the GC estimate is singular on 160 MNIST images of 784 pixels)
    assert table.loc[table["mean"].isna(), "note"].fillna("").str.len().gt(0).all()
    mnist_rows = table[table["task"].str.startswith("mnist")]
    assert (mnist_rows["digit_accuracy"] == FAKE_ACCURACY).all()
    assert table.loc[~table["task"].str.startswith("mnist"), "digit_accuracy"].isna().all()
    text = (out / "accuracy.md").read_text()
    assert all(name in text for name in ESTIMATORS) and "digit acc. 0.875" in text
    assert (out / "accuracy.png").stat().st_size > 0 and (out / "accuracy.pdf").read_bytes().startswith(b"%PDF")

    results = sorted(out.glob("runs/*/results.json"))
    assert len(results) == 4  # 2 points x (default β, β = 0)
    before = [p.stat().st_mtime_ns for p in results]
    again = script(*args)
    assert again.returncode == 0, again.stderr
    assert [p.stat().st_mtime_ns for p in results] == before  # no run trained again
    assert pd.read_csv(out / "accuracy.csv")["mean"].equals(table["mean"])


@pytest.mark.parametrize("args, says", [
    # A fresh user's: a misspelt key gave Hydra's 68-line page; beta=0 turned the "RINE" row into a β = 0 run.
    (["early_stoping.enabled=false"], "unknown setting 'early_stoping.enabled'"),
    (["beta=0"], "beta=0: the bench sets beta itself"),
    (["--tasks", "rdnxr"], "argument --tasks: invalid choice: 'rdnxr'"),
    (["model.batch_size=0"], "model.batch_size=0 is invalid"),
    (["task.dim=8"], "task.dim=8: the bench sets task.dim itself"),
    (["--epochs", "0"], "--seeds, --dims and --epochs must be >= 1"),
    (["--ns", "10"], "--ns and --mnist-n must be >= 50"),
])
def test_bench_refuses_what_would_fail_or_relabel_its_rows(tmp_path, script, args, says):
    proc = script("scripts/bench_accuracy.py", "--tasks", "rdnxor", "--dims", "16", "--ns", "2000", "--seeds", "1",
                  "--out", str(tmp_path / "bench"), *args)
    assert says in assert_one_line_error(proc)
    assert not (tmp_path / "bench").exists() and proc.stdout == ""


def test_bench_refuses_an_out_that_is_a_file(tmp_path, script):
    out = tmp_path / "file"
    out.write_text("")
    assert "is a file" in assert_one_line_error(script("scripts/bench_accuracy.py", "--quick", "--out", str(out)))


@pytest.mark.parametrize("pmf", ["and", "rdnxor"])
def test_kmeans_broja_on_separable_points_is_dits_broja_of_the_samples_pmf(pmf):
    task = EmbeddedTask("embedded", pmf, dim=16, noise=0.0, n_samples=2000)
    data = task.setup(seed=1)
    symbols = [s.argmax(1).numpy() for s in task.discrete.setup(seed=1).train.sources]  # the same samples
    y = data.train.y.numpy()
    expected = broja_bits(empirical_cluster_pmf(symbols, y))
    found = kmeans_broja([s.numpy() for s in data.train.sources], y)
    clustered = empirical_cluster_pmf([kmeans_labels(s.numpy()) for s in data.train.sources], y).table
    # the same pmf up to the clusters' numbering (clusters = symbols)
    assert sorted(clustered.ravel()) == sorted(empirical_cluster_pmf(symbols, y).table.ravel())
    # and dit's BROJA of it, up to its optimiser's spread: it is not repeatable on one pmf even
    # with numpy's and dit's generators seeded (3e-6 between calls here; 7e-5 once under xdist)
    assert found == pytest.approx(expected, abs=2e-4)
    exact = broja_bits(load_pmf(pmf))  # and the plug-in pmf is near the true one
    assert found == pytest.approx(exact, abs=0.03)


def test_without_hoi_the_gaussian_copula_estimate_is_skipped_saying_why(monkeypatch, tmp_path):
    for name in ("hoi", "hoi.core", "hoi.core.mi"):
        monkeypatch.setitem(sys.modules, name, None)  # import hoi raises ImportError
    assert "pip install hoi" in hoi_available()
    with pytest.raises(RineError, match="hoi package is not usable"):
        gaussian_copula_mmi([np.zeros((10, 2))], np.zeros(10))
    bench = _load_bench()
    args = bench.parse_args(["--tasks", "and", "--dims", "2", "--ns", "200", "--seeds", "1", "--out", str(tmp_path)])
    [point] = bench.grid_points(args)
    cfgs, _, _ = bench.rine_configs(args, [point])
    rows = {r["estimator"]: r for r in bench.other_estimates(point, cfgs[0], tmp_path)}
    assert rows["GC-MMI (hoi)"]["value"] is None
    assert rows["GC-MMI (hoi)"]["note"].startswith("skipped: the hoi package is not usable")
    assert math.isfinite(rows["CVX (k-means + BROJA)"]["value"])  # the other estimator still runs
    assert [p.name.split("_")[4] for p in (tmp_path / "estimates").glob("*.json")] == ["CVX"]  # the skip is not cached


def test_an_out_of_range_broja_from_dits_default_solver_is_solved_again(monkeypatch):
    import dit.pid

    original = dit.pid.PID_BROJA

    class FailingDefault:  # dit's SLSQP once gave -0.18 bits on an empirical AND pmf
        def __init__(self, *args, method="auto", **kwargs):
            self.pid = None if method == "auto" else original(*args, method=method, **kwargs)

        def get_red(self, node):
            return -0.18 if self.pid is None else self.pid.get_red(node)

    monkeypatch.setattr(dit.pid, "PID_BROJA", FailingDefault)
    assert broja_bits(load_pmf("and")) == pytest.approx(0.311, abs=0.002)
