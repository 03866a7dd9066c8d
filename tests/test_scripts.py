"""The paper scripts (tables, Figure 3) on small hand-made sets of logged runs."""

import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from conftest import write_fake_run

TABLE6 = "experiment=table6"


def canonical(root: Path, name: str, task: str, beta: int, seed: int, value: float, *extra: str, **results) -> Path:
    """A run of `train.py experiment=table6` (its composed config), or with `extra` overrides."""
    return write_fake_run(root, name, [TABLE6, f"task={task}", f"beta={beta}", f"seed={seed}", *extra],
                          task=task, beta=beta, seed=seed, redundancy_bits=value, **results)


@pytest.fixture(scope="module")
def tables(tmp_path_factory, script):
    """make_tables.py once over runs of every kind: (runs dir, out dir, the finished process)."""
    root = tmp_path_factory.mktemp("tables")
    runs = root / "runs"
    canonical(runs, "a", "rdnxor", 15, 0, 0.98)
    canonical(runs, "b", "rdnxor", 15, 1, 0.96, constraint_met=True)
    canonical(runs, "c", "unq", 0, 0, 0.99, constraint_met=None)  # β = 0: nothing asked, never marked
    canonical(runs, "d_single", "and", 5, 3, 0.012, constraint_met=False, disagreement_tv=0.3)  # averaged, marked
    # Not averaged: a 3-epoch debug run, a copy of "a", a setting outside the sweep, no config.
    canonical(runs, "debug", "rdnxor", 15, 2, 0.10, "trainer.max_epochs=3")
    shutil.copytree(runs / "a", runs / "z_copy_of_a")
    canonical(runs, "fixed", "rdnxor", 15, 3, 0.0, "beta_schedule=fixed", beta_schedule="fixed")
    write_fake_run(runs, "no_config", task="rdnxor", beta=15, seed=4, redundancy_bits=0.5)
    # ... results that cannot be averaged whatever their config.
    canonical(runs, "invalid", "rdnxor", 15, 5, 0.2, valid=False, invalid_reasons=["decoders disagree (TV 0.4)"])
    canonical(runs, "null", "rdnxor", 15, 6, None)
    canonical(runs, "text", "rdnxor", 15, 7, "0.9")
    nan = canonical(runs, "nan", "rdnxor", 15, 8, 0.0)
    (nan / "results.json").write_text((nan / "results.json").read_text().replace('"redundancy_bits": 0.0', '"redundancy_bits": NaN'))
    write_fake_run(runs, "failed", [TABLE6, "task=rdnxor"], task="rdnxor", beta=15, status="failed", error="RineError: NaN")
    write_fake_run(runs, "killed", [TABLE6, "task=rdnxor"], task="rdnxor", beta=15, status="running")
    write_fake_run(runs, "corrupt", raw_results='{"status": "compl')
    out = root / "tables"
    return runs, out, script("scripts/make_tables.py", "--runs", str(runs), "--out", str(out))


def not_averaged(stdout: str) -> dict[str, str]:
    lines = [line.strip()[len("not averaged: "):] for line in stdout.splitlines() if "not averaged:" in line]
    return {Path(line.split(": ", 1)[0]).name: line.split(": ", 1)[1] for line in lines}


