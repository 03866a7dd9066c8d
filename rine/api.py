"""The Python API: RINE on arrays or a pmf in memory, over several seeds, through train.py's
code path; and the runs it (or train.py) logged, as a table.

Each call saves the data into the run folder (arrays as an .npz, a pmf as a CSV), composes
the same config `train.py task=arrays data_file=...` (or `task=pmf pmf_file=...`) would, and
runs `rine.run.run` once per seed: the numbers are the ones the CLI gives for the same data,
seed and overrides.

Figures over seeds are Estimates: the mean, the sample std (ddof=1) and a two-sided
Student-t confidence interval for the mean (95% by default), mean ± t_{n−1} · std / √n.
With one seed the std and the interval are NaN, and an Estimate prints as '0.973 bits (n=1)'.
"""

from __future__ import annotations

import hashlib
import math
import re
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from rine.files import write_text_atomic


class DisagreementWarning(UserWarning):
    """The decoders still disagree at the end of training: I∩ is not yet a redundancy."""


class InvalidEstimateWarning(UserWarning):
    """An estimate lies outside what is physically possible (e.g. below 0 bits): do not use it."""


class NotConvergedWarning(UserWarning):
    """The held-out I∩ was still rising when training stopped: the estimate is low."""


class NegativeAtomWarning(UserWarning):
    """A PID atom is negative beyond its noise: see README "What the redundancy means"."""


@dataclass(frozen=True)
class Estimate:
    """One quantity over seeds: `.mean`, `.std`, `.ci` (low, high), `.per_seed`, in `.unit`.

    For a quantity in bits (`unit="bits"`) `.bits` is its mean; a disagreement (a total
    variation, no unit) has no `.bits`.
    """

    per_seed: tuple[float, ...]
    level: float = 0.95
    unit: str = "bits"

    @property
    def n(self) -> int:
        return len(self.per_seed)

    @property
    def mean(self) -> float:
        return float(np.mean(self.per_seed))

    @property
    def bits(self) -> float:
        if self.unit != "bits":
            raise ValueError(f"this quantity is not in bits (unit {self.unit!r}); use .mean")
        return self.mean

    @property
    def std(self) -> float:
        return float(np.std(self.per_seed, ddof=1)) if self.n > 1 else math.nan

    @property
    def ci(self) -> tuple[float, float]:
        from rine.stats import t_interval

        return t_interval(self.per_seed, self.level)

    def __float__(self) -> float:
        return self.mean

    def __repr__(self) -> str:
        from rine.stats import format_mean_std

        # The tables' and plots' convention: '0.973 ± 0.004 bits (n=5), 95% CI [...]', or '0.973 bits (n=1)'.
        return format_mean_std(self.per_seed, unit=self.unit, level=self.level)

    def row(self, name: str) -> dict:
        low, high = self.ci
        return {"quantity": name, "mean": self.mean, "std": self.std, "ci_low": low, "ci_high": high, "n": self.n}


def _frame(rows: list[dict]):
    import pandas as pd

    return pd.DataFrame(rows).set_index("quantity")


@dataclass(frozen=True)
class RedundancyResult:
    """I∩ over seeds (`.bits`, `.std`, `.ci`, `.per_seed`), each source's usable information
    under the same agreement penalty (`.usable`), and the decoders' final disagreement, their
    held-out mean total variation (`.disagreement`, in [0, 1])."""

    redundancy: Estimate
    usable: list[Estimate]
    disagreement: Estimate
    seeds: list[int]
    run_dirs: list[str] | None = None  # None when the runs went to a temporary folder
    results: list[dict] = field(default_factory=list, repr=False)  # each seed's results.json
    source_names: list[str] = field(default_factory=list)  # x1, x2, ... or the names given

    bits = property(lambda self: self.redundancy.bits)
    std = property(lambda self: self.redundancy.std)
    ci = property(lambda self: self.redundancy.ci)
    per_seed = property(lambda self: list(self.redundancy.per_seed))

    def to_frame(self):
        """One row per quantity (redundancy, usable_<source>, disagreement): mean, std, ci_low, ci_high, n."""
        rows = [self.redundancy.row("redundancy")]
        rows += [u.row(f"usable_{name}") for name, u in zip(self.source_names, self.usable)]
        return _frame(rows + [self.disagreement.row("disagreement")])


