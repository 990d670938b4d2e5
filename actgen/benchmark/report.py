"""The report of ``actgen bench`` as text and markdown tables, and the atomic writer.

A cell without a measurement says why ("n/a: no PyTorch built-in", "n/a: torch not installed",
"n/a: no erf in numexpr"), from the run's record of what it could not measure; its ratio
column then says "n/a" beside it.
"""

from __future__ import annotations

import math
import os
import statistics

from .names import LABELS, SHORT, USER_PEERS

#: a table: (title, header, rows, notes under it)
Table = tuple


def _fmt(v, spec=".2f", none="n/a"):
    return none if v is None else format(v, spec)


def format_ulp(v) -> str:
    if v is None:
        return "n/a"
    if math.isinf(v):
        return "inf"
    return f"{v:g}" if v < 1000 else f"{v:.1e}"


def shown_size(size: int) -> str:
    exp = math.log2(size)
    return f"2^{int(exp)}" if exp == int(exp) else str(size)


class Reasons:
    """Why a cell is empty, from report["unavailable"]."""

    def __init__(self, report: dict):
        self.by = {(u["name"], u["impl"], u["op"]): u["reason"] for u in report.get("unavailable", [])}

    def __call__(self, name: str, impl: str, op: str | None = None) -> str:
        reason = self.by.get((name, impl, op)) or self.by.get((name, impl, None))
        if reason is None and op == "forward_with_derivative":
            reason = "no fused y, f'"
        if reason is None and op == "train" and impl in ("numpy", "torch_out", "torch"):
            reason = "see the training-step table"
        return f"n/a: {reason or 'not measured'}"


def _cell(g: dict, impl: str, why, name: str, op: str, spec=".2f") -> str:
    return format(g[impl], spec) if impl in g else why(name, impl, op)


def _groups(rows: list[dict]) -> dict:
    groups = {}
    for r in rows:
        groups.setdefault((r["dtype"], r["size"], r["threads"]), []).append(r)
    return groups


def _kernel_tables(report: dict) -> list[Table]:
    """actgen's kernels against the hand-written peers and numexpr: per (dtype, size, threads)."""
    why = Reasons(report)
    copies = {(r["dtype"], r["size"], r["threads"]): r for r in report["results"]
              if r["op"] == "copy" and r["name"] == "copy"}
    out = []
    header = ["activation", "op", "actgen", "actgen numpy", "numpy", "torch out=", "torch", "numexpr",
              "vs torch out=", "vs torch", "vs numpy", "vs best peer", "% copy bw"]
    for (dtype, size, threads), rows in _groups(report["ratios"]).items():
        c = copies.get((dtype, size, threads))
        plural = "s" if threads > 1 else ""
        title = (f"{dtype}, {shown_size(size)} elements, {threads} thread{plural}: Gelem/s "
                 f"(copy: {c['gelem_s']:.2f} Gelem/s, {c['gb_s']:.1f} GB/s)" if c else
                 f"{dtype}, {shown_size(size)} elements, {threads} thread{plural}: Gelem/s")
        body = []
        for r in rows:
            g, name, op = r["gelem_s"], r["name"], r["peer_op"]
            body.append([name, SHORT[r["op"]], _fmt(g.get("actgen")),
                         _cell(g, "actgen_numpy", why, name, r["op"]),
                         *(_cell(g, p, why, name, op) for p in ("numpy", "torch_out", "torch", "numexpr")),
                         _fmt(r["vs_torch_out"]), _fmt(r["vs_torch"]), _fmt(r["vs_numpy"], ".1f"),
                         _fmt(r.get("vs_best_peer")), _fmt(r["pct_copy"], ".0f")])
        out.append((title, header, body, []))
    return out


