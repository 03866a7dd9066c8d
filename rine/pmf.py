"""Finite joint distributions p(x1, ..., xn, y) read from CSV, their exact measures, sampling.

CSV format: one column per source named x1..xn, a target column y, and a probability
column p (decimals or fractions such as 1/8). Symbols are arbitrary strings. A comment line
`# true_redundancy: low, high` names the exact measures that bound the accepted redundancy
(the shipped tables in rine/pmfs/ carry theirs). The file is
UTF-8 text (a BOM, as Excel writes, and CRLF line ends are fine); lines starting with # are comments.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd

from rine.errors import RineError
from rine.files import read_csv_table, read_text
from rine.info import entropy_bits, gacs_korner_redundancy_bits, marginal, mutual_information_bits

SHIPPED_DIR = Path(__file__).parent / "pmfs"
SUM_TOLERANCE = 1e-6


@dataclass(frozen=True)
class JointPmf:
    """A dense joint pmf; axes are the sources in order, then the target."""

    table: np.ndarray
    source_symbols: tuple[tuple[str, ...], ...]
    target_symbols: tuple[str, ...]
    # The accepted true redundancy, as the names of two exact measures [low, high] (e.g.
    # ("i_wedge", "min_mi_sources") for AND's [0, 0.311] bits), from the file's
    # `# true_redundancy: low, high` line; None when the file does not say.
    true_redundancy: tuple[str, str] | None = None

    @property
    def n_sources(self) -> int:
        return len(self.source_symbols)

    @property
    def n_classes(self) -> int:
        return len(self.target_symbols)

    def sample(self, n: int, rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray]:
        """n iid draws; returns one integer-symbol array per source and the labels."""
        flat = self.table.ravel()
        cells = rng.choice(flat.size, size=n, p=flat / flat.sum())
        coords = np.unravel_index(cells, self.table.shape)
        return [c.astype(np.int64) for c in coords[:-1]], coords[-1].astype(np.int64)

    def exact_measures(self) -> dict:
        """Entropy of Y, each source's and the joint mutual information, and I∧ (bits)."""
        n = self.n_sources
        mi_sources = [mutual_information_bits(self.table, [i], [n]) for i in range(n)]
        return {
            "h_y": entropy_bits(marginal(self.table, [n])),
            "mi_sources": mi_sources,
            "mi_joint": mutual_information_bits(self.table, list(range(n)), [n]),
            "i_wedge": gacs_korner_redundancy_bits(self.table),
            "min_mi_sources": min(mi_sources),
        }


def resolve_pmf_path(name_or_path: str) -> Path:
    """A shipped table's name (e.g. 'rdnxor') or a path to a CSV file."""
    shipped = SHIPPED_DIR / f"{name_or_path}.csv"
    if shipped.is_file():
        return shipped
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        raise RineError(f"{path}: is a folder, not a file; give the path of a CSV file (columns x1..xn, y, p)")
    if not path.is_file():
        names = ", ".join(sorted(p.stem for p in SHIPPED_DIR.glob("*.csv")))
        raise RineError(
            f"pmf file not found: {name_or_path!r}; give a CSV path or one of: {names}"
        )
    return path


def _parse_probability(text: str, where: str) -> Fraction:
    try:
        value = Fraction(text.strip())
    except (ValueError, ZeroDivisionError):
        raise RineError(f"{where}: p={text!r} is not a number; write a decimal or a fraction like 1/8") from None
    if value < 0:
        raise RineError(f"{where}: p={text} is negative; probabilities must be >= 0")
    return value


TRUE_REDUNDANCY_LINE = re.compile(r"#\s*true_redundancy\s*:\s*(\w+)\s*,\s*(\w+)\s*$")


def load_pmf(name_or_path: str) -> JointPmf:
    """The joint pmf of a shipped table's name or a CSV file (columns x1..xn, y, p).

    Raises RineError "<path>: ..." (or "<path>, line N: ...") for every malformed file.
    """
    path = resolve_pmf_path(name_or_path)
    table = read_csv_table(path, skip_comments=True)
    declared = [m.groups() for line in read_text(path).splitlines() if (m := TRUE_REDUNDANCY_LINE.match(line.strip()))]
    if table.columns.empty:
        raise RineError(f"{path}: the file is empty; expected a header x1,x2,...,y,p and one row per outcome")
    header = list(table.columns)
    source_cols = sorted(
        (h for h in header if re.fullmatch(r"x[1-9][0-9]*", h)), key=lambda h: int(h[1:])
    )
    missing = [c for c in ("y", "p") if c not in header]
    if missing:
        raise RineError(f"{path}: missing column(s) {', '.join(missing)}; expected columns x1..xn, y, p")
    if source_cols != [f"x{i + 1}" for i in range(len(source_cols))]:
        raise RineError(f"{path}: source columns must be x1, x2, ... without gaps; found {', '.join(source_cols) or 'none'}")
    if len(source_cols) < 2:
        raise RineError(f"{path}: found {len(source_cols)} source column(s); redundancy needs at least two (x1, x2)")
    extra = set(header) - set(source_cols) - {"y", "p"}
    if extra:
        raise RineError(f"{path}: unexpected column(s) {', '.join(sorted(extra))}; expected columns x1..xn, y, p")
    if table.empty:
        raise RineError(f"{path}: no outcomes after the header; add one row per (x1..xn, y) with its probability p")

    columns = source_cols + ["y"]
    outcomes = table[columns].apply(lambda column: column.str.strip())
    repeated = outcomes.duplicated()
    if repeated.any():
        line = outcomes.index[repeated.argmax()]
        raise RineError(f"{path}, line {line}: outcome {tuple(outcomes.loc[line])} is listed twice")
    probabilities = [_parse_probability(text, f"{path}, line {line}") for line, text in table["p"].items()]
    total = sum(probabilities)
    if abs(float(total) - 1.0) > SUM_TOLERANCE:
        raise RineError(f"{path}: probabilities sum to {float(total):.6g}, not 1; fix the p column")
    # Symbols in order of first appearance; each outcome's cell is its symbols' indices.
    codes, symbols = zip(*(pd.factorize(outcomes[c]) for c in columns))
    table_p = np.zeros([len(s) for s in symbols])
    table_p[tuple(codes)] = [float(p) for p in probabilities]
    table_p /= table_p.sum()  # remove decimal round-off within the tolerance
    p_y = table_p.reshape(-1, table_p.shape[-1]).sum(0)
    if (p_y > 0).sum() < 2:  # as task=arrays says of such labels
        raise RineError(f"{path}: y has a single class ({symbols[-1][int(p_y.argmax())]}) of positive probability; "
                        "there is nothing to predict")
    return JointPmf(
        table=table_p,
        source_symbols=tuple(tuple(s) for s in symbols[:-1]),
        target_symbols=tuple(symbols[-1]),
        true_redundancy=declared[0] if declared else None,
    )