@dataclass(frozen=True)
class Decomposition:
    """The PID atoms over seeds, each an Estimate; `unique`/`synergy` are None for n > 2 sources."""

    redundancy: Estimate
    unique: list[Estimate] | None
    synergy: Estimate | None
    joint: Estimate
    usable: list[Estimate]  # I(Xi;Y) from each source alone at β = 0
    disagreement: Estimate  # mean total variation between the redundancy run's decoders
    seeds: list[int]
    run_dirs: list[str] | None = None
    results: list[dict] = field(default_factory=list, repr=False)
    source_names: list[str] = field(default_factory=list)  # x1, x2, ... or the names given

    def to_frame(self):
        """One row per atom (redundancy, unique_<source>, synergy, joint, usable_<source>,
        disagreement): mean, std, ci_low, ci_high, n."""
        rows = [self.redundancy.row("redundancy")]
        rows += [u.row(f"unique_{name}") for name, u in zip(self.source_names, self.unique or [])]
        rows += [self.synergy.row("synergy")] if self.synergy is not None else []
        rows += [self.joint.row("joint")] + [u.row(f"usable_{name}") for name, u in zip(self.source_names, self.usable)]
        return _frame(rows + [self.disagreement.row("disagreement")])


# Writes the data into the run folder; returns the task's overrides, what to set on each
# composed config (a path is not always a valid override value: spaces, '=') and the data file.
DataWriter = Callable[[Path], tuple[list[str], dict, Path]]


def _checked_arguments(seeds, epochs, level, run_dir, overrides) -> list[int]:
    """The API's own arguments, checked before anything trains; returns the seeds as a list.
    Raises RineError with one sentence for each kind of mistake."""
    from rine.errors import RineError

    def is_int(value) -> bool:
        return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))

    if is_int(seeds):
        if seeds < 1:
            raise RineError(f"seeds={seeds} is invalid; give how many seeds (>= 1) or a list of seeds")
        seeds = list(range(int(seeds)))
    elif isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence | np.ndarray):
        raise RineError(f"seeds={seeds!r} is invalid; give how many seeds (an integer >= 1) or a list of seeds")
    else:
        if not seeds or not all(is_int(s) and s >= 0 for s in seeds):
            raise RineError(f"seeds={list(seeds)!r} is invalid; give a non-empty list of integers >= 0")
        if len(set(int(s) for s in seeds)) != len(seeds):
            raise RineError(f"seeds={list(seeds)!r} repeats a seed, which would count one run twice; give distinct seeds")
        seeds = [int(s) for s in seeds]
    if epochs is not None and not (is_int(epochs) and epochs >= 1):
        raise RineError(f"epochs={epochs!r} is invalid; give an integer >= 1 (or None for the config's)")
    if not isinstance(level, (int, float)) or isinstance(level, bool) or not 0 < level < 1:
        raise RineError(f"level={level!r} is invalid; give the confidence level in (0, 1), e.g. 0.95")
    if run_dir is not None and Path(run_dir).exists() and not Path(run_dir).is_dir():
        raise RineError(f"run_dir={str(run_dir)!r} is a file; give a folder for the runs")
    if isinstance(overrides, str) or not all(isinstance(o, str) for o in overrides):
        raise RineError(f"overrides={overrides!r} is invalid; give a list of train.py overrides, "
                        "e.g. ['model.decoder.hidden=[64,32]']")
    return seeds


