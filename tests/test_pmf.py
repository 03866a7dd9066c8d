"""Reading joint pmfs from CSV: the shipped tables and every malformed-file error."""

import numpy as np
import pytest

from rine.errors import RineError
from rine.pmf import load_pmf


@pytest.mark.parametrize("name, shape", [("unq", (2, 2, 4)), ("and", (2, 2, 2)), ("rdnxor", (4, 4, 4)), ("imperfectrdn", (2, 2, 2))])
def test_shipped_tables_load(name, shape):
    pmf = load_pmf(name)
    assert pmf.table.shape == shape
    assert pmf.table.sum() == pytest.approx(1.0)
    assert pmf.n_sources == 2


def test_sampling_follows_the_pmf():
    pmf = load_pmf("imperfectrdn")
    (x1, x2), y = pmf.sample(200_000, np.random.default_rng(0))
    assert np.array_equal(x1, y)  # X1 determines Y in IMPERFECTRDN
    # p(x1=0, x2=1) = 0.001: about 200 of 200,000 draws.
    assert 140 < np.sum((x1 == 0) & (x2 == 1)) < 260


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty"),
        ("x1,x2,y,p\n", "no outcomes"),
        ("x1,x2,p\n0,0,1\n", "missing column(s) y"),
        ("x1,x2,y\n0,0,0\n", "missing column(s) p"),
        ("x1,y,p\n0,0,0.5\n1,1,0.5\n", "at least two"),
        ("x1,x3,y,p\n0,0,0,1\n", "without gaps"),
        ("x1,x2,y,p\n0,0,0,-0.5\n1,1,1,1.5\n", "negative"),
        ("x1,x2,y,p\n0,0,0,0.5\n1,1,1,0.6\n", "sum to 1.1"),
        ("x1,x2,y,p\n0,0,0,half\n", "not a number"),
        ("x1,x2,y,p\n0,0,0,0.5\n0,0,0,0.5\n", "listed twice"),
        ("x1,x2,y,p\n0,0,0\n", "expected 4 fields"),
    ],
)
def test_malformed_pmf_files_get_one_clear_line(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(RineError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        load_pmf(str(path))
    assert "\n" not in str(info.value)


def test_missing_pmf_file_names_the_shipped_tables(tmp_path):
    with pytest.raises(RineError, match="rdnxor"):
        load_pmf(str(tmp_path / "nope.csv"))
