"""Reading many logged runs (results.json, config.yaml, csv/metrics.csv) for tables and figures.

A run folder holds results.json, config.yaml (the composed Hydra config it trained with)
and csv/metrics.csv (one row per epoch). `load_results` keeps the runs whose number can be
used; `drop_duplicates` keeps one of the copies of a run (the same sweep run twice);
`disagreeing` and `disagreement_note` mark the runs whose decoders still disagree;
`match_experiment` keeps those an experiment config (configs/experiment/) would have
trained, once each; `setting_groups` groups runs by every setting that differs between
them, so that a figure averages over seeds only.
"""

from __future__ import annotations

import itertools
import json
import math
import numbers
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from rine.config import compose_config
from rine.errors import RineError
from rine.rundir import CONFIG_FILE, METRICS_CSV, RESULTS_FILE

# Config keys that say where or how a run ran, never what it computed, so two runs that
# differ only there are the same measurement: the run folder and launcher (hydra), the
# loggers, where the data lives, the device and its thread count, what the console shows,
# whether checkpoints are kept or curves.png drawn, the dit time budget (references beside the number) and the
# warning threshold (a run's validity is read from results.json, not from here). `seed`
# is the replicate: any seed of an experiment counts (e.g. `seed=range(10)`).
NOT_COMPARED = (
    "hydra", "logger", "seed",
    "task.data_dir", "task.download", "task.reference_timeout_s",
    "trainer.default_root_dir", "trainer.accelerator", "trainer.devices", "trainer.num_nodes",
    "trainer.enable_progress_bar", "trainer.enable_model_summary", "trainer.enable_checkpointing",
    "trainer.log_every_n_steps", "model.threads", "distance.warn_above", "report.curves",
)
# What results.json records of a run's settings: the settings of a run without config.yaml.
RESULT_SETTINGS = ("task", "mode", "beta", "beta_schedule", "gamma", "width", "max_epochs",
                   "distance_normalization", "distance_pairs", "pmf_file", "data_file")
_MISSING = "(missing)"


def _unusable(results: dict) -> str | None:
    """Why a complete run's number cannot be averaged, or None."""
    valid = results.get("valid", True)  # runs from before the field existed count as valid
    if valid is not True:
        reasons = results.get("invalid_reasons") or []
        return "marked invalid" + (f": {'; '.join(map(str, reasons))}" if reasons else f" (valid={valid!r})")
    value = results.get("redundancy_bits")
    if value is None:
        return "redundancy_bits is missing or null"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"redundancy_bits is not a number ({value!r})"
    if not math.isfinite(value):
        return f"redundancy_bits is {value}"
    return None


def _read_config(run_dir: Path) -> tuple[dict | None, str | None]:
    """The run's config.yaml as a plain dict (interpolations unresolved, as saved), or why not."""
    from omegaconf import OmegaConf

    path = run_dir / CONFIG_FILE
    if not path.is_file():
        return None, f"no {CONFIG_FILE}"
    try:
        # Plain YAML: nothing in it is executed or resolved.
        config = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
        if not isinstance(config, dict):
            raise ValueError("not a mapping")
    except Exception as error:  # noqa: BLE001  (any YAML or OmegaConf error: the run is listed, not fatal)
        return None, f"unreadable {CONFIG_FILE} ({type(error).__name__}: {str(error).splitlines()[0]})"
    return config, None


