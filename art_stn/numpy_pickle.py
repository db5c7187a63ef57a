"""
A restricted unpickler for numpy arrays of plain numeric dtypes, for pickled data sets (the real MNIST's
`mnist.pkl.gz`, checked by SHA-256 before it is read, :func:`art_stn.data.fetch_mnist`).

Python's own unpickler runs any code a pickle names. This one loads numpy's array reconstruction and `dtype` only,
and only for booleans, integers and floats: an object, structured, string or forged dtype (a BUILD that adds fields
or flags to a plain one, whose bytes numpy would then read as object pointers) is refused before it is built.

Layer 3: numpy only.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import numpy as np

__all__ = ["NumpyOnlyUnpickler", "restricted_unpickle"]

#: Kinds of the dtypes the restricted unpickler admits: booleans, signed and unsigned integers, floats.
_PLAIN_KINDS = "biuf"


def _refuse(message: str) -> pickle.UnpicklingError:
    """
    :param message: What was refused.
    :return: The error, saying what the unpickler admits.
    """
    allowed = "only arrays of plain numeric dtypes (bool, integers, floats) are allowed"
    return pickle.UnpicklingError(f"{message}: {allowed}.")


def _check_plain(dtype: Any) -> np.dtype:
    """
    :param dtype: A dtype built by the unpickler.
    :return: It, when it is a plain numeric dtype: no fields, no sub-array, no objects.
    :raises pickle.UnpicklingError: otherwise.
    """
    if not isinstance(dtype, np.dtype) or dtype.kind not in _PLAIN_KINDS or dtype.fields is not None:
        raise _refuse(f"refused dtype {dtype!r}")
    if dtype.subdtype is not None or dtype.hasobject or dtype.names is not None:
        raise _refuse(f"refused dtype {dtype!r}")
    return dtype


def _plain_dtype(spec: Any, align: Any = False, copy: Any = True) -> np.dtype:
    """
    `numpy.dtype` as pickles call it (`dtype('f4', False, True)`), for plain numeric type codes only.

    :param spec: The type code, e.g. `'f4'`, `'i8'`, `'u1'`, `'b1'` (bytes from Python 2 pickles included).
    :param align: Ignored beyond its type (plain dtypes have no fields to align).
    :param copy: Ignored: a fresh dtype object is always returned, so the BUILD that follows (which sets the byte
           order) never changes numpy's shared instances.
    :return: A new dtype.
    :raises pickle.UnpicklingError: for any other type code (object, structured, string, void, datetime, ...).
    """
    if isinstance(spec, bytes):
        spec = spec.decode("latin1")
    if not isinstance(spec, str) or not isinstance(align, (bool, int)) or not isinstance(copy, (bool, int)):
        raise _refuse(f"refused dtype({spec!r}, ...)")
    try:
        dtype = np.dtype(spec)
    except TypeError as err:
        raise _refuse(f"refused dtype {spec!r}") from err
    return _check_plain(np.dtype(_check_plain(dtype), copy=True))


def _reconstruct_array(subtype: Any, shape: Any, typecode: Any) -> np.ndarray:
    """
    numpy's `_reconstruct` (the empty array that BUILD then fills), for a plain `ndarray` only.

    :param subtype: Must be `numpy.ndarray`.
    :param shape: The placeholder shape.
    :param typecode: The placeholder type code.
    :return: The empty array.
    :raises pickle.UnpicklingError: for a subclass or a non-numeric type code.
    """
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy < 2
        from numpy.core.multiarray import _reconstruct

    if subtype is not np.ndarray:
        raise _refuse(f"refused array type {subtype!r}")
    return _reconstruct(np.ndarray, shape, _plain_dtype(typecode))


def _check_dtype_state(state: Any) -> None:
    """
    :param state: The state a BUILD gives a dtype: `(version, byte order, sub-array, names, fields, item size,
           alignment, flags[, metadata])`.
    :raises pickle.UnpicklingError: unless it only sets the byte order of a plain dtype (no sub-array, names,
            fields, item size, alignment, flags or metadata), which is what numpy writes for numeric dtypes.
    """
    plain = (None, None, None, -1, -1, 0)
    if not isinstance(state, tuple) or len(state) not in (8, 9) or state[0] not in (3, 4):
        raise _refuse("refused a dtype state of another form")
    if state[1] not in ("<", ">", "|", "=") or tuple(state[2:8]) != plain or (len(state) == 9 and state[8] is not None):
        raise _refuse(f"refused a dtype state that adds fields, a sub-array or flags ({state!r:.200})")


def _check_array_state(state: Any) -> None:
    """
    :param state: The state a BUILD gives an array: `(version, shape, dtype, fortran order, raw bytes)`.
    :raises pickle.UnpicklingError: unless its dtype is plain and its data raw bytes (not a list of objects).
    """
    if not isinstance(state, tuple) or len(state) != 5 or not isinstance(state[4], (bytes, str)):
        raise _refuse("refused an array state that is not a plain dtype with raw bytes")
    _check_plain(state[2])


class NumpyOnlyUnpickler(pickle._Unpickler):  # the Python implementation: its BUILD and REDUCE can be checked
    """
    An unpickler that reconstructs numpy arrays of plain numeric dtypes (bool, integers, floats) and nothing else.

    Only numpy's array reconstruction and `dtype` can be loaded, and both only for plain numeric type codes; a BUILD
    may only set a dtype's byte order and an array's shape and raw bytes; no other object can be called or built.
    So a pickle cannot forge an object or structured dtype (whose bytes numpy would read as object pointers).
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }
    dispatch = dict(pickle._Unpickler.dispatch)

    def find_class(self, module: str, name: str) -> Any:
        """
        :param module: The module of the global the pickle asks for.
        :param name: Its name.
        :return: The checked array reconstruction, `ndarray` (as its argument) or the checked `dtype`.
        :raises pickle.UnpicklingError: for any other global.
        """
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}: only numpy arrays are allowed.")
        return {"_reconstruct": _reconstruct_array, "ndarray": np.ndarray, "dtype": _plain_dtype}[name]

    def _load_reduce(self) -> None:
        """
        REDUCE: call the checked reconstruction or dtype only.
        """
        if self.stack[-2] not in (_reconstruct_array, _plain_dtype):
            raise _refuse(f"refused to call {self.stack[-2]!r}")
        pickle._Unpickler.load_reduce(self)

    def _load_build(self) -> None:
        """
        BUILD: set a dtype's byte order or an array's contents, after checking the state.
        """
        inst, state = self.stack[-2], self.stack[-1]
        if type(inst) is np.ndarray:
            _check_array_state(state)
        elif isinstance(inst, np.dtype):
            _check_dtype_state(state)
        else:
            raise _refuse(f"refused to build {type(inst).__name__}")
        pickle._Unpickler.load_build(self)

    def _load_refused(self) -> None:
        """
        NEWOBJ, NEWOBJ_EX, OBJ and INST: refused (numpy's pickles do not use them).
        """
        raise _refuse("refused to create an object directly")

    dispatch[pickle.REDUCE[0]] = _load_reduce
    dispatch[pickle.BUILD[0]] = _load_build
    for _opcode in (pickle.NEWOBJ, pickle.NEWOBJ_EX, pickle.OBJ, pickle.INST):
        dispatch[_opcode[0]] = _load_refused
    del _opcode


def restricted_unpickle(data: bytes) -> Any:
    """
    Unpickle bytes (Python 2 pickles included) allowing numpy arrays of plain numeric dtypes only.

    :param data: The pickle.
    :return: The object.
    :raises pickle.UnpicklingError: for anything else (another global, an object, structured or string dtype, a
            forged dtype state).
    """
    return NumpyOnlyUnpickler(io.BytesIO(data), encoding="latin1").load()
