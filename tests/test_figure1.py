"""scripts/plot_figure1.py on hand-made sets of logged runs."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def fake_run(root: Path, name: str, **results) -> None:
    run_dir = root / name
    run_dir.mkdir(parents=True)
    (run_dir / "results.json").write_text(json.dumps({"status": "complete", "beta_schedule": "annealed", **results}))


def plot(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "scripts/plot_figure1.py", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def assert_figure(path_without_suffix: Path) -> None:
    png = path_without_suffix.with_suffix(".png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert path_without_suffix.with_suffix(".pdf").read_bytes().startswith(b"%PDF")


def test_left_panel_averages_seeds_per_width_and_beta(tmp_path):
    runs = tmp_path / "runs"
    for beta, level in ((0, 2.0), (50, 1.0)):
        for width in (2, 4, 8):
            for seed, noise in ((0, 0.1), (1, -0.1)):
                fake_run(runs, f"w{width}_b{beta}_s{seed}", task="digits_crop", width=width, beta=beta, seed=seed,
                         redundancy_bits=level * width / 8 + noise)
    fake_run(runs, "broken", task="digits_crop", width=2, beta=0, seed=2, status="failed", error="RineError: NaN")
    proc = plot("left", "--runs", str(runs), "--out", str(tmp_path / "fig"))
    assert proc.returncode == 0, proc.stderr
    # Mean of ±0.1 around 1.0 * 4/8, sample std of two values 0.2 apart; the failed run is left out.
    assert "beta=50 width=4: 0.500 ± 0.141 bits (n=2)" in proc.stdout
    assert "beta=0 width=2: 0.500 ± 0.141 bits (n=2)" in proc.stdout
    assert str(runs / "broken") in proc.stdout
    assert_figure(tmp_path / "fig" / "figure1_left")


def test_right_panel_is_a_class_heat_map_with_absent_classes_blank(tmp_path):
    runs = tmp_path / "runs"
    names = ["plane", "car", "bird"]
    for task, values in (("cifar_crop", [0.5, 1.5, None]), ("cifar_channels", [2.0, 2.5, 1.0]),
                         ("cifar_freq", [0.2, 0.3, 0.4])):
        for seed in (0, 1):
            shifted = [None if v is None else v + 0.1 * seed for v in values]
            fake_run(runs, f"{task}_{seed}", task=task, width=16, beta=50, seed=seed,
                     per_class_redundancy_bits=shifted, class_names=names, redundancy_bits=1.0)
    proc = plot("right", "--runs", str(runs), "--out", str(tmp_path / "fig"))
    assert proc.returncode == 0, proc.stderr
    assert "crops (width 16): plane=0.55, car=1.55, bird=nan" in proc.stdout
    assert "channels (R vs B): plane=2.05, car=2.55, bird=1.05" in proc.stdout
    assert_figure(tmp_path / "fig" / "figure1_right")


def test_without_runs_it_says_what_to_run(tmp_path):
    for panel in ("left", "right"):
        proc = plot(panel, "--runs", str(tmp_path), "--out", str(tmp_path / "o"))
        assert proc.returncode != 0
        assert f"python train.py experiment=figure1_{panel}" in proc.stderr
