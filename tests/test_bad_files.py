"""Bad files never crash, never execute, and always end in one line naming the file (issue 11).

Unit tests of the loaders (CIFAR-10's restricted unpickler, the CSV reader, the .npz reader,
the CIFAR-10 download), then a table of bad train.py commands run as a user runs them.
"""

import builtins
import http.server
import io
import json
import os
import pickle
import struct
import subprocess
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error

from rine.tasks.arrays import ArraysTask, load_arrays
from rine.errors import RineError
from rine.tasks.images import load_cifar10, read_cifar_batch, read_cifar_meta
from rine.pmf import load_pmf
from rine.unpickle import load_plain_pickle

IMAGES = np.random.default_rng(0).integers(0, 256, (3, 3072), dtype=np.uint8)


# --- payloads that run code when plain pickle loads them -------------------------------------

class _Shell:
    """os.system('touch marker')."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _Eval:
    """builtins.eval of code that creates the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.eval, (f"open({self.marker!r}, 'w').close()",)


class _Popen:
    """subprocess.Popen(['touch', marker])."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return subprocess.Popen, (["touch", self.marker],)


def _crafted_batch(payload, protocol=2) -> bytes:
    return pickle.dumps({"data": payload, "labels": [0, 1, 2]}, protocol=protocol)


class _Py2Pickler(pickle._Pickler):
    """Writes str and bytes as Python 2's str (BINSTRING), as the official CIFAR-10 files do."""

    def _save_py2_str(self, obj):
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch = {**pickle._Pickler.dispatch, str: _save_py2_str, bytes: _save_py2_str}


def _official_style_batch(images, labels) -> bytes:
    """A batch file as the official (Python 2, numpy 1.x) ones are written."""
    f = io.BytesIO()
    _Py2Pickler(f, protocol=2).dump({"batch_label": "training batch 1 of 5", "data": images, "labels": labels,
                                     "filenames": [f"img_{i}.png" for i in range(len(labels))]})
    return f.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


# --- CIFAR-10: the restricted unpickler -------------------------------------------------------

def test_official_python2_layout_is_read_exactly(tmp_path):
    data = _official_style_batch(IMAGES, [3, 9, 0])
    assert b"cnumpy.core.multiarray\n_reconstruct" in data and b"_codecs" not in data  # really Python 2 style
    path = tmp_path / "data_batch_1"
    path.write_bytes(data)
    images, labels = read_cifar_batch(path)
    assert images.dtype == np.uint8 and images.shape == (3, 3, 32, 32)
    assert np.array_equal(images.reshape(3, -1), IMAGES) and labels.tolist() == [3, 9, 0]


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_numpy_pickles_of_every_protocol_are_read(tmp_path, protocol):
    # Re-packed copies: uint8 data, labels as an int64 big-endian array, Fortran order, bytes keys.
    images = np.asfortranarray(IMAGES)
    labels = np.array([1, 2, 7], dtype=">i8")
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": images, "labels": labels}, protocol=protocol))
    got_images, got_labels = read_cifar_batch(path)
    assert np.array_equal(got_images.reshape(3, -1), IMAGES) and got_labels.tolist() == [1, 2, 7]


@pytest.mark.parametrize("payload", [_Shell, _Eval, _Popen])
@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_a_crafted_batch_file_is_refused_and_runs_nothing(tmp_path, payload, protocol):
    marker = tmp_path / "marker"
    path = tmp_path / "data_batch_1"
    path.write_bytes(_crafted_batch(payload(marker), protocol))
    with pytest.raises(RineError) as error:
        read_cifar_batch(path)
    message = str(error.value)
    assert message.startswith(f"{path}: not a CIFAR-10 batch file (it asks for ")
    assert "which was refused, not run" in message and "cifar-10-python.tar.gz" in message
    assert not marker.exists()


def test_the_crafted_payload_is_live_under_plain_pickle(tmp_path):
    # Shows the test above is meaningful: the very same bytes run code under pickle.load.
    marker = tmp_path / "marker"
    path = tmp_path / "data_batch_1"
    path.write_bytes(_crafted_batch(_Eval(marker)))
    pickle.loads(path.read_bytes())
    assert marker.exists()
    marker.unlink()
    with pytest.raises(RineError):
        read_cifar_batch(path)
    assert not marker.exists()


class _BadDtype:
    """numpy.dtype('u1') with a 7-field state: numpy's own unpickler makes a broken dtype of it."""

    def __reduce__(self):
        return np.dtype, ("u1", False, True), (3, "|", None, None, -1, -1, 0)


