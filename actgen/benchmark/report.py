"""The report of ``actgen bench`` as text and markdown tables, and the atomic writer."""

from __future__ import annotations

import math
import os

from .names import SHORT


def _fmt(v, spec=".2f", none="-"):
    return none if v is None else format(v, spec)


def _tables(report: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) per (dtype, size, threads)."""
    groups = {}
    for r in report["ratios"]:
        groups.setdefault((r["dtype"], r["size"], r["threads"]), []).append(r)
    copies = {(r["dtype"], r["size"], r["threads"]): r for r in report["results"]
              if r["op"] == "copy" and r["name"] == "copy"}
    out = []
    header = ["activation", "op", "actgen", "actgen numpy", "numpy", "torch out=", "torch", "numexpr",
              "vs torch out=", "vs torch", "vs numpy", "vs best peer", "% copy bw"]
    for (dtype, size, threads), rows in groups.items():
        c = copies.get((dtype, size, threads))
        exp = math.log2(size)
        shown = f"2^{int(exp)}" if exp == int(exp) else str(size)
        title = (f"{dtype}, {shown} elements, {threads} thread{'s' if threads > 1 else ''}: Gelem/s "
                 f"(copy: {c['gelem_s']:.2f} Gelem/s, {c['gb_s']:.1f} GB/s)" if c else
                 f"{dtype}, {shown} elements, {threads} threads: Gelem/s")
        body = []
        for r in rows:
            g = r["gelem_s"]
            body.append([r["name"], SHORT[r["op"]], _fmt(g.get("actgen")), _fmt(g.get("actgen_numpy")),
                         _fmt(g.get("numpy")), _fmt(g.get("torch_out")), _fmt(g.get("torch")),
                         _fmt(g.get("numexpr")), _fmt(r["vs_torch_out"]), _fmt(r["vs_torch"]),
                         _fmt(r["vs_numpy"], ".1f"), _fmt(r.get("vs_best_peer")), _fmt(r["pct_copy"], ".0f")])
        out.append((title, header, body))
    return out


def format_text(report: dict) -> str:
    lines = []
    for title, header, body in _tables(report):
        widths = [max(len(h), *(len(row[i]) for row in body)) for i, h in enumerate(header)]
        lines.append(title)
        lines.append("  ".join(h.ljust(w) if i < 2 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths))))
        for row in body:
            lines.append("  ".join(v.ljust(w) if i < 2 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths))))
        lines.append("")
    lines.append("ratios: actgen's C kernel / the peer (> 1: actgen faster); bwd(y) is compared with the "
                 "peers' backward; % copy bw: bytes read + written per second / those of a copy")
    return "\n".join(lines)


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
              f"SciPy {m.get('scipy')}; PyTorch {m.get('torch')}; numexpr {m.get('numexpr')}",
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
              "as users write it into a preallocated output; `vs best peer` is over the fastest of them.", ""]
    for title, header, body in _tables(report):
        lines += [f"## {title}", "", "| " + " | ".join(header) + " |",
                  "|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        lines.append("")
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
