"""The run folder's contract: one documented results.json schema, and its one writer."""

import json
import re
from pathlib import Path

import pytest

from rine.config import CONFIG_DIR, compose_config
from rine.rundir import RESULTS_SCHEMA, RunRecord

ROOT = Path(__file__).resolve().parent.parent


def test_outputs_readme_shows_exactly_the_schema():
    text = (ROOT / "outputs" / "README.md").read_text()
    documented = re.findall(r"^\| `([a-z_0-9]+)` \|", text.split("## results.json")[1].split("## ")[0], re.M)
    assert documented == list(RESULTS_SCHEMA)


def test_the_writer_refuses_an_undocumented_key(tmp_path):
    cfg = compose_config(["trainer.max_epochs=1"])

    class Task:
        name, source_files = "t", []

    record = RunRecord.begin(cfg, tmp_path, Task(), None)
    assert json.loads((tmp_path / "results.json").read_text())["status"] == "running"
    with pytest.raises(KeyError, match="not_a_key"):
        record.complete({"not_a_key": 1})
    written = record.complete({"redundancy_bits": 0.5})
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk == written and list(on_disk)[0] == "status" and on_disk["status"] == "complete"


def test_readme_sections_named_elsewhere_exist():
    # configs and code send readers to README sections by name ("see README \"X\""): they must exist.
    headings = set()
    for readme in (ROOT / "README.md", ROOT / "outputs" / "README.md", ROOT / "scripts" / "README.md"):
        if readme.is_file():
            headings |= {h.strip() for h in re.findall(r"^#+ (.+)$", readme.read_text(), re.M)}
    cited = set()
    for path in [*Path(CONFIG_DIR).rglob("*.yaml"), *(ROOT / "rine").rglob("*.py"), *(ROOT / "scripts").glob("*.py")]:
        cited |= set(re.findall(r'README \\?"([^"\\]+)\\?"', path.read_text()))
    assert cited and cited <= headings, sorted(cited - headings)


def test_metrics_csv_is_the_text_pandas_writes(tmp_path):
    # csv/metrics.csv is written with the csv module (no pandas import in a run): the same text
    # as pandas' to_csv, so every reader (pandas, make_tables, plots) sees the same table.
    import math

    import pandas as pd

    from rine.rundir import METRICS_CSV, write_metrics_csv

    history = [{"epoch": e, "step": 64 * (e + 1), "beta": 15 * (1 - 0.97**e), "lr": 0.001 * 0.97**e,
                "val/redundancy_bits": [0.1, -1e-17, 1 / 3][e], "val/disagreement_tv": [math.nan, 0.25, 2e-9][e]}
               for e in range(3)]
    history[2]["val/redundancy_bits_class0"] = 0.5  # a column that appears late: empty before
    write_metrics_csv(tmp_path, history)
    assert (tmp_path / METRICS_CSV).read_text() == pd.DataFrame(history).to_csv(index=False)
