"""Reading users' CSV files (task=pmf, task=arrays): one home for decoding and its one-line errors.

The text is UTF-8; a leading byte-order mark (Excel's "CSV UTF-8" writes one) is dropped and
CRLF line ends are fine. Anything else (Latin-1, UTF-16, a binary file, a folder, a file we
may not read) is a RineError naming the file, the problem and the fix, never the file's bytes.
"""

from __future__ import annotations

import codecs
import csv
import io
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


def read_csv_rows(path: Path, skip_comments: bool = False) -> list[list[str]]:
    """The non-blank rows of a user's UTF-8 CSV file (fields unstripped).

    skip_comments: also drop lines starting with '#'. Raises RineError as read_text, and for
    text the csv module cannot parse (e.g. a field over its size limit).
    """
    lines = [
        line for line in io.StringIO(read_text(path), newline="")
        if line.strip() and not (skip_comments and line.lstrip().startswith("#"))
    ]
    try:
        return [row for row in csv.reader(lines) if any(cell.strip() for cell in row)]
    except csv.Error as error:
        raise RineError(f"{path}: not a readable CSV file ({error}); {SAVE_AS_CSV}") from None