@pytest.mark.slow
def test_tables_average_each_run_of_the_experiment_once_and_list_the_rest(tables):
    runs, out, proc = tables
    assert proc.returncode == 0, proc.stderr
    listed = not_averaged(proc.stdout)
    # Closest to both experiments (one key off): the reason names the first, Table 1's.
    assert listed["debug"] == "config differs from experiment=table1 (trainer.max_epochs=3 vs 30)"
    assert listed["z_copy_of_a"] == f"duplicate of {runs / 'a'} (same settings, seed and data; the newest copy is kept)"
    assert "beta_schedule=fixed vs annealed" in listed["fixed"]
    assert listed["no_config"].startswith("no config.yaml, so it cannot be checked")
    assert listed["invalid"] == "marked invalid: decoders disagree (TV 0.4)"
    assert listed["null"] == "redundancy_bits is missing or null"
    assert listed["text"] == "redundancy_bits is not a number ('0.9')"
    assert listed["nan"] == "redundancy_bits is nan"
    assert listed["failed"].startswith("failed: RineError") and "killed" in listed and "corrupt" in listed
    assert set(listed) == {"debug", "z_copy_of_a", "fixed", "no_config", "invalid", "null", "text", "nan",
                           "failed", "killed", "corrupt"}
    assert "Table 1 (experiment=table1): 2 run(s) averaged" in proc.stdout  # rdnxor β = 15, seeds 0 and 1
    assert "Table 6 (experiment=table6): 4 run(s) averaged" in proc.stdout

    table1 = (out / "table1.md").read_text()
    rdnxor = next(line for line in table1.splitlines() if line.startswith("| RDNXOR"))
    # Mean and sample std of 0.98 and 0.96 only; 95% t-interval, 1 degree of freedom: 0.97 ± 12.706 · 0.01414 / √2.
    assert "0.970 ± 0.014 (n=2), 95% CI [0.843, 1.097]" in rdnxor
    assert "0.967" in rdnxor  # the paper's printed value, in its own column
    assert "n/a (timeout)" in rdnxor  # dit's I_GH never finished on RDNXOR
    and_row = next(line for line in table1.splitlines() if line.startswith("| AND"))
    assert "0.123" in and_row and "[0, 0.311]" in and_row
    assert "11 run(s) under the runs folder were not averaged" in table1
    table6 = pd.read_csv(out / "table6.csv").set_index("task")
    assert table6.loc["unq", "beta0_mean"] == pytest.approx(0.99)
    assert table6.loc["rdnxor", "beta15_n"] == 2
    assert table6.loc["rdnxor", "beta15_mean"] == pytest.approx(0.97)
    assert table6.loc["rdnxor", "beta15_ci_low"] == pytest.approx(0.97 - 0.12706, abs=1e-4)
    assert table6.loc["rdnxor", "i_wedge"] == pytest.approx(1.0)
    # One seed: its value and n=1, never "± nan".
    and_row6 = next(line for line in (out / "table6.md").read_text().splitlines() if line.startswith("| AND"))
    assert "nan" not in and_row6


@pytest.mark.slow
def test_a_run_whose_decoders_disagree_marks_its_cell_and_the_note_counts_it(tables):
    _, out, proc = tables
    assert proc.returncode == 0, proc.stderr
    table6 = (out / "table6.md").read_text()
    rows = {line.split(" |")[0][2:]: line for line in table6.splitlines() if line.startswith("| ")}
    assert "| 0.012 (n=1) † |" in rows["AND"]  # its one run has constraint_met false
    assert "- † decoders still disagree (held-out TV > distance.warn_above) in 1 of 1 runs (AND β = 5): " \
           "not a redundancy." in table6
    assert "†" not in rows["UNQ"] and "†" not in rows["RDNXOR"]  # β = 0 (null) and constraint met: unmarked
    assert "I^V β=0 (mean usable information)" in rows["Task"]
    assert "- β = 0: no agreement asked" in table6
    assert "in 1 of 1 runs (AND β = 5)" in proc.stdout  # the console shows the note too
    numbers = pd.read_csv(out / "table6.csv").set_index("task")
    assert numbers.loc["and", "beta5_disagreeing"] == 1 and numbers.loc["unq", "beta0_disagreeing"] == 0
    tex = (out / "table6.tex").read_text()
    assert r"0.012$^{\dagger}$" in tex and r"in 1 of 1 runs (AND β = 5)" not in tex
    assert (r"$^{\dagger}$ decoders still disagree (held-out TV $>$ \texttt{distance.warn\_above}) in 1 of 1 runs "
            r"(AND $\beta$ = 5): not a redundancy.") in tex
    table1 = (out / "table1.md").read_text()
    assert "†" not in table1  # Table 1 (β = 15) holds no disagreeing run


UNESCAPED_PERCENT = re.compile(r"(?<!\\)%")


