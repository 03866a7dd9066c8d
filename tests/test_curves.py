"""curves.png: every completed run, from either engine, leaves a picture of its training curves."""

import json

import pytest

from rine.config import compose_config
from rine.figures import CURVES_FIGURE, curves_figure, draw_curves
from rine.run import run_many

PNG = b"\x89PNG\r\n\x1a\n"


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == PNG
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_the_figure_shows_the_runs_curves_names_and_checks():
    epochs = 6
    history = [{"epoch": e, "step": 10 * (e + 1), "beta": 1.5 * e,
                "train/redundancy_bits": 0.1 * e, "val/redundancy_bits": 0.09 * e,
                "train/usable_info_bits_x1": 0.2 * e, "val/usable_info_bits_x1": 0.19 * e,
                "train/usable_info_bits_x2": 0.3 * e, "val/usable_info_bits_x2": 0.29 * e,
                "train/disagreement_tv": 0.5 / (e + 1), "val/disagreement_tv": 0.0 if e == 5 else 0.6 / (e + 1)}
               for e in range(epochs)]
    results = {"task": "mine", "beta": 15, "seed": 2, "n_sources": 2, "source_names": ["left", "right"],
               "redundancy_bits": 0.4, "constraint_met": False, "valid": True,
               "reference": {"true_redundancy": [0.3, 0.5], "mi_sources": [1.0, 0.9]}}
    fig = curves_figure(history, results, warn_above=0.05, last_epochs=2)
    redundancy, usable, disagreement, beta = fig.axes
    assert "I∩ = 0.400 bits" in fig._suptitle.get_text() and "still disagree" in fig._suptitle.get_text()
    assert [t.get_text() for t in disagreement.texts] == ["warn above 0.05"]
    at_beta_0 = curves_figure(history, {**results, "beta": 0}, warn_above=0.05)
    assert "mean usable information = 0.400 bits" in at_beta_0._suptitle.get_text()  # β = 0 is no redundancy
    assert not at_beta_0.axes[2].texts  # no agreement asked: no threshold
    held_out = redundancy.get_lines()[0]
    assert held_out.get_ydata().tolist() == pytest.approx([0.09 * e for e in range(epochs)])
    reported = [line for line in redundancy.get_lines() if line.get_label().startswith("reported")][0]
    assert list(reported.get_xdata()) == [4, 5] and list(reported.get_ydata()) == [0.4, 0.4]  # the last 2 epochs
    assert len(redundancy.patches) == 1  # the true redundancy's band
    labels = [t.get_text() for t in usable.get_legend().get_texts()]
    assert labels[:2] == ["left", "right"] and "exact I(Xi;Y)" in labels
    assert disagreement.get_yscale() == "log"
    assert min(disagreement.get_lines()[0].get_ydata()) > 0  # a TV of 0 stays on the log axis
    assert any(list(line.get_ydata()) == [0.05, 0.05] for line in disagreement.get_lines())  # warn_above
    assert beta.get_lines()[0].get_ydata().tolist() == pytest.approx([1.5 * e for e in range(epochs)])


def test_a_figure_redrawn_for_another_run_is_the_picture_of_that_run_alone(tmp_path):
    # draw_curves redraws one figure per process: nothing of the run drawn before may remain
    # (its lines, band, legend entries, axis limits), so the PNG equals a fresh figure's.
    from matplotlib.image import imread

    def run_of(epochs, sources, scale, beta, truth):
        history = [{"epoch": e, "step": e + 1, "beta": beta * e / epochs,
                    "train/redundancy_bits": scale * e, "val/redundancy_bits": scale * e * 0.9,
                    "train/disagreement_tv": 0.5 / (e + 1), "val/disagreement_tv": 0.4 / (e + 1),
                    **{f"{split}/usable_info_bits_x{i + 1}": scale * (i + 1) * e
                       for split in ("train", "val") for i in range(sources)}}
                   for e in range(epochs)]
        reference = {"true_redundancy": truth, "mi_sources": [1.0] * sources} if truth else {}
        return history, {"task": "t", "beta": beta, "seed": 0, "n_sources": sources,
                         "redundancy_bits": scale * epochs, "constraint_met": True, "reference": reference}

    first, second = run_of(40, 3, 5.0, 0, [0.2, 0.3]), run_of(6, 2, 0.1, 15, None)
    draw_curves(*first, tmp_path / "first.png", warn_above=0.05, last_epochs=5)
    draw_curves(*second, tmp_path / "redrawn.png", warn_above=0.05, last_epochs=2)
    curves_figure(*second, warn_above=0.05, last_epochs=2).savefig(tmp_path / "fresh.png", dpi=90)
    redrawn, fresh = imread(tmp_path / "redrawn.png"), imread(tmp_path / "fresh.png")
    assert redrawn.shape == fresh.shape and (redrawn == fresh).all()
    assert not (imread(tmp_path / "first.png") == fresh).all()
    # and back: the β = 15 run's threshold label does not stay on the β = 0 run's picture
    draw_curves(*first, tmp_path / "again.png", warn_above=0.05, last_epochs=5)
    curves_figure(*first, warn_above=0.05, last_epochs=5).savefig(tmp_path / "fresh_first.png", dpi=90)
    assert (imread(tmp_path / "again.png") == imread(tmp_path / "fresh_first.png")).all()


@pytest.mark.slow  # ~13 s
def test_both_engines_draw_curves_png_unless_switched_off(train_run, tmp_path):
    results, one_run = train_run("task=unq", "trainer.max_epochs=2", name="one")
    assert png_size(one_run / CURVES_FIGURE) == (1080, 288)
    cfgs = [compose_config(["task=unq", f"beta={b}", "trainer.max_epochs=2"]) for b in (0, 5)]
    batched = run_many(cfgs, [tmp_path / "b0", tmp_path / "b5"])
    assert [r["batched_with"] for r in batched] == [2, 2]
    for run_dir in ("b0", "b5"):
        assert png_size(tmp_path / run_dir / CURVES_FIGURE) == (1080, 288)
    _, quiet = train_run("task=unq", "trainer.max_epochs=1", "report.curves=false", name="quiet")
    assert (quiet / "results.json").is_file() and not (quiet / CURVES_FIGURE).exists()


def test_a_drawing_failure_is_a_warning_not_a_failed_run(train_run, monkeypatch, capsys):
    import rine.figures

    def broken(*args, **kwargs):
        raise ValueError("no room")

    monkeypatch.setattr(rine.figures, "draw_curves", broken)
    results, run_dir = train_run("task=unq", "trainer.max_epochs=1")
    assert json.loads((run_dir / "results.json").read_text())["status"] == "complete"
    assert f"warning: {run_dir}: curves.png not drawn (ValueError: no room)" in capsys.readouterr().err
