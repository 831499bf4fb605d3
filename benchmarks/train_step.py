"""Images per second of one training step of train.py's models, per backend, and peak memory.

    python benchmarks/train_step.py                 # both models at their recipe batch sizes
    python benchmarks/train_step.py --quick --json  # < 60 s; one JSON object per line

One step is train.py's own, from the training package's hook
``cifar_training.module.make_train_step``: ``opt.zero_grad(); loss = ops.cross_entropy(net(x,
ops), y, label_smoothing); loss.backward(); opt.step()`` with the network, op set, optimizer
(param groups, coupled weight decay) and hyperparameters of the model's recipe, without
Lightning's loop around it (logging, callbacks, LR scheduler). The same seed gives every backend
the same initial weights and the same random batch.

Each backend runs in its own child process (one per backend and model; in --smoke one per
backend), so each has its own peak RSS (``ru_maxrss``) and no backend's caches or allocator state
leak into another's. The children start once and warm up; then the parent asks them for one timed
sample each, round-robin (order rotated every round), so load on a shared machine hits all three
alike; the median is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import _common as common  # noqa: E402

TARGETS = {"torch": 1.2, "numpy": 3.0}  # targets: time per step relative to the builtin
MODELS = ("default", "three-layer")
PRECISIONS = ("32-true", "bf16-mixed")


# ----------------------------------------------------------------------------------------------
# Child process: one backend, the models it is given
# ----------------------------------------------------------------------------------------------


def _build_step(item: dict, backend: str):
    """The step closure of one model: ``cifar_training.module.make_train_step``, train.py's own
    step (network, loss with label smoothing, optimizer with its param groups and weight decay,
    all from the model's recipe), on a fixed random batch."""
    import torch

    from cifar_training.models import fit_whitening
    from cifar_training.module import make_train_step

    seed, N = item["seed"], item["batch_size"]
    net, train_step = make_train_step(backend, item["model"], seed=seed, **item["overrides"])
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (N,), generator=g)
    fit_whitening(net, x)  # the default model's fixed stem filters, as train.py sets them
    from cifar_training.backends import ops_class

    if ops_class(backend).uses_channels_last(item["channels_last"]):
        # train.py's --channels-last: weights and images channels last (the data module's
        # batches arrive so), the network's activations then follow their input's layout
        net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    last = {}

    def step():
        # bf16-mixed is Lightning's CPU mixed precision: the step under torch.autocast.
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=item["precision"] == "bf16-mixed"):
            last["loss"] = train_step(x, y)

    params = sum(p.numel() for p in net.parameters() if p.requires_grad)
    return step, last, params


def child_main(spec: dict) -> int:
    """One backend. Serves requests on stdin: 'run I K' -> {"seconds": per step of model I};
    'quit' -> final facts (peak RSS, last losses).

    Protocol lines go to the ORIGINAL stdout; anything else that prints (warnings, libraries)
    is sent to stderr, so it cannot corrupt the protocol.
    """
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    import torch

    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    torch.set_float32_matmul_precision(spec.get("matmul_precision", "highest"))
    import cifar_training.module  # noqa: F401 - imported before the baseline RSS is taken

    baseline = common.peak_rss_mb()
    built = [_build_step(item, spec["backend"]) for item in spec["models"]]
    for step, _, _ in built:
        for _ in range(spec["warmup"]):
            step()
    proto.write(
        json.dumps(
            {
                "ready": True,
                "baseline_rss_mb": common.round_sig(baseline),
                "params": [b[2] for b in built],
            }
        )
        + "\n"
    )
    for line in sys.stdin:
        cmd = line.split()
        if cmd and cmd[0] == "run":
            step, k = built[int(cmd[1])][0], int(cmd[2])
            r0 = resource.getrusage(resource.RUSAGE_SELF)
            t0 = time.perf_counter()
            for _ in range(k):
                step()
            t1 = time.perf_counter()
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            proto.write(
                json.dumps(
                    {
                        "seconds": (t1 - t0) / k,
                        "user_s": (r1.ru_utime - r0.ru_utime) / k,
                        "sys_s": (r1.ru_stime - r0.ru_stime) / k,
                        "minor_faults": (r1.ru_minflt - r0.ru_minflt) / k,
                    }
                )
                + "\n"
            )
        elif cmd and cmd[0] == "quit":
            break
    losses = [float(b[1]["loss"]) if b[1] else None for b in built]
    proto.write(
        json.dumps({"peak_rss_mb": common.round_sig(common.peak_rss_mb()), "last_loss": losses})
        + "\n"
    )
    return 0


