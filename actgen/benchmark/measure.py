"""The run of ``actgen bench``: every activation, dtype, size and thread count, and the ratios."""

from __future__ import annotations

import contextlib
import os
import time

import numpy as np

import actgen

from .. import library
from ..errors import ActgenError
from ..specfile import read_spec_text, read_tables
from .accuracy import ACCURACY_IMPLS, accuracy
from .builtin_peers import defaults_match, numexpr_calls, numexpr_formulas, numpy_formulas, torch_peers
from .machine import machine
from .names import IMPLS, LIBRARY, OPS, PEERS, STANDARD, STREAMS, USER_OPS, USER_PEERS
from .timing import time_call, time_together
from .user_peers import (USER_IMPLS, actgen_torch_cells, actgen_train, cold_compiles, jax_cells, libraries,
                         numexpr_cells, sources, torch_cells, warm_up)


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
    seen = {}
    for n, spec in out:
        if n in seen and seen[n] != spec:
            raise ActgenError(f"actgen bench: the activation {n} is in both {seen[n] or 'the built-ins'} and "
                              f"{spec or 'the built-ins'}: benchmark one of them (rename the other table)")
        seen[n] = spec
    return list(dict.fromkeys(out))


class Unavailable:
    """Why an implementation has no cell: {(name, impl, op or None): reason}; op None means
    every op of that implementation."""

    def __init__(self):
        self.reasons: dict = {}

    def add(self, name: str, impl: str, reason: str, op: str | None = None) -> None:
        self.reasons.setdefault((name, impl, op), reason)

    def as_list(self) -> list[dict]:
        return [{"name": n, "impl": i, "op": o, "reason": r} for (n, i, o), r in self.reasons.items()]


def _builtin_cells(name, builtin, some, x, y, dy, bufs, impls, libs, peers, missing):
    """(op, impl, fn) of the hand-written peers of a built-in (NumPy, PyTorch's kernels, numexpr
    formulas); each peer that is absent says why in ``missing``."""
    formulas, tpeers, nepeers = peers
    torch, cells = libs.torch, []
    if "numpy" in impls:
        if not builtin or name not in formulas:
            missing.add(name, "numpy", "none written")
        elif not defaults_match(formulas[name][0], some):
            missing.add(name, "numpy", "other parameters")
        else:
            _, fwd, bwd = formulas[name]
            cells += [("forward", "numpy", lambda: fwd(x)), ("backward", "numpy", lambda: bwd(x, dy))]
    for impl in ("torch_out", "torch"):
        if impl not in impls:
            continue
        if not builtin or name not in tpeers:
            missing.add(name, impl, "no torch built-in")
        elif not defaults_match(tpeers[name][0], some):
            missing.add(name, impl, "other parameters")
    if torch is not None and builtin and name in tpeers and defaults_match(tpeers[name][0], some):
        _, fo, fa, bo, ba = tpeers[name]
        tx, ty, tdy, tout = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(dy), torch.from_numpy(bufs[0])
        for impl, op, fn, call in (("torch_out", "forward", fo, lambda: fo(tx, tout)),
                                   ("torch_out", "backward", bo, lambda: bo(tx, ty, tdy, tout)),
                                   ("torch", "forward", fa, lambda: fa(tx)),
                                   ("torch", "backward", ba, lambda: ba(tx, ty, tdy))):
            if impl not in impls:
                continue
            if fn is None:
                missing.add(name, impl, "no out= form" if impl == "torch_out" else "no torch op", op)
            else:
                cells.append((op, impl, call))
    return cells


def _numexpr_cells(name, builtin, some, srcs, x, dy, bufs, libs, nepeers, params):
    """numexpr's forward, backward and training step: the hand-written formula of a built-in,
    else the one written from the SymPy expression."""
    if builtin and name in nepeers and defaults_match(nepeers[name][0], some):
        fwd, bwd = numexpr_calls(libs.numexpr, nepeers[name], x, dy, bufs[0], bufs[1])
    elif srcs is not None and srcs.numexpr is not None:
        fwd, bwd = numexpr_cells(libs.numexpr, srcs.numexpr, x, dy, bufs[0], bufs[1], params)
    else:
        return []
    return [("forward", "numexpr", fwd), ("backward", "numexpr", bwd),
            ("train", "numexpr", lambda: (fwd(), bwd()))]


