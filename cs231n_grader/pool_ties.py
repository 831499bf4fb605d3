"""Max pooling with tied maxima: any split of dout among a window's maxima is a valid gradient,
so such a backward passes with a note; an invalid one gets a hint instead of a numerical
diagnosis (which means nothing at a tie)."""

from __future__ import annotations

import numpy as np

from cs231n_grader.call_records import as_tuple
from cs231n_grader.thresholds import THRESHOLDS as T
from cs231n_grader.variant_matching import accept

TIE_HINT = (
    "where a window has several equal maxima your dx is not a valid split of dout: "
    "each window's dout must go to its maxima only and sum to dout (all of it to the "
    "first maximum, as the reference and PyTorch do, or shared among them)"
)


def pool_split_ok(x, pool_param, dout, dx, tol=None) -> bool:
    """Is ``dx`` a valid subgradient of max pooling (non-overlapping windows): in each window,
    zero off the maxima, and on them a split of dout (same sign, parts adding up to dout)?"""
    tol = T["gradient"] if tol is None else tol
    ph, pw, st = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    x, dout = np.asarray(x, dtype=np.float64), np.asarray(dout, dtype=np.float64)
    try:
        dx = np.asarray(dx, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    if dx.shape != x.shape or st < max(ph, pw) or not np.all(np.isfinite(dx)):
        return False
    covered = np.zeros(x.shape, dtype=bool)
    scale = max(float(np.abs(dout).max(initial=0.0)), 1e-300)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            win = (slice(None), slice(None), slice(i * st, i * st + ph), slice(j * st, j * st + pw))
            covered[win] = True
            xw, gw, d = x[win], dx[win], dout[:, :, i : i + 1, j : j + 1]
            is_max = xw == xw.max(axis=(2, 3), keepdims=True)
            if np.abs(np.where(is_max, 0.0, gw)).max(initial=0.0) > tol * scale:
                return False  # gradient off the maxima
            share = np.where(is_max, gw, 0.0)
            if np.abs(share.sum(axis=(2, 3), keepdims=True) - d).max() > tol * scale:
                return False  # the parts do not add up to dout
            if np.any(share * d < -tol * scale * scale):
                return False  # a part of the wrong sign
    return bool(np.abs(dx[~covered]).max(initial=0.0) <= tol * scale)


def accept_pool_splits(item, cases, S, crs) -> None:
    for cr in crs:
        if not cr.value_only:
            continue
        case = cases[cr.index]
        got = as_tuple(S[f"bwd/{cr.index}"]["value"], 1)
        if got and pool_split_ok(case["args"][0], case["args"][1], case["douts"][0], got[0]):
            accept(
                cr,
                "tied maxima share the gradient differently from the reference "
                "(accepted: any split among tied maxima is a valid gradient)",
            )
