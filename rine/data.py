"""Tasks: where the sources and labels come from, split into train and held-out tensors.

Data lives in memory as tensors and is cut into batches by index (no DataLoader, no
workers): for small models the per-batch overhead of a DataLoader dominates training.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from rine.errors import RineError
from rine.info import entropy_bits
from rine.pmf import load_pmf, resolve_pmf_path
from rine.references import DIT_MEASURES, dit_references


@dataclass
class Split:
    sources: list[torch.Tensor]  # one [N, ...] float tensor per source
    y: torch.Tensor  # [N] int64 class indices

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device) -> Split:
        return Split([s.to(device) for s in self.sources], self.y.to(device))


@dataclass
class TaskData:
    name: str
    train: Split
    heldout: Split
    n_classes: int
    h_y_bits: float
    h_y_basis: str  # "exact" (known distribution) or "empirical" (training labels)
    reference: dict | None = None  # exact measures, when the distribution is known
    class_names: list[str] = field(default_factory=list)
    # Image tasks: a module mapping a batch of raw images to the list of sources (with
    # `.shapes`, one per source); the splits then hold [images] only. None: sources as stored.
    views: torch.nn.Module | None = None

    @property
    def input_dims(self) -> list[int]:
        return [int(np.prod(s.shape[1:])) for s in self.train.sources]


class TensorBatches:
    """An iterable of (sources, y) minibatches, in a fresh order every epoch when `shuffle`.

    The order of epoch e depends only on (seed, e), so a run resumed from a checkpoint
    sees the same batches as one that never stopped. `current_epoch` tells the epoch
    about to start (run.py passes the trainer's); without it, passes are counted.

    Under DDP (`world_size` > 1) `batch_size` stays the global batch: every process walks
    the same order and takes its `rank`-th share of each batch, so all processes see the
    same number of batches and together train on exactly the one-process batches.
    """

    def __init__(
        self,
        split: Split,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        current_epoch: Callable[[], int] | None = None,
        rank: int = 0,
        world_size: int = 1,
    ):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside a world of {world_size} processes")
        self.split = split
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.current_epoch = current_epoch
        self.rank = rank
        self.world_size = world_size
        self._passes = 0

    def _starts(self) -> range:
        n = len(self.split)
        # A trailing batch that leaves a process a single sample would break BatchNorm in
        # training: drop it.
        tail = n % self.batch_size
        stop = n - tail if self.shuffle and 0 < tail < 2 * self.world_size else n
        return range(0, stop, self.batch_size)

    def __len__(self) -> int:
        return len(self._starts())

    def __iter__(self):
        order = None
        epoch = self.current_epoch() if self.current_epoch else self._passes
        self._passes += 1
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            order = torch.randperm(len(self.split), generator=generator)
        for start in self._starts():
            stop = min(start + self.batch_size, len(self.split))
            if self.world_size > 1:
                # This process's share: near-equal consecutive parts, the larger ones first.
                size, extra = divmod(stop - start, self.world_size)
                start += self.rank * size + min(self.rank, extra)
                stop = start + size + (self.rank < extra)
            idx = slice(start, stop) if order is None else order[start:stop]
            yield [s[idx] for s in self.split.sources], self.split.y[idx]


MIN_HELDOUT = 10  # held-out samples below which an estimate means nothing (tasks whose size the user sets)


def check_heldout_size(n_samples: int, n_heldout: int, holdout_fraction: float, where: str) -> None:
    """RineError naming how many samples are needed when the held-out split would be too small."""
    if n_heldout < MIN_HELDOUT:
        needed = math.ceil(MIN_HELDOUT / holdout_fraction)
        raise RineError(
            f"{where}: {n_samples} samples leave {n_heldout} for the held-out split; an estimate needs at least "
            f"{MIN_HELDOUT} held-out samples, i.e. at least {needed} samples with task.holdout_fraction={holdout_fraction:g}"
        )


def check_splits(data: TaskData) -> None:
    """Any task: a held-out split to estimate on, and at least 2 training samples (BatchNorm's minimum)."""
    if len(data.heldout) < 1 or len(data.train) < 2:
        raise RineError(f"task {data.name}: {len(data.train)} training and {len(data.heldout)} held-out samples; "
                        f"at least 2 and 1 are needed (and {MIN_HELDOUT} held-out samples for a meaningful estimate)")


def empirical_entropy_bits(y: torch.Tensor, n_classes: int) -> float:
    counts = torch.bincount(y, minlength=n_classes).double()
    return entropy_bits((counts / counts.sum()).numpy())


class DiscreteTask:
    """Samples a dataset from a finite joint pmf; each source is fed one-hot.

    `pmf` is a shipped table's name (unq, and, rdnxor, imperfectrdn) or a CSV path.
    `true_redundancy` names the exact measure(s) taken as the accepted true redundancy of
    this distribution, as [low, high] (equal for a point value), e.g. [i_wedge, i_wedge]
    for RDNXOR or [i_wedge, min_mi_sources] for AND's [0, 0.311] bits. Null when unknown.
    dit's measures (I_GH, BROJA, MMI, I_min, I∩^≺) come from the cache, or are computed
    with `reference_timeout_s` seconds each (0: cache only) and cached.
    """

    def __init__(
        self,
        name: str | None,
        pmf: str | None,
        n_samples: int = 10_000,
        holdout_fraction: float = 0.2,
        true_redundancy: list[str] | None = None,
        reference_timeout_s: float = 30.0,
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
        self.reference_timeout_s = reference_timeout_s
        self.n_samples = n_samples
        self.holdout_fraction = holdout_fraction
        self.true_redundancy = list(true_redundancy) if true_redundancy else None

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
        dit_entries = dit_references(self.pmf, self.reference_timeout_s, name=self.name)
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