def _user_cells(name, spec, c, srcs, x, dy, bufs, impls, libs, missing, compile_log):
    """actgen's training step and the peers written from the SymPy expression (user_peers)."""
    params = dict(c.params)
    cells = [("train", "actgen", actgen_train(c, x, dy, bufs[0], bufs[1], params))]
    if "actgen_torch" in impls:
        fn = libs.actgen_torch.function(name, spec=spec)
        cells += actgen_torch_cells(libs.torch, fn, c.learnable, x, dy, params)
    for impl in ("torch_eager", "torch_compile", "jax"):
        if impl not in impls:
            continue
        src = srcs.jax if impl == "jax" else srcs.torch
        if src is None:
            missing.add(name, impl, srcs.reasons[impl])
            continue
        try:
            if impl == "jax":
                more, compiles = jax_cells(libs.jax, src, x, dy, params)
            else:
                more, compiles = torch_cells(libs.torch, src, x, dy, params, compiled=impl == "torch_compile",
                                             impl=impl)
        except Exception as exc:                    # noqa: BLE001 - a peer that fails is reported, not fatal
            missing.add(name, impl, f"{impl} failed: {type(exc).__name__}: {str(exc).splitlines()[0][:60]}")
            continue
        cells += more
        for what, seconds in compiles.items():
            compile_log(impl, what, seconds)
    return cells