class _ArrayOf:
    """What numpy itself writes for an array at protocol 5: _frombuffer(buffer, dtype, shape, order)."""

    def __init__(self, dtype, raw, shape):
        self.args = (raw, dtype, shape, "C")

    def __reduce__(self):
        try:
            from numpy._core.numeric import _frombuffer
        except ImportError:  # numpy 1.x
            from numpy.core.numeric import _frombuffer
        return _frombuffer, self.args


GOOD = pickle.dumps({"data": IMAGES, "labels": [1, 2, 3]}, protocol=5)
BYTEARRAY8 = GOOD.index(pickle.BYTEARRAY8)


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "the file is empty"),
        (GOOD[:1], "damaged or truncated pickle data"),
        (GOOD[: len(GOOD) // 2], "damaged or truncated pickle data"),
        (GOOD[:-1], "damaged or truncated pickle data"),
        (np.random.default_rng(1).bytes(4096), "not pickle data"),
        (b"\x89PNG\r\n\x1a\n" + bytes(100), "not pickle data"),
        # A length field claiming 17 TB: the C unpickler would try to allocate it.
        (GOOD[: BYTEARRAY8 + 1] + struct.pack("<Q", 2**44) + GOOD[BYTEARRAY8 + 9:], "damaged or truncated pickle data"),
        # One flipped byte of a numpy pickle: numpy's own unpickling raises on this dtype state but
        # leaves a freed buffer in use ("SystemError: deallocated bytearray object has exported
        # buffers"); repeated, it crashed the interpreter (segmentation fault).
        (pickle.dumps({"data": _ArrayOf(_BadDtype(), bytearray(9216), (3, 3072)), "labels": [1, 2, 3]}, protocol=5),
         "a damaged array type"),
        (pickle.dumps({"data": _ArrayOf(np.dtype("u1"), bytearray(10), (3, 3072)), "labels": [1, 2, 3]}, protocol=5),
         "an array whose size does not match its shape"),
        (pickle.dumps({"data": IMAGES.astype(object), "labels": [1, 2, 3]}, protocol=2),
         "an array of a type other than plain numbers"),
        (pickle.dumps({"data": IMAGES, "labels": [1, 2, 3]}, protocol=2).replace(b"cnumpy\nndarray", b"cnumpy\nmatrix"),
         "it asks for numpy.matrix, which was refused, not run"),
        (pickle.dumps({"data": IMAGES, "labels": [1, 2, 3]}, protocol=2).replace(b"cnumpy\nndarray", b"cnum\x1b[2J\nXY"),
         "it asks for a garbled name, which was refused, not run"),
        ([1, 2], "holds a list, not the dict of 'data' and 'labels'"),
        ({"labels": [1, 2, 3]}, "no 'data' array"),
        ({"data": IMAGES.astype(np.int16), "labels": [1, 2, 3]}, "'data' is int16 [3, 3072], not uint8 [N, 3072]"),
        ({"data": IMAGES[:, :1024], "labels": [1, 2, 3]}, "'data' is uint8 [3, 1024], not uint8 [N, 3072]"),
        ({"data": IMAGES, "labels": [1, 2]}, "2 labels for 3 images"),
        ({"data": IMAGES, "labels": [1, 2, 10]}, "a label outside 0..9: 10"),
        ({"data": IMAGES, "labels": [1, 2, -1]}, "a label outside 0..9: -1"),
        ({"data": IMAGES, "labels": ["cat", "dog", "cat"]}, "'labels' is not a list of integers"),
        ({"data": IMAGES, "labels": [1, 2.0, 3]}, "'labels' is not a list of integers"),
        ({"data": IMAGES, "fine_labels": [1, 2, 3]}, "no 'labels', only 'fine_labels': CIFAR-100?"),
    ],
)
def test_damaged_or_wrong_batch_files_are_one_line(tmp_path, capfd, data, reason):
    path = tmp_path / "test_batch"
    path.write_bytes(data if isinstance(data, bytes) else pickle.dumps(data, protocol=2))
    with pytest.raises(RineError) as error:
        read_cifar_batch(path)
    message = str(error.value)
    assert message.startswith(f"{path}: not a CIFAR-10 batch file ({reason}); replace {tmp_path}/ with the folder")
    assert "\n" not in message and "\x1b" not in message
    assert capfd.readouterr().err == ""  # nothing printed behind our back (CPython/numpy SystemErrors)


