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
