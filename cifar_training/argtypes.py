"""argparse ``type=`` validators shared by train.py and predict: each returns the parsed value
or raises ``ArgumentTypeError`` saying what was expected and what was given. Imports nothing
heavy, so ``predict`` does not pull in Lightning for them."""

import argparse


def positive_float(s):
    v = float(s)
    if not (v > 0 and v < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {s}")
    return v


def devices(s):
    """Lightning's --devices: auto, a count (>= 1, or -1 for all), or a list like 0,1."""
    if s == "auto":
        return s
    parts = s.split(",")
    try:
        ids = [int(p) for p in parts if p.strip()]
    except ValueError:
        ids = None
    if ids is None or not ids:
        raise argparse.ArgumentTypeError(
            f"expected auto, a count, -1 or a list like 0,1, got {s!r}"
        )
    if len(parts) == 1:
        if ids[0] == 0 or ids[0] < -1:
            raise argparse.ArgumentTypeError(f"must be >= 1 (or -1 for all devices), got {s}")
        return ids[0]
    if min(ids) < 0:
        raise argparse.ArgumentTypeError(f"device indices must be >= 0, got {s!r}")
    return s


def positive_int(s):
    v = int(s)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {s}")
    return v


def nonneg_int(s):
    v = int(s)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {s}")
    return v


def nonneg_float(s):
    v = float(s)
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {s}")
    return v


def fraction(s):
    v = float(s)
    if not 0 <= v < 1:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1), got {s}")
    return v


def on_off(s):
    if s not in ("on", "off"):
        raise argparse.ArgumentTypeError(f"expected on or off, got {s!r}")
    return s == "on"


def widths(s):
    try:
        w = tuple(int(p) for p in s.split(","))
    except ValueError:
        w = ()
    if not w or min(w) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive ints, got {s!r}")
    return w


def limit(s):
    """Lightning's limit_*_batches: an int count or a float fraction."""
    try:
        v = int(s)
    except ValueError:
        v = float(s)
        if not 0 <= v <= 1:
            raise argparse.ArgumentTypeError(f"a fraction must lie in [0, 1], got {s}") from None
        return v
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {s}")
    return v