def test_meta_file_needs_ten_class_names(tmp_path):
    path = tmp_path / "batches.meta"
    path.write_bytes(pickle.dumps({b"label_names": [b"airplane"] * 10}, protocol=2))
    assert read_cifar_meta(path) == ["airplane"] * 10
    path.write_bytes(pickle.dumps({"label_names": ["a"] * 9}, protocol=2))
    with pytest.raises(RineError, match=r"batches.meta: not a CIFAR-10 batch file \(no 'label_names' list of 10"):
        read_cifar_meta(path)


def test_no_half_used_data_a_bad_last_file_stops_the_load(tiny_cifar):
    (tiny_cifar / "cifar-10-batches-py" / "data_batch_5").write_bytes(GOOD[:-10])
    with pytest.raises(RineError, match=r"data_batch_5: not a CIFAR-10 batch file \(damaged or truncated"):
        load_cifar10(tiny_cifar)


def test_oversized_file_is_refused_before_reading(tmp_path, monkeypatch):
    import rine.tasks.images

    monkeypatch.setattr(rine.tasks.images, "CIFAR_MAX_BYTES", 100)
    path = tmp_path / "data_batch_1"
    path.write_bytes(GOOD)
    with pytest.raises(RineError, match="larger than any CIFAR-10 file"):
        read_cifar_batch(path)


def test_plain_array_pickle_rebuilds_nested_builtins():
    value = {"a": [1, (2.5, "x")], "b": {b"k": None}, "c": True}
    assert load_plain_pickle(pickle.dumps(value, protocol=4)) == value


# --- CIFAR-10 download ---------------------------------------------------------------------------

@pytest.fixture
def loopback_cifar_url(monkeypatch):
    """Point torchvision's CIFAR-10 address at a local URL (only loopback is ever contacted)."""
    from torchvision.datasets import CIFAR10

    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)

    def point_at(url):
        monkeypatch.setattr(CIFAR10, "url", url)

    return point_at


def test_download_without_network_is_one_line_saying_where_to_put_the_files(tmp_path, loopback_cifar_url):
    loopback_cifar_url("http://127.0.0.1:9/cifar-10-python.tar.gz")  # the discard port: refused
    with pytest.raises(RineError) as error:
        load_cifar10(tmp_path, download=True)
    message = str(error.value)
    assert message.startswith("downloading CIFAR-10 from http://127.0.0.1:9/cifar-10-python.tar.gz failed (")
    assert "Connection refused; no network?" in message
    assert f"{tmp_path / 'cifar-10-batches-py'}/ holds data_batch_1..5, test_batch and batches.meta" in message
    assert "$RINE_DATA" in message and "task.data_dir" in message and "\n" not in message


def test_an_interrupted_download_is_removed(tmp_path, loopback_cifar_url):
    class HalfAnArchive(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):
            self.send_response(200)
            self.end_headers()

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b"\x1f\x8b" + bytes(998))  # then the connection drops
            self.close_connection = True

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), HalfAnArchive)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        loopback_cifar_url(f"http://127.0.0.1:{server.server_port}/cifar-10-python.tar.gz")
        with pytest.raises(RineError) as error:
            load_cifar10(tmp_path, download=True)
    finally:
        server.shutdown()
        server.server_close()
    assert "removed the incomplete cifar-10-python.tar.gz" in str(error.value)
    assert not (tmp_path / "cifar-10-python.tar.gz").exists()


# --- CSV files (task=pmf, task=arrays) ----------------------------------------------------------

PMF = "# two redundant bits\nx1,x2,y,p\na,a,a,1/2\nb,b,b,1/2\n"


def test_pmf_with_a_bom_and_crlf_line_ends_loads(tmp_path):
    plain, excel = tmp_path / "plain.csv", tmp_path / "excel.csv"
    plain.write_text(PMF)
    excel.write_bytes(b"\xef\xbb\xbf" + PMF.replace("\n", "\r\n").encode())
    expected, got = load_pmf(str(plain)), load_pmf(str(excel))
    assert got.source_symbols == expected.source_symbols == (("a", "b"), ("a", "b"))
    assert got.target_symbols == ("a", "b") and np.array_equal(got.table, expected.table)


def test_arrays_csv_with_a_bom_and_crlf_loads(tmp_path):
    path = tmp_path / "excel.csv"
    rows = ["x1,x2,y"] + [f"{i % 2},{(i + 1) % 2},{i % 2}" for i in range(10)]
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(rows).encode() + b"\r\n")
    sources, y = load_arrays(path)
    assert [s.shape for s in sources] == [(10, 1), (10, 1)] and y.tolist() == [i % 2 for i in range(10)]


