"""digits_crop: real 8x8 images on a CPU; the redundancy must rise as the crops overlap."""

import json

import pytest

from rine.errors import RineError
from rine.tasks.images import DigitsCropTask
from rine.config import compose_config


def test_views_are_the_left_and_right_columns_of_the_digits():
    data = DigitsCropTask("digits_crop", width=3).setup(seed=0)
    (images,) = data.train.sources
    assert images.shape[1:] == (1, 8, 8) and len(data.train) + len(data.heldout) == 1797
    assert len(data.heldout) == 360 and data.n_classes == 10 and data.class_names[3] == "3"
    x1, x2 = data.views(images[:5], train=False)
    assert data.views.shapes == [(1, 8, 3)] * 2 and x1.shape == (5, 1, 8, 3)
    full = data.views.cut(images[:5])  # crops of the same normalised image
    assert full[0].equal(x1) and full[1].equal(x2)
    assert not x1.equal(x2)


@pytest.mark.parametrize("width", [0, 9])
def test_width_out_of_range(width):
    with pytest.raises(RineError, match=rf"^width={width} is invalid; the crop width must be an integer in 1\.\.8"):
        DigitsCropTask("digits_crop", width=width)


def test_command_defaults():
    cfg = compose_config(["task=digits_crop", "width=4", "beta=50"])
    assert (cfg.task.name, cfg.width, cfg.beta, cfg.model.decoder._target_) == ("digits_crop", 4, 50, "rine.models.MLP")
    assert cfg.trainer.max_epochs == 30


@pytest.mark.slow  # 3 trainings of 15 epochs: ~6 s of CPU
def test_redundancy_rises_as_the_crops_overlap(train_run):
    # A small sweep at beta = 50 (seed 0, 15 epochs, ~3 s a run). Width 2 sees the digits'
    # outer columns (little in common), 4 the two disjoint halves, 8 the same whole image.
    found = {}
    for width in (2, 4, 8):
        results, _ = train_run("task=digits_crop", f"width={width}", "beta=50", "seed=0",
                               "trainer.max_epochs=15", name=f"w{width}")
        found[width] = results["redundancy_bits"]
    # Measured here (seed 0, default objective): 0.03, 1.02, 2.72 bits; the margins leave room
    # for platform noise. (Width 4 has not met the constraint after 15 epochs: the decoders of
    # disjoint halves keep disagreeing on 7 % of the mass; 30 epochs bring it to 0.07 bits.)
    assert found[2] < 0.3 and found[2] + 0.5 < found[4] < found[8] - 0.5
    assert found[8] > 2.4  # identical views: most of log2(10) = 3.32 bits is shared


@pytest.mark.slow
def test_documented_sweep_command_trains_every_width(tmp_path, script):
    # The default launcher used to hand these MLP runs to the batched engine, which refuses
    # tasks with views ("batched training supports in-memory tasks only").
    proc = script("train.py", "-m", "task=digits_crop", "width=2,4", "beta=50", "seed=0", "trainer.max_epochs=1",
                  f"hydra.sweep.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    runs = sorted((json.loads(p.read_text()) for p in tmp_path.glob("*/results.json")), key=lambda r: r["width"])
    assert [(r["status"], r["task"], r["width"], r["epochs"]) for r in runs] == [
        ("complete", "digits_crop", 2, 1), ("complete", "digits_crop", 4, 1)]
    assert len([line for line in proc.stdout.splitlines() if "] digits_crop  width=" in line and "  I∩ = " in line]) == 2