def bench(names: list[str] | None = None, *, sizes_threads=None, dtypes=("float32", "float64"),
          repeats: int = 5, min_time: float = 0.02, impls=IMPLS, accuracy_of: tuple = ("float32",),
          log=None) -> dict:
    """Run the benchmark; return {"machine", "config", "results", "ratios", "user_ratios",
    "compile", "accuracy", "unavailable", "sources"} (see actgen.bench's doc). ``accuracy_of``:
    the dtypes whose accuracy is measured (against mpmath, on verify's inputs)."""
    log = log or (lambda msg: None)
    libs = libraries()
    torch, numexpr = libs.torch, libs.numexpr
    missing = Unavailable()
    available = [i for i in impls if LIBRARY.get(i) not in libs.missing]
    targets = _targets(list(names or []))
    for name, _ in targets:
        for impl in IMPLS:
            if impl not in impls:
                missing.add(name, impl, "not measured (--impl)")
            elif LIBRARY.get(impl) in libs.missing:
                missing.add(name, impl, libs.missing[LIBRARY[impl]])
    impls = available
    user = "actgen" in impls and any(i in impls for i in USER_IMPLS + ("numexpr",))
    sizes_threads = list(sizes_threads or [(n, t or (os.cpu_count() or 1)) for n, t in STANDARD])
    peers = (numpy_formulas(np), torch_peers(torch) if torch is not None else {},
             numexpr_formulas() if numexpr is not None else {})
    acts, srcs = {}, {}
    for name, spec in targets:
        acts[name] = {"c": actgen.load(name, spec=spec) if "actgen" in impls else None,
                      "numpy": actgen.load(name, spec=spec, backend="numpy") if "actgen_numpy" in impls else None}
        if user or accuracy_of:
            srcs[name] = sources((acts[name]["c"] or actgen.load(name, spec=spec, backend="numpy")).activation)
    rng = np.random.default_rng(0)
    results, compiles = [], []
    saved_threads = actgen.get_num_threads()
    saved_torch = torch.get_num_threads() if torch is not None else None
    saved_numexpr = numexpr.get_num_threads() if numexpr is not None else None

    def record(name, dtype, n, threads, op, impl, timing):
        itemsize = np.dtype(dtype).itemsize
        results.append({"name": name, "dtype": dtype, "size": n, "threads": threads, "op": op, "impl": impl,
                        "seconds": timing["seconds"], "best_seconds": timing["best"], "spread": timing["spread"],
                        "calls": timing["calls"], "repeats": timing["repeats"],
                        "gelem_s": n / timing["seconds"] / 1e9,
                        "gb_s": n * STREAMS.get(op, 2) * itemsize / timing["seconds"] / 1e9})

    compiling = cold_compiles(torch) if torch is not None and "torch_compile" in impls else contextlib.nullcontext()
    with compiling:
        startup = warm_up(libs, impls)
        try:
            for n, threads in sizes_threads:
                actgen.set_num_threads(threads)
                if torch is not None:
                    torch.set_num_threads(threads)    # before torch.compile: Inductor writes it into its loops
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
                    for name, spec in targets:
                        c, npb = acts[name]["c"], acts[name]["numpy"]
                        some = c or npb
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
                                          lambda act=act: act.forward_with_derivative(x, out=bufs[0],
                                                                                      deriv_out=bufs[1])))
                        cells += _builtin_cells(name, spec is None, some, x, y, dy, bufs, impls, libs, peers,
                                                missing)
                        if "numexpr" in impls:
                            more = _numexpr_cells(name, spec is None, some, srcs.get(name), x, dy, bufs, libs,
                                                  peers[2], dict(some.params))
                            if not more:
                                missing.add(name, "numexpr", srcs[name].reasons.get("numexpr", "no formula"))
                            cells += more
                        if user:
                            cells += _user_cells(name, spec, c, srcs[name], x, dy, bufs, impls, libs, missing,
                                                 lambda impl, what, s, name=name, dtype=dtype, n=n, t=threads:
                                                 compiles.append({"name": name, "dtype": dtype, "size": n,
                                                                  "threads": t, "impl": impl, "what": what,
                                                                  "seconds": s}))
                        grad = torch.no_grad() if torch is not None else contextlib.nullcontext()
                        with grad, np.errstate(all="ignore"):
                            timings = time_together([fn for _, _, fn in cells], repeats, min_time)
                        labels = [(op, impl) for op, impl, _ in cells]
                        del cells                      # the graphs kept for the backward cells
                        copies = [t for (op, _), t in zip(labels, timings) if op == "copy"]
                        record(name, dtype, n, threads, "copy", "copy", min(copies, key=lambda t: t["seconds"]))
                        for (op, impl), timing in zip(labels, timings):
                            if op != "copy":
                                record(name, dtype, n, threads, op, impl, timing)
        finally:
            actgen.set_num_threads(saved_threads)
            if torch is not None:
                torch.set_num_threads(saved_torch)
            if numexpr is not None:
                numexpr.set_num_threads(saved_numexpr)
    accuracies = []
    for name, _ in targets:
        if acts[name]["c"] is None:
            continue
        for dtype in accuracy_of:
            log(f"accuracy of {name}, {dtype}")
            t0 = time.perf_counter()
            accuracies += accuracy(acts[name]["c"].activation, acts[name]["c"], srcs[name], libs, dtype,
                                   [i for i in ACCURACY_IMPLS if i in impls])
            log(f"  ({time.perf_counter() - t0:.0f} s)")
    return {"machine": machine(),
            "config": {"names": [t for t, _ in targets], "sizes_threads": [list(c) for c in sizes_threads],
                       "dtypes": list(dtypes), "repeats": repeats, "min_time": min_time, "impls": list(impls),
                       "startup_seconds": startup},
            "results": results, "ratios": ratios(results), "user_ratios": user_ratios(results),
            "compile": compiles, "accuracy": accuracies, "unavailable": missing.as_list(),
            "sources": {name: s.as_dict() for name, s in srcs.items()}}


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
        elif r["op"] in OPS:
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
               "gelem_s": {i: r["gelem_s"] for i, r in impls.items() if i not in USER_IMPLS},
               "peer_op": peers_op}
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


def user_ratios(results: list[dict]) -> list[dict]:
    """Per (name, dtype, size, threads, op) of USER_OPS: Gelem/s of actgen, actgen.torch and the
    peers written from the SymPy expression, and actgen / each peer (its spread too: a noisy cell
    is one whose repeats spread over 25% of their median)."""
    by = {}
    for r in results:
        if r["op"] in USER_OPS and r["impl"] in ("actgen", "actgen_torch") + USER_PEERS:
            by.setdefault((r["name"], r["dtype"], r["size"], r["threads"], r["op"]), {})[r["impl"]] = r
    rows = []
    for (name, dtype, size, threads, op), impls in by.items():
        if "actgen" not in impls:
            continue
        a = impls["actgen"]["gelem_s"]
        row = {"name": name, "dtype": dtype, "size": size, "threads": threads, "op": op,
               "gelem_s": {i: r["gelem_s"] for i, r in impls.items()},
               "noisy": max(r["spread"] for r in impls.values()) > 0.25}
        for p in USER_PEERS:
            row[f"vs_{p}"] = a / impls[p]["gelem_s"] if p in impls else None
        rows.append(row)
    return rows