def _user_tables(report: dict) -> list[Table]:
    """actgen against the activation written by hand in torch, JAX and numexpr: per (dtype,
    size, threads), forward, backward and a training step."""
    why = Reasons(report)
    peers = [p for p in USER_PEERS]
    header = (["activation", "op", "actgen", "actgen.torch"] + [LABELS[p] for p in peers]
              + [f"vs {LABELS[p]}" for p in peers])
    out = []
    for (dtype, size, threads), rows in _groups(report.get("user_ratios", [])).items():
        plural = "s" if threads > 1 else ""
        title = (f"{dtype}, {shown_size(size)} elements, {threads} thread{plural}: against the expression as a "
                 "user writes it, Gelem/s")
        body = []
        for r in rows:
            g, name, op = r["gelem_s"], r["name"], r["op"]
            star = "*" if r["noisy"] else ""
            body.append([name, SHORT[op], _fmt(g.get("actgen"), ".3g"), _cell(g, "actgen_torch", why, name, op, ".3g"),
                         *(_cell(g, p, why, name, op, ".3g") for p in peers),
                         *(_fmt(r[f"vs_{p}"]) + (star if r[f"vs_{p}"] is not None else "") for p in peers)])
        notes = ["*: a noisy cell (the repeats of one of its implementations spread over 25% of their median)"] \
            if any(r["noisy"] for r in rows) else []
        out.append((title, header, body, notes))
    return out


def compile_table(report: dict) -> list[Table]:
    """Seconds of torch.compile's and jax.jit's first calls beyond a timed call, per activation
    and dtype (the median over the sizes and thread counts, each compiled afresh)."""
    entries = report.get("compile", [])
    if not entries:
        return []
    why = Reasons(report)
    columns = [("torch_compile", "forward"), ("torch_compile", "train"), ("jax", "forward"), ("jax", "train")]
    by = {}
    for e in entries:
        by.setdefault((e["name"], e["dtype"]), {}).setdefault((e["impl"], e["what"]), []).append(e["seconds"])
    header = ["activation", "dtype"] + [f"{LABELS[i]} {SHORT[w]}" for i, w in columns]
    body = [[name, dtype] + [f"{statistics.median(got[c]):.2f}" if c in got else why(name, c[0], c[1])
                             for c in columns]
            for (name, dtype), got in by.items()]
    startup = report.get("config", {}).get("startup_seconds") or {}
    notes = ["seconds of the first call beyond a timed call (the compile), the median over the sizes and "
             "thread counts (each compiled afresh: Inductor writes the thread count into its loops); "
             "without the one-time start of " + ", ".join(f"{LABELS[k]} ({v:.1f} s)" for k, v in startup.items())
             if startup else "seconds of the first call beyond a timed call (the compile)"]
    return [("compile times, seconds", header, body, notes)]


def accuracy_table(report: dict) -> list[Table]:
    """Max ULPs of f and (conditioned) of dy * f' against mpmath on verify's inputs, per dtype."""
    rows = report.get("accuracy", [])
    if not rows:
        return []
    why = Reasons(report)
    impls = list(dict.fromkeys(r["impl"] for r in rows))
    out = []
    for dtype in dict.fromkeys(r["dtype"] for r in rows):
        by = {}
        for r in rows:
            if r["dtype"] == dtype:
                by.setdefault(r["name"], {})[r["impl"]] = r
        header = ["activation"] + [f"{LABELS[i]} {part}" for i in impls for part in ("f", "f'")]
        body = []
        for name, got in by.items():
            row = [name]
            for impl in impls:
                r = got.get(impl)
                if r is None or "reason" in r:
                    reason = f"n/a: {r['reason']}" if r else why(name, impl)
                    row += [reason, reason]
                    continue
                nonfinite = f" ({r['nonfinite']} non-finite)" if r["nonfinite"] else ""
                row += [format_ulp(r["forward_ulp"]), format_ulp(r["backward_ulp"]) + nonfinite]
            body.append(row)
        points = max(r.get("points", 0) for r in rows)
        notes = [f"max ULPs over the {points} finite inputs of `actgen verify` (the correctly rounded mpmath "
                 "value); f' is dy * f'(x) in ULPs of max(|reference|, |dy| * the sum of its terms' magnitudes), "
                 "as verify reports it; non-finite: inf or nan where the reference is finite"]
        out.append((f"accuracy, {dtype}", header, body, notes))
    return out


def sources_table(report: dict) -> list[Table]:
    srcs = report.get("sources") or {}
    if not srcs:
        return []
    body = []
    for name, s in srcs.items():
        reasons = s.get("reasons", {})
        torch = (s["torch"] or "").split("return ", 1)[-1].strip() or f"n/a: {reasons.get('torch_eager')}"
        jax = (s["jax"] or "").split("return ", 1)[-1].strip() or f"n/a: {reasons.get('jax')}"
        ne = s["numexpr"]["forward"] if s.get("numexpr") else f"n/a: {reasons.get('numexpr')}"
        body.append([name, f"`{torch}`", f"`{jax}`", f"`{ne}`"])
    return [("the peers, as generated from the SymPy expression", ["activation", "torch", "jax", "numexpr"],
             body, [])]


