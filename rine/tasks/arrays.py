"""task=arrays: your own sources and labels, from an .npz or a .csv file.

.npz: arrays `x1`, `x2`, ..., `xn` (n >= 2; any shape, first dimension N; 1-D is one
feature) and `y`, N integer class labels (any integers; they are renumbered 0..K-1).
.csv: a header row; column `y`, and for source i either one column `xi` or a group of
columns `xi_<anything>` (e.g. x1_0, x1_1, x2_a): each group becomes one flat source. UTF-8
text; a BOM (as Excel writes) and CRLF line ends are fine.
Nothing is unpickled: an .npz holding an object array is refused.

Every problem found is a RineError naming the fix, raised when the task is built, i.e.
before a run folder is written.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import torch

from rine.data import Split, TaskData, check_heldout_size, empirical_entropy_bits
from rine.errors import RineError
from rine.files import read_csv_rows

SOURCE_KEY = re.compile(r"x([1-9][0-9]*)")
CSV_COLUMN = re.compile(r"x([1-9][0-9]*)(?:_.+)?")


def _check_source_names(names: list[str], where: str) -> None:
    numbers = sorted(int(SOURCE_KEY.fullmatch(k).group(1)) for k in names)
    if numbers != list(range(1, len(numbers) + 1)):
        raise RineError(f"{where}: sources must be named x1, x2, ... without gaps; found {', '.join(sorted(names)) or 'none'}")
    if len(numbers) < 2:
        raise RineError(f"{where}: found {len(numbers)} source(s); a redundancy needs at least two (x1, x2)")


NPZ_FIX = "save the data with numpy.savez(path, x1=..., x2=..., y=...)"


def _npz_problem(path: Path) -> str | None:
    """Why the file cannot be an .npz, from its first bytes (numpy's own error for these
    would be advice about allow_pickle)."""
    try:
        with path.open("rb") as f:
            head = f.read(6)
    except OSError as error:
        raise RineError(f"{path}: cannot be read ({error.strerror or type(error).__name__})") from None
    if not head:
        return "the file is empty"
    if head.startswith(b"\x93NUMPY"):
        return "a single .npy array, not an .npz archive of x1, x2, ..., y"
    if not head.startswith(b"PK"):  # every zip archive, hence every .npz, starts so
        return "not an .npz file (no zip archive inside)"
    return None


def load_npz(path: Path) -> tuple[list[np.ndarray], np.ndarray]:
    """Sources and labels of an .npz file, never unpickled (allow_pickle=False).

    Raises RineError "<path>: ..." for a file that is no .npz (a renamed .npy, other bytes), a
    damaged or truncated archive, an object array (it would need unpickling), or misnamed arrays.
    """
    problem = _npz_problem(path)
    if problem:
        raise RineError(f"{path}: {problem}; {NPZ_FIX}")
    arrays = {}
    try:
        with np.load(path, allow_pickle=False) as npz:
            for key in npz.files:
                try:
                    arrays[key] = npz[key]
                except ValueError as error:
                    if "allow_pickle" not in str(error):
                        raise
                    raise RineError(
                        f"{path}: array {key} holds Python objects (dtype=object), which rine never unpickles; "
                        f"convert it to numbers (e.g. numpy.asarray(..., dtype=float)) and {NPZ_FIX}"
                    ) from None
                if not isinstance(arrays[key], np.ndarray):  # a zip member that is no .npy array
                    raise RineError(f"{path}: {key} is not a numpy array; {NPZ_FIX}")
    except RineError:
        raise
    except Exception as error:  # zipfile, zlib and numpy's format errors: the archive is damaged
        raise RineError(
            f"{path}: a damaged or truncated .npz archive ({type(error).__name__}); {NPZ_FIX}"
        ) from None
    if "y" not in arrays:
        raise RineError(f"{path}: no array named y; save the labels as y (numpy.savez(path, x1=..., x2=..., y=...))")
    names = [k for k in arrays if k != "y"]
    unexpected = [k for k in names if not SOURCE_KEY.fullmatch(k)]
    if unexpected:
        raise RineError(f"{path}: unexpected array(s) {', '.join(sorted(unexpected))}; expected x1, x2, ..., y")
    _check_source_names(names, str(path))
    return [arrays[f"x{i + 1}"] for i in range(len(names))], arrays["y"]


def load_csv(path: Path) -> tuple[list[np.ndarray], np.ndarray]:
    rows = read_csv_rows(path)
    if not rows:
        raise RineError(f"{path}: the file is empty; expected a header (x1..., x2..., y) and one row per sample")
    header = [h.strip() for h in rows[0]]
    if "y" not in header:
        raise RineError(f"{path}: no column y; name the label column y")
    unexpected = [h for h in header if h != "y" and not CSV_COLUMN.fullmatch(h)]
    if unexpected:
        raise RineError(f"{path}: unexpected column(s) {', '.join(unexpected)}; name source columns xi or xi_<suffix>, labels y")
    groups: dict[str, list[int]] = {}
    for col, h in enumerate(header):
        if h != "y":
            groups.setdefault(f"x{CSV_COLUMN.fullmatch(h).group(1)}", []).append(col)
    _check_source_names(list(groups), str(path))
    body = rows[1:]
    if not body:
        raise RineError(f"{path}: no samples after the header; add one row per sample")
    for line_no, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise RineError(f"{path}, line {line_no}: expected {len(header)} fields, found {len(row)}")
    try:
        table = np.array([[float(c) for c in row] for row in body])
    except ValueError as error:
        raise RineError(f"{path}: a value is not a number ({error}); sources and labels must be numeric") from None
    sources = [table[:, groups[f"x{i + 1}"]] for i in range(len(groups))]
    return sources, table[:, header.index("y")]


def load_arrays(data_file: str | Path) -> tuple[list[np.ndarray], np.ndarray]:
    """Sources and labels from an .npz or .csv file, unchecked."""
    path = Path(data_file).expanduser()
    if path.is_dir():
        raise RineError(f"{path}: is a folder, not a file; give the path of an .npz or .csv file")
    if not path.is_file():
        raise RineError(f"data file not found: {str(data_file)!r}; give the path of an .npz or .csv file")
    if path.suffix == ".npz":
        return load_npz(path)
    if path.suffix == ".csv":
        return load_csv(path)
    raise RineError(f"{path}: unknown file type {path.suffix!r}; use .npz (arrays x1, x2, ..., y) or .csv")


def check_arrays(sources: list, y, where: str = "data") -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Validated float sources [N, ...], class indices 0..K-1, and the original label values."""
    if len(sources) < 2:
        raise RineError(f"{where}: found {len(sources)} source(s); a redundancy needs at least two (x1, x2)")
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise RineError(f"{where}: y has shape {y.shape}; give one integer label per sample (shape [N])")
    if len(y) == 0:
        raise RineError(f"{where}: no samples (y has 0 rows); give one row per sample in every source and in y")
    if y.dtype.kind not in "biuf":
        raise RineError(f"{where}: labels y have type {y.dtype}; give integer class labels (e.g. numpy.unique(y, return_inverse=True)[1])")
    if y.dtype.kind == "f":
        bad = ~np.isfinite(y) | (y != np.round(y))
        if bad.any():
            raise RineError(f"{where}: labels y must be integers; y[{int(np.argmax(bad))}] = {y[bad][0]!r}")
        y = y.astype(np.int64)
    checked = []
    for i, x in enumerate(sources):
        name = f"x{i + 1}"
        x = np.asarray(x)
        if x.ndim == 0 or len(x) != len(y):
            rows = "a scalar" if x.ndim == 0 else f"{len(x)} rows"
            raise RineError(f"{where}: {name} has {rows} but y has {len(y)} labels; every source needs one row per label")
        if x.dtype.kind not in "biuf":
            raise RineError(f"{where}: {name} has type {x.dtype}; sources must be numeric arrays")
        x = x.astype(np.float64).reshape(len(x), -1) if x.ndim == 1 else x.astype(np.float64)
        finite = np.isfinite(x.reshape(len(x), -1)).all(axis=1)
        if not finite.all():
            raise RineError(f"{where}: {name} contains NaN or inf (first in row {int(np.argmin(finite))}); remove or impute those rows")
        checked.append(x)
    values, classes, counts = np.unique(y, return_inverse=True, return_counts=True)
    if len(values) < 2:
        raise RineError(f"{where}: y has a single class ({values[0]}); there is nothing to predict")
    if (counts < 2).any():
        single = values[counts < 2]
        raise RineError(
            f"{where}: class(es) {', '.join(str(v) for v in single[:5])} of y have a single sample; "
            "each class needs at least 2 (one to train on, one to hold out): drop or merge them"
        )
    return checked, classes.astype(np.int64), values


