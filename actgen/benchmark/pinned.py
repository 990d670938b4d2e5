"""Each thread count of a benchmark in a process of its own, allowed that many CPUs.

actgen, PyTorch and numexpr take a thread count per call (``set_num_threads``); XLA does not:
its CPU client sizes a thread pool from the CPUs the process may use when it starts, and splits
loops of 2^16 elements across it (measured: three busy threads at 2^16 on 2 CPUs, one when the
process is allowed one CPU; ``intra_op_parallelism_threads=1`` in XLA_FLAGS did not change
that). So that a "1 thread" cell is one CPU for every implementation, the cells of each thread
count run in a child process whose CPU affinity is that many CPUs, all implementations
interleaved in it as before; this process merges the children's reports. Without
``os.sched_setaffinity`` (not Linux), or without JAX among the implementations, everything runs
here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import actgen

from ..errors import ActgenError
from .machine import machine
from .measure import bench as bench_here
from .measure import ratios, user_ratios
from .names import IMPLS, STANDARD


def _pinnable(impls) -> bool:
    return "jax" in impls and hasattr(os, "sched_setaffinity") and hasattr(os, "sched_getaffinity")


def bench(names=None, *, sizes_threads=None, dtypes=("float32", "float64"), repeats: int = 5,
          min_time: float = 0.02, impls=IMPLS, accuracy_of: tuple = ("float32",), log=None) -> dict:
    """measure.bench, each thread count in a child process allowed that many CPUs (see the module
    doc); the same report, with config["cpus"] = {threads: the CPUs its process measured on}."""
    configs = list(sizes_threads or [(n, t or (os.cpu_count() or 1)) for n, t in STANDARD])
    if not _pinnable(impls):
        return bench_here(names, sizes_threads=sizes_threads, dtypes=dtypes, repeats=repeats, min_time=min_time,
                          impls=impls, accuracy_of=accuracy_of, log=log)
    allowed = sorted(os.sched_getaffinity(0))
    groups = {}
    for n, threads in configs:
        groups.setdefault(threads, []).append((n, threads))
    parts = []
    for i, (threads, group) in enumerate(groups.items()):
        last = i == len(groups) - 1
        parts.append(_child(allowed[:threads], {
            "names": list(names or []), "sizes_threads": group, "dtypes": list(dtypes), "repeats": repeats,
            "min_time": min_time, "impls": list(impls), "accuracy_of": list(accuracy_of) if last else [],
            "log": log is not None}))
    report = parts[0]
    for part in parts[1:]:
        report["results"] += part["results"]
        report["compile"] += part["compile"]
        report["accuracy"] += part["accuracy"]
        seen = {(u["name"], u["impl"], u["op"]) for u in report["unavailable"]}
        report["unavailable"] += [u for u in part["unavailable"] if (u["name"], u["impl"], u["op"]) not in seen]
    report["ratios"], report["user_ratios"] = ratios(report["results"]), user_ratios(report["results"])
    report["machine"] = machine()                  # this process's: a child sees only its CPUs
    report["config"].update(sizes_threads=[list(c) for c in configs],
                            cpus={str(t): part["config"]["affinity"] for t, part in zip(groups, parts)})
    report["config"].pop("affinity", None)
    return report


def _child(cpus: list[int], request: dict) -> dict:
    """measure.bench(**request) in a child process allowed ``cpus``; its report."""
    with tempfile.TemporaryDirectory(prefix="actgen-bench-") as tmp:
        out = Path(tmp) / "report.json"
        env = dict(os.environ)
        root = str(Path(actgen.__file__).resolve().parent.parent)   # this actgen, installed or not
        env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
        done = subprocess.run([sys.executable, "-m", "actgen.benchmark.pinned", str(out)],
                              input=json.dumps({**request, "cpus": cpus}), text=True, env=env, check=False)
        answer = json.loads(out.read_text()) if out.exists() else {}
        if "error" in answer:
            raise ActgenError(answer["error"])
        if done.returncode != 0 or "results" not in answer:
            raise ActgenError(f"actgen bench: the measuring process for {len(cpus)} CPU(s) failed "
                              f"(exit status {done.returncode}; its error is printed above)")
        return answer


def _main(path: str) -> int:
    """The child: read the request on stdin, keep to its CPUs, write the report (or the error) to
    ``path``. The affinity is set before torch and JAX start their thread pools (numpy's BLAS
    threads, started at import, do no work here)."""
    request = json.loads(sys.stdin.read())
    os.sched_setaffinity(0, request.pop("cpus"))
    log = (lambda msg: print(f"  {msg}", file=sys.stderr, flush=True)) if request.pop("log") else None
    try:
        report = bench_here(request.pop("names"), sizes_threads=[tuple(c) for c in request.pop("sizes_threads")],
                            dtypes=tuple(request.pop("dtypes")), impls=tuple(request.pop("impls")),
                            accuracy_of=tuple(request.pop("accuracy_of")), log=log, **request)
    except ActgenError as exc:
        Path(path).write_text(json.dumps({"error": str(exc)}))
        return 1
    report["config"]["affinity"] = sorted(os.sched_getaffinity(0))    # the CPUs it measured on
    Path(path).write_text(json.dumps(report, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1]))