def load_results(root: str | Path) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """Every results.json under `root`: usable runs as a frame, the others as problems.

    A run that failed, is still running (or was killed), is marked `valid: false`, has a
    null, NaN or non-numeric redundancy_bits, or whose file cannot be read is listed in
    the problems as (run dir, reason) and never enters the frame. The frame has one row
    per run: results.json's keys, `run_dir`, and `config` (config.yaml as a dict, None
    when absent or unreadable, then `config_problem` says why).
    Raises RineError when `root` is not a folder or holds no results.json.
    """
    root = Path(root)
    if not root.is_dir():
        raise RineError(f"no runs folder {root}")
    paths = sorted(root.rglob(RESULTS_FILE))
    if not paths:
        raise RineError(f"no runs under {root} (no {RESULTS_FILE} in it)")
    rows, problems = [], []
    for path in paths:
        try:
            results = json.loads(path.read_text())
            if not isinstance(results, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as error:
            problems.append((str(path.parent), f"unreadable {RESULTS_FILE} ({error})"))
            continue
        status = results.get("status")
        if status != "complete":
            reason = results.get("error") or "no result (interrupted or still running)"
            problems.append((str(path.parent), f"{status}: {reason}"))
            continue
        unusable = _unusable(results)
        if unusable:
            problems.append((str(path.parent), unusable))
            continue
        results["run_dir"] = str(path.parent)
        results["config"], results["config_problem"] = _read_config(path.parent)
        rows.append(results)
    return pd.DataFrame(rows), problems


def load_curves(run_dirs: list[str]) -> pd.DataFrame:
    """The per-epoch CSV logs of these runs, stacked, with a run_dir column."""
    frames = []
    for run_dir in run_dirs:
        log = pd.read_csv(Path(run_dir) / METRICS_CSV)
        frames.append(log.assign(run_dir=run_dir))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def last_epochs(run: dict) -> int | None:
    """N of the run's reported figure (the mean of the last N held-out epochs): its config's
    `report.last_epochs`, else the number results.json's `reduction` states; None if neither."""
    config = run.get("config")
    if isinstance(config, dict) and isinstance(config.get("report"), dict):
        n = config["report"].get("last_epochs")
        if isinstance(n, int) and n >= 1:
            return min(n, int(run.get("epochs") or n))
    match = re.search(r"last (\d+) epoch", str(run.get("reduction") or ""))
    return int(match.group(1)) if match else None


# ---------------------------------------------------------------- copies and disagreement


def _identity(run: dict) -> str:
    """What makes two runs the same measurement: their settings (settings_of), seed and
    input data (data_sha256); as text, since lists and NaN are not hashable or equal."""
    settings = settings_of(run)
    return repr(sorted({**settings, "(seed)": run.get("seed"), "(data_sha256)": run.get("data_sha256")}.items(),
                       key=lambda item: item[0]))


def _started(run: dict) -> float:
    """When the run's attempt started (results.json started_at), -inf when unknown."""
    try:
        return datetime.fromisoformat(str(run.get("started_at"))).timestamp()
    except ValueError:
        return -math.inf


def drop_duplicates(runs: pd.DataFrame) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """One run per (settings, seed, data_sha256): the same sweep run twice into two folders
    would otherwise count as two seeds. Keeps the newest copy (results.json started_at;
    ties: the first run dir), and returns the others as (run dir, "duplicate of <kept>").
    `runs` holds complete, usable runs only (load_results), so the newest is complete."""
    if runs.empty:
        return runs, []
    records = runs.to_dict("records")
    kept: dict[str, int] = {}
    for position in sorted(range(len(records)), key=lambda i: (-_started(records[i]), records[i]["run_dir"])):
        kept.setdefault(_identity(records[position]), position)
    chosen = sorted(kept.values(), key=lambda i: records[i]["run_dir"])
    dropped = [(records[i]["run_dir"], f"duplicate of {records[kept[_identity(records[i])]]['run_dir']} "
                                       "(same settings, seed and data; the newest copy is kept)")
               for i in range(len(records)) if i not in set(chosen)]
    return runs.iloc[chosen], sorted(dropped)


# Marks a figure averaged over runs whose decoders still disagree: I∩ is then not a
# redundancy (the constraint D = 0 is unmet), yet the paper reports such cells (low β).
DISAGREE_MARK = "†"
# What β = 0 measures: no agreement is asked, so I∩ is the decoders' mean usable information.
USABLE_LABEL = "mean usable information"


def disagreeing(runs: pd.DataFrame) -> pd.Series:
    """True for each run whose decoders still disagree (results.json constraint_met false:
    held-out TV > distance.warn_above); never for β = 0 (constraint_met null, nothing asked)
    nor for runs from before the field existed."""
    if "constraint_met" not in runs:
        return pd.Series(False, index=runs.index)
    return runs["constraint_met"].map(lambda met: met is False or met is np.False_).astype(bool)


def no_agreement_asked(beta) -> bool:
    """β = 0: the estimate is the mean usable information, not a redundancy."""
    try:
        return float(beta) == 0
    except (TypeError, ValueError):
        return False


def disagreement_note(counts: list[tuple[str, int, int]], tex: bool = False) -> str:
    """The note under a table or figure whose marked cells hold disagreeing runs; counts:
    (where, k disagreeing runs, n runs). '' when none is marked."""
    marked = [(where, k, n) for where, k, n in counts if k]
    if not marked:
        return ""
    if tex:
        cells = ", ".join(f"{k} of {n} runs ({_tex_text(where)})" for where, k, n in marked)
        return (r"$^{\dagger}$ decoders still disagree (held-out TV $>$ \texttt{distance.warn\_above}) in "
                f"{cells}: not a redundancy.")
    cells = ", ".join(f"{k} of {n} runs ({where})" for where, k, n in marked)
    return f"{DISAGREE_MARK} decoders still disagree (held-out TV > distance.warn_above) in {cells}: not a redundancy."


def _tex_text(text: str) -> str:
    """Plain text for pdflatex: its special characters escaped, β as math."""
    text = re.sub(r"([\\{}$&#%_^~])", lambda m: {"\\": r"\textbackslash{}", "^": r"\^{}", "~": r"\~{}"}.get(
        m.group(1), "\\" + m.group(1)), text)
    return text.replace("β", r"$\beta$").replace("±", r"$\pm$")


def disagreement_flag(runs: pd.DataFrame) -> str:
    """A console line's mark: ' † decoders still disagree in k of n runs: not a redundancy',
    ' (β = 0: mean usable information)', or ''."""
    k = int(disagreeing(runs).sum())
    if k:
        return (f" {DISAGREE_MARK} decoders still disagree (held-out TV > distance.warn_above) in {k} of "
                f"{len(runs)} runs: not a redundancy")
    if "beta" in runs and len(runs) and all(no_agreement_asked(b) for b in runs["beta"]):
        return f" (β = 0: {USABLE_LABEL}, no agreement asked)"
    return ""


# ---------------------------------------------------------------- settings of runs


def flatten(node, prefix: str = "") -> dict:
    """A nested config as {'a.b.c': leaf}; lists stay leaves."""
    if isinstance(node, dict) and node:
        flat = {}
        for key, value in node.items():
            flat.update(flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: node}


def _compared(flat: dict) -> dict:
    return {k: v for k, v in flat.items() if not any(k == p or k.startswith(p + ".") for p in NOT_COMPARED)}


def settings_of(run: dict) -> dict:
    """What a run computed, as {setting: value}: `task` and its config's keys (seed and
    NOT_COMPARED aside), or results.json's RESULT_SETTINGS when it has no config.yaml."""
    if isinstance(run.get("config"), dict):
        return {"task": run.get("task"), **_compared(flatten(run["config"]))}
    return {key: run.get(key) for key in RESULT_SETTINGS}


def _show(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "(none)"  # a setting this run did not record
    if isinstance(value, float) and value.is_integer():
        return f"{value:g}"
    return str(value)


def setting_groups(runs: pd.DataFrame, leave_out: tuple[str, ...] = ()) -> list[tuple[dict, pd.DataFrame]]:
    """The runs grouped by every setting that differs between them (so a group differs in
    seed only), as [(named settings, the group's runs)], in a stable order.

    The named settings are `task` (when present) and each setting that differs between runs
    of one task; those that follow from the task (its model, its view) group but are not
    named. `leave_out`: settings neither grouped on nor named (a plot's x axis).
    """
    if runs.empty:
        return []
    settings = pd.DataFrame([settings_of(r) for r in runs.to_dict("records")], index=runs.index)
    settings = settings.drop(columns=[c for c in leave_out if c in settings])
    shown = settings.map(repr)  # lists, None and NaN compare as text
    varying = [c for c in settings if shown[c].nunique() > 1]
    tasks = settings["task"] if "task" in settings else pd.Series("", index=settings.index)
    within_task = [c for c in varying if c != "task" and (shown[c].groupby(tasks).nunique() > 1).any()]
    named = (["task"] if "task" in settings else []) + within_task
    groups = []
    for _, index in shown.groupby([shown[c] for c in varying] or [pd.Series(0, index=shown.index)]).groups.items():
        first = settings.loc[index[0]]
        order = tuple(_order(first[c]) for c in varying)
        groups.append((order, {c: first[c] for c in named}, runs.loc[index]))
    return [(named_settings, group) for _, named_settings, group in sorted(groups, key=lambda g: g[0])]


def _order(value) -> tuple:
    """Sort key: numbers by value (β 5 before 15), before anything else by its text."""
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)) and not math.isnan(value):
        return (0, float(value), "")
    return (1, 0, str(value))


