"""mode=pid on the canonical tasks, and n sources (paper App. C.6)."""

import json

import pytest

from rine.pid import atoms, exact_atoms, format_pid
from rine.run import format_summary


def test_atoms_arithmetic_for_two_and_more_sources():
    two = atoms(redundancy=0.25, usable=[1.0, 0.5], joint=2.0)
    assert two["unique"] == [0.75, 0.25]
    assert two["synergy"] == pytest.approx(2.0 - 0.75 - 0.25 - 0.25)
    three = atoms(redundancy=0.25, usable=[1.0, 0.5, 0.5], joint=2.0)
    assert three["unique"] is None and three["synergy"] is None and three["usable"] == [1.0, 0.5, 0.5]
    # AND's true redundancy is an interval: no exact atoms are claimed.
    assert exact_atoms({"true_redundancy": [0.0, 0.311], "mi_sources": [0.3, 0.3], "mi_joint": 0.8}) is None


# Exact atoms (bits): redundancy, unique x1, unique x2, synergy, joint. The tolerances are
# about twice the seed-0 deviations measured on 2 CPU cores (README "Full decomposition (mode=pid)").
CANONICAL = {
    "unq": (0.0, 1.0, 1.0, 0.0, 2.0),
    "rdnxor": (1.0, 0.0, 0.0, 1.0, 2.0),
    "imperfectrdn": (0.99, 0.01, 0.0, 0.0, 1.0),
}


@pytest.mark.slow  # 4 trainings at the default settings: ~28 s of CPU each
@pytest.mark.parametrize("task", sorted(CANONICAL))
def test_pid_atoms_on_canonical_tasks(train_run, task):
    results, run_dir = train_run(f"task={task}", "mode=pid", "trainer.enable_checkpointing=false")
    pid = json.loads((run_dir / "results.json").read_text())["pid"]
    red, u1, u2, syn, joint = CANONICAL[task]
    assert pid["exact"]["redundancy"] == pytest.approx(red, abs=0.005)
    assert pid["redundancy"] == pytest.approx(red, abs=0.03)
    assert pid["unique"][0] == pytest.approx(u1, abs=0.04)
    assert pid["unique"][1] == pytest.approx(u2, abs=0.04)
    assert pid["synergy"] == pytest.approx(syn, abs=0.04)
    assert pid["joint"] == pytest.approx(joint, abs=0.03)
    assert pid["redundancy"] == results["redundancy_bits"]
    assert (run_dir / "pid.png").stat().st_size > 1000
    assert sorted(p.name for p in (run_dir / "pid").iterdir()) == ["joint", "usable_x1", "usable_x2"]
    assert format_summary(results).splitlines()[1] == format_pid(pid)
    # Each β = 0 training is bounded by its own exact value: the joint one by I(X1,X2;Y), not by
    # each I(Xi;Y) (a fresh user saw "usable information of x1 (2 bits) exceeds I(X1;Y) = 1").
    assert pid["warnings"] == [] and results["valid"] is True


def write_pmf(path, rows):
    n = len(rows[0]) - 2
    header = ",".join([f"x{i + 1}" for i in range(n)] + ["y", "p"])
    path.write_text(header + "\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n")
    return path


SMALL = ("task.n_samples=3000", "task.reference_timeout_s=0", "trainer.enable_checkpointing=false")


@pytest.mark.slow  # the default 30 epochs: ~4 s of CPU each
@pytest.mark.parametrize("pairs", ["all", "to_mean"])
def test_three_way_redundant_bit(train_run, tmp_path, pairs):
    pmf = write_pmf(tmp_path / "rdn3.csv", [(0, 0, 0, 0, "1/2"), (1, 1, 1, 1, "1/2")])
    results, _ = train_run("task=pmf", f"pmf_file={pmf}", f"distance.pairs={pairs}", *SMALL,
                           name=pairs)
    assert results["n_sources"] == 3 and results["reference"]["i_wedge"] == pytest.approx(1.0)
    assert results["redundancy_bits"] == pytest.approx(1.0, abs=0.03)
    assert results["constraint_met"] is True


@pytest.mark.slow  # 5 trainings (mode=pid, 3 sources): ~13 s of CPU
def test_three_way_xor_has_no_redundancy_but_one_joint_bit(train_run, tmp_path):
    rows = [(a, b, c, a ^ b ^ c, "1/8") for a in (0, 1) for b in (0, 1) for c in (0, 1)]
    pmf = write_pmf(tmp_path / "xor3.csv", rows)
    results, run_dir = train_run("task=pmf", f"pmf_file={pmf}", "mode=pid", *SMALL)
    pid = results["pid"]
    assert results["reference"]["i_wedge"] == 0.0 and results["reference"]["mi_joint"] == pytest.approx(1.0)
    assert abs(pid["redundancy"]) < 0.03
    assert all(abs(u) < 0.03 for u in pid["usable"])  # no single source says anything
    # ...but all three together determine Y: the joint decoder must find the 3-way XOR.
    assert pid["joint"] == pytest.approx(1.0, abs=0.05)
    assert pid["unique"] is None and pid["synergy"] is None and "n > 2" in pid["note"]
    assert (run_dir / "pid.png").is_file()


@pytest.mark.parametrize("pairs", ["all", "to_mean"])
def test_eight_sources_complete(train_run, tmp_path, pairs):
    pmf = write_pmf(tmp_path / "rdn8.csv", [(0,) * 9 + ("1/2",), (1,) * 9 + ("1/2",)])
    results, _ = train_run("task=pmf", f"pmf_file={pmf}", f"distance.pairs={pairs}", "task.n_samples=500",
                           "task.reference_timeout_s=0", "trainer.max_epochs=2", name=pairs)
    assert results["status"] == "complete" and results["n_sources"] == 8
    assert len(results["usable_info_bits"]) == 8


@pytest.mark.slow  # 4 trainings of 2,400 samples: ~10 s of CPU
def test_redundancy_near_0_is_not_invalid_against_a_noise_source_estimated_below_0(train_run, tmp_path):
    # A fresh user's: x1 = y (4 classes), x2 two columns of noise. Truth: I∩ = 0, I(X2;Y) = 0. The
    # estimates I∩ 0.009 and I(X2;Y) -0.017 were flagged "I∩ exceeds I(X2;Y)": a usable
    # information estimated below 0 is noise around a true value >= 0.
    import numpy as np

    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 3000)
    noise = rng.normal(size=(3000, 2))
    path = tmp_path / "unique.csv"
    path.write_text("x1,x2_a,x2_b,y\n" + "\n".join(f"{a},{b:.6f},{c:.6f},{a}" for a, (b, c) in zip(y, noise)) + "\n")
    results, _ = train_run("task=arrays", f"data_file={path}", "mode=pid")
    pid = results["pid"]
    assert pid["redundancy"] == pytest.approx(0, abs=0.05) and pid["usable"][1] == pytest.approx(0, abs=0.05)
    assert pid["usable"][0] == pytest.approx(2.0, abs=0.05)
    assert not any("exceeds I(X2;Y)" in reason for reason in results["invalid_reasons"])