def _train_seeds(mode: str, make_writer: Callable[[], DataWriter], beta: float, seeds, epochs, run_dir, overrides,
                 level, name) -> tuple[list[int], list[dict], list[str] | None]:
    from rine.config import check_overrides, compose_config
    from rine.console import quiet_framework_output
    from rine.errors import RineError
    from rine.run import run_many

    seeds = _checked_arguments(seeds, epochs, level, run_dir, overrides)
    overrides = list(overrides)
    write_data = make_writer()  # checks the data, in the caller's terms
    quiet_framework_output()
    keep = run_dir is not None
    with (nullcontext(str(run_dir)) if keep else tempfile.TemporaryDirectory(prefix="rine-")) as root:
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        task_overrides, settings, data_file = write_data(root)
        check_overrides([*task_overrides, *overrides])  # a typo is named, with the closest settings of this task
        base = [f"mode={mode}", *task_overrides, f"beta={beta}", *([f"trainer.max_epochs={epochs}"] if epochs else [])]
        cfgs = []
        for seed in seeds:
            cfg = compose_config([*base, f"seed={seed}", *overrides])
            for key, value in {**settings, "task.name": name}.items():
                OmegaConf.update(cfg, key, value, merge=False)
            cfgs.append(cfg)
        # One folder per data set: a kept run_dir reused with other data keeps both sets of runs.
        # The seeds train as one batched computation where they can (rine.batched).
        try:
            all_results = run_many(cfgs, [root / data_file.stem / f"seed{seed}" for seed in seeds])
        except RineError as error:
            # Name the data in the caller's terms, not by the temporary file it was written to.
            message = str(error).replace(str(data_file), f"{name}: the data given")
            message = re.sub(r"task\.holdout_fraction=([\d.]+)", r"a held-out fraction of \1 (overrides="
                             r"['task.holdout_fraction=...'] sets it)", message)
            raise RineError(message) from None
    run_dirs = [r["run_dir"] for r in all_results] if keep else None
    for category, flagged, say in (
            (InvalidEstimateWarning, lambda r: r.get("valid") is False, lambda r: "; ".join(r.get("invalid_reasons") or [])),
            (DisagreementWarning, lambda r: r.get("constraint_met") is False, lambda r: r["warning"]),
            (NotConvergedWarning, lambda r: r.get("converged") is False, lambda r: r["convergence_warning"])):
        bad = [(s, r) for s, r in zip(seeds, all_results) if flagged(r)]
        if bad:
            message = say(bad[0][1])
            warnings.warn(f"seed(s) {', '.join(str(s) for s, _ in bad)}: {message}", category, stacklevel=4)
    return seeds, all_results, run_dirs


def _content_name(prefix: str, suffix: str, parts) -> str:
    """A file name from its content: the path is in the config, so a kept run of other data is never reused."""
    digest = hashlib.sha1()
    for part in parts:
        digest.update(part)
    return f"{prefix}-{digest.hexdigest()[:12]}{suffix}"


def _arrays_writer(sources, y, where: str) -> DataWriter:
    """task=arrays: the sources (a sequence, or a mapping of names to arrays) and labels, checked
    here so that a mistake is named in the caller's terms and not a temporary file's."""
    from rine.tasks.arrays import check_arrays, check_source_names

    names = None
    if isinstance(sources, Mapping):
        names = list(sources)
        sources = list(sources.values())
        names = check_source_names(names, len(sources), f"{where}: the sources' names")
    sources = list(sources)
    _, codes, labels = check_arrays(sources, y, where=where)
    # Labels as checked (objects such as a pandas column of text become a numpy text array, which
    # an .npz stores without pickling).
    arrays = {"y": labels[codes], **{f"x{i + 1}": np.asarray(x) for i, x in enumerate(sources)}}

    def write(root: Path) -> tuple[list[str], dict]:
        parts = [part for key, a in arrays.items()
                 for part in (f"{key}{a.dtype}{a.shape}".encode(), np.ascontiguousarray(a).tobytes())]
        data_file = root / _content_name("data", ".npz", parts)
        if not data_file.is_file():
            np.savez(data_file, **arrays)
        return ["task=arrays"], {"data_file": str(data_file), "task.source_names": names}, data_file

    return write


def _pmf_writer(pmf, where: str) -> DataWriter:
    """task=pmf: a joint pmf as a pandas DataFrame (columns x1..xn, y, p) or a dit.Distribution
    (its last variable is the target), written as the CSV train.py reads and checked there."""
    import pandas as pd

    from rine.errors import RineError
    from rine.pmf import load_pmf

    if type(pmf).__module__.split(".")[0] == "dit" and hasattr(pmf, "outcomes"):
        pmf = pmf.copy(base="linear")
        n = pmf.outcome_length()
        rows = [[*(str(s) for s in outcome), p] for outcome, p in zip(pmf.outcomes, pmf.pmf) if p > 0]
        table = pd.DataFrame(rows, columns=[*(f"x{i + 1}" for i in range(n - 1)), "y", "p"])
    elif isinstance(pmf, pd.DataFrame):
        table = pmf
    else:
        raise RineError(f"{where}: give the pmf as a pandas DataFrame (columns x1..xn, y, p) or a dit.Distribution, "
                        f"not a {type(pmf).__name__}")
    text = table.to_csv(index=False)

    def write(root: Path) -> tuple[list[str], dict]:
        pmf_file = root / _content_name("pmf", ".csv", [text.encode()])
        if not pmf_file.is_file():
            write_text_atomic(pmf_file, text)
        try:
            load_pmf(str(pmf_file))
        except RineError as error:
            raise RineError(str(error).replace(str(pmf_file), where)) from None
        return ["task=pmf"], {"pmf_file": str(pmf_file)}, pmf_file

    return write