@pytest.mark.slow
def test_latex_tables_escape_and_compile_within_a_page(tables):
    _, out, proc = tables
    assert proc.returncode == 0, proc.stderr
    for name in ("table1", "table6"):
        tex = (out / f"{name}.tex").read_text()
        body = [line for line in tex.splitlines() if not line.startswith("%")]
        # An unescaped % comments out the rest of the line ("95% CI" ended every row).
        assert not [line for line in body if UNESCAPED_PERCENT.search(line)], name
        assert r"95\% CI" in tex and r"\toprule" in tex and r"0.970 $\pm$ 0.014" in tex
        assert tex.count(r"\\") >= 4 * 3  # every row ends
    if not (shutil.which("pdflatex") and shutil.which("kpsewhich")):
        pytest.skip("pdflatex not installed (apt-get install texlive-latex-recommended)")
    if subprocess.run(["kpsewhich", "booktabs.sty"], capture_output=True, text=True).stdout.strip() == "":
        pytest.skip("booktabs.sty not installed (texlive-latex-recommended)")
    doc = out / "doc.tex"
    # The default article on A4: 345 pt of text width, narrower than any journal's.
    doc.write_text("\\documentclass[a4paper]{article}\n\\usepackage{booktabs}\n\\begin{document}\n"
                   "\\input{table1}\n\\input{table6}\n\\end{document}\n")
    latex = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=out,
                           capture_output=True, text=True, timeout=120)
    log = (out / "doc.log").read_text(errors="replace")
    assert latex.returncode == 0, log[-2000:]
    assert "Overfull \\hbox" not in log  # both tables fit the text width
    assert (out / "doc.pdf").read_bytes().startswith(b"%PDF")


def test_a_runs_folder_with_nothing_is_an_error(tmp_path):
    from rine.errors import RineError
    from rine.results import load_results

    with pytest.raises(RineError, match="no runs folder"):
        load_results(tmp_path / "missing")
    with pytest.raises(RineError, match="no results.json in it"):
        load_results(tmp_path)


@pytest.mark.slow
def test_tables_refuse_a_runs_folder_with_nothing_and_an_out_file(tmp_path, script):
    out = tmp_path / "out"
    proc = script("scripts/make_tables.py", "--runs", str(tmp_path), "--out", str(out))  # no results.json
    assert proc.returncode == 2
    assert proc.stderr == f"error: no runs under {tmp_path} (no results.json in it)\n"
    assert not out.exists()  # nothing written
    write_fake_run(tmp_path / "runs", "a", task="unq", beta=0, redundancy_bits=1.0)
    (tmp_path / "file").write_text("x")
    proc = script("scripts/make_tables.py", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "file"))
    assert proc.returncode == 2
    assert proc.stderr == f"error: --out {tmp_path / 'file'} is a file; give a folder for the outputs\n"
    assert (tmp_path / "file").read_text() == "x"


def test_matching_follows_the_experiment_config_without_edits(tmp_path, monkeypatch):
    """When table6.yaml pins another setting, runs of the old setting stop matching and
    runs of the new one match: nothing in rine.results names a key of the experiment."""
    import rine.config
    from rine.results import load_results, match_experiment

    runs = tmp_path / "runs"
    canonical(runs, "old", "unq", 5, 0, 0.9)  # composed with today's configs
    configs = tmp_path / "configs"
    shutil.copytree(rine.config.CONFIG_DIR, configs)
    pinned = (configs / "experiment" / "table6.yaml").read_text() + "model:\n  optimizer:\n    weight_decay: 0.005\n"
    (configs / "experiment" / "table6.yaml").write_text(pinned)
    monkeypatch.setattr(rine.config, "CONFIG_DIR", configs)
    canonical(runs, "new", "unq", 5, 0, 0.8)  # composed with the pinned experiment
    frame, problems = load_results(runs)
    assert problems == []
    kept, rejected = match_experiment(frame, "table6")
    assert list(kept["run_dir"]) == [str(runs / "new")]
    assert [r.reason for r in rejected] == [
        "config differs from experiment=table6 (model.optimizer.weight_decay=0.0005 vs 0.005)"]


