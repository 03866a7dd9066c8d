"""What every task hands the trainers: train and held-out tensors, and how they are batched.

Data lives in memory as tensors and is cut into batches by index (no DataLoader, no
workers): for small models the per-batch overhead of a DataLoader dominates training.
The tasks themselves (where the sources and labels come from) live in rine.tasks.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from rine.errors import RineError
from rine.info import entropy_bits


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
    source_names: list[str] | None = None  # the sources' names; None: x1..xn
    # Image tasks: a module mapping a batch of raw images to the list of sources (with
    # `.shapes`, one per source); the splits then hold [images] only. None: sources as stored.
    views: torch.nn.Module | None = None
    # Early stopping's inner validation split, held out of `train` (hold_out_inner_validation); None: none.
    inner: Split | None = None

    @property
    def input_dims(self) -> list[int]:
        return [int(np.prod(s.shape[1:])) for s in self.train.sources]


def seed_all(seed: int) -> None:
    """Seed Python's, numpy's and torch's generators (what a run draws its data and initial weights from)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_order(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The training order of epoch `epoch`: a permutation of n that depends only on (seed, epoch),
    so a resumed run, and the same run inside a batched group, see the same batches."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


def train_batch_starts(n: int, batch_size: int, world_size: int = 1) -> range:
    """Where each training batch starts. A trailing batch that would leave a process a single
    sample breaks BatchNorm in training: it is dropped."""
    tail = n % batch_size
    stop = n - tail if 0 < tail < 2 * world_size else n
    return range(0, stop, batch_size)


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
        if self.shuffle:
            return train_batch_starts(len(self.split), self.batch_size, self.world_size)
        return range(0, len(self.split), self.batch_size)

    def __len__(self) -> int:
        return len(self._starts())

    def __iter__(self):
        order = None
        epoch = self.current_epoch() if self.current_epoch else self._passes
        self._passes += 1
        if self.shuffle:
            order = epoch_order(self.seed, epoch, len(self.split))
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


def inner_validation_size(n_train: int, fraction: float, where: str) -> int:
    """How many of n_train training samples early stopping holds out; RineError (naming `where`)
    when either part would be too small: MIN_HELDOUT to validate on, 2 to train on."""
    n_inner = round(n_train * fraction)
    if n_inner < MIN_HELDOUT or n_train - n_inner < 2:
        raise RineError(f"{where}: early_stopping.fraction={fraction:g} of {n_train} training samples leaves "
                        f"{n_inner} for the inner validation split and {n_train - n_inner} to train on; it needs at "
                        f"least {MIN_HELDOUT} and 2: use more samples or a larger fraction, or drop early_stopping")
    return n_inner


def hold_out_inner_validation(data: TaskData, fraction: float, seed: int) -> Split:
    """Early stopping's inner validation split: a random `fraction` of data.train, moved from it
    to data.inner (data.train keeps the rest, in its order); returns it. The draw depends only
    on `seed`, so every engine and a resumed run hold out the same samples. Raises RineError
    when either part would be too small (MIN_HELDOUT inner samples; 2 to train on).
    """
    n = len(data.train)
    n_inner = inner_validation_size(n, fraction, f"task {data.name}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + 999_983))
    inner, kept = order[:n_inner].sort().values, order[n_inner:].sort().values
    source = data.train
    data.train = Split([s[kept] for s in source.sources], source.y[kept])
    data.inner = Split([s[inner] for s in source.sources], source.y[inner])
    return data.inner


def training_data(task, seed: int, inner_fraction: float | None = None) -> TaskData:
    """A run's data, as both engines take it: the generators seeded (rine.data.seed_all), the
    task's splits drawn with `seed` and checked (check_splits), and with `inner_fraction` early
    stopping's inner validation split held out of training (hold_out_inner_validation)."""
    seed_all(seed)
    data = task.setup(seed)
    check_splits(data)
    if inner_fraction is not None:
        hold_out_inner_validation(data, inner_fraction, seed)
    return data


def empirical_entropy_bits(y: torch.Tensor, n_classes: int) -> float:
    counts = torch.bincount(y, minlength=n_classes).double()
    return entropy_bits((counts / counts.sum()).numpy())
