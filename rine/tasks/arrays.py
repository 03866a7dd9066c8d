"""task=arrays: your own sources and labels, from an .npz or a .csv file.

.npz: arrays `x1`, `x2`, ..., `xn` (n >= 2; any shape, first dimension N; 1-D is one
feature) and `y`, N class labels: integers, text or booleans, numbered 0..K-1 in sorted
order as scikit-learn's LabelEncoder does (results.json's class_names lists them).
.csv: a header row; column `y` (numbers or text), and for source i either one column `xi`
or a group of columns `xi_<anything>` (e.g. x1_0, x1_1, x2_a): each group becomes one flat
numeric source. UTF-8 text; a BOM (as Excel writes) and CRLF line ends are fine.
Nothing is unpickled: an .npz holding an object array is refused.

Every problem found is a RineError naming the fix, raised when the task is built, i.e.
before a run folder is written.
"""

from __future__ import annotations

import math
import numbers
import re
import sys
from pathlib import Path

import numpy as np
import torch

from rine.data import Split, TaskData, check_heldout_size, empirical_entropy_bits
from rine.errors import RineError
from rine.files import read_csv_table

SOURCE_KEY = re.compile(r"x([1-9][0-9]*)")
CSV_COLUMN = re.compile(r"x([1-9][0-9]*)(?:_.+)?")


def _check_source_names(names: list[str], where: str) -> None:
    indices = sorted(int(SOURCE_KEY.fullmatch(k).group(1)) for k in names)
    if indices != list(range(1, len(indices) + 1)):
        raise RineError(f"{where}: sources must be named x1, x2, ... without gaps; found {', '.join(sorted(names)) or 'none'}")
    if len(indices) < 2:
        raise RineError(f"{where}: found {len(indices)} source(s); a redundancy needs at least two (x1, x2)")


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
    """Sources (numbers) and labels (numbers or any text) of a CSV file; RineError for a bad one."""
    import pandas as pd

    table = read_csv_table(path)
    if table.columns.empty:
        raise RineError(f"{path}: the file is empty; expected a header (x1..., x2..., y) and one row per sample")
    header = list(table.columns)
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
    if table.empty:
        raise RineError(f"{path}: no samples after the header; add one row per sample")
    sources = []
    for name in sorted(groups, key=lambda k: int(k[1:])):
        features = table.iloc[:, groups[name]]
        values = features.apply(pd.to_numeric, errors="coerce")
        # A field that is no number (NaN and inf are numbers here: check_arrays names them).
        missing = values.isna().to_numpy()
        bad = [(r, c) for r, c in np.argwhere(missing) if features.iat[r, c].strip().lower() != "nan"]
        if bad:
            row, column = bad[0]
            raise RineError(f"{path}, line {features.index[row]}: {features.columns[column]} = "
                            f"{features.iat[row, column].strip()!r} is not a number; "
                            "sources must be numeric (labels y may be text)")
        sources.append(values.to_numpy(dtype=float))
    labels = table.iloc[:, header.index("y")].str.strip()
    as_numbers = pd.to_numeric(labels, errors="coerce")
    # Numeric labels stay numbers (1, 2, 10 sort as numbers); any text makes every label text.
    y = as_numbers.to_numpy() if as_numbers.notna().all() else labels.to_numpy(dtype=str)
    return sources, y


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


def _label_values(y: np.ndarray, where: str) -> np.ndarray:
    """Class labels of one kind (integers, text or booleans), as a plain numpy array.

    Floats must be whole numbers (as scikit-learn, which refuses "continuous" targets);
    Python objects (e.g. a pandas column of strings) must all be text or all numbers.
    """
    if y.dtype.kind == "O":
        values = y.tolist()
        if all(isinstance(v, str) for v in values):
            y = y.astype(str)
        elif all(isinstance(v, numbers.Number) for v in values):
            y = np.array(values)
        else:
            kinds = sorted({type(v).__name__ for v in values})
            raise RineError(f"{where}: labels y mix types ({', '.join(kinds)}); give labels of one kind: "
                            "integers, text or booleans")
    if y.dtype.kind not in "biufUS":
        raise RineError(f"{where}: labels y have type {y.dtype}; give class labels as integers, text or booleans")
    if y.dtype.kind == "f":
        bad = ~np.isfinite(y) | (y != np.round(y))
        if bad.any():
            raise RineError(f"{where}: labels y must be integers, text or booleans (class labels); "
                            f"y[{int(np.argmax(bad))}] = {y[bad][0]!r}")
        y = y.astype(np.int64)
    return y