def _over(values, level, unit: str = "bits") -> Estimate:
    return Estimate(tuple(float(v) for v in values), level, unit)


def _estimate(make_writer, beta, seeds, epochs, run_dir, overrides, level, name) -> RedundancyResult:
    seeds, results, run_dirs = _train_seeds("estimate", make_writer, beta, seeds, epochs, run_dir, overrides, level,
                                            name)
    n = results[0]["n_sources"]
    if results[0]["beta"] == 0:
        warnings.warn("beta=0 asks the decoders for no agreement: .redundancy is their mean usable information, "
                      "not a redundancy (use .usable for each source's; beta > 0 for I∩)", UserWarning, stacklevel=3)
    return RedundancyResult(
        redundancy=_over([r["redundancy_bits"] for r in results], level),
        usable=[_over([r["usable_info_bits"][i] for r in results], level) for i in range(n)],
        disagreement=_over([r["disagreement_tv"] for r in results], level, unit=""),
        seeds=seeds,
        run_dirs=run_dirs,
        results=results,
        source_names=_source_names(results[0]),
    )


def _source_names(results: dict) -> list[str]:
    return list(results.get("source_names") or [f"x{i + 1}" for i in range(results["n_sources"])])


def estimate_redundancy(
    sources: Sequence | Mapping[str, object],
    y,
    beta: float = 15,
    seeds: int | Sequence[int] = 5,
    epochs: int | None = None,
    run_dir: str | Path | None = None,
    overrides: Sequence[str] = (),
    level: float = 0.95,
    name: str = "arrays",
) -> RedundancyResult:
    """The redundant information I∩ (bits) of `sources` about labels `y` (paper eq. 8).

    sources: n >= 2 arrays [N, ...] (any shape after the first dimension), as a list
    [x1, x2, ...] or a dict {name: array} whose names label the results (results.json's
    `source_names`, the frame's `usable_<name>` rows). y: N class labels, integers, text or
    booleans (numbered in sorted order as scikit-learn's LabelEncoder does; results.json's
    `class_names` lists them); whole-number floats count as integers.
    seeds: how many seeds (0..seeds−1) or which; each seeds the split, initialisation and
    batch order. epochs: trainer.max_epochs (default: the config's 30). run_dir: keep the
    runs there (one folder per seed; a complete run of the same config is reused);
    default: a temporary folder. overrides: any other train.py overrides, e.g.
    ["model.decoder.hidden=[64,32]", "distance.pairs=to_mean"]. name: the task's name in
    results.json. A DisagreementWarning says when the decoders still disagree (see
    distance.warn_above), an InvalidEstimateWarning when an estimate is outside the
    physical bounds. Raises rine.errors.RineError for unusable data or settings.
    """
    return _estimate(partial(_arrays_writer, sources, y, "rine.estimate_redundancy"), beta, seeds, epochs, run_dir,
                     overrides, level, name)


def estimate_pmf(
    pmf,
    beta: float = 15,
    seeds: int | Sequence[int] = 5,
    epochs: int | None = None,
    run_dir: str | Path | None = None,
    overrides: Sequence[str] = (),
    level: float = 0.95,
    name: str = "pmf",
) -> RedundancyResult:
    """I∩ (bits) of a finite joint distribution p(x1, ..., xn, y), as `train.py task=pmf` runs it.

    pmf: a pandas DataFrame with columns x1..xn (n >= 2), y and p (symbols any values,
    p numbers or fractions such as "1/8", summing to 1), or a dit.Distribution whose last
    variable is the target. It is written as pmf-<hash>.csv into the run folder (run_dir,
    else a temporary one); each seed samples task.n_samples (10,000) draws from it.
    Each run's exact references (I(Xi;Y), I∧, BROJA, ...) are in `.results[i]["reference"]`.
    Other arguments as estimate_redundancy. Raises RineError for a malformed pmf.
    """
    return _estimate(partial(_pmf_writer, pmf, "rine.estimate_pmf"), beta, seeds, epochs, run_dir, overrides, level,
                     name)


