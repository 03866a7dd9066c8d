"""Files: reading users' CSV text, and writing ours atomically (one home for both).

Reading (task=pmf, task=arrays): the text is UTF-8; a leading byte-order mark (Excel's "CSV
UTF-8" writes one) is dropped and CRLF line ends are fine. Anything else (Latin-1, UTF-16, a
binary file, a folder, a file we may not read) is a RineError naming the file, the problem
and the fix, never the file's bytes.

Writing (results.json, caches, tables, figures, checkpoints): each file goes to a temporary
file beside its target and is renamed over it, so a reader never sees half a file and a
killed writer leaves the previous version intact.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
import os
import re
from pathlib import Path

from rine.errors import RineError

SAVE_AS_CSV = "save it as UTF-8 CSV (in Excel: Save As > CSV UTF-8)"


def read_text(path: Path) -> str:
    """The decoded text of a user's UTF-8 file, without its BOM.

    Raises RineError "<path>: ..." for a folder, an unreadable file, or bytes that are not UTF-8
    (giving the first bad byte's value and offset, not the surrounding bytes).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise RineError(f"{path}: is a folder, not a file; give the path of a CSV file") from None
    except PermissionError:
        raise RineError(f"{path}: permission denied; make the file readable (chmod u+r) or copy it") from None
    except OSError as error:
        raise RineError(f"{path}: cannot be read ({error.strerror or type(error).__name__})") from None
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise RineError(f"{path}: UTF-16 text, not UTF-8; {SAVE_AS_CSV}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        offset = error.start + len(data) - len(error.object)  # counting the BOM utf-8-sig dropped
        raise RineError(
            f"{path}: not UTF-8 text (byte 0x{data[offset]:02x} at offset {offset}); {SAVE_AS_CSV}"
        ) from None
    if "\0" in text:
        raise RineError(f"{path}: contains NUL bytes, so it is a binary file, not CSV text; {SAVE_AS_CSV}")
    return text


def read_csv_table(path: Path, skip_comments: bool = False):
    """A user's UTF-8 CSV file as a table of text (pandas.read_csv): columns named by its
    first non-blank row, stripped; one row per other non-blank row (fields unstripped),
    indexed by its line number in the file. Blank rows (every field empty) are dropped.

    skip_comments: also drop lines starting with '#'. Raises RineError as read_text, and
    "<path>, line N: expected K fields, found M" for a row with more or fewer fields than
    the header, or for text pandas cannot parse (e.g. a field over the csv module's limit).
    An empty file gives an empty table (no columns).
    """
    import pandas as pd

    text = read_text(path)
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if skip_comments:
        # Comment lines become blank lines, so pandas' line numbers stay the file's.
        lines = ["" if line.lstrip().startswith("#") else line for line in lines]
        text = "\n".join(lines)
    try:
        # The python engine: the csv module's parser (and its field-size limit), all fields as text.
        table = pd.read_csv(io.StringIO(text, newline=""), header=None, dtype=str, na_filter=False,
                            engine="python", skip_blank_lines=True, index_col=False)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except (pd.errors.ParserError, csv.Error) as error:
        ragged = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(error))
        if ragged:
            expected, line, found = ragged.groups()
            raise RineError(f"{path}, line {line}: expected {expected} fields, found {found}") from None
        raise RineError(f"{path}: not a readable CSV file ({str(error).strip()}); {SAVE_AS_CSV}") from None
    # The file line of each row: the non-blank lines, unless a quoted field spans lines.
    non_blank = [i + 1 for i, line in enumerate(lines) if line.strip()]
    table.index = non_blank if len(non_blank) == len(table) else range(1, len(table) + 1)
    # Rows of empty fields (",,,") are blank too; only rows whose first field is empty can be.
    maybe_blank = table.index[table.iloc[:, 0].fillna("").str.strip() == ""]
    blank = [i for i in maybe_blank if not any(isinstance(c, str) and c.strip() for c in table.loc[i])]
    table = table.drop(index=blank)
    if table.empty:
        return pd.DataFrame()
    header, body = table.iloc[0], table.iloc[1:]
    short = body.iloc[:, -1].isna()  # fields missing at the end of a row (pandas fills them with NaN)
    if short.any():
        line = body.index[short.argmax()]
        raise RineError(f"{path}, line {line}: expected {len(header)} fields, "
                        f"found {int(body.loc[line].notna().sum())}")
    body.columns = [str(h).strip() for h in header]
    return body


def _replace_atomically(path: Path, write) -> None:
    """`write(tmp)` fills a temporary file beside `path`, which is then renamed over it."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # per process: two writers never share one
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _finite_or_none(value):
    """JSON has no NaN: a missing figure (e.g. a class absent from the held-out split) is null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    return value


def cache_dir() -> Path:
    """Where rine keeps what it can recompute (reference values, the composed default config):
    $RINE_CACHE_DIR, default ~/.cache/rine."""
    return Path(os.environ.get("RINE_CACHE_DIR") or Path.home() / ".cache" / "rine")


def write_json_atomic(path: str | Path, data: dict) -> None:
    """`data` as indented JSON (NaN and inf as null), written atomically and synced to disk."""

    def write(tmp: Path) -> None:
        with tmp.open("w") as f:
            json.dump(_finite_or_none(data), f, indent=2, allow_nan=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())

    _replace_atomically(path, write)


def write_text_atomic(path: str | Path, text: str) -> None:
    _replace_atomically(path, lambda tmp: tmp.write_text(text))


def save_torch_atomic(path: str | Path, state) -> None:
    """torch.save(state) atomically: a kill or a full disk mid-write never leaves a truncated file."""
    import torch

    def write(tmp: Path) -> None:
        with tmp.open("wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    _replace_atomically(path, write)


# Embedded TrueType (Type 42) fonts in every PDF we write: editable text, accepted by
# publishers (matplotlib's default Type 3 fonts are not).
PDF_FONTS = {"pdf.fonttype": 42, "ps.fonttype": 42}


def save_figure_atomic(fig, path_without_suffix: str | Path, suffixes: tuple[str, ...] = (".png", ".pdf"),
                       **savefig) -> list[Path]:
    """The figure as PNG and PDF (TrueType fonts; or the `suffixes` given), each written
    atomically; returns the paths. `savefig`: Figure.savefig's options (default dpi=150,
    bbox_inches="tight")."""
    options = {"dpi": 150, "bbox_inches": "tight", **savefig}
    import matplotlib

    written = []
    Path(path_without_suffix).parent.mkdir(parents=True, exist_ok=True)
    with matplotlib.rc_context(PDF_FONTS):
        for suffix in suffixes:
            path = Path(path_without_suffix).with_suffix(suffix)
            # the suffix stays last: matplotlib picks the format from it
            tmp = path.with_name(f".{path.stem}.tmp{suffix}")
            try:
                fig.savefig(tmp, **options)
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
            written.append(path)
    return written


def check_out_dir(out: str | Path) -> Path:
    """--out of a script, checked before anything is written: RineError if it names an
    existing file (a missing folder is made when the first output is written)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RineError(f"--out {out} is a file; give a folder for the outputs")
    return out


def remove_folder_holding_only(folder: str | Path, names: set[str]) -> None:
    """Remove `folder` if everything in it is named in `names` (what Hydra writes before our
    checks run: .hydra/, train.log, multirun.yaml), so that refused bad input leaves no trace;
    a folder holding anything else is left alone."""
    import shutil

    path = Path(folder)
    if path.is_dir() and {p.name for p in path.iterdir()} <= names:
        shutil.rmtree(path, ignore_errors=True)
        # The default folders sit in a folder per day (outputs/runs/<date>/): left empty, it goes too.
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", path.parent.name) and not any(path.parent.iterdir()):
            path.parent.rmdir()