# ----------------------------------------------------------------------------------------------
# Parent
# ----------------------------------------------------------------------------------------------


class BackendProcess:
    """The child process of one backend (``child_main``), asked for samples over a pipe."""

    def __init__(self, spec: dict, env: dict):
        self.backend = spec["backend"]
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            bufsize=1,
            env=env,
            cwd=str(ROOT),
        )
        self.error = None
        self.info: dict = {}

    def request(self, line: str | None) -> dict | None:
        """Send a line (None: only read) and return the child's JSON reply, or None on death."""
        if self.error:
            return None
        try:
            if line is not None:
                self.proc.stdin.write(line + "\n")
                self.proc.stdin.flush()
            reply = self.proc.stdout.readline()
            if reply:
                return json.loads(reply)
        except (BrokenPipeError, OSError, json.JSONDecodeError):
            pass
        self.proc.wait()
        self.log.seek(0)
        tail = self.log.read().strip().splitlines()[-1:]  # the exception line, if it raised
        self.error = f"child exited with {self.proc.returncode}: " + "".join(tail)
        return None

    def close(self) -> dict:
        out = self.request("quit") or {}
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        self.proc.wait()
        self.log.close()
        return out


def time_train_steps(items: list[dict], backends, opts, env) -> list[dict]:
    """Time every model of ``items`` on every backend; one child per backend serves them all.

    items: [{"model", "recipe", "batch_size"}]. Call with one item per call for separate peak
    RSS per model (the full and quick runs do).
    """
    spec_base = {
        "models": items,
        "warmup": opts["warmup"],
        "threads": opts["threads"],
        "matmul_precision": opts["matmul_precision"],
    }
    children = [BackendProcess({**spec_base, "backend": b}, env) for b in backends]
    for ch in children:
        ch.info = ch.request(None) or {}
    live = [ch for ch in children if not ch.error]
    samples = {(ch.backend, i): [] for ch in live for i in range(len(items))}
    usage = {(ch.backend, i): [] for ch in live for i in range(len(items))}
    for r in range(opts["repeats"]):
        for i in range(len(items)):
            shift = r % max(len(live), 1)
            for ch in live[shift:] + live[:shift]:
                time.sleep(opts["settle"])  # let the previous child's threads go idle
                reply = ch.request(f"run {i} {opts['steps']}")
                if reply:
                    samples[(ch.backend, i)].append(reply["seconds"])
                    usage[(ch.backend, i)].append(reply)
    finals = {ch.backend: ch.close() for ch in children}
    rows = []
    for i, item in enumerate(items):
        case = f"{item['model']} N={item['batch_size']}"
        part = []
        for ch in children:
            s = sorted(samples.get((ch.backend, i), []))
            if not s or ch.error:
                part.append(
                    {
                        "bench": "train_step",
                        "case": case,
                        "backend": ch.backend,
                        "ms": None,
                        "ratio_to_builtin": None,
                        "error": ch.error or "no samples",
                    }
                )
                continue
            med = statistics.median(s)
            final = finals[ch.backend]
            u = usage[(ch.backend, i)]
            cpu = {
                k: statistics.median(x[k] for x in u) for k in ("user_s", "sys_s", "minor_faults")
            }
            part.append(
                {
                    "bench": "train_step",
                    "case": case,
                    "backend": ch.backend,
                    "ms": common.round_sig(med * 1e3),
                    "ratio_to_builtin": None,
                    "images_per_s": common.round_sig(item["batch_size"] / med),
                    "peak_rss_mb": final.get("peak_rss_mb"),
                    "baseline_rss_mb": ch.info.get("baseline_rss_mb"),
                    "ms_min": common.round_sig(s[0] * 1e3),
                    "ms_max": common.round_sig(s[-1] * 1e3),
                    # in round order (s is sorted), for ratios round by round
                    "samples_ms": [common.round_sig(x * 1e3) for x in samples[(ch.backend, i)]],
                    "params": ch.info["params"][i],
                    "optimizer": item["recipe"]["optimizer"],
                    "label_smoothing": item["recipe"]["label_smoothing"],
                    "last_loss": (final.get("last_loss") or [None] * len(items))[i],
                    # Where the wall time went: CPU seconds per step (both threads summed), the
                    # kernel's share of them, and page faults (fresh memory mapped and zeroed).
                    "cpu_s_per_step": common.round_sig(cpu["user_s"] + cpu["sys_s"]),
                    "sys_fraction": common.round_sig(
                        cpu["sys_s"] / max(cpu["user_s"] + cpu["sys_s"], 1e-9)
                    ),
                    "minor_faults_per_step": int(cpu["minor_faults"]),
                }
            )
        common.add_ratios(part)
        from cifar_training.backends import ops_class

        for row in part:
            row["precision"] = item["precision"]
            row["channels_last"] = ops_class(row["backend"]).uses_channels_last(
                item["channels_last"]
            )
            t = TARGETS.get(row["backend"]) if item["precision"] == "32-true" else None
            if t is not None and row["ratio_to_builtin"] is not None:
                row["target"], row["meets_target"] = t, row["ratio_to_builtin"] <= t
        rows += part
    return rows


