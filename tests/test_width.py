"""An image task's crop width is in its summary line and its default run folder's name."""

import os
from pathlib import Path

import pytest
from conftest import run_warm

from rine.run import format_summary

ROOT = Path(__file__).resolve().parent.parent


def test_summary_line_names_the_width_only_when_set():
    results = {"task": "digits_crop", "beta": 50, "redundancy_bits": 0.061, "disagreement_tv": 0.009,
               "run_dir": "out", "width": 4}
    assert format_summary(results).startswith("digits_crop  width=4  beta=50  I∩ = 0.06 bits")
    assert format_summary({**results, "task": "rdnxor", "width": None}).startswith("rdnxor  beta=50  I∩ = 0.06 bits")


@pytest.mark.slow  # two train.py processes: ~40 s on a shared CPU
def test_default_run_folder_names_the_width_when_set(tmp_path):
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}

    def train(*args):
        # From tmp_path: the default run folder, outputs/runs/<date>/<time>_..., lands there.
        proc = run_warm(str(ROOT / "train.py"), *args, "trainer.max_epochs=1", "report.curves=false", cwd=tmp_path,
                        full_env=env, timeout=600)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    out = train("task=digits_crop", "width=3")
    assert out.startswith("digits_crop  width=3  beta=50  I∩ = ")
    out = train("task=unq")
    assert out.startswith("unq  beta=15  I∩ = ")
    names = sorted(p.name.split("_", 1)[1] for p in (tmp_path / "outputs" / "runs").glob("*/*"))
    assert names == ["digits_crop_w3_beta50_seed0", "unq_beta15_seed0"]
