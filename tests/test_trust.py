"""Trust on inputs beyond the paper: the agreement constraint for any number of classes,
degenerate sources, physical bounds, untrusted PID atoms, tiny data, stale results.

Each handed input of the trust issue is a test here with its right value (bits).
"""

import itertools
import json
import math
import warnings

import numpy as np
import pytest

from rine.errors import RineError
from rine.config import compose_config
from rine.run import format_summary, run


def copy_gate(path, symbols: int):
    """Each source a uniform `symbols`-ary variable, Y = (X1, X2): K = symbols², redundancy 0 by every definition."""
    letters = "abcdefgh"[:symbols]
    rows = [f"{a},{b},{a}{b},1/{symbols**2}" for a, b in itertools.product(letters, letters)]
    path.write_text("x1,x2,y,p\n" + "\n".join(rows) + "\n")
    return path


def pmf_run(tmp_path, pmf, *overrides, name="run"):
    cfg = compose_config(["task=pmf", f"pmf_file={pmf}", "task.reference_timeout_s=0", *overrides])
    return run(cfg, tmp_path / name)


@pytest.mark.slow  # the default settings: ~10 s of CPU each
@pytest.mark.parametrize("symbols", [4, 8], ids=["K=16", "K=64"])
def test_copy_gate_has_no_redundancy_at_default_settings(tmp_path, symbols):
    results = pmf_run(tmp_path, copy_gate(tmp_path / "copy.csv", symbols))
    assert results["n_classes"] == symbols**2
    assert results["reference"]["i_wedge"] == 0.0
    # Each source alone carries log2(symbols) bits; a penalty too weak to make the decoders agree
    # leaves about that much here (the paper's setting gave 1.97 bits for K = 16).
    assert abs(results["redundancy_bits"]) <= 0.05
    assert results["disagreement_tv"] <= 0.05 and results["constraint_met"] is True
    assert results["valid"] is True


@pytest.mark.slow  # 30 epochs: ~7 s of CPU
def test_papers_setting_misses_the_constraint_at_16_classes_and_says_what_helps(tmp_path):
    results = pmf_run(tmp_path, copy_gate(tmp_path / "copy.csv", 4), "objective=paper", "model=mlp_paper")
    # D = L1/K shrinks with K: the decoders keep their unique bits and I∩ is their usable information.
    assert results["redundancy_bits"] > 1.5
    assert results["constraint_met"] is False and results["disagreement_tv"] > 0.5
    assert "objective=constrained" in results["warning"]
    # The disagreement is reported as the total variation the warning tests, not as the K-scaled D.
    assert f"TV = {results['disagreement_tv']:.3f}" in format_summary(results)


@pytest.mark.slow
@pytest.mark.parametrize("symbols", [2, 3, 5, 6, 7])
def test_the_constraint_is_met_from_4_to_49_classes(tmp_path, symbols):
    results = pmf_run(tmp_path, copy_gate(tmp_path / "copy.csv", symbols))
    assert results["disagreement_tv"] <= 0.05 and abs(results["redundancy_bits"]) <= 0.05


@pytest.mark.slow  # the default settings: ~12 s of CPU
def test_64_classes_are_fitted(tmp_path):
    # X1 = X2 = Y uniform on 64 symbols: 6 bits, all of it redundant (was 5.89: under-fitted).
    pmf = tmp_path / "same64.csv"
    pmf.write_text("x1,x2,y,p\n" + "\n".join(f"s{i},s{i},s{i},1/64" for i in range(64)) + "\n")
    results = pmf_run(tmp_path, pmf)
    assert results["reference"]["i_wedge"] == pytest.approx(6.0)
    assert abs(results["redundancy_bits"] - 6.0) <= 0.05
    assert results["constraint_met"] is True


