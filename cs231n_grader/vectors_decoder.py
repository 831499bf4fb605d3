"""Read the test vectors ``nn-twins-grade --export-vectors DIR`` wrote, with NumPy alone.

``--export-vectors`` copies this file into DIR as ``decode.py``, so a course can use the vectors
without the grader or the reference installed:

    from decode import load_vectors, rel_error
    vectors = load_vectors("DIR")              # item name -> list of cases
    case = vectors["affine"][0]
    x, w, b = case["inputs"]["args"]
    out, cache = affine_forward(x, w, b)       # the student's function
    assert rel_error(out, case["outputs"]["forward"]["out"]) < 1e-7

Every case also carries ``meta`` (``"robust": True`` marks a robustness case, ``"ties": True``
a max-pool input with tied maxima); ``README.md`` in DIR gives the comparison rules the grader
applies, which a plain equality test would not (dropout masks, ties, Adam's two forms).
Arrays are read with ``allow_pickle=False``; nothing is unpickled.
"""

import json
import os

import numpy as np


def _decode(tree, arrays):
    """Inverse of the grader's codec: JSON trees whose markers stand for arrays and types."""
    if isinstance(tree, list):
        return [_decode(v, arrays) for v in tree]
    if not isinstance(tree, dict):
        return tree
    if "__nd__" in tree:
        return np.array(arrays[tree["__nd__"]])
    if "__tuple__" in tree:
        return tuple(_decode(v, arrays) for v in tree["__tuple__"])
    if "__dict__" in tree:
        return {k: _decode(v, arrays) for k, v in tree["__dict__"].items()}
    if "__float__" in tree:
        return float(tree["__float__"])
    if "__dtype__" in tree:
        return np.dtype(tree["__dtype__"]).type
    if "__unsupported__" in tree:
        return None
    raise ValueError(f"unknown marker in the vectors: {sorted(tree)}")


def load_vectors(directory):
    """item name -> list of {'label', 'meta', 'inputs', 'outputs'} with arrays loaded."""
    with open(os.path.join(directory, "index.json"), encoding="utf-8") as f:
        index = json.load(f)
    out = {}
    for entry in index["items"]:
        with np.load(os.path.join(directory, entry["arrays"]), allow_pickle=False) as npz:
            out[entry["item"]] = [
                {
                    "label": c["label"],
                    "meta": c.get("meta", {}),
                    "inputs": _decode(c["inputs"], npz),
                    "outputs": _decode(c["outputs"], npz),
                }
                for c in entry["cases"]
            ]
    return out


def rel_error(x, y):
    """CS231n's relative error: max |x - y| / max(1e-8, |x| + |y|)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    return float(np.max(np.abs(x - y) / np.maximum(1e-8, np.abs(x) + np.abs(y))))
