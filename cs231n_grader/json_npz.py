"""Nested values <-> (JSON tree, dict of arrays): how the grader moves data without pickle.

Inputs go to the child process, results come back, and exported test vectors are written in this
form: a JSON document whose arrays are replaced by ``{"__nd__": key}`` references into an ``.npz``
written and read with ``allow_pickle=False``. Nothing a student's code returns is ever unpickled.

Markers in the JSON tree:
  {"__nd__": key}           an ndarray (or a NumPy scalar, stored as a 0-d array) in the .npz
  {"__tuple__": [...]}      a tuple (a JSON list is a Python list)
  {"__dict__": {...}}       a dict with string keys
  {"__float__": "nan"}      a non-finite Python float ("nan", "inf", "-inf")
  {"__dtype__": "float64"}  a NumPy scalar type such as np.float64 (decoded to the type)
  {"__unsupported__": name} anything else (a generator, a custom object...): only its type name
                            survives, so the grader can say what the student returned.
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile

import numpy as np

MAX_DEPTH = 12


def encode(obj, arrays: dict, prefix: str = "a", _depth: int = 0):
    """Return the JSON tree of ``obj``; arrays are added to ``arrays`` under fresh keys."""
    if _depth > MAX_DEPTH:
        return {"__unsupported__": f"structure nested deeper than {MAX_DEPTH} levels"}
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject or obj.dtype.kind not in "biufcSU":
            return {"__unsupported__": f"ndarray of dtype {obj.dtype}"}
        key = f"{prefix}{len(arrays)}"
        arrays[key] = obj
        return {"__nd__": key}
    if isinstance(obj, np.generic) and not isinstance(obj, np.object_):
        key = f"{prefix}{len(arrays)}"
        arrays[key] = np.asarray(obj)
        return {"__nd__": key}
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else {"__float__": repr(obj)}
    if isinstance(obj, type) and issubclass(obj, np.generic):
        return {"__dtype__": np.dtype(obj).name}
    if isinstance(obj, np.dtype):
        return {"__dtype__": obj.name}
    if isinstance(obj, tuple):
        return {"__tuple__": [encode(v, arrays, prefix, _depth + 1) for v in obj]}
    if isinstance(obj, list):
        return [encode(v, arrays, prefix, _depth + 1) for v in obj]
    if isinstance(obj, dict):
        if not all(isinstance(k, str) for k in obj):
            return {"__unsupported__": "dict with non-string keys"}
        return {"__dict__": {k: encode(v, arrays, prefix, _depth + 1) for k, v in obj.items()}}
    return {"__unsupported__": type(obj).__qualname__}


class Unsupported:
    """Stands for a value the codec could not carry (see the module docstring)."""

    def __init__(self, type_name: str):
        self.type_name = type_name

    def __repr__(self):
        return f"<{self.type_name}>"


def decode(tree, arrays):
    """Inverse of :func:`encode`. ``arrays`` maps keys to ndarrays (e.g. an opened NpzFile)."""
    if isinstance(tree, list):
        return [decode(v, arrays) for v in tree]
    if not isinstance(tree, dict):
        return tree
    if "__nd__" in tree:
        return np.array(arrays[tree["__nd__"]])
    if "__tuple__" in tree:
        return tuple(decode(v, arrays) for v in tree["__tuple__"])
    if "__dict__" in tree:
        return {k: decode(v, arrays) for k, v in tree["__dict__"].items()}
    if "__float__" in tree:
        return float(tree["__float__"])
    if "__dtype__" in tree:
        return np.dtype(tree["__dtype__"]).type
    if "__unsupported__" in tree:
        return Unsupported(tree["__unsupported__"])
    raise ValueError(f"unknown tree node {sorted(tree)}")


def _atomic_write(path: str, data: bytes) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def npz_bytes(arrays: dict) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def save(stem: str, obj) -> None:
    """Write ``obj`` as ``stem.npz`` then ``stem.json`` (each atomically; the JSON last, so a
    reader that sees the JSON finds the arrays)."""
    arrays: dict = {}
    tree = encode(obj, arrays)
    _atomic_write(stem + ".npz", npz_bytes(arrays))
    _atomic_write(stem + ".json", json.dumps(tree).encode())


def load(stem: str):
    """Read what :func:`save` wrote (``allow_pickle=False``)."""
    with open(stem + ".json", encoding="utf-8") as f:
        tree = json.load(f)
    with np.load(stem + ".npz", allow_pickle=False) as npz:
        return decode(tree, npz)


def write_json(path: str, obj) -> None:
    _atomic_write(path, (json.dumps(obj, indent=2, allow_nan=False) + "\n").encode())


def write_npz(path: str, arrays: dict) -> None:
    _atomic_write(path, npz_bytes(arrays))