def figure3_runs(runs: Path, with_tv: bool) -> None:
    """RDNXOR, 2 seeds per schedule, 6 epochs; the reported figure (results.json) is the mean
    of the last 3 epochs, which differs from the final epoch's value."""
    for schedule, level in (("annealed", 0.95), ("fixed", 0.5)):
        for seed in (0, 1):
            curve = [level * e / 5 + 0.01 * seed for e in range(6)]
            distance = [0.1 / (e + 1) for e in range(6)]
            metrics = {"epoch": range(6), "val/redundancy_bits": curve, "val/distance": distance}
            extra = {}
            if with_tv:
                metrics["val/disagreement_tv"] = [2 * d for d in distance]
                extra["disagreement_tv"] = sum(2 * d for d in distance[-3:]) / 3
            write_fake_run(runs, f"{schedule}{seed}", ["experiment=figure3", f"beta_schedule={schedule}", f"seed={seed}",
                                                       "report.last_epochs=3", "trainer.max_epochs=6"],
                           metrics=metrics, task="rdnxor", beta=50, seed=seed, beta_schedule=schedule,
                           redundancy_bits=sum(curve[-3:]) / 3, distance=sum(distance[-3:]) / 3,
                           distance_final=distance[-1], reduction="mean of the last 3 epochs of the held-out curve",
                           reference={"true_redundancy": [1.0, 1.0]}, **extra)


def assert_truetype_pdf(path: Path) -> None:
    pdf = path.read_bytes()
    assert pdf.startswith(b"%PDF")
    assert b"/TrueType" in pdf or b"/CIDFontType2" in pdf  # pdf.fonttype 42: embedded TrueType
    assert b"/Type3" not in pdf