@pytest.mark.parametrize("loader", ["pmf", "arrays"])
@pytest.mark.parametrize(
    "data, problem",
    [
        ("x1,x2,y,p\ncafé,a,a,1\n".encode("latin-1"), "not UTF-8 text (byte 0xe9 at offset 13)"),
        (b"\xef\xbb\xbf" + "x1,x2,y,p\ncafé,a,a,1\n".encode("latin-1"), "not UTF-8 text (byte 0xe9 at offset 16)"),
        ("x1,x2,y,p\n".encode("utf-16"), "UTF-16 text, not UTF-8"),
        (b"x1,x2,y,p\n\x00\x00\x00\x01", "contains NUL bytes, so it is a binary file"),
        (np.random.default_rng(3).bytes(2000), "not UTF-8 text (byte 0x"),
    ],
)
def test_csv_that_is_not_utf8_text_is_one_line_without_its_bytes(tmp_path, loader, data, problem):
    path = tmp_path / "bad.csv"
    path.write_bytes(data)
    with pytest.raises(RineError) as error:
        load_pmf(str(path)) if loader == "pmf" else load_arrays(path)
    message = str(error.value)
    assert message.startswith(f"{path}: {problem}") and message.endswith("save it as UTF-8 CSV (in Excel: Save As > CSV UTF-8)")
    assert "\n" not in message and "\\x" not in message and "caf" not in message


def test_csv_too_big_for_a_field_is_one_line(tmp_path):
    path = tmp_path / "big.csv"
    path.write_text('x1,x2,y\n"' + "1" * 200_000 + '",1,1\n')
    with pytest.raises(RineError, match=r"big.csv: not a readable CSV file \(field larger than field limit"):
        load_arrays(path)


def test_a_folder_or_an_unreadable_file_is_one_line(tmp_path, monkeypatch):
    folder = tmp_path / "data.csv"
    folder.mkdir()
    with pytest.raises(RineError, match=r"data.csv: is a folder, not a file; give the path of a CSV file"):
        load_pmf(str(folder))
    with pytest.raises(RineError, match=r"data.csv: is a folder, not a file; give the path of an .npz or .csv file"):
        load_arrays(folder)
    path = tmp_path / "locked.csv"
    path.write_text(PMF)

    def denied(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)  # chmod does not stop root, who runs some CI
    with pytest.raises(RineError, match=r"locked.csv: permission denied; make the file readable"):
        load_pmf(str(path))


# --- .npz files ----------------------------------------------------------------------------------

def _zip_member_damaged(tmp_path) -> bytes:
    path = tmp_path / "ok.npz"
    np.savez(path, x1=np.arange(50.0), x2=np.arange(50.0), y=np.arange(50) % 2)
    data = bytearray(path.read_bytes())
    data[200] ^= 0xFF  # inside x1.npy's stored bytes: a CRC error on reading
    return bytes(data)


def _npz_bytes(tmp_path, **arrays) -> bytes:
    path = tmp_path / "made.npz"
    np.savez(path, **arrays)
    return path.read_bytes()


def _npy_bytes(array) -> bytes:
    f = io.BytesIO()
    np.save(f, array)
    return f.getvalue()


def _zip_with(name: str, content: bytes) -> bytes:
    f = io.BytesIO()
    with zipfile.ZipFile(f, "w") as z:
        z.writestr(name, content)
        z.writestr("y.npy", _npy_bytes(np.arange(4) % 2))
    return f.getvalue()


