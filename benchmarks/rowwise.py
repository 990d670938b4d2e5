"""Row-wise activations (softmax, log_softmax, sparsemax) against what users would otherwise run,
as a Markdown table:

    python benchmarks/rowwise.py > benchmarks/rowwise.md

Rows of n elements along the last axis, 2^22 elements in all, float32 and float64, all CPUs,
forward and backward (the Jacobian-vector product; from x, and for softmax and log_softmax from
the saved output y too), `out=` where the peer has it. Peers: PyTorch's softmax / log_softmax
kernels (`aten::_softmax_backward_data` and `aten::_log_softmax_backward_data` for the backward,
which autograd runs: they take the saved output y, so they are the peer of both of actgen's
backwards), and for sparsemax,
which neither PyTorch nor NumPy has, the sort-based algorithm of Martins & Astudillo (2016) as TF
Addons write it: in PyTorch (autograd through sort, cumsum and clamp for the backward) and in
NumPy. Median of 5 repeats, each at least 0.1 s of calls; Gelem/s, and the ratio actgen / the
fastest peer.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

import actgen
from actgen.benchmark.timing import time_call as bench_time
from actgen.benchmark.machine import machine

# the sort-based sparsemax in PyTorch ops, as tests/test_kinds.py writes it (one copy)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from test_kinds import _torch_sparsemax  # noqa: E402

TOTAL = 2 ** 22
WIDTHS = (16, 1024, 32768)


def _time(fn, repeats=5, min_time=0.1) -> float:
    """Median seconds per call (actgen bench's timer: a warm-up, repeats of >= min_time)."""
    return bench_time(fn, repeats, min_time)["seconds"]


def numpy_sparsemax(x):
    z = -np.sort(-x, axis=-1)
    c = np.cumsum(z, axis=-1)
    r = np.arange(1, x.shape[-1] + 1, dtype=x.dtype)
    k = np.sum(1 + r * z > c, axis=-1, keepdims=True)
    tau = (np.take_along_axis(c, k - 1, axis=-1) - 1) / k
    return np.maximum(x - tau, 0)


def main() -> int:
    try:
        import torch
        torch.set_num_threads(actgen.get_num_threads())
    except ImportError:
        torch = None
    rng = np.random.default_rng(0)
    info = machine()
    print("# Row-wise activations: actgen's C kernels and their peers\n")
    print(f"Machine: {info['cpu']}, {info['usable_cpus']} CPUs, {info.get('cc', '')}, {info['libc']}, "
          f"numpy {info['numpy']}" + (f", torch {torch.__version__}" if torch else "") +
          f"; {TOTAL} elements per call, {actgen.get_num_threads()} threads. "
          "Command: `python benchmarks/rowwise.py > benchmarks/rowwise.md`.\n")
    print("Gelem/s (median of 5). ratio: actgen / the fastest peer.\n")
    print("| activation | dtype | n (row) | op | actgen | torch | torch sort-based | numpy sort-based | ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in ("softmax", "log_softmax", "sparsemax"):
        act = actgen.load(name)
        for dtype in (np.float32, np.float64):
            for n in WIDTHS:
                x = (rng.standard_normal((TOTAL // n, n)) * 2).astype(dtype)
                dy = rng.standard_normal(x.shape).astype(dtype)
                y, dx = np.empty_like(x), np.empty_like(x)
                ops = ("forward", "backward", "backward_from_output") if name != "sparsemax" else \
                    ("forward", "backward")
                saved = act(x)
                for op in ops:
                    cells = {}
                    if op == "forward":
                        cells["actgen"] = _time(lambda: act(x, out=y))
                    elif op == "backward":
                        cells["actgen"] = _time(lambda: act.backward(x, dy, out=dx))
                    else:
                        cells["actgen"] = _time(lambda: act.backward_from_output(saved, dy, out=dx))
                    if torch is not None:
                        tx, tdy = torch.from_numpy(x), torch.from_numpy(dy)
                        ty, tdx = torch.empty_like(tx), torch.empty_like(tx)
                        if name != "sparsemax":
                            aten = torch.ops.aten
                            if op == "forward":
                                kernel = aten._softmax.out if name == "softmax" else aten._log_softmax.out
                                cells["torch"] = _time(lambda: kernel(tx, -1, False, out=ty))
                            elif name == "softmax":
                                yt = torch.softmax(tx, -1)
                                cells["torch"] = _time(lambda: aten._softmax_backward_data.out(
                                    tdy, yt, -1, tx.dtype, grad_input=tdx))
                            else:
                                yt = torch.log_softmax(tx, -1)
                                cells["torch"] = _time(lambda: aten._log_softmax_backward_data.out(
                                    tdy, yt, -1, tx.dtype, out=tdx))
                        else:
                            def sparsemax(v):
                                return _torch_sparsemax(torch, v)

                            if op == "forward":
                                with torch.no_grad():
                                    cells["torch sort-based"] = _time(lambda: sparsemax(tx))
                            else:
                                def run():
                                    v = tx.detach().requires_grad_()
                                    sparsemax(v).backward(tdy)
                                cells["torch sort-based"] = _time(run)
                    if name == "sparsemax" and op == "forward":
                        cells["numpy sort-based"] = _time(lambda: numpy_sparsemax(x), repeats=3)
                    rate = {k: TOTAL / v / 1e9 for k, v in cells.items()}
                    peers = [v for k, v in rate.items() if k != "actgen"]
                    ratio = f"{rate['actgen'] / max(peers):.2f}x" if peers else "-"
                    row = [f"{rate[k]:.3f}" if k in rate else "-"
                           for k in ("actgen", "torch", "torch sort-based", "numpy sort-based")]
                    print(f"| {name} | {np.dtype(dtype).name} | {n} | {op} | " + " | ".join(row) + f" | {ratio} |")
                    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
