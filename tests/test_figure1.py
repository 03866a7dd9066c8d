"""scripts/plot_figure1.py on hand-made sets of logged runs."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NAMES = ["plane", "car", "bird"]


def plot(script, *args: str):
    return script("scripts/plot_figure1.py", *args)


def load_script():
    spec = importlib.util.spec_from_file_location("plot_figure1", ROOT / "scripts" / "plot_figure1.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_figure(path_without_suffix: Path) -> None:
    png = path_without_suffix.with_suffix(".png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    pdf = path_without_suffix.with_suffix(".pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and b"/Type3" not in pdf  # TrueType fonts (pdf.fonttype 42)


def test_left_panel_averages_seeds_per_width_and_beta(tmp_path, script, fake_run):
    runs = tmp_path / "runs"
    for beta, level in ((0, 2.0), (50, 1.0)):
        for width in (2, 4, 8):
            for seed, noise in ((0, 0.1), (1, -0.1)):
                fake_run(runs, f"w{width}_b{beta}_s{seed}", task="digits_crop", width=width, beta=beta, seed=seed,
                         max_epochs=30, redundancy_bits=level * width / 8 + noise)
    fake_run(runs, "broken", task="digits_crop", width=2, beta=0, seed=2, status="failed", error="RineError: NaN")
    # A debug run (3 epochs) is its own line, never averaged into the 30-epoch ones.
    fake_run(runs, "short", task="digits_crop", width=4, beta=50, seed=0, max_epochs=3, redundancy_bits=9.0)
    # The same run again in another folder, later: one seed, not two; the newer copy is kept.
    fake_run(runs, "again/w2_b0_s0", task="digits_crop", width=2, beta=0, seed=0, max_epochs=30, redundancy_bits=0.6,
             started_at="2030-01-01T00:00:00+00:00")
    proc = plot(script, "left", "--runs", str(runs), "--out", str(tmp_path / "fig"))
    assert proc.returncode == 0, proc.stderr
    assert f"left out: {runs / 'w2_b0_s0'}: duplicate of {runs / 'again' / 'w2_b0_s0'}" in proc.stdout
    # Mean of ±0.1 around 1.0 * 4/8, sample std of two values 0.2 apart; the failed run is left out.
    assert "n = seeds averaged per point" in proc.stdout
    assert "beta=50 max_epochs=30 width=4: 0.500 ± 0.141 bits (n=2)" in proc.stdout
    assert "beta=0 max_epochs=30 width=2: 0.500 ± 0.141 bits (n=2) (β = 0: mean usable information" in proc.stdout
    assert "beta=50 max_epochs=3 width=4: 9.000 bits (n=1)" in proc.stdout  # one seed: no "± nan"
    assert "nan" not in proc.stdout
    assert str(runs / "broken") in proc.stdout
    assert_figure(tmp_path / "fig" / "figure1_left")


def test_right_panel_is_a_class_heat_map_with_absent_classes_blank(tmp_path, script, fake_run):
    runs = tmp_path / "runs"
    for task, values in (("cifar_crop", [0.5, 1.5, None]), ("cifar_channels", [2.0, 2.5, 1.0]),
                         ("cifar_freq", [0.2, 0.3, 0.4])):
        for seed in (0, 1):
            shifted = [None if v is None else v + 0.1 * seed for v in values]
            fake_run(runs, f"{task}_{seed}", task=task, width=16, beta=50, seed=seed,
                     per_class_redundancy_bits=shifted, class_names=NAMES, redundancy_bits=1.0)
    proc = plot(script, "right", "--runs", str(runs), "--out", str(tmp_path / "fig"))
    assert proc.returncode == 0, proc.stderr
    assert "crops (width 16) (n=2): plane=0.55, car=1.55, bird=nan" in proc.stdout
    assert "channels (R vs B) (n=2): plane=2.05, car=2.55, bird=1.05" in proc.stdout
    assert "n = seeds averaged per row" in proc.stdout
    assert_figure(tmp_path / "fig" / "figure1_right")


@pytest.mark.slow  # a plot_figure1.py process: ~4 s of CPU
def test_right_panel_keeps_each_width_of_a_width_sweep_apart(tmp_path, script, fake_run):
    runs = tmp_path / "runs"
    for width, level in ((8, 0.5), (16, 1.0), (24, 2.0)):
        for seed in range(3):
            fake_run(runs, f"crop_w{width}_s{seed}", task="cifar_crop", width=width, beta=50, seed=seed,
                     per_class_redundancy_bits=[level + 0.01 * seed, level, level], class_names=NAMES,
                     redundancy_bits=level)
    proc = plot(script, "right", "--runs", str(runs), "--out", str(tmp_path / "fig"))
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("  crops")]
    # One row per width, each the mean over its 3 seeds only (not "n=9", not one averaged row).
    assert rows == ["  crops (width 8) (n=3): plane=0.51, car=0.50, bird=0.50",
                    "  crops (width 16) (n=3): plane=1.01, car=1.00, bird=1.00",
                    "  crops (width 24) (n=3): plane=2.01, car=2.00, bird=2.00"]


def test_right_panel_colour_scale_runs_from_zero_to_the_label_entropy(tmp_path, fake_run):
    from rine.results import load_results

    runs = tmp_path / "runs"
    for seed in (0, 1):
        fake_run(runs, f"crop_{seed}", task="cifar_crop", width=16, beta=50, seed=seed, h_y_bits=3.3219,
                 per_class_redundancy_bits=[1.00, 1.02, 1.04], class_names=NAMES, redundancy_bits=1.0)
    frame, _ = load_results(runs)
    fig, _ = load_script().draw_right(frame)
    norm = fig.axes[0].images[0].norm
    # Values 1.00..1.04 must not span the whole colour map: the scale is [0, H(Y)].
    assert norm.vmin == 0 and norm.vmax == pytest.approx(3.3219)


@pytest.mark.slow  # two plot_figure1.py processes: ~6 s of CPU
def test_without_runs_it_says_what_to_run(tmp_path, script):
    for panel in ("left", "right"):
        proc = plot(script, panel, "--runs", str(tmp_path), "--out", str(tmp_path / "o"))
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1  # the bad-input contract
        assert f"python train.py experiment=figure1_{panel}" in proc.stderr


def test_points_and_rows_of_disagreeing_runs_are_marked_and_beta_0_is_usable_information(tmp_path, fake_run):
    from rine.results import drop_duplicates, load_results

    module = load_script()
    runs = tmp_path / "runs"
    for beta, met in ((0, None), (50, False)):
        for seed in (0, 1):
            fake_run(runs, f"b{beta}_s{seed}", task="digits_crop", width=4, beta=beta, seed=seed, redundancy_bits=1.4,
                     constraint_met=met if seed == 0 else (None if beta == 0 else True),
                     per_class_redundancy_bits=[1.0, 1.0, 1.0], class_names=NAMES)
    fake_run(runs, "copy/b50_s0", task="digits_crop", width=4, beta=50, seed=0, redundancy_bits=1.4,
             constraint_met=False, per_class_redundancy_bits=[1.0, 1.0, 1.0], class_names=NAMES)
    frame, _ = load_results(runs)
    frame, copies = drop_duplicates(frame)
    assert len(frame) == 4 and [Path(d).name for d, _ in copies] == ["b50_s0"]
    fig, lines = module.draw_left(frame, "digits_crop")
    text = "\n".join(lines)
    assert "beta=50 width=4: 1.400 ± 0.000 bits (n=2) † decoders still disagree (held-out TV > " \
           "distance.warn_above) in 1 of 2 runs: not a redundancy" in text
    assert "beta=0 width=4: 1.400 ± 0.000 bits (n=2) (β = 0: mean usable information, no agreement asked)" in text
    assert "in 1 of 2 runs (beta=50 width=4): not a redundancy." in text  # the note counts the copy once
    ax = fig.axes[0]
    hollow = [line for line in ax.lines if line.get_markerfacecolor() == "white" and len(line.get_xdata())]
    assert [list(line.get_xdata()) for line in hollow] == [[4]]  # β = 50's point only, never β = 0's
    labels = ax.get_legend_handles_labels()[1]
    assert "β = 0 (mean usable information)" in labels and any("hollow" in label for label in labels)
    _, rows = module.draw_right(frame)
    beta0 = next(row for row in rows if "β = 0" in row)
    assert "mean usable information" in beta0 and "†" not in beta0
    assert any("β = 50 †" in row and "1 of 2 runs" in row for row in rows)
