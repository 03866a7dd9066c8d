"""Reading a pickle that may only hold builtin data and plain numeric numpy arrays (CIFAR-10's files).

Plain `pickle.load` runs whatever callable a file names, so a crafted file runs its code.
`load_plain_pickle` first walks the opcodes with the standard library's `pickletools.genops`,
which runs nothing and checks every length field against the bytes that remain (the C
unpickler would first allocate whatever a damaged length claims, terabytes included). Then
`PlainArrayUnpickler` unpickles, resolving only the names numpy's own pickles of a plain array
use, and none of them to numpy's code: numpy's unpickling (`dtype.__setstate__`,
`ndarray.__setstate__`, `_frombuffer`) trusts its input; one flipped byte in a dtype's state
leaves a freed buffer in use, and in a fuzzing loop crashed the interpreter (segmentation
fault). Stand-ins with the same call signatures check every field and build the array with
`np.frombuffer` from a byte string of exactly the right length.

Names resolved (nothing else is even imported):
  numpy.core.multiarray._reconstruct, numpy._core.multiarray._reconstruct  (numpy 1.x / 2.x,
      protocol <= 4, with numpy.ndarray and numpy.dtype)
  numpy.core.numeric._frombuffer, numpy._core.numeric._frombuffer  (protocol 5)
  numpy.ndarray, numpy.dtype
  _codecs.encode  (how Python 3 writes bytes at protocol <= 2; latin1 only)
"""

from __future__ import annotations

import io
import math
import pickle
import pickletools
import re

import numpy as np

# Plain numeric dtypes only: bool, signed/unsigned integers, floats.
PLAIN_DTYPE = re.compile(r"[iu][1248]|f[248]|b1")
BYTE_ORDERS = ("<", ">", "|", "=")


class UnpickleRefused(pickle.UnpicklingError):
    """The pickle names or builds something a plain-array file never holds; nothing of it ran."""


def _describe_global(module: str, name: str) -> str:
    dotted = f"{module}.{name}"
    # A corrupt file's "name" may be any bytes: show it only when it reads as a Python name.
    if len(dotted) <= 80 and re.fullmatch(r"[A-Za-z_][\w.]*", dotted):
        return dotted
    return "a garbled name"


class _NdarrayToken:
    """What numpy.ndarray resolves to: only a marker for _reconstruct, not callable."""

    __slots__ = ()


NDARRAY = _NdarrayToken()


class _Dtype:
    """numpy.dtype(spec, align, copy) then BUILD(state), checked: a plain numeric dtype only."""

    __slots__ = ("dtype",)

    def __init__(self, spec, align=False, copy=True):
        if isinstance(spec, bytes):
            spec = spec.decode("latin1")
        if not isinstance(spec, str) or not PLAIN_DTYPE.fullmatch(spec):
            raise UnpickleRefused("an array of a type other than plain numbers")
        self.dtype = np.dtype(spec)

    def __setstate__(self, state):
        # numpy writes (version, byte order, subarray, names, fields, elsize, alignment, flags[, metadata]);
        # a plain dtype has no subarray, names or fields.
        if not isinstance(state, tuple) or len(state) < 5 or state[1] not in BYTE_ORDERS or any(
            s is not None for s in state[2:5]
        ):
            raise UnpickleRefused("a damaged array type")
        if state[1] in "<>" and self.dtype.itemsize > 1:
            self.dtype = self.dtype.newbyteorder(state[1])


def _checked_array(raw, dtype, shape, order: str) -> np.ndarray:
    if isinstance(raw, str):  # Python 2 str, decoded with latin1 by the unpickler
        raw = raw.encode("latin1")
    if not isinstance(raw, (bytes, bytearray)) or not isinstance(dtype, _Dtype):
        raise UnpickleRefused("a damaged array")
    if not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape) or order not in "CF":
        raise UnpickleRefused("a damaged array shape")
    if len(raw) != math.prod(shape) * dtype.dtype.itemsize:
        raise UnpickleRefused("an array whose size does not match its shape")
    return np.frombuffer(bytes(raw), dtype=dtype.dtype).reshape(shape, order=order)


class _Array:
    """numpy's _reconstruct(ndarray, (0,), b'b') then BUILD(state), checked; `.array` is the result."""

    __slots__ = ("array",)

    def __init__(self):
        self.array = None

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 4:  # numpy's state format before version 1
            state = (1, *state)
        if not isinstance(state, tuple) or len(state) != 5 or state[0] != 1 or not isinstance(state[3], bool):
            raise UnpickleRefused("a damaged array")
        _, shape, dtype, fortran, raw = state
        self.array = _checked_array(raw, dtype, shape, "F" if fortran else "C")


def _reconstruct(cls, shape, typecode):
    if cls is not NDARRAY:
        raise UnpickleRefused("an array of a class other than numpy.ndarray")
    return _Array()


def _frombuffer(buffer, dtype, shape, order):
    return _checked_array(buffer, dtype, shape, order)


def _latin1_bytes(text, encoding):
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnpickleRefused("_codecs.encode used for something other than bytes")
    return text.encode("latin1")


GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): NDARRAY,
    ("numpy", "dtype"): _Dtype,
    ("_codecs", "encode"): _latin1_bytes,
}


class PlainArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, tuples, str, bytes, numbers and plain numeric numpy arrays; nothing else.

    Python 2 strings decode as latin1 (the official CIFAR-10 files are Python 2 pickles). Use it
    through load_plain_pickle, which first checks the opcodes.
    Raises UnpickleRefused for any other global (os.system, builtins.eval, ...: never imported,
    never run) or an array whose fields do not add up; other errors of a damaged file are
    pickle's own (UnpicklingError, EOFError, ...).
    """

    def __init__(self, file):
        super().__init__(file, encoding="latin1")

    def find_class(self, module: str, name: str):
        try:
            return GLOBALS[module, name]
        except KeyError:
            raise UnpickleRefused(f"it asks for {_describe_global(module, name)}, which was refused, not run") from None

    def persistent_load(self, pid):
        raise UnpickleRefused("it refers to outside objects (persistent ids)")

    def load(self):
        result = super().load()
        if isinstance(result, dict):  # where CIFAR-10 keeps its arrays
            result = {k: v.array if isinstance(v, _Array) else v for k, v in result.items()}
        return result



def load_plain_pickle(data: bytes):
    """The object pickled in `data`, which may hold only builtin data and plain numeric arrays.

    Raises UnpickleRefused (nothing of the file ran) for a refused global, a damaged array,
    or opcodes that do not parse (garbled or truncated data); other errors of a damaged file
    are pickle's own (UnpicklingError, EOFError, ...).
    """
    if not data:
        raise UnpickleRefused("the file is empty")
    try:
        for _ in pickletools.genops(data):
            pass
    except ValueError as error:
        unknown = "unknown" in str(error) and "opcode" in str(error)
        raise UnpickleRefused("not pickle data" if unknown else "damaged or truncated pickle data") from None
    return PlainArrayUnpickler(io.BytesIO(data)).load()
