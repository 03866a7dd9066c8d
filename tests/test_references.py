"""Exact measures against dit, dit measures through the time-budgeted cache, pmf tasks."""

import json

import pytest

from rine.pmf import load_pmf
from rine.references import DIT_MEASURES, SHIPPED_CACHE, dit_references, pmf_key

dit = pytest.importorskip("dit")
CANONICAL = ["unq", "and", "rdnxor", "imperfectrdn"]


def as_dit(pmf):
    """The pmf as a dit.Distribution over (x1, x2, ..., y) outcomes, built from its public table."""
    import numpy as np

    outcomes, probs = [], []
    for cell in zip(*np.nonzero(pmf.table)):
        *sources, target = cell
        outcomes.append((*(pmf.source_symbols[i][s] for i, s in enumerate(sources)), pmf.target_symbols[target]))
        probs.append(float(pmf.table[cell]))
    return dit.Distribution(outcomes, probs)


@pytest.mark.parametrize("task", CANONICAL)
def test_own_measures_agree_with_dit(task):
    from dit.pid import PID_GK
    from dit.shannon import entropy, mutual_information

    pmf = load_pmf(task)
    ours = pmf.exact_measures()
    d = as_dit(pmf)
    assert ours["h_y"] == pytest.approx(entropy(d, [2]), abs=1e-9)
    assert ours["mi_sources"][0] == pytest.approx(mutual_information(d, [0], [2]), abs=1e-9)
    assert ours["mi_sources"][1] == pytest.approx(mutual_information(d, [1], [2]), abs=1e-9)
    assert ours["mi_joint"] == pytest.approx(mutual_information(d, [0, 1], [2]), abs=1e-9)
    # dit's PID_GK is Griffith et al.'s I∧ (the Gács–Körner common part).
    assert ours["i_wedge"] == pytest.approx(PID_GK(d, [[0], [1]], [2]).get_red(((0,), (1,))), abs=1e-9)


def test_shipped_cache_covers_every_canonical_task_and_measure():
    cache = json.loads(SHIPPED_CACHE.read_text())
    for task in CANONICAL:
        entries = cache[pmf_key(load_pmf(task))]
        assert set(DIT_MEASURES) <= set(entries), task
        assert all(e["status"] in {"ok", "timeout", "unavailable"} for m, e in entries.items() if m in DIT_MEASURES)
    # dit's I_GH of AND is 0.123 bits (the paper's Table 1 prints 0).
    assert cache[pmf_key(load_pmf("and"))]["i_gh"]["value"] == pytest.approx(0.1226, abs=1e-3)


@pytest.mark.slow  # dit in a child process: ~7 s of CPU
def test_dit_measures_are_computed_cached_and_not_recomputed(tmp_path):
    # AND with other symbols: a pmf the shipped cache has never seen.
    path = tmp_path / "and_letters.csv"
    path.write_text("x1,x2,y,p\nF,F,no,1/4\nF,T,no,1/4\nT,F,no,1/4\nT,T,yes,1/4\n")
    cache = tmp_path / "cache.json"
    first = dit_references(load_pmf(str(path)), timeout_s=60, measures=("i_mmi", "i_gh"), cache_path=cache)
    assert first["i_mmi"]["status"] == "ok"
    assert first["i_mmi"]["value"] == pytest.approx(0.3113, abs=1e-4)
    assert first["i_gh"]["value"] == pytest.approx(0.1226, abs=1e-3)
    # A second call with no budget reads the cache.
    again = dit_references(load_pmf(str(path)), timeout_s=0, measures=("i_mmi", "i_gh"), cache_path=cache)
    assert again == first


@pytest.mark.slow  # waits the 15 s start-up allowance of the child
def test_a_measure_that_runs_out_of_time_is_reported_not_awaited(tmp_path):
    from rine.references import compute_dit_measures

    # RDNXOR's PID_GH does not finish in minutes; half a second is far too little.
    entries = compute_dit_measures(load_pmf("rdnxor"), ["i_gh"], timeout_s=0.5)
    assert entries["i_gh"]["status"] == "timeout"


def test_pmf_task_with_three_sources_trains_and_reports_references(tmp_path, train_run):
    # A redundant bit copied into three sources, each with a private noise bit: I∧ = 1 bit.
    rows = ["x1,x2,x3,y,p"]
    for a in (0, 1):
        for n1 in (0, 1):
            for n2 in (0, 1):
                rows.append(f"{a}{n1},{a}{n2},{a},{a},1/8")
    path = tmp_path / "three.csv"
    path.write_text("\n".join(rows) + "\n")
    results, run_dir = train_run("task=pmf", f"pmf_file={path}", "task.reference_timeout_s=0", "trainer.max_epochs=3")
    reference = results["reference"]
    assert results["n_sources"] == 3 and len(results["usable_info_bits"]) == 3
    assert reference["i_wedge"] == pytest.approx(1.0)
    assert reference["mi_sources"] == pytest.approx([1.0, 1.0, 1.0])
    assert "i_gh" in reference and reference["i_gh"] is None  # not computed with a zero budget
    assert results["pmf_file"] == str(path)


@pytest.mark.slow  # a python process that trains and starts dit's child: ~20 s of CPU
def test_a_script_without_a_main_guard_is_not_run_again_by_the_dit_child(tmp_path):
    # dit's measures run in a spawned child; spawn re-imports the parent's main script, which
    # in a notebook-style script (no `if __name__ == "__main__":`) would train again and crash.
    from conftest import run_python

    script = tmp_path / "analysis.py"
    script.write_text(
        "import pandas as pd, rine\n"
        "print('TOP LEVEL RAN')\n"
        "table = pd.DataFrame({'x1': [0, 0, 1, 1, 0], 'x2': [0, 1, 0, 1, 1], 'y': [0, 1, 1, 2, 0], 'p': [0.2] * 5})\n"
        "result = rine.estimate_pmf(table, seeds=1, epochs=1, overrides=['report.last_epochs=1'])\n"
        "print(sorted(result.results[0]['reference']['dit_status'].items()))\n")
    proc = run_python(str(script), env={"RINE_CACHE_DIR": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("TOP LEVEL RAN") == 1 and "Traceback" not in proc.stderr
    assert "('i_broja', 'ok'), ('i_gh', 'not requested'), ('i_min', 'ok'), ('i_mmi', 'ok')" in proc.stdout