def _text_table(title, header, body, notes) -> list[str]:
    plain = [[c.strip("`") for c in row] for row in body]
    widths = [max(len(h), *(len(row[i]) for row in plain)) if plain else len(h) for i, h in enumerate(header)]
    lines = [title, "  ".join(h.ljust(w) if i < 2 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths)))]
    for row in plain:
        lines.append("  ".join(v.ljust(w) if i < 2 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths))))
    return lines + notes + [""]


def format_text(report: dict) -> str:
    lines = []
    for table in _kernel_tables(report) + _user_tables(report) + compile_table(report) + accuracy_table(report):
        lines += _text_table(*table)
    lines.append("ratios: actgen's C kernel / the peer (> 1: actgen faster); bwd(y) is compared with the "
                 "peers' backward; % copy bw: bytes read + written per second / those of a copy")
    return "\n".join(lines)


def markdown_table(title, header, body, notes) -> list[str]:
    lines = [f"## {title}", "", "| " + " | ".join(header) + " |",
             "|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in body]
    return lines + ([""] + notes if notes else []) + [""]


def format_markdown(report: dict, command: str | None = None) -> str:
    m = report["machine"]
    cfg = report["config"]
    lines = ["# actgen benchmark", ""]
    if command:
        lines += ["Produced by", "", "```", command, "```", ""]
    lines += ["## Machine", "",
              f"- CPU: {m.get('cpu')} ({m.get('usable_cpus')} usable of {m.get('logical_cpus')} logical CPUs; "
              f"{', '.join(m.get('cpu_flags') or []) or 'no AVX flags'})",
              f"- compiler: {m.get('cc')}; flags: `{m.get('cflags', '')}`",
              f"- libc: {m.get('libc')}; Python {m.get('python')}; NumPy {m.get('numpy')}; "
              f"SciPy {m.get('scipy')}; PyTorch {m.get('torch')}; JAX {m.get('jax')}; numexpr {m.get('numexpr')}",
              f"- actgen {m.get('actgen')}" + (f" (commit {m['actgen_commit']})" if m.get("actgen_commit") else ""),
              f"- {cfg['repeats']} timed repeats per cell after a warm-up, median reported; each repeat lasts "
              f">= {cfg['min_time']} s; cells slower than 4 s in all get fewer repeats (at least 3, or 1 for "
              "calls over 0.5 s: the JSON records each cell's repeats and spread)", "",
              "Gelem/s (10^9 elements per second). Ratios are actgen's C kernel over the peer (> 1: actgen "
              "faster). `bwd(y)` is actgen's backward from the saved output, compared with the peers' "
              "backward; `fwd+d` produces y and f'(x) in one pass. `% copy bw` is the bytes read and written "
              "per second over those of a plain copy with the same threads (the memory-bound limit). "
              "`numpy` is NumPy as users write it (allocating); `torch out=` calls PyTorch's kernels with a "
              "preallocated output, `torch` its ordinary allocating call, `numexpr` evaluates the formula "
              "as users write it into a preallocated output; `vs best peer` is over the fastest of them.", "",
              "The training-step tables compare actgen with the activation written from its SymPy expression "
              "as a user would write it: `torch eager` (autograd of the composition), `torch.compile` "
              "(Inductor, CPU), `jax.jit` (backward through `jax.vjp`) and numexpr (f and dy * f'(x)); "
              "`actgen.torch` is actgen's kernels through its autograd Function. `bwd` is dx from what the "
              "forward saved, recorded once (torch, jax), or from x and dy (actgen, numexpr); `train` is the "
              "forward, then the backward with dy and the gradients of the learnable parameters (jax: vjp and "
              "its pullback as two jitted programs).", ""]
    tables = (_kernel_tables(report) + _user_tables(report) + compile_table(report) + accuracy_table(report)
              + sources_table(report))
    for table in tables:
        lines += markdown_table(*table)
    return "\n".join(lines)


def write_text(path: str, text: str) -> None:
    """Write atomically: no half-written file on failure."""
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
