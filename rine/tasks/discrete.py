"""Discrete tasks: a finite joint pmf (a shipped canonical table or any CSV), sampled with the run's seed."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from rine.data import Split, TaskData, check_heldout_size
from rine.errors import RineError
from rine.pmf import load_pmf, resolve_pmf_path
from rine.references import DIT_MEASURES, FAST_MEASURES, dit_references


class DiscreteTask:
    """Samples a dataset from a finite joint pmf; each source is fed one-hot.

    `pmf` is a shipped table's name (unq, and, rdnxor, imperfectrdn) or a CSV path.
    `true_redundancy` names the exact measure(s) taken as the accepted true redundancy of
    this distribution, as [low, high] (equal for a point value), e.g. [i_wedge, i_wedge]
    for RDNXOR or [i_wedge, min_mi_sources] for AND's [0, 0.311] bits; null: what the pmf
    file's `# true_redundancy:` line says (the shipped tables have one), else unknown.
    dit's measures come from the caches (rine.references); for a new pmf those listed in
    `reference_measures` (default: BROJA, MMI, I_min, quick and exact) are computed within
    `reference_timeout_s` seconds in all (0: cache only) and cached; the optimisers I_GH and
    I∩^≺ are computed only when listed (they can take minutes: raise the timeout then).
    """

    def __init__(
        self,
        name: str | None,
        pmf: str | None,
        n_samples: int = 10_000,
        holdout_fraction: float = 0.2,
        true_redundancy: list[str] | None = None,
        reference_timeout_s: float = 10.0,
        reference_measures: list[str] | None = None,
    ):
        if not pmf:
            raise RineError("task=pmf needs a distribution: add pmf_file=path/to/pmf.csv (columns x1..xn, y, p)")
        if not isinstance(holdout_fraction, (int, float)) or not 0 < holdout_fraction < 1:
            raise RineError(f"task.holdout_fraction={holdout_fraction} must be in (0, 1)")
        if not isinstance(n_samples, int) or isinstance(n_samples, bool) or n_samples < 1:
            raise RineError(f"task.n_samples={n_samples} is invalid; use a positive integer")
        check_heldout_size(n_samples, math.ceil(n_samples * holdout_fraction), holdout_fraction,
                           f"task.n_samples={n_samples}")
        self.name = name or Path(pmf).stem
        self.pmf_file = str(pmf)
        self.pmf = load_pmf(pmf)
        self.source_files = [resolve_pmf_path(pmf)]  # hashed: a complete run is reused only for the same table
        if not isinstance(reference_timeout_s, (int, float)) or isinstance(reference_timeout_s, bool) \
                or not 0 <= reference_timeout_s < math.inf:
            raise RineError(f"task.reference_timeout_s={reference_timeout_s} is invalid; give seconds >= 0 (0: cache only)")
        measures = list(FAST_MEASURES if reference_measures is None else reference_measures)
        unknown = [m for m in measures if m not in DIT_MEASURES]
        if unknown:
            raise RineError(f"task.reference_measures lists {', '.join(map(str, unknown))}; choose from: "
                            f"{', '.join(DIT_MEASURES)}")
        self.reference_measures = tuple(measures)
        self.reference_timeout_s = reference_timeout_s
        self.n_samples = n_samples
        self.holdout_fraction = holdout_fraction
        declared = true_redundancy or self.pmf.true_redundancy
        self.true_redundancy = list(declared) if declared else None

    def reference(self) -> dict:
        measures = self.pmf.exact_measures()
        if self.true_redundancy:
            unknown = [m for m in self.true_redundancy if m not in measures]
            if unknown or len(self.true_redundancy) != 2:
                raise RineError(
                    f"task.true_redundancy={self.true_redundancy} must name two of: {', '.join(measures)}"
                )
            measures["true_redundancy"] = [measures[m] for m in self.true_redundancy]
        else:
            measures["true_redundancy"] = None
        dit_entries = dit_references(self.pmf, self.reference_timeout_s, self.reference_measures, name=self.name,
                                     budget_s=self.reference_timeout_s)
        for measure in DIT_MEASURES:
            measures[measure] = dit_entries[measure].get("value")
        measures["dit_status"] = {m: e["status"] for m, e in dit_entries.items()}
        return measures

    def setup(self, seed: int) -> TaskData:
        rng = np.random.default_rng(seed)
        symbols, y = self.pmf.sample(self.n_samples, rng)
        onehots = [
            F.one_hot(torch.from_numpy(s), len(names)).float()
            for s, names in zip(symbols, self.pmf.source_symbols)
        ]
        y = torch.from_numpy(y)
        n_train = self.n_samples - math.ceil(self.n_samples * self.holdout_fraction)
        reference = self.reference()
        return TaskData(
            name=self.name,
            train=Split([s[:n_train] for s in onehots], y[:n_train]),
            heldout=Split([s[n_train:] for s in onehots], y[n_train:]),
            n_classes=self.pmf.n_classes,
            h_y_bits=reference["h_y"],
            h_y_basis="exact",
            reference=reference,
            class_names=list(self.pmf.target_symbols),
        )
