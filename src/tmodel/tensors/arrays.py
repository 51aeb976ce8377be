"""numpy values <-> `ndarray` and `numpy_scalar` nodes (SPEC.md §5.4), restored as numpy, never as tensors.

Rules: numpy is optional. Saving never imports it: a value can only be a numpy value if numpy is already
imported. Loading imports it only for a file that holds numpy values, and without numpy such a file is
refused with UNSUPPORTED_TYPE. Only numpy's plain types are stored: `numpy.ndarray` itself (no subclass such
as a matrix or memmap) and the scalar types of NUMPY_DTYPES, little-endian; anything else is refused.
"""

from __future__ import annotations

import sys
from typing import Any

from ..errors import TModelError, UnsupportedType
from ..manifest.dtypes import NUMPY_DTYPES
from ..manifest.nodes import ArrayBody, ScalarBody


def numpy_node(v: Any, path: str, error: type[TModelError]) -> Any:
    """The node of a numpy array or scalar, `error` naming `path` if it cannot be stored, or None when `v`
    is not a numpy value."""
    np = sys.modules.get("numpy")
    if np is None or not isinstance(v, (np.ndarray, np.generic)):
        return None
    if type(v) is not np.ndarray and not (isinstance(v, np.generic) and type(v) is v.dtype.type):
        raise error(f"{path}: unsupported numpy type {type(v).__name__} (a subclass)")
    dtype = v.dtype
    if dtype.name not in NUMPY_DTYPES or dtype.fields is not None:
        names = ", ".join(sorted(NUMPY_DTYPES))
        raise error(f"{path}: numpy dtype {dtype} is not one the format stores ({names})")
    little = dtype.byteorder == "<" or (dtype.byteorder in "=|" and sys.byteorder == "little")
    if not little:
        little_name = dtype.newbyteorder("<").str
        raise error(f"{path}: a big-endian numpy value; convert it first, e.g. .astype({little_name!r})")
    if type(v) is np.ndarray:
        return {
            "ndarray": {
                "dtype": dtype.name,
                "shape": list(v.shape),
                "data": np.ascontiguousarray(v).tobytes(),
            }
        }
    return {"numpy_scalar": {"dtype": dtype.name, "data": v.tobytes()}}


def _numpy() -> Any:
    try:
        import numpy
    except ImportError:
        raise UnsupportedType("the file holds numpy values, and numpy is not installed") from None
    return numpy


def ndarray_value(body: ArrayBody) -> Any:
    """A validated ndarray node's array: writable, owning its memory, of the stored dtype and shape."""
    np = _numpy()
    dtype = np.dtype(body.dtype).newbyteorder("<")
    return np.frombuffer(body.data, dtype=dtype).reshape(body.shape).copy()


def numpy_scalar_value(body: ScalarBody) -> Any:
    """A validated numpy_scalar node's scalar, of the stored numpy type."""
    np = _numpy()
    return np.frombuffer(body.data, dtype=np.dtype(body.dtype).newbyteorder("<"))[0]
