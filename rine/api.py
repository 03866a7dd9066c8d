"""The Python API: RINE on arrays in memory, over several seeds, through train.py's code path.

Each call saves the arrays as an .npz, composes the same config `train.py task=arrays
data_file=...` would, and runs `rine.run.run` once per seed: the numbers are the ones the
CLI gives for the same data, seed and overrides.

Figures over seeds are Estimates: the mean, the sample std (ddof=1) and a two-sided
Student-t confidence interval for the mean (95% by default), mean ± t_{n−1} · std / √n.
With one seed the std and the interval are NaN, and an Estimate prints as '0.973 bits (n=1)'.
"""

from __future__ import annotations

import hashlib
import math
import tempfile
import warnings
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class DisagreementWarning(UserWarning):
    """The decoders still disagree at the end of training: I∩ is not yet a redundancy."""


class InvalidEstimateWarning(UserWarning):
    """An estimate lies outside what is physically possible (e.g. below 0 bits): do not use it."""


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

    bits = property(lambda self: self.redundancy.bits)
    std = property(lambda self: self.redundancy.std)
    ci = property(lambda self: self.redundancy.ci)
    per_seed = property(lambda self: list(self.redundancy.per_seed))

    def to_frame(self):
        """One row per quantity (redundancy, usable_x<i>, disagreement): mean, std, ci_low, ci_high, n."""
        rows = [self.redundancy.row("redundancy")]
        rows += [u.row(f"usable_x{i + 1}") for i, u in enumerate(self.usable)]
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

    def to_frame(self):
        """One row per atom: mean, std, ci_low, ci_high, n."""
        rows = [self.redundancy.row("redundancy")]
        rows += [u.row(f"unique_x{i + 1}") for i, u in enumerate(self.unique or [])]
        rows += [self.synergy.row("synergy")] if self.synergy is not None else []
        rows += [self.joint.row("joint")] + [u.row(f"usable_x{i + 1}") for i, u in enumerate(self.usable)]
        return _frame(rows + [self.disagreement.row("disagreement")])


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


def _train_seeds(mode: str, sources, y, beta: float, seeds, epochs, run_dir, overrides, level, name
                 ) -> tuple[list[int], list[dict], list[str] | None]:
    from rine.config import check_overrides, compose_config
    from rine.console import quiet_framework_output
    from rine.run import run_many
    from rine.tasks.arrays import check_arrays

    seeds = _checked_arguments(seeds, epochs, level, run_dir, overrides)
    overrides = list(overrides)
    check_overrides(overrides)  # a typo is named, with the closest settings
    sources = list(sources)
    # Checked here too, so a mistake is named in the caller's terms and not a temp file's.
    check_arrays(sources, y, where=f"rine.{'decompose' if mode == 'pid' else 'estimate_redundancy'}")
    quiet_framework_output()
    keep = run_dir is not None
    with (nullcontext(str(run_dir)) if keep else tempfile.TemporaryDirectory(prefix="rine-")) as root:
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        arrays = {"y": np.asarray(y), **{f"x{i + 1}": np.asarray(x) for i, x in enumerate(sources)}}
        # Named by content: the path is in the config, so a kept run of other data is never reused.
        digest = hashlib.sha1()
        for key, a in arrays.items():
            digest.update(f"{key}{a.dtype}{a.shape}".encode())
            digest.update(np.ascontiguousarray(a).tobytes())
        data_file = root / f"data-{digest.hexdigest()[:12]}.npz"
        if not data_file.is_file():
            np.savez(data_file, **arrays)
        base = [f"mode={mode}", "task=arrays", f"beta={beta}", *([f"trainer.max_epochs={epochs}"] if epochs else [])]
        cfgs = []
        for seed in seeds:
            cfg = compose_config([*base, f"seed={seed}", *overrides])
            # Set after composing: a path is not always a valid override value (spaces, '=').
            cfg.data_file = str(data_file)
            cfg.task.name = name
            cfgs.append(cfg)
        # One folder per data set: a kept run_dir reused with other data keeps both sets of runs.
        # The seeds train as one batched computation where they can (rine.batched).
        all_results = run_many(cfgs, [root / data_file.stem / f"seed{seed}" for seed in seeds])
    run_dirs = [r["run_dir"] for r in all_results] if keep else None
    for category, flagged in ((InvalidEstimateWarning, lambda r: r.get("valid") is False),
                              (DisagreementWarning, lambda r: r.get("constraint_met") is False)):
        bad = [(s, r) for s, r in zip(seeds, all_results) if flagged(r)]
        if bad:
            first = bad[0][1]
            message = "; ".join(first.get("invalid_reasons") or []) if category is InvalidEstimateWarning else first["warning"]
            warnings.warn(f"seed(s) {', '.join(str(s) for s, _ in bad)}: {message}", category, stacklevel=3)
    return seeds, all_results, run_dirs


