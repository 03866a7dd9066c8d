"""Figure 4 (scripts/plot_views.py), the fonts of every PDF, and one convention for spread."""

import math

import matplotlib
import pytest

matplotlib.use("Agg")


def assert_views_figure(out):
    png = (out / "figure4.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    pdf = (out / "figure4.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and b"/Type3" not in pdf


def test_views_of_the_bundled_digits_offline(tmp_path, script):
    empty = tmp_path / "no_cifar"
    empty.mkdir()
    proc = script("scripts/plot_views.py", "--data-dir", str(empty), "--out", str(tmp_path / "fig"), "--width", "3")
    assert proc.returncode == 0, proc.stderr
    assert f"CIFAR-10 not found under {empty}/" in proc.stdout
    assert "digits: held-out image 0" in proc.stdout and "crops of 3 columns" in proc.stdout
    assert "no colour-channel view: the digits are greyscale (1 channel)" in proc.stdout
    assert_views_figure(tmp_path / "fig")


@pytest.mark.slow  # a plot_views.py process: ~4 s of CPU
def test_views_of_cifar10_when_present(tiny_cifar, tmp_path, script):
    proc = script("scripts/plot_views.py", "--data-dir", str(tiny_cifar), "--out", str(tmp_path / "fig"))
    assert proc.returncode == 0, proc.stderr
    # The paper's example is a car: held-out image 1 of the fixture is its first automobile.
    assert "CIFAR-10: held-out image 1 (automobile); crops of 16 columns; red vs blue channels" in proc.stdout
    assert_views_figure(tmp_path / "fig")


def load_views_script():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "scripts" / "plot_views.py"
    spec = importlib.util.spec_from_file_location("plot_views", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_views_reject_bad_input_in_one_line(tiny_cifar, tmp_path, script):
    from rine.errors import RineError

    proc = script("scripts/plot_views.py", "--data-dir", str(tmp_path / "missing"), "--out", str(tmp_path / "fig"))
    assert proc.returncode == 2
    assert proc.stderr == f"error: --data-dir {tmp_path / 'missing'} does not exist; give the folder that holds cifar-10-batches-py/\n"
    assert not (tmp_path / "fig").exists()
    # The other checks raise RineError, which main() prints as that one line with exit 2.
    views = load_views_script()
    with pytest.raises(RineError, match="width=40 is invalid"):
        views.load(str(tiny_cifar), 40)
    _, data = views.load(str(tiny_cifar), None)
    with pytest.raises(RineError, match="--index 9 is out of range"):
        views.pick(data, 9)
    with pytest.raises(RineError, match="task.cutoff=20 is invalid"):
        views.views_of(data, data.heldout.sources[0][:1], cutoff=20)


def test_views_are_the_training_views(tiny_cifar):
    """The figure's views come from ImageViews with the training statistics: the crops are
    the image's first and last columns, and the two frequency bands add up to the image."""
    import torch

    views_script = load_views_script()
    _, data = views_script.load(str(tiny_cifar), 12)
    image = data.heldout.sources[0][1:2]
    views = views_script.views_of(data, image, cutoff=2)
    normalised = ((image.float() / 255 - data.views.mean) / data.views.std)[0].numpy()
    x1, x2 = views["crops"]
    assert x1.shape == (3, 32, 12) and (abs(x1 - normalised[..., :12]) < 1e-5).all()
    assert (abs(x2 - normalised[..., -12:]) < 1e-5).all()
    assert views["channels"][0].shape == (1, 32, 32) and (abs(views["channels"][1][0] - normalised[2]) < 1e-5).all()
    low, high = views["frequencies"]
    assert (abs(low + high - normalised) < 1e-4).all() and float(abs(torch.as_tensor(high)).max()) > 0.1


def test_every_pdf_embeds_truetype_fonts(tmp_path):
    import matplotlib.pyplot as plt

    from rine.files import save_figure_atomic

    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1], label="β = 50, I∩ (bits)")
    ax.legend()
    png, pdf = save_figure_atomic(fig, tmp_path / "f")
    data = pdf.read_bytes()
    assert b"/FontFile2" in data and b"/Type3" not in data  # Type 42 (TrueType), not matplotlib's default Type 3
    assert matplotlib.rcParams["pdf.fonttype"] == 3  # the setting stays local to our writer
    assert png.read_bytes().startswith(b"\x89PNG")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.pdf", "f.png"]  # no temporary file left


def test_one_convention_for_spread_in_the_api_tables_and_plots():
    from rine.api import Estimate
    from rine.stats import format_ci, format_mean_std

    assert format_mean_std([0.973]) == "0.973 (n=1)"
    assert format_mean_std([0.973], unit="bits", ci=False) == "0.973 bits (n=1)"
    assert repr(Estimate((0.973,))) == "0.973 bits (n=1)"  # was "0.973 ± nan bits (95% CI nan to nan, n=1)"
    assert format_mean_std([]) == "–" and format_ci([1.0]) == "–"
    two = format_mean_std([0.98, 0.96])
    assert two == "0.970 ± 0.014 (n=2), 95% CI [0.843, 1.097]"
    assert repr(Estimate((0.98, 0.96))) == "0.970 ± 0.014 bits (n=2), 95% CI [0.843, 1.097]"
    assert format_mean_std([0.98, math.nan, 0.96], ci=False) == "0.970 ± 0.014 (n=2)"  # NaN is not a seed
    assert format_mean_std([0.98, 0.96], show_n=False, ci=False) == "0.970 ± 0.014"
    with pytest.raises(ValueError):
        format_mean_std(["x"])
