"""``--export-vectors DIR``: the reference's inputs and outputs as fixed test vectors.

For every item whose reference module imports, DIR gets ``<item>.npz`` (all arrays, written
with ``np.savez``; read them with ``np.load(path, allow_pickle=False)``) and DIR/index.json
describing, per case, its label, its inputs and the reference outputs as JSON trees whose
arrays are ``{"__nd__": "<key in the item's .npz>"}`` (see ``json_npz.py`` for the other markers:
``__tuple__``, ``__dict__``, ``__dtype__``, ``__float__``). ``load_vectors(DIR)`` reads it all
back as Python values; DIR also gets ``decode.py`` (the same with NumPy alone, see
``vectors_decoder.py``) and ``README.md`` (``VECTORS.md``: the format and the comparison rules
the grader applies). A course can embed these vectors in its own notebooks: no grader, no
reference code needed to check a student's output against them.

Outputs per kind of item:
  layer   {"forward": {<output name>: array, ..., "<param dict>": {...after the call}},
           "backward": {<gradient name>: array, ...}}   (backward absent in test mode)
  loss    {"loss": float, <gradient name>: array}
  torch   {"function": name, "output": array, <gradient name>: array, ...}  (PyTorch functions
          of assignment 3, several per item: the case's "fn" picks one;
          inputs as float64 tensors; the gradients are of sum(output * douts), douts = 1 for a
          scalar output)
  torch_module  {"class": name, "output": array, "input_grads": {name: array},
          "param_grads": {name: array}}  (the case's "fn" picks the item's class;
          a module in eval mode, float64, its parameters set from the inputs' "params" in
          CS231n layout: w (in, out), the transpose of nn.Linear.weight)
  optim   {"steps": [{"next_w": array, "config": {...}}, ...]}   (one per dw in the inputs)
  object  {"params_after_init": {...}, "calls": [<value returned by each call>, ...]}
          (the inputs' "params" are set on the object after construction, before the calls)
"""

from __future__ import annotations

import os

import numpy as np

from cs231n_grader import json_npz
from cs231n_grader._version import __version__
from cs231n_grader.item_selection import select_items
from cs231n_grader.reference_runs import reference_run

_INPUT_KEYS = (
    "args",
    "kwargs",
    "douts",
    "w",
    "config",
    "dws",
    "ctor_args",
    "ctor_kwargs",
    "params",
    "attrs",
    "calls",
    "fn",
    "train_loss",
)


def _outputs(item, case, i, R) -> dict:
    if item.kind == "layer":
        fwd = R.get(f"fwd/{i}") or {}
        if fwd.get("error"):
            return {}
        out = {"forward": dict(zip(item.spec["outputs"], fwd["value"], strict=True))}
        out["forward"].update(fwd.get("state") or {})
        bwd = R.get(f"bwd/{i}")
        if bwd and not bwd.get("error"):
            grads = bwd["value"] if isinstance(bwd["value"], (tuple, list)) else [bwd["value"]]
            out["backward"] = dict(zip([g for g, _ in item.grads], grads, strict=True))
        return out
    if item.kind == "loss":
        rec = R.get(f"loss/{i}") or {}
        if rec.get("error"):
            return {}
        return {"loss": rec["value"][0], item.grads[0][0]: rec["value"][1]}
    if item.kind == "torch_module":
        rec = R.get(f"loss/{i}") or {}
        if rec.get("error"):
            return {}
        out, grads, pgrads = rec["value"]
        return {
            "class": item.spec["modules"][case["fn"]]["cls"],
            "output": out,
            "input_grads": grads,
            "param_grads": pgrads,
        }
    if item.kind == "torch":
        rec = R.get(f"loss/{i}") or {}
        fspec = item.spec["functions"][case["fn"]]
        if rec.get("error") or fspec.get("check"):  # judged by what every right answer shares
            return {}
        out, grads = rec["value"]
        return {
            "function": fspec["function"],
            "output": out,
            **{g: grads[idx] for g, idx in fspec["grads"]},
        }
    if item.kind == "optim":
        steps = []
        for s in range(len(case["dws"])):
            rec = R.get(f"step/{i}/{s}") or {}
            if rec.get("error") or rec.get("value") is None:
                break
            steps.append({"next_w": rec["value"][0], "config": rec["value"][1]})
        return {"steps": steps}
    init = R.get(f"init/{i}") or {}
    calls = [(R.get(f"call/{i}/{j}") or {}).get("value") for j in range(len(case["calls"]))]
    return {"params_after_init": init.get("value"), "calls": calls}


def export_vectors(outdir: str, seed: int = 231, only=None) -> dict:
    """Write the vectors (see the module docstring); returns the index."""
    os.makedirs(outdir, exist_ok=True)
    index = {
        "format": "nn-twins test vectors",
        "version": __version__,
        "seed": seed,
        "numpy": np.__version__,
        "items": [],
        "skipped": [],
    }
    for item in select_items(only):
        try:
            _, cases, R = reference_run(item, seed)
        except Exception as exc:  # noqa: BLE001 -- reference module not available
            index["skipped"].append({"item": item.name, "reason": f"{type(exc).__name__}: {exc}"})
            continue
        arrays: dict = {}
        entry = {
            "item": item.name,
            "kind": item.kind,
            "reference": item.ref,
            "student_files": list(item.files),
            "tests": list(item.tests.values()),
            "arrays": f"{item.name}.npz",
            "cases": [],
        }
        for i, case in enumerate(cases):
            inputs = {k: case[k] for k in _INPUT_KEYS if k in case}
            entry["cases"].append(
                {
                    "label": case["label"],
                    "meta": {
                        k: v
                        for k, v in (case.get("meta") or {}).items()
                        if isinstance(v, (bool, int, float, str))
                    },
                    "inputs": json_npz.encode(inputs, arrays, prefix=f"case{i}_in_"),
                    "outputs": json_npz.encode(
                        _outputs(item, case, i, R), arrays, prefix=f"case{i}_out_"
                    ),
                }
            )
        json_npz.write_npz(os.path.join(outdir, entry["arrays"]), arrays)
        index["items"].append(entry)
    json_npz.write_json(os.path.join(outdir, "index.json"), index)
    here = os.path.dirname(os.path.abspath(__file__))
    for src, dest in (("vectors_decoder.py", "decode.py"), ("VECTORS.md", "README.md")):
        if os.path.exists(os.path.join(here, src)):  # package data may be left out of a wheel
            with open(os.path.join(here, src), "rb") as f:
                json_npz._atomic_write(os.path.join(outdir, dest), f.read())
    return index


def load_vectors(outdir: str) -> dict:
    """item name -> list of {'label', 'meta', 'inputs', 'outputs'} with arrays loaded (no
    pickle)."""
    import json

    with open(os.path.join(outdir, "index.json"), encoding="utf-8") as f:
        index = json.load(f)
    out = {}
    for entry in index["items"]:
        with np.load(os.path.join(outdir, entry["arrays"]), allow_pickle=False) as npz:
            out[entry["item"]] = [
                {
                    "label": c["label"],
                    "meta": c.get("meta", {}),
                    "inputs": json_npz.decode(c["inputs"], npz),
                    "outputs": json_npz.decode(c["outputs"], npz),
                }
                for c in entry["cases"]
            ]
    return out