def check_arrays(sources: list, y, where: str = "data") -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Validated float sources [N, ...], class indices 0..K-1, and the class labels they index.

    Labels may be integers, text or booleans; classes are numbered as scikit-learn's
    LabelEncoder does (the sorted distinct labels), so class c is the c-th smallest label.
    """
    from sklearn.preprocessing import LabelEncoder

    if len(sources) < 2:
        raise RineError(f"{where}: found {len(sources)} source(s); a redundancy needs at least two (x1, x2)")
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise RineError(f"{where}: y has shape {y.shape}; give one class label per sample (shape [N])")
    if len(y) == 0:
        raise RineError(f"{where}: no samples (y has 0 rows); give one row per sample in every source and in y")
    y = _label_values(y, where)
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
    encoder = LabelEncoder().fit(y)
    values, classes = encoder.classes_, encoder.transform(y)
    counts = np.bincount(classes, minlength=len(values))
    if len(values) < 2:
        raise RineError(f"{where}: y has a single class ({values[0]}); there is nothing to predict")
    if (counts < 2).any():
        single = values[counts < 2]
        raise RineError(
            f"{where}: class(es) {', '.join(str(v) for v in single[:5])} of y have a single sample; "
            "each class needs at least 2 (one to train on, one to hold out): drop or merge them"
        )
    return checked, classes.astype(np.int64), values


def check_source_names(names, n_sources: int, where: str) -> list[str] | None:
    """The sources' names as a list of distinct, non-empty strings, one per source (None: unnamed)."""
    if names is None:
        return None
    names = list(names)
    named = all(isinstance(n, str) and n.strip() for n in names)
    if len(names) != n_sources or not named or len(set(names)) < len(names):
        raise RineError(f"{where}: {names!r} does not name the {n_sources} sources; give {n_sources} distinct, "
                        "non-empty names as text")
    return names


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


MAX_AUTO_CATEGORIES = 256


def is_categorical(raw: np.ndarray, categorical: str | bool) -> bool:
    """Whether a source is one symbol per sample to one-hot encode: `true` every one-column
    source, `auto` one column of integers (or booleans) with 3 to 256 distinct values, `false`
    none. An MLP reads a scalar code 0..K-1 as a number and needs many steps to carve it into K
    cells (K = 16 copies of Y gave 2.0 of 4 bits); one-hot, every symbol is one direction."""
    if categorical is False or not (raw.ndim == 1 or (raw.ndim == 2 and raw.shape[1] == 1)):
        return False
    if categorical is True:
        return True
    return raw.dtype.kind in "biu" and 3 <= len(np.unique(raw)) <= MAX_AUTO_CATEGORIES


def _many_integer_symbols(raw: np.ndarray) -> bool:
    one_column = raw.ndim == 1 or (raw.ndim == 2 and raw.shape[1] == 1)
    return one_column and raw.dtype.kind in "iu" and len(np.unique(raw)) > MAX_AUTO_CATEGORIES


def one_hot(x: np.ndarray) -> np.ndarray:
    """[N, 1] symbols -> [N, K] one-hot over the K distinct values (the source's alphabet)."""
    from sklearn.preprocessing import OneHotEncoder

    return OneHotEncoder(sparse_output=False).fit_transform(x.reshape(-1, 1))


class ArraysTask:
    """Sources and integer labels from a file; standardised with the training split's statistics."""

    def __init__(self, data_file: str | None, name: str = "arrays", holdout_fraction: float = 0.2,
                 standardize: bool = True, source_names: list[str] | None = None, categorical: str | bool = "auto"):
        if not data_file:
            raise RineError("task=arrays needs data: add data_file=path/to/data.npz (arrays x1, x2, ..., y) or a .csv")
        if not 0 < holdout_fraction < 1:
            raise RineError(f"task.holdout_fraction={holdout_fraction} must be in (0, 1)")
        self.name = name
        self.data_file = str(data_file)
        self.source_files = [Path(data_file).expanduser()]  # hashed: a complete run is reused only for the same data
        self.holdout_fraction = holdout_fraction
        self.standardize = standardize
        if categorical not in ("auto", True, False):
            raise RineError(f"task.categorical={categorical} is invalid; choose auto, true or false")
        sources, y = load_arrays(data_file)
        self.sources, self.classes, self.labels = check_arrays(sources, y, where=str(data_file))
        self.categorical = [is_categorical(np.asarray(raw), categorical) for raw in sources]
        for i, raw in enumerate(map(np.asarray, sources)):
            if categorical == "auto" and not self.categorical[i] and _many_integer_symbols(raw):
                print(f"warning: {data_file}: x{i + 1} is one column of {len(np.unique(raw))} distinct integers, read as "
                      f"one number (auto one-hot stops at {MAX_AUTO_CATEGORIES}); if they are symbols, add "
                      "task.categorical=true, or the decoder may find little of their information", file=sys.stderr)
        self.sources = [one_hot(x) if cat else x for x, cat in zip(self.sources, self.categorical)]
        self.source_names = check_source_names(source_names, len(self.sources), "task.source_names")
        n_heldout = sum(heldout_count(int(n), holdout_fraction) for n in np.bincount(self.classes))
        check_heldout_size(len(self.classes), n_heldout, holdout_fraction, str(data_file))

    def setup(self, seed: int) -> TaskData:
        from sklearn.preprocessing import StandardScaler

        train_idx, heldout_idx = stratified_split(self.classes, self.holdout_fraction, seed)
        train_x, heldout_x = [], []
        for x in self.sources:
            a, b = x[train_idx], x[heldout_idx]
            if self.standardize:
                # Training statistics only, so nothing about the held-out split leaks in. A
                # feature constant on the training split is only centred (StandardScaler's scale 1).
                scaler = StandardScaler().fit(a.reshape(len(a), -1))
                a = scaler.transform(a.reshape(len(a), -1)).reshape(a.shape)
                b = scaler.transform(b.reshape(len(b), -1)).reshape(b.shape)
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
            source_names=self.source_names,
        )