def heldout_count(class_size: int, holdout_fraction: float) -> int:
    """Held-out samples of a class: that fraction, at least 1, leaving at least 1 to train."""
    return min(max(round(class_size * holdout_fraction), 1), class_size - 1)


def stratified_split(classes: np.ndarray, holdout_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train/held-out indices holding out that fraction of every class (>= 1 each side)."""
    rng = np.random.default_rng(seed)
    train, heldout = [], []
    for c in np.unique(classes):
        idx = rng.permutation(np.flatnonzero(classes == c))
        n_out = heldout_count(len(idx), holdout_fraction)
        heldout.append(idx[:n_out])
        train.append(idx[n_out:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(heldout))


class ArraysTask:
    """Sources and integer labels from a file; standardised with the training split's statistics."""

    def __init__(self, data_file: str | None, name: str = "arrays", holdout_fraction: float = 0.2,
                 standardize: bool = True):
        if not data_file:
            raise RineError("task=arrays needs data: add data_file=path/to/data.npz (arrays x1, x2, ..., y) or a .csv")
        if not 0 < holdout_fraction < 1:
            raise RineError(f"task.holdout_fraction={holdout_fraction} must be in (0, 1)")
        self.name = name
        self.data_file = str(data_file)
        self.source_files = [Path(data_file).expanduser()]  # hashed: a complete run is reused only for the same data
        self.holdout_fraction = holdout_fraction
        self.standardize = standardize
        sources, y = load_arrays(data_file)
        self.sources, self.classes, self.labels = check_arrays(sources, y, where=str(data_file))
        n_heldout = sum(heldout_count(int(n), holdout_fraction) for n in np.bincount(self.classes))
        check_heldout_size(len(self.classes), n_heldout, holdout_fraction, str(data_file))

    def setup(self, seed: int) -> TaskData:
        train_idx, heldout_idx = stratified_split(self.classes, self.holdout_fraction, seed)
        train_x, heldout_x = [], []
        for x in self.sources:
            a, b = x[train_idx], x[heldout_idx]
            if self.standardize:
                # Training statistics only, so nothing about the held-out split leaks in.
                mean, std = a.mean(axis=0), a.std(axis=0)
                std[std == 0] = 1.0
                a, b = (a - mean) / std, (b - mean) / std
            train_x.append(torch.from_numpy(a).float())
            heldout_x.append(torch.from_numpy(b).float())
        y = torch.from_numpy(self.classes)
        n_classes = len(self.labels)
        return TaskData(
            name=self.name,
            train=Split(train_x, y[train_idx]),
            heldout=Split(heldout_x, y[heldout_idx]),
            n_classes=n_classes,
            h_y_bits=empirical_entropy_bits(y[train_idx], n_classes),
            h_y_basis="empirical",
            reference=None,
            class_names=[str(v) for v in self.labels],
        )