def _decompose(make_writer, beta, seeds, epochs, run_dir, overrides, level, name) -> Decomposition:
    seeds, results, run_dirs = _train_seeds("pid", make_writer, beta, seeds, epochs, run_dir, overrides, level, name)
    pids = [r["pid"] for r in results]
    n = len(pids[0]["usable"])
    two = pids[0]["unique"] is not None
    decomposition = Decomposition(
        redundancy=_over([p["redundancy"] for p in pids], level),
        unique=[_over([p["unique"][i] for p in pids], level) for i in range(n)] if two else None,
        synergy=_over([p["synergy"] for p in pids], level) if two else None,
        joint=_over([p["joint"] for p in pids], level),
        usable=[_over([p["usable"][i] for p in pids], level) for i in range(n)],
        disagreement=_over([p["disagreement_tv"] for p in pids], level, unit=""),
        seeds=seeds,
        run_dirs=run_dirs,
        results=results,
        source_names=_source_names(results[0]),
    )
    _warn_negative_atoms(decomposition)
    return decomposition


def decompose(
    sources: Sequence | Mapping[str, object],
    y,
    beta: float = 15,
    seeds: int | Sequence[int] = 5,
    epochs: int | None = None,
    run_dir: str | Path | None = None,
    overrides: Sequence[str] = (),
    level: float = 0.95,
    name: str = "arrays",
) -> Decomposition:
    """The partial information decomposition (mode=pid) of `sources` about `y`, over seeds (bits).

    Same arguments as estimate_redundancy. Atoms per seed come from that seed's runs
    (paper App. C.1: UI_i = I(Xi;Y) − I∩, SI = I(X1,X2;Y) − UI_1 − UI_2 − I∩), then are
    averaged; a NegativeAtomWarning says when one is below 0 beyond its noise.
    """
    return _decompose(partial(_arrays_writer, sources, y, "rine.decompose"), beta, seeds, epochs, run_dir, overrides,
                      level, name)


def decompose_pmf(
    pmf,
    beta: float = 15,
    seeds: int | Sequence[int] = 5,
    epochs: int | None = None,
    run_dir: str | Path | None = None,
    overrides: Sequence[str] = (),
    level: float = 0.95,
    name: str = "pmf",
) -> Decomposition:
    """The partial information decomposition of a finite joint distribution (a DataFrame or a
    dit.Distribution, as estimate_pmf), over seeds (bits); the exact atoms, when its true
    redundancy is known, are in `.results[i]["pid"]["exact"]`."""
    return _decompose(partial(_pmf_writer, pmf, "rine.decompose_pmf"), beta, seeds, epochs, run_dir, overrides, level,
                      name)


def _warn_negative_atoms(decomposition: Decomposition) -> None:
    """Over seeds: an atom whose whole confidence interval lies below 0; one seed: its run's warning."""
    from rine.pid import CONTINUOUS_NOTE

    named = [("redundancy", decomposition.redundancy)]
    named += [(f"unique {name}", u) for name, u in zip(decomposition.source_names, decomposition.unique or [])]
    named += [("synergy", decomposition.synergy)] if decomposition.synergy is not None else []
    if len(decomposition.seeds) > 1:
        negative = [f"{name} {e.mean:.3f} bits (CI up to {e.ci[1]:.3f})" for name, e in named if e.ci[1] < 0]
        if negative:
            warnings.warn(f"PID atom(s) below 0 over the seeds' confidence interval ({', '.join(negative)}): "
                          f"{CONTINUOUS_NOTE}", NegativeAtomWarning, stacklevel=4)
        return
    for message in decomposition.results[0]["pid"].get("warnings") or []:
        warnings.warn(message, NegativeAtomWarning, stacklevel=4)


def load_runs(folder: str | Path):
    """The runs logged under `folder` (by train.py, its sweeps or this API), one row per run,
    as a pandas DataFrame: every results.json key (redundancy_bits, usable_info_bits,
    disagreement_tv, constraint_met, task, beta, seed, ...; outputs/README.md lists them),
    `run_dir`, and `config` (the run's config.yaml as a dict; None when absent or unreadable,
    then `config_problem` says why).

    Only runs whose figure can be used enter the frame: a run that failed, is still running
    or was killed, is marked `valid: false`, or has no finite redundancy_bits is left out and
    listed in `frame.attrs["skipped"]` as (run dir, reason), and a UserWarning says how many.
    Raises RineError when `folder` is not a folder or holds no results.json.
    """
    from rine.results import load_results

    frame, skipped = load_results(folder)
    frame.attrs["skipped"] = skipped
    if skipped:
        run_dir, reason = skipped[0]
        warnings.warn(f"{len(skipped)} run(s) under {folder} left out (e.g. {run_dir}: {reason}); "
                      "see frame.attrs['skipped']", UserWarning, stacklevel=2)
    return frame