COLUMNS = [
    ("case", "case", str),
    ("backend", "backend", str),
    ("ms/step", "ms", common.fmt_ms),
    ("images/s", "images_per_s", common.fmt_num),
    ("channels last", "channels_last", lambda v: "yes" if v else "no"),
    ("x builtin", "ratio_to_builtin", common.fmt_ratio),
    ("target", "target", lambda v: f"<={v:g}x"),
    ("met", "meets_target", lambda v: "yes" if v else "NO"),
    ("peak RSS MiB", "peak_rss_mb", common.fmt_num),
    ("RSS before MiB", "baseline_rss_mb", common.fmt_num),
    ("CPU s/step", "cpu_s_per_step", lambda v: f"{v:.3g}"),
    ("sys", "sys_fraction", lambda v: f"{100 * v:.0f}%"),
    ("faults/step", "minor_faults_per_step", str),
    ("min-max ms", "_spread", str),
]


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Images/s of one training step (forward, backward, optimizer) of train.py's "
        "models on each backend, each backend in its own process (separate peak RSS)."
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="batch <= 256, fewer repeats: under a minute on a quiet machine",
    )
    p.add_argument(
        "--smoke",
        action="store_true",
        help="tiny widths and batch, one sample: checks that every path runs",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object per line on stdout (the header goes to stderr)",
    )
    p.add_argument(
        "--markdown", action="store_true", help="print the table as markdown (for BENCHMARKS.md)"
    )
    p.add_argument(
        "--models", default=",".join(MODELS), help="comma-separated subset of default,three-layer"
    )
    p.add_argument(
        "--backends",
        default=",".join(common.BACKENDS),
        help="comma-separated subset of numpy,torch,builtin",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="batch of every model (default: each model's train.py recipe)",
    )
    p.add_argument("--repeats", type=int, default=None, help="timed samples per backend")
    p.add_argument("--steps", type=int, default=None, help="training steps per sample")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads for torch and NumPy's BLAS (default: the libraries' own)",
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="32-true",
        help="32-true, or bf16-mixed (train.py --precision bf16-mixed: the step under "
        "torch.autocast; the numpy backend has no such mode and is skipped; the "
        "speed targets are for 32-true)",
    )
    p.add_argument(
        "--matmul-precision",
        choices=common.MATMUL_PRECISIONS,
        default="highest",
        help="torch.set_float32_matmul_precision in every backend's process "
        "(train.py --matmul-precision; see BENCHMARKS.md) (default: highest)",
    )
    p.add_argument(
        "--channels-last",
        choices=("auto", "on", "off"),
        default="auto",
        help="channels_last images and conv weights, as train.py's flag; auto = each "
        "backend's own default, as train.py resolves it (default: auto)",
    )
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for name, allowed in (("models", MODELS), ("backends", common.BACKENDS)):
        bad = set(getattr(args, name).split(",")) - set(allowed)
        if bad:
            p.error(f"--{name}: unknown {sorted(bad)}; choose from {allowed}")
    return args


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    common.configure_threads(args.threads)
    common.configure_allocator()
    if args.child:
        return child_main(json.loads(args.child))
    if args.smoke:
        opts = {"warmup": 1, "repeats": 1, "steps": 1, "settle": 0.0}
    elif args.quick:
        opts = {"warmup": 1, "repeats": 3, "steps": 1, "settle": 0.1}
    else:
        opts = {"warmup": 3, "repeats": 7, "steps": 2, "settle": 0.2}
    for k in ("warmup", "repeats", "steps"):
        if getattr(args, k) is not None:
            opts[k] = getattr(args, k)
    opts["threads"] = args.threads
    opts["matmul_precision"] = args.matmul_precision
    out = sys.stderr if args.json else sys.stdout
    facts = common.machine_facts()
    what = "float32" if args.precision == "32-true" else "bf16-mixed: products in bfloat16"
    print(
        common.format_header(
            f"nn-twins training-step benchmark ({what}, CPU)",
            facts,
            ["benchmarks/train_step.py", *argv],
        ),
        file=out,
    )
    print(
        f"# timing: one process per backend; {opts['warmup']} warm-up step(s), median of "
        f"{opts['repeats']} round-robin sample(s) of {opts['steps']} step(s)",
        file=out,
        flush=True,
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    backends = [
        b
        for b in common.BACKENDS
        if b in args.backends.split(",") and not (b == "numpy" and args.precision != "32-true")
    ]
    items = []
    for model in args.models.split(","):
        recipe = common.train_recipe(model, cheap=args.smoke)
        if args.smoke:
            recipe["widths"] = (4, 8, 8)
        batch = args.batch_size or (4 if args.smoke else recipe["batch_size"])
        if args.quick and not args.batch_size:
            batch = min(batch, 256)  # images/s barely depends on the batch at these sizes
        recipe = {k: (list(v) if isinstance(v, tuple) else v) for k, v in recipe.items()}
        print(
            f"# {model}: batch {batch}, {recipe['optimizer']} lr {recipe['lr']}, weight decay "
            f"{recipe['weight_decay']}, label smoothing {recipe['label_smoothing']}"
            + (
                f", widths {tuple(recipe['widths'])}, stem {recipe['stem']}"
                if model == "default"
                else ""
            ),
            file=out,
            flush=True,
        )
        overrides = {"widths": recipe["widths"]} if args.smoke else {}
        items.append(
            {
                "model": model,
                "recipe": recipe,
                "batch_size": batch,
                "seed": recipe["seed"],
                "overrides": overrides,
                "precision": args.precision,
                "channels_last": args.channels_last,
            }
        )
    if args.smoke:  # one process per backend serves every model: startup dominates here
        rows = time_train_steps(items, backends, opts, env)
    else:
        rows = [r for item in items for r in time_train_steps([item], backends, opts, env)]
    print(f"# load average at end: {[round(x, 2) for x in os.getloadavg()]}", file=out)
    if args.json:
        common.emit_json(rows)
    else:
        for r in rows:
            if "ms_min" in r:
                r["_spread"] = f"{common.fmt_ms(r['ms_min'])}-{common.fmt_ms(r['ms_max'])}"
        print(file=out)
        table = common.format_markdown if args.markdown else common.format_table
        print(table([r for r in rows if r.get("ms")], COLUMNS), file=out)
        for r in rows:
            r.pop("_spread", None)
    for r in rows:
        if r.get("error"):
            print(f"! {r['case']} [{r['backend']}]: {r['error']}", file=out)
    judged = [r for r in rows if "meets_target" in r]
    missed = [r for r in judged if not r["meets_target"]]
    print(f"\ntargets met: {len(judged) - len(missed)} of {len(judged)}", file=out)
    for r in missed:
        print(
            f"  MISSED {r['backend']:7s} {r['case']}: {r['ratio_to_builtin']:.2f}x builtin "
            f"(target <= {r['target']:g}x)",
            file=out,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