def test_figure3_plots_the_reported_reduction_and_the_total_variation(tmp_path, script):
    runs = tmp_path / "runs"
    figure3_runs(runs, with_tv=True)
    out = tmp_path / "fig"
    proc = script("scripts/plot_figure3.py", "--runs", str(runs), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    # The last-3-epochs mean of 0.95·e/5 (+0.01 for seed 1): 0.76 and 0.77, not the final 0.95.
    assert "mean of the last 3 epochs" in proc.stdout
    assert "annealed β = 50: I∩ = 0.765 ± 0.007 bits (n=2)" in proc.stdout
    tv = 2 * (0.1 / 4 + 0.1 / 5 + 0.1 / 6) / 3
    assert f"mean total variation between decoders = {tv:.3f} ± 0.000 (n=2)" in proc.stdout
    png = (out / "figure3.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert_truetype_pdf(out / "figure3.pdf")


def test_drop_duplicates_keeps_the_newest_copy_of_each_run_once(tmp_path):
    """The same sweep run twice into two folders is one measurement per seed, not two seeds."""
    from rine.results import drop_duplicates, load_results

    runs = tmp_path / "runs"
    same = dict(task="unq", beta=0, redundancy_bits=0.968, data_sha256="abc")
    write_fake_run(runs, "sweep1/0", ["experiment=figure3", "seed=0"], started_at="2024-01-01T00:00:00+00:00", **same)
    write_fake_run(runs, "sweep2/0", ["experiment=figure3", "seed=0"], started_at="2024-02-01T00:00:00+00:00", **same)
    # Newer still, but unfinished: load_results leaves it out, so it never displaces a complete copy.
    write_fake_run(runs, "sweep3/0", ["experiment=figure3", "seed=0"], started_at="2024-03-01T00:00:00+00:00",
                   status="running", **{k: v for k, v in same.items() if k != "redundancy_bits"})
    write_fake_run(runs, "sweep1/1", ["experiment=figure3", "seed=1"], seed=1, **same)  # another seed
    write_fake_run(runs, "other_data/0", ["experiment=figure3", "seed=0"], **{**same, "data_sha256": "def"})
    write_fake_run(runs, "longer/0", ["experiment=figure3", "seed=0", "trainer.max_epochs=9"], **same)
    frame, _ = load_results(runs)
    kept, dropped = drop_duplicates(frame)
    assert sorted(Path(d).relative_to(runs).as_posix() for d in kept["run_dir"]) == [
        "longer/0", "other_data/0", "sweep1/1", "sweep2/0"]
    assert dropped == [(str(runs / "sweep1" / "0"),
                        f"duplicate of {runs / 'sweep2' / '0'} (same settings, seed and data; the newest copy is kept)")]


def test_figure3_counts_a_sweep_run_twice_once(tmp_path, script):
    runs = tmp_path / "runs"
    figure3_runs(runs / "first", with_tv=True)
    figure3_runs(runs / "again", with_tv=True)
    proc = script("scripts/plot_figure3.py", "--runs", str(runs), "--out", str(tmp_path / "fig"))
    assert proc.returncode == 0, proc.stderr
    assert "annealed β = 50: I∩ = 0.765 ± 0.007 bits (n=2)" in proc.stdout  # not n=4
    assert proc.stdout.count("(same settings, seed and data; the newest copy is kept)") == 4
    # No started_at in either copy: the first run dir is kept.
    assert f"left out: {runs / 'first' / 'annealed0'}: duplicate of {runs / 'again' / 'annealed0'}" in proc.stdout


@pytest.mark.slow  # a plot_figure3.py process: ~6 s of CPU
def test_figure3_marks_disagreeing_runs_and_labels_beta_0(tmp_path, script):
    runs = tmp_path / "runs"
    for beta, met in ((0, None), (5, False)):
        metrics = {"epoch": range(3), "val/redundancy_bits": [0.5, 0.9, 0.97], "val/disagreement_tv": [0.4, 0.3, 0.2]}
        write_fake_run(runs, f"b{beta}", ["experiment=figure3", "beta_schedule=constrained", f"beta={beta}"],
                       metrics=metrics, task="rdnxor", beta=beta, beta_schedule="constrained", redundancy_bits=0.97,
                       disagreement_tv=0.2, constraint_met=met)
    proc = script("scripts/plot_figure3.py", "--runs", str(runs), "--out", str(tmp_path / "fig"))
    assert proc.returncode == 0, proc.stderr
    beta0 = next(line for line in proc.stdout.splitlines() if "β = 0" in line)
    beta5 = next(line for line in proc.stdout.splitlines() if "β = 5" in line)
    assert "constrained β = 0 (mean usable information): I∩ = 0.970 bits (n=1)" in beta0 and "†" not in beta0
    assert beta5.endswith("† decoders still disagree (held-out TV > distance.warn_above) in 1 of 1 runs: "
                          "not a redundancy")


@pytest.mark.slow  # a plot_figure3.py process: ~6 s of CPU
def test_figure3_falls_back_to_the_distance_term(tmp_path, script):
    runs = tmp_path / "runs"
    figure3_runs(runs, with_tv=False)
    proc = script("scripts/plot_figure3.py", "--runs", str(runs), "--out", str(tmp_path / "fig"))
    assert proc.returncode == 0, proc.stderr
    d = (0.1 / 4 + 0.1 / 5 + 0.1 / 6) / 3
    assert f"distance term D = {d:.3f} ± 0.000 (n=2)" in proc.stdout
    assert "total variation" not in proc.stdout


def test_figure3_script_without_runs_says_what_to_run(tmp_path, script):
    proc = script("scripts/plot_figure3.py", "--runs", str(tmp_path), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1  # the bad-input contract
    assert "python train.py experiment=figure3" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_results_json_counts_as_valid_without_the_field(tmp_path):
    from rine.results import load_results

    write_fake_run(tmp_path, "old", task="unq", beta=0, redundancy_bits=0.9)
    write_fake_run(tmp_path, "new", task="unq", beta=0, redundancy_bits=0.8, valid=True, invalid_reasons=[])
    write_fake_run(tmp_path, "bad", task="unq", beta=0, redundancy_bits=0.7, valid=False, invalid_reasons=["a", "b"])
    frame, problems = load_results(tmp_path)
    assert sorted(Path(d).name for d in frame["run_dir"]) == ["new", "old"]
    assert problems == [(str(tmp_path / "bad"), "marked invalid: a; b")]