@pytest.mark.slow  # the default settings: ~8 s of CPU
def test_a_constant_source_has_no_information_and_does_not_blow_up(tmp_path):
    # x1 constant, x2 = y: I(X1;Y) = 0, so the redundancy is 0 (was −614 bits: BatchNorm's
    # held-out statistics divided a lagging running mean by a variance of ~0).
    pmf = tmp_path / "constant.csv"
    pmf.write_text("x1,x2,y,p\nzero,0,0,1/2\nzero,1,1,1/2\n")
    results = pmf_run(tmp_path, pmf)
    assert abs(results["redundancy_bits"]) <= 0.05
    assert abs(results["usable_info_bits"][0]) <= 0.05
    assert results["valid"] is True


@pytest.mark.slow  # 20,000 samples at the default settings: ~13 s of CPU
def test_a_constant_array_source_and_a_rare_class(tmp_path):
    # task=arrays: x1 = ones, x2 = y as float with 1 % of class 1 (was usable_x1 = −233 bits).
    rng = np.random.default_rng(0)
    y = (rng.random(20_000) < 0.01).astype(int)
    data = tmp_path / "rare.npz"
    np.savez(data, x1=np.ones(len(y)), x2=y.astype(float), y=y)
    results = run(compose_config(["task=arrays", f"data_file={data}"]), tmp_path / "run")
    assert abs(results["redundancy_bits"]) <= 0.05
    assert abs(results["usable_info_bits"][0]) <= 0.05
    assert all(math.isfinite(u) for u in results["usable_info_bits"])


@pytest.mark.slow  # 30 epochs: ~5 s of CPU each
@pytest.mark.parametrize("overrides", [["beta=500", "beta_schedule=fixed"], ["beta=1e6"]],
                         ids=["beta=500-fixed", "beta=1e6"])
def test_an_impossible_estimate_is_flagged_not_reported_plainly(tmp_path, overrides):
    # The paper's SGD recipe at a huge β: the decoders end up worse than guessing (I∩ < 0).
    results = run(compose_config(["objective=paper", "model=mlp_paper", *overrides]), tmp_path / "run")
    assert results["status"] == "complete"
    assert results["redundancy_bits"] < -0.1
    assert results["valid"] is False
    assert any("below 0" in reason for reason in results["invalid_reasons"])
    assert "INVALID" in format_summary(results)
    on_disk = json.loads((tmp_path / "run" / "results.json").read_text())
    assert on_disk["valid"] is False and on_disk["invalid_reasons"] == results["invalid_reasons"]


@pytest.mark.slow  # the default settings: ~8 s of CPU (one training, shared with test_train)
def test_a_valid_estimate_within_bounds_is_not_flagged(default_unq_run):
    results, _ = default_unq_run
    assert results["valid"] is True and results["invalid_reasons"] == []
    assert abs(results["redundancy_bits"]) <= 0.02
    assert 0 < results["redundancy_se_bits"] < 0.05


def test_gamma_one_is_refused_for_annealed_schedules():
    from rine.config import validate_config

    for schedule in ("annealed", "constrained"):
        with pytest.raises(RineError, match=r"gamma=1 is invalid"):
            validate_config(compose_config(["gamma=1", f"beta_schedule={schedule}"]))
    validate_config(compose_config(["gamma=1", "beta_schedule=fixed"]))  # fixed does not read gamma


def test_sgd_under_the_constrained_schedule_is_refused():
    from rine.config import validate_config

    with pytest.raises(RineError, match="adaptive optimizer"):
        validate_config(compose_config(["model=mlp_paper"]))


def binary_gaussian_mi_bits(sigma: float) -> float:
    """I(X;Y) for uniform Y in {0, 1} and X = ±1 + N(0, σ²), by quadrature."""
    from scipy.stats import norm

    x = np.linspace(-1 - 12 * sigma, 1 + 12 * sigma, 200_001)
    p0, p1 = norm.pdf(x, -1, sigma), norm.pdf(x, 1, sigma)
    q = np.clip(p1 / (p0 + p1), 1e-300, 1 - 1e-16)
    h = -(q * np.log2(q) + (1 - q) * np.log2(1 - q))
    return 1 - float(np.sum((p0 + p1) / 2 * h) * (x[1] - x[0]))


