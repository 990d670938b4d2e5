"""The run of ``actgen bench``: every activation, dtype, size and thread count, and the ratios."""

from __future__ import annotations

import contextlib
import os

import numpy as np

import actgen

from .. import library
from ..specfile import read_spec_text, read_tables
from .builtin_peers import defaults_match, numexpr_calls, numexpr_formulas, numpy_formulas, torch_peers
from .machine import machine
from .names import IMPLS, PEERS, STANDARD, STREAMS
from .timing import time_call, time_together


def _targets(names: list[str]) -> list[tuple[str, str | None]]:
    """(name, spec path or None) of each elementwise activation asked for."""
    if not names:
        out = []
        for n in actgen.builtins():
            table = read_tables(library.read(n), path=library.display_path(n))[n]
            if table.get("kind", "elementwise") == "elementwise" and "gate" not in table:
                out.append((n, None))
        return out
    out = []
    for n in names:
        if n.endswith(".toml"):
            tables = read_tables(read_spec_text(n), path=n)
            for t, table in tables.items():
                if isinstance(table, dict) and table.get("kind", "elementwise") == "elementwise" \
                        and "gate" not in table:
                    out.append((t, n))
        else:
            out.append((n, None))
    return out


def bench(names: list[str] | None = None, *, sizes_threads=None, dtypes=("float32", "float64"),
          repeats: int = 5, min_time: float = 0.02, impls=IMPLS, log=None) -> dict:
    """Run the benchmark; return {"machine", "config", "results", "ratios"} (see actgen.bench's doc)."""
    log = log or (lambda msg: None)
    try:
        import torch
    except ImportError:
        torch = None
    try:
        import numexpr
    except ImportError:
        numexpr = None
    impls = [i for i in impls if (torch is not None or not i.startswith("torch"))
             and (numexpr is not None or i != "numexpr")]
    targets = _targets(list(names or []))
    sizes_threads = list(sizes_threads or [(n, t or (os.cpu_count() or 1)) for n, t in STANDARD])
    formulas = numpy_formulas(np)
    tpeers = torch_peers(torch) if torch is not None else {}
    nepeers = numexpr_formulas() if numexpr is not None else {}
    acts = {}
    for name, spec in targets:
        acts[name] = {"c": actgen.load(name, spec=spec) if "actgen" in impls else None,
                      "numpy": actgen.load(name, spec=spec, backend="numpy") if "actgen_numpy" in impls else None}
    rng = np.random.default_rng(0)
    results = []
    saved_threads = actgen.get_num_threads()
    saved_torch = torch.get_num_threads() if torch is not None else None
    saved_numexpr = numexpr.get_num_threads() if numexpr is not None else None

    def record(name, dtype, n, threads, op, impl, timing):
        streams = STREAMS[op] if op in STREAMS else 2
        itemsize = np.dtype(dtype).itemsize
        results.append({"name": name, "dtype": dtype, "size": n, "threads": threads, "op": op, "impl": impl,
                        "seconds": timing["seconds"], "best_seconds": timing["best"], "spread": timing["spread"],
                        "calls": timing["calls"], "repeats": timing["repeats"],
                        "gelem_s": n / timing["seconds"] / 1e9,
                        "gb_s": n * streams * itemsize / timing["seconds"] / 1e9})

    try:
        for n, threads in sizes_threads:
            actgen.set_num_threads(threads)
            if torch is not None:
                torch.set_num_threads(threads)
            if numexpr is not None:
                numexpr.set_num_threads(threads)
            for dtype in dtypes:
                x = (rng.standard_normal(n) * 3).astype(dtype)
                dy = rng.standard_normal(n).astype(dtype)
                bufs = [np.ones(n, dtype) for _ in range(2)]         # preallocated, pages touched
                log(f"{dtype} n={n} threads={threads}: copy")
                copies = [time_call(lambda: np.copyto(bufs[0], x), repeats, min_time)]
                if torch is not None:
                    tx, tb = torch.from_numpy(x), torch.from_numpy(bufs[0])
                    copies.append(time_call(lambda: tb.copy_(tx), repeats, min_time))
                record("copy", dtype, n, threads, "copy", "copy", min(copies, key=lambda t: t["seconds"]))
                for name, _ in targets:
                    c, npb = acts[name]["c"], acts[name]["numpy"]
                    some = c or npb or actgen.load(name, spec=dict(targets)[name])
                    y = some(x)
                    log(f"{dtype} n={n} threads={threads}: {name}")
                    # a copy, timed with this activation's cells: the bandwidth a shared machine
                    # gives varies over a run, and % copy bw compares cells measured together
                    cells = [("copy", "copy", lambda: np.copyto(bufs[0], x))]  # (op, impl, fn): timed together
                    if torch is not None:
                        cells.append(("copy", "copy_torch", lambda tb=torch.from_numpy(bufs[0]),
                                      tx=torch.from_numpy(x): tb.copy_(tx)))
                    for impl, act in (("actgen", c), ("actgen_numpy", npb)):
                        if act is None:
                            continue
                        cells.append(("forward", impl, lambda act=act: act(x, out=bufs[0])))
                        cells.append(("backward", impl, lambda act=act: act.backward(x, dy, out=bufs[0])))
                        if act.has_output_derivative and act.kind == "elementwise":
                            cells.append(("backward_from_output", impl,
                                          lambda act=act: act.backward_from_output(y, dy, out=bufs[0])))
                        cells.append(("forward_with_derivative", impl,
                                      lambda act=act: act.forward_with_derivative(x, out=bufs[0], deriv_out=bufs[1])))
                    if "numpy" in impls and name in formulas and defaults_match(formulas[name][0], some):
                        _, fwd, bwd = formulas[name]
                        cells.append(("forward", "numpy", lambda fwd=fwd: fwd(x)))
                        cells.append(("backward", "numpy", lambda bwd=bwd: bwd(x, dy)))
                    if torch is not None and name in tpeers and defaults_match(tpeers[name][0], some):
                        _, fo, fa, bo, ba = tpeers[name]
                        tx, ty, tdy = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(dy)
                        tout = torch.from_numpy(bufs[0])
                        if "torch_out" in impls and fo is not None:
                            cells.append(("forward", "torch_out", lambda fo=fo, tx=tx, tout=tout: fo(tx, tout)))
                        if "torch_out" in impls and bo is not None:
                            cells.append(("backward", "torch_out",
                                          lambda bo=bo, tx=tx, ty=ty, tdy=tdy, tout=tout: bo(tx, ty, tdy, tout)))
                        if "torch" in impls and fa is not None:
                            cells.append(("forward", "torch", lambda fa=fa, tx=tx: fa(tx)))
                        if "torch" in impls and ba is not None:
                            cells.append(("backward", "torch", lambda ba=ba, tx=tx, ty=ty, tdy=tdy: ba(tx, ty, tdy)))
                    if "numexpr" in impls and name in nepeers and defaults_match(nepeers[name][0], some):
                        fwd, bwd = numexpr_calls(numexpr, nepeers[name], x, dy, bufs[0], bufs[1])
                        cells.append(("forward", "numexpr", fwd))
                        cells.append(("backward", "numexpr", bwd))
                    grad = torch.no_grad() if torch is not None else contextlib.nullcontext()
                    with grad, np.errstate(all="ignore"):
                        timings = time_together([fn for _, _, fn in cells], repeats, min_time)
                    copies = [t for (op, _, _), t in zip(cells, timings) if op == "copy"]
                    record(name, dtype, n, threads, "copy", "copy", min(copies, key=lambda t: t["seconds"]))
                    for (op, impl, _), timing in zip(cells, timings):
                        if op != "copy":
                            record(name, dtype, n, threads, op, impl, timing)
    finally:
        actgen.set_num_threads(saved_threads)
        if torch is not None:
            torch.set_num_threads(saved_torch)
        if numexpr is not None:
            numexpr.set_num_threads(saved_numexpr)
    return {"machine": machine(),
            "config": {"names": [t for t, _ in targets], "sizes_threads": [list(c) for c in sizes_threads],
                       "dtypes": list(dtypes), "repeats": repeats, "min_time": min_time, "impls": list(impls)},
            "results": results, "ratios": ratios(results)}