@pytest.mark.parametrize(
    "make, problem",
    [
        (lambda t: b"", "the file is empty"),
        (lambda t: _npy_bytes(np.arange(10.0)), "a single .npy array, not an .npz archive of x1, x2, ..., y"),
        (lambda t: np.random.default_rng(2).bytes(3000), "not an .npz file (no zip archive inside)"),
        (lambda t: pickle.dumps({"x1": [1]}), "not an .npz file (no zip archive inside)"),
        (lambda t: _npz_bytes(t, x1=np.arange(50.0), x2=np.arange(50.0), y=np.arange(50))[:400],
         "a damaged or truncated .npz archive (BadZipFile)"),
        (_zip_member_damaged, "a damaged or truncated .npz archive (BadZipFile)"),
        (lambda t: _npz_bytes(t, x1=np.array([{}, 1, "a"], dtype=object), x2=np.arange(3.0), y=np.arange(3)),
         "array x1 holds Python objects (dtype=object), which rine never unpickles"),
        (lambda t: _zip_with("x1.txt", b"1,2,3"), "x1.txt is not a numpy array"),
        (lambda t: _npz_bytes(t, x1=np.zeros((0, 3)), x2=np.zeros((0, 2)), y=np.zeros(0, dtype=int)),
         "no samples (y has 0 rows)"),
    ],
)
def test_bad_npz_files_are_one_line_without_pickle_advice(tmp_path, make, problem):
    path = tmp_path / "bad.npz"
    path.write_bytes(make(tmp_path))
    with pytest.raises(RineError) as error:
        ArraysTask(str(path))
    message = str(error.value)
    assert message.startswith(f"{path}: {problem}")
    assert "allow_pickle" not in message and "\n" not in message and "\\x" not in message


# --- train.py as a user runs it -------------------------------------------------------------------

def _cifar_with(tiny_cifar, name, data):
    (tiny_cifar / "cifar-10-batches-py" / name).write_bytes(data)
    return ["task=cifar_crop", f"task.data_dir={tiny_cifar}"]


def _file(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return path


LATIN1_PMF = "x1,x2,y,p\ncafé,a,a,1\n".encode("latin-1")
CASES = {
    "crafted CIFAR batch (os.system)": lambda t, c: (
        _cifar_with(c, "data_batch_1", _crafted_batch(_Shell(t / "marker"))),
        c / "cifar-10-batches-py" / "data_batch_1", "not a CIFAR-10 batch file (it asks for posix.system"),
    "truncated CIFAR batch": lambda t, c: (
        _cifar_with(c, "test_batch", GOOD[:5000]), c / "cifar-10-batches-py" / "test_batch",
        "not a CIFAR-10 batch file (damaged or truncated pickle data)"),
    "download without network": lambda t, c: (
        ["task=cifar_crop", f"task.data_dir={t / 'empty'}", "task.download=true"], t / "empty" / "cifar-10-batches-py",
        "Connection refused; no network?"),
    "Latin-1 pmf": lambda t, c: (
        ["task=pmf", f"pmf_file={_file(t, 'latin1.csv', LATIN1_PMF)}"],
        t / "latin1.csv", "not UTF-8 text (byte 0xe9 at offset 13); save it as UTF-8 CSV"),
    "binary arrays csv": lambda t, c: (
        ["task=arrays", f"data_file={_file(t, 'binary.csv', bytes(range(256)))}"], t / "binary.csv",
        "not UTF-8 text (byte 0x80 at offset 128)"),
    "npz with 0 rows": lambda t, c: (
        ["task=arrays", f"data_file={_file(t, 'empty.npz', _npz_bytes(t, x1=np.zeros(0), x2=np.zeros(0), y=np.zeros(0)))}"],
        t / "empty.npz", "no samples (y has 0 rows)"),
    ".npy renamed .npz": lambda t, c: (
        ["task=arrays", f"data_file={_file(t, 'renamed.npz', _npy_bytes(np.arange(10.0)))}"], t / "renamed.npz",
        "a single .npy array, not an .npz archive"),
    "random bytes named .npz": lambda t, c: (
        ["task=arrays", f"data_file={_file(t, 'random.npz', np.random.default_rng(4).bytes(3000))}"], t / "random.npz",
        "not an .npz file (no zip archive inside)"),
}


@pytest.mark.slow  # one train.py process each: 6-15 s, depending on the machine's load
@pytest.mark.parametrize("case", list(CASES))
def test_bad_file_commands_exit_2_with_one_line(tmp_path, tiny_cifar, script, monkeypatch, case):
    args, named, problem = CASES[case](tmp_path, tiny_cifar)
    run_dir = tmp_path / "run"
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    # Any download goes to a loopback port nobody listens on: deterministic "no network".
    nowhere = "http://127.0.0.1:9"
    proc = script("train.py", *args, "trainer.max_epochs=1", f"hydra.run.dir={run_dir}",
                  env={"HTTP_PROXY": nowhere, "HTTPS_PROXY": nowhere, "http_proxy": nowhere, "https_proxy": nowhere})
    line = assert_one_line_error(proc)
    assert str(named) in line and problem in line
    results = run_dir / "results.json"
    assert not results.exists() or json.loads(results.read_text())["status"] == "failed"
    assert not (tmp_path / "marker").exists()