def noisy_copies(n=20_000, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    sign = 2.0 * y - 1
    return [sign + rng.normal(0, 0.5, n), sign + rng.normal(0, 1.0, n)], y


@pytest.mark.slow
def test_noisy_continuous_copies_flag_the_negative_synergy(tmp_path):
    # Binary Y, x1 = ±1 + N(0, 0.5²), x2 = ±1 + N(0, 1²): the decoders cannot agree on any
    # deterministic common part, so I∩ ≈ 0 and synergy = joint − I1 − I2 + I∩ comes out negative.
    import rine

    (x1, x2), y = noisy_copies()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        atoms = rine.decompose([x1, x2], y, seeds=1)
    # Each usable information is right (I(X1;Y) = 0.913, I(X2;Y) = 0.486 bits); I∩ is the common part.
    assert abs(atoms.redundancy.bits) <= 0.05
    assert atoms.usable[0].bits == pytest.approx(binary_gaussian_mi_bits(0.5), abs=0.03)
    assert atoms.usable[1].bits == pytest.approx(binary_gaussian_mi_bits(1.0), abs=0.03)
    assert atoms.synergy.bits < -0.3
    assert any(issubclass(w.category, rine.NegativeAtomWarning) and "synergy" in str(w.message) for w in caught)
    pid = atoms.results[0]["pid"]
    assert any("Gács–Körner" in w for w in pid["warnings"])
    assert pid["se"]["synergy"] > 0


def test_too_little_data_is_one_line_saying_how_many_samples_are_needed(tmp_path):
    import rine

    data = tmp_path / "tiny.npz"
    np.savez(data, x1=np.arange(4.0), x2=np.arange(4.0), y=np.array([0, 0, 1, 1]))
    with pytest.raises(RineError, match=r"4 samples leave 2 for the held-out split; .* at least 50 samples") as error:
        run(compose_config(["task=arrays", f"data_file={data}"]), tmp_path / "run")
    assert "\n" not in str(error.value)
    assert not (tmp_path / "run").exists()
    with pytest.raises(RineError, match="at least 50 samples"):
        rine.estimate_redundancy([np.arange(4.0), np.arange(4.0)], [0, 0, 1, 1], seeds=1)
    with pytest.raises(RineError, match="at least 50 samples"):
        pmf_run(tmp_path, "rdnxor", "task.n_samples=20")


def test_an_edited_data_file_is_trained_again_not_reused(tmp_path):
    pmf = tmp_path / "dist.csv"
    pmf.write_text("x1,x2,y,p\n0,0,0,1/2\n1,1,1,1/2\n")  # a redundant bit
    overrides = ["trainer.max_epochs=3", "report.last_epochs=1"]
    first = pmf_run(tmp_path, pmf, *overrides)
    assert first["reference"]["i_wedge"] == pytest.approx(1.0)
    again = pmf_run(tmp_path, pmf, *overrides)
    assert again.get("skipped") is True  # same config, same content: reused
    pmf.write_text("x1,x2,y,p\n0,0,0,1/4\n0,1,1,1/4\n1,0,1,1/4\n1,1,0,1/4\n")  # XOR: no redundancy
    edited = pmf_run(tmp_path, pmf, *overrides)
    assert not edited.get("skipped")
    assert edited["reference"]["i_wedge"] == 0.0 and edited["data_sha256"] != first["data_sha256"]

    data = tmp_path / "data.npz"
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    np.savez(data, x1=y.astype(float), x2=y.astype(float), y=y)
    cfg = compose_config(["task=arrays", f"data_file={data}", *overrides])
    first = run(cfg, tmp_path / "arrays")
    np.savez(data, x1=rng.normal(size=200), x2=rng.normal(size=200), y=y)
    assert not run(cfg, tmp_path / "arrays").get("skipped")
    assert run(cfg, tmp_path / "arrays").get("skipped") is True


def test_integer_coded_symbols_are_one_hot_encoded_and_reach_the_entropy():
    # A scalar code 0..15 copied into both sources: the redundancy is H(Y) = 4 bits. An MLP
    # on the scalar code reached 2.0 bits (valid, no warning); one-hot it reaches the entropy.
    import rine

    rng = np.random.default_rng(0)
    y = rng.integers(0, 16, 2000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = rine.estimate_redundancy([y.copy(), y.copy()], y, seeds=1)
        scalar = rine.estimate_redundancy([y.copy(), y.copy()], y, seeds=1, overrides=["task.categorical=false"])
    h_y = result.results[0]["h_y_bits"]
    assert abs(result.redundancy.mean - h_y) < 0.1
    assert scalar.redundancy.mean < h_y - 1  # the failure one-hot encoding avoids


def test_training_stopped_while_the_estimate_still_rises_is_flagged():
    # 400 samples of a bit copied into both sources: 3 steps an epoch, 90 in all; the held-out
    # I∩ is still climbing towards 1 bit at 0.93, which must not read as a plain figure.
    import rine

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    x = y[:, None].astype(float)
    with pytest.warns(rine.NotConvergedWarning, match="still rising"):
        short = rine.estimate_redundancy([x, x.copy()], y, seeds=1)
    assert short.results[0]["converged"] is False and short.redundancy.mean < 0.95
    with warnings.catch_warnings():
        warnings.simplefilter("error", rine.NotConvergedWarning)
        longer = rine.estimate_redundancy([x, x.copy()], y, seeds=1, epochs=300)
    assert longer.results[0]["converged"] is True and longer.redundancy.mean > short.redundancy.mean


def test_convergence_check_compares_the_last_third_of_the_curve():
    from rine.outcome import convergence_check

    def history(curve):
        return [{"val/redundancy_bits": v, "step": i + 1} for i, v in enumerate(curve)]

    assert convergence_check(history([0.5] * 8))["converged"] is None  # too short to judge
    assert convergence_check(history([1.0] * 20 + [0.99, 1.01] * 5))["converged"] is True
    rising = convergence_check(history([0.8 + 0.005 * i for i in range(30)]))
    assert rising["converged"] is False and "+0.040 bits" in rising["convergence_warning"]  # epoch 28 against epoch 20


def test_many_integer_symbols_read_as_a_number_are_named(tmp_path, capsys):
    # 300 symbols are past auto one-hot: read as one number, a decoder finds little of their
    # information (x1 determines y; 0.01 of 2 bits), so the run says how to declare them symbols.
    from rine.tasks.arrays import ArraysTask

    rng = np.random.default_rng(0)
    x1 = rng.integers(0, 300, 3000)
    np.savez(tmp_path / "d.npz", x1=x1, x2=x1 % 4, y=x1 % 4)
    ArraysTask(str(tmp_path / "d.npz"))
    assert "x1 is one column of 300 distinct integers, read as one number" in capsys.readouterr().err
    ArraysTask(str(tmp_path / "d.npz"), categorical=True)  # declared: one-hot, nothing to say
    assert capsys.readouterr().err == ""


def test_a_beta_0_decoder_whose_held_out_usable_information_falls_is_flagged_as_memorising():
    # task=embedded task.pmf=rdnxor task.dim=256 n=50,000 beta=0 (scripts/bench_accuracy.py):
    # the held-out usable information fell from 0.99 bits at epoch 0 to 0.44 at epoch 29 while
    # the decoders fit the training split's noise; only the rise check ran, and passed it.
    from rine.outcome import convergence_check

    def history(curve, beta=0.0):
        return [{"epoch": e, "step": 10 * (e + 1), "beta": beta, "val/redundancy_bits": v,
                 "val/usable_info_bits_x1": v, "val/usable_info_bits_x2": 1.0} for e, v in enumerate(curve)]

    falling = [0.99] * 7 + [0.99 - 0.02 * e for e in range(23)]  # best 0.99, last three 0.57 on average
    flagged = convergence_check(history(falling), n_sources=2)
    assert flagged["converged"] is False
    assert "usable information of x1 fell 0.420 bits from its best epoch (0.990 bits at epoch 0)" in flagged["convergence_warning"]
    # β > 0: the agreement penalty lowers usable information by design, and noise of a few
    # hundredths is no memorisation.
    assert convergence_check(history(falling, beta=15), n_sources=2)["converged"] is True
    assert convergence_check(history([1.0, 0.97] * 15), n_sources=2)["converged"] is True


def test_agreeing_decoders_of_unequal_cross_entropy_are_not_invalid_and_negative_usable_information_names_its_cause():
    # A fresh-user review: two copies of y (truth 1 bit), 2 epochs, gave I∩ 0.907 = the mean of
    # the decoders' usable information [0.928, 0.886] and was marked INVALID for exceeding the
    # least of them by 0.02; I∩ is their mean, so that "bound" only measured their spread.
    from omegaconf import OmegaConf

    from rine.outcome import bounds_check

    cfg = OmegaConf.create({"beta": 15, "report": {"bounds_tolerance_bits": 0.02}})
    copies = {"redundancy_bits": 0.907, "redundancy_se_bits": 0.002, "usable_info_bits": [0.928, 0.886],
              "usable_info_se_bits": [0.002, 0.002], "constraint_met": True, "reference": None}
    assert bounds_check(copies, cfg) == {"valid": True, "invalid_reasons": []}
    # The exact I(Xi;Y), where known, still bounds it.
    assert not bounds_check({**copies, "reference": {"mi_sources": [0.5, 0.5]}}, cfg)["valid"]
    # Negative usable information: memorising if the training split's is positive, else a failed training
    # (objective=paper beta=500 beta_schedule=fixed: -2.9 bits on both splits).
    failed = {**copies, "redundancy_bits": -2.74, "usable_info_bits": [-2.9, -2.6], "usable_info_bits_train": [-2.9, -2.7]}
    assert "the training failed" in bounds_check(failed, cfg)["invalid_reasons"][0]
    memorised = {**failed, "usable_info_bits_train": [0.9, 0.95]}
    assert "memorises the training split" in bounds_check(memorised, cfg)["invalid_reasons"][0]


@pytest.mark.slow  # ~5 s
def test_a_beta_0_run_that_memorises_high_dimensional_sources_says_so(train_run):
    # A fresh-user review's command: RDNXOR's symbols in 256 dimensions, 5,000 samples, β = 0.
    # Both decoders peak near the exact 1 bit after 2-3 epochs, then fit the training split's
    # noise (usable information ~1.9 bits there, below 0 held out).
    results, _ = train_run("task=embedded", "task.pmf=rdnxor", "task.dim=256", "task.n_samples=5000", "beta=0")
    assert results["valid"] is False and results["converged"] is False
    assert "mean usable information (β = 0)" in results["invalid_reasons"][0]
    warning = results["convergence_warning"]
    assert "of x1 fell" in warning and "of x2 fell" in warning and "their decoders memorise" in warning
    assert all(train > 1 > 0 > held_out for train, held_out in
               zip(results["usable_info_bits_train"], results["usable_info_bits"]))


def test_a_large_fixed_beta_is_flagged_for_decoders_that_agree_by_predicting_little():
    # A fresh user's: RDNXOR at beta=1e9 beta_schedule=fixed printed I∩ = 0.09 bits (exact 1),
    # valid, converged, constraint met, both decoders at chance accuracy.
    from omegaconf import OmegaConf

    from rine.outcome import fixed_beta_check

    flagged = fixed_beta_check(OmegaConf.create({"beta": 1e9, "beta_schedule": "fixed"}))
    assert flagged["converged"] is False and "a fixed β of 1e+09" in flagged["convergence_warning"]
    assert fixed_beta_check(OmegaConf.create({"beta": 50, "beta_schedule": "fixed"})) == {}
    assert fixed_beta_check(OmegaConf.create({"beta": 1e9, "beta_schedule": "constrained"})) == {}