def ratios(results: list[dict]) -> list[dict]:
    """Per (name, dtype, size, threads, op) of actgen's C kernel: Gelem/s of every implementation,
    actgen / torch_out, actgen / torch, actgen / numpy, actgen / the best peer, and the % of the copy
    bandwidth (bytes moved per second / the copy's)."""
    by = {}
    copy = {}                       # (name, dtype, size, threads): the copy timed with name's cells
    for r in results:
        key = (r["dtype"], r["size"], r["threads"])
        if r["op"] == "copy":
            copy[(r["name"], *key)] = r
        else:
            by.setdefault((r["name"], *key, r["op"]), {})[r["impl"]] = r
    # a backward peer with no backward_from_output counterpart is compared with both of actgen's
    rows = []
    for (name, dtype, size, threads, op), impls in by.items():
        if "actgen" not in impls:
            continue
        peers_op = "backward" if op == "backward_from_output" else op
        peer = by.get((name, dtype, size, threads, peers_op), {})
        a = impls["actgen"]["gelem_s"]
        row = {"name": name, "dtype": dtype, "size": size, "threads": threads, "op": op,
               "gelem_s": {i: r["gelem_s"] for i, r in impls.items()}, "peer_op": peers_op}
        for p in PEERS:
            row["gelem_s"].update({p: peer[p]["gelem_s"]} if p in peer else {})
            row[f"vs_{p}"] = a / peer[p]["gelem_s"] if p in peer else None
        best = [peer[p]["gelem_s"] for p in PEERS if p in peer]
        row["vs_best_peer"] = a / max(best) if best else None
        c = copy.get((name, dtype, size, threads)) or copy.get(("copy", dtype, size, threads))
        row["pct_copy"] = (100.0 * impls["actgen"]["gb_s"] / c["gb_s"]) if c else None
        row["copy_gb_s"] = c["gb_s"] if c else None
        rows.append(row)
    return rows