def describe_settings(named: dict, skip: tuple[str, ...] = ("task",), legend: bool = False) -> str:
    """A group's named settings: 'beta=50 trainer.max_epochs=3' for the console, or
    'β = 50, trainer.max_epochs=3' for a legend."""
    if legend:
        return ", ".join(f"β = {_show(v)}" if k == "beta" else f"{k}={_show(v)}" for k, v in named.items() if k not in skip)
    return " ".join(f"{k}={_show(v)}" for k, v in named.items() if k not in skip)


# ------------------------------------------------------------ experiment matching


@dataclass(frozen=True)
class Rejected:
    """A run an experiment does not average: why, and how many config keys differ (0: a copy)."""

    run_dir: str
    reason: str
    differences: float


def experiment_points(experiment: str) -> list[dict]:
    """The composed config of each point of an experiment's sweep (configs/experiment/<name>.yaml,
    hydra.sweeper.params), seed aside, flattened and without NOT_COMPARED keys.

    Composed by Hydra as train.py would, so a change to the experiment or the defaults
    changes what matches without any edit here. Raises RineError for an unknown experiment.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf import OmegaConf

    try:
        cfg = compose_config([f"experiment={experiment}"], return_hydra_config=True)
    except HydraException as error:
        raise RineError(f"cannot compose experiment={experiment}: {str(error).splitlines()[0]}") from None
    params = OmegaConf.to_container(cfg.hydra.sweeper.params or {}, resolve=False)
    choices = []
    for override in OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()]):
        key = override.get_key_element()
        if key == "seed":
            continue
        values = list(override.sweep_string_iterator()) if override.is_sweep_override() else [
            override.get_value_element_as_str()]
        choices.append([f"{key}={value}" for value in values])
    return [
        _compared(flatten(OmegaConf.to_container(compose_config([f"experiment={experiment}", *point]), resolve=False)))
        for point in itertools.product(*choices)
    ]


def config_differences(flat: dict, expected: dict) -> list[tuple[str, object, object]]:
    """(key, run's value, expected value) for each compared key that differs, in the
    expected config's order, then keys the expected config lacks."""
    differences = [(k, flat.get(k, _MISSING), v) for k, v in expected.items() if flat.get(k, _MISSING) != v]
    return differences + [(k, v, _MISSING) for k, v in flat.items() if k not in expected]


def match_experiment(runs: pd.DataFrame, experiment: str,
                     points: list[dict] | None = None) -> tuple[pd.DataFrame, list[Rejected]]:
    """The runs whose config.yaml is the config `python train.py experiment=<experiment>`
    composes for one of its sweep points (any seed; NOT_COMPARED keys aside), each
    (point, seed) once, and the other runs with the reason:
    "config differs from experiment=table6 (trainer.max_epochs=3 vs 30)", the first
    differing key against the closest point, or "duplicate of <run dir>" for a copy that
    drop_duplicates drops (the newest copy is kept).
    """
    points = experiment_points(experiment) if points is None else points
    kept, rejected = [], []
    if runs.empty:
        return runs, rejected
    runs, copies = drop_duplicates(runs)
    rejected += [Rejected(run_dir, reason, 0) for run_dir, reason in copies]
    for index, run in runs.sort_values("run_dir").iterrows():
        run_dir = run["run_dir"]
        if not isinstance(run.get("config"), dict):
            problem = run.get("config_problem") or f"no {CONFIG_FILE}"
            rejected.append(Rejected(run_dir, f"{problem}, so it cannot be checked against experiment={experiment}",
                                     math.inf))
            continue
        flat = _compared(flatten(run["config"]))
        differences = [config_differences(flat, expected) for expected in points]
        best = min(range(len(points)), key=lambda i: len(differences[i]))
        if differences[best]:
            key, value, expected = differences[best][0]
            rejected.append(Rejected(
                run_dir, f"config differs from experiment={experiment} ({key}={_show(value)} vs {_show(expected)})",
                len(differences[best])))
            continue
        kept.append(index)
    return runs.loc[kept], rejected