def _over(values, level, unit: str = "bits") -> Estimate:
    return Estimate(tuple(float(v) for v in values), level, unit)


def estimate_redundancy(
    sources: Sequence,
    y,
    beta: float = 15,
    seeds: int | Sequence[int] = 5,
    epochs: int | None = None,
    run_dir: str | Path | None = None,
    overrides: Sequence[str] = (),
    level: float = 0.95,
    name: str = "arrays",
) -> RedundancyResult:
    """The redundant information of `sources` (arrays, first dimension N) about labels `y`.

    seeds: how many seeds (0..seeds−1) or which; each seeds the split, initialisation and
    batch order. epochs: trainer.max_epochs (default: the config's 30). run_dir: keep the
    runs there (one folder per seed; a complete run of the same config is reused);
    default: a temporary folder. overrides: any other train.py overrides, e.g.
    ["model.decoder.hidden=[64,32]", "distance.pairs=to_mean"]. A DisagreementWarning
    says when the decoders still disagree (see distance.warn_above).
    """
    seeds, results, run_dirs = _train_seeds("estimate", sources, y, beta, seeds, epochs, run_dir, overrides, level, name)
    n = results[0]["n_sources"]
    return RedundancyResult(
        redundancy=_over([r["redundancy_bits"] for r in results], level),
        usable=[_over([r["usable_info_bits"][i] for r in results], level) for i in range(n)],
        disagreement=_over([r["disagreement_tv"] for r in results], level, unit=""),
        seeds=seeds,
        run_dirs=run_dirs,
        results=results,
    )


def decompose(
    sources: Sequence,
    y,
    beta: float = 15,
    seeds: int | Sequence[int] = 5,
    epochs: int | None = None,
    run_dir: str | Path | None = None,
    overrides: Sequence[str] = (),
    level: float = 0.95,
    name: str = "arrays",
) -> Decomposition:
    """The partial information decomposition (mode=pid) of `sources` about `y`, over seeds.

    Same arguments as estimate_redundancy. Atoms per seed come from that seed's runs
    (UI_i = I(Xi;Y) − I∩, SI = I(X1,X2;Y) − UI_1 − UI_2 − I∩), then are averaged.
    """
    seeds, results, run_dirs = _train_seeds("pid", sources, y, beta, seeds, epochs, run_dir, overrides, level, name)
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
    )
    _warn_negative_atoms(decomposition)
    return decomposition


def _warn_negative_atoms(decomposition: Decomposition) -> None:
    """Over seeds: an atom whose whole confidence interval lies below 0; one seed: its run's warning."""
    from rine.pid import CONTINUOUS_NOTE

    named = [("redundancy", decomposition.redundancy)]
    named += [(f"unique x{i + 1}", u) for i, u in enumerate(decomposition.unique or [])]
    named += [("synergy", decomposition.synergy)] if decomposition.synergy is not None else []
    if len(decomposition.seeds) > 1:
        negative = [f"{name} {e.mean:.3f} bits (CI up to {e.ci[1]:.3f})" for name, e in named if e.ci[1] < 0]
        if negative:
            warnings.warn(f"PID atom(s) below 0 over the seeds' confidence interval ({', '.join(negative)}): "
                          f"{CONTINUOUS_NOTE}", NegativeAtomWarning, stacklevel=3)
        return
    for message in decomposition.results[0]["pid"].get("warnings") or []:
        warnings.warn(message, NegativeAtomWarning, stacklevel=3)
