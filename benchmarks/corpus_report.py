"""The Markdown report of benchmarks/corpus.py (docs/corpus.md) from its records (docs/corpus.json):
a summary (counts built / refused / crashed / timed out / over budget, grouped by cause; build and
load times), one row per activation (builds, times, forms chosen), the accuracy of the C and NumPy
kernels, and the failures one by one (the work list)."""

from __future__ import annotations

import re
from pathlib import Path


# ---- the report --------------------------------------------------------------------------------

def _pct(values: list[float], q: float) -> float:
    """The q-th percentile (linear interpolation, as numpy's default)."""
    v = sorted(values)
    if not v:
        return float("nan")
    k = (len(v) - 1) * q / 100
    lo = int(k)
    return v[lo] + (v[min(lo + 1, len(v) - 1)] - v[lo]) * (k - lo)


def _num(v) -> str:
    if v is None:
        return "-"
    if v != v:
        return "nan"
    if v in (float("inf"), float("-inf")):
        return "inf"
    return f"{v:.3g}" if abs(v) >= 1000 or (v and abs(v) < 0.01) else f"{v:g}"


def _check(record: dict, backend: str, dtype: str, kernel: str) -> dict | None:
    return next((c for c in record.get("verify", {}).get("checks", [])
                 if (c["backend"], c["dtype"], c["kernel"]) == (backend, dtype, kernel)), None)


def _cell(c: dict | None, derivative: bool = False) -> str:
    """max/p99 ULP (and, for derivatives, the conditioned error the budget applies to); bold when
    over budget; !n: n points where the kernel and the reference disagree on being finite."""
    if c is None:
        return "-"
    text = f"{_num(c['max_ulp'])}/{_num(c['p99_ulp'])}"
    if derivative and c["error"] != c["max_ulp"]:
        text += f" ({_num(c['error'])})"
    bad = c["nonfinite_extra"] + c["nonfinite_missing"]
    text += f" !{bad}" if bad else ""
    return text if c["passed"] else f"**{text}**"


def _grads(record: dict, backend: str, dtype: str) -> str:
    cs = [c for c in record.get("verify", {}).get("checks", [])
          if c["backend"] == backend and c["dtype"] == dtype and c["kind"] == "param_grad"]
    if not cs:
        return "-"
    worst = max(cs, key=lambda c: (not c["passed"], c["error"]))
    text = f"{_num(worst['error'])} ({worst['kernel'][5:]})" if len(cs) > 1 else _num(worst["error"])
    return text if all(c["passed"] for c in cs) else f"**{text}**"


def _others(record: dict, backend: str) -> str:
    main = {"forward", "backward", "backward_b"}
    cs = [c for c in record.get("verify", {}).get("checks", [])
          if c["backend"] == backend and c["kind"] != "param_grad" and c["kernel"] not in main]
    bad = sorted({f"{c['kernel']} {c['dtype'][5:]}" for c in cs if not c["passed"]})
    return "-" if not cs else ("ok" if not bad else "**" + ", ".join(bad) + "**")


#: verify's kernels, by what they compute (fused and per-channel ones repeat the plain ones)
FAMILIES = {"forward": "f", "fused_y": "f", "forward_pc": "f", "backward": "f'", "fused_dydx": "f'",
            "backward_pc": "f'", "backward_b": "f'", "backward_a": "f' (a)", "backward_y": "f' from y"}


def _family(check: dict) -> str:
    return "df/dp" if check["kind"] == "param_grad" else FAMILIES.get(check["kernel"], check["kernel"])


def _failure(c: dict, points: dict) -> str:
    """One over-budget check, in a line: what, how far, where."""
    head = f"- {c['backend']} {c['kernel']} {c['dtype']}: "
    bad = c["nonfinite_extra"] + c["nonfinite_missing"]
    where = points.get(f"{c['backend']} {c['kernel']} {c['dtype']}")
    text = ""
    if bad:
        text = (f"{c['nonfinite_extra']} non-finite where the reference is finite, {c['nonfinite_missing']} finite "
                f"where it is not" + (" (" + ", ".join(f"x = {x:.9g}: got {g:.6g}, want {r:.6g}" for x, g, r in where) + ")"
                                     if where else "") + "; elsewhere ")
    text += f"error {_num(c['error'])} (budget {_num(c['budget'])}; max {_num(c['max_ulp'])}, p99 {_num(c['p99_ulp'])} ULP)"
    if c["kind"] != "param_grad" and c["error"] > c["budget"]:
        text += f", worst at x = {c['worst_x']:.17g}: got {c['worst_got']:.9g}, want {c['worst_ref']:.9g}"
    return head + text


def _path(frames: list[str]) -> list[str]:
    """A crash's actgen frames below the command, outermost first, each once (recursion), shortened
    to the first three and the last four."""
    path = [f for i, f in enumerate(frames)
            if not f.startswith(("actgen.cli:", "actgen.__main__:")) and f not in frames[:i]]
    return path if len(path) <= 7 else path[:3] + ["..."] + path[-4:]


def _status(record: dict) -> str:
    b = record.get("build", {})
    if b.get("status") == "ok":
        return "C, NumPy" if len(b.get("backends", {})) == 2 else ", ".join(b.get("backends", {}))
    if b.get("status") == "crashed":
        return f"crashed ({b.get('where')}: {b.get('type')})"
    if b.get("status") == "partial":
        return "partial: " + ", ".join(k for k, v in b["backends"].items() if v["status"] == "built")
    return b.get("status", "?")


def _reason(message: str, mask: bool = True) -> str:
    """A refusal's reason without the file and activation (numbers masked, for grouping)."""
    first = re.sub(r"^\S*\.toml \[[^\]]*\] ", "", message.splitlines()[0])
    return re.sub(r"(?<![\w`.])\d+(\.\d+)?(e[+-]?\d+)?(?![\w`])", "N", first) if mask else first


def _forms(record: dict) -> str:
    """Per kernel: the rewrites chosen (union over dtypes) and where float32 is not computed in float."""
    parts = []
    for k in record.get("show", {}).get("kernels", []):
        label = {"f(x)": "f", "f'(x)": "f'"}.get(k["kernel"], k["kernel"].replace(" from the output y = f(x)", "(y)"))
        rules = sorted({r.strip() for f in k["forms"].values() for r in f.get("rewrites", "").split(",") if r.strip()})
        f32 = k["forms"].get("float32", {}).get("choice", "")
        extra = (" [f32 in double]" if "computed in double" in f32 else
                 f" [f32 float {m.group(1)}]" if (m := re.search(r"in float on (\[[^\]]*\])", f32)) else "")
        parts.append(f"{label}: {', '.join(rules) or 'as written'}{extra}")
    return "; ".join(parts) or "-"


def render(data: dict) -> str:
    es = data.get("entries", [])
    m = data.get("machine", {})
    out = ["<!-- generated by benchmarks/corpus.py from docs/corpus.json; do not edit -->",
           "# The literature corpus through actgen", "",
           f"Command: `{data.get('command', '')}`, run {data.get('started', '?')} to {data.get('finished', '?')}.",
           f"Machine: {m.get('cpu', '?')}, {m.get('usable_cpus', '?')} CPUs (shared; load average at the start "
           f"{', '.join(f'{v:.2f}' for v in m.get('load_average', []))}), {m.get('cc', '?')}, {m.get('libc', '')}, "
           f"Python {m.get('python', '?')}, NumPy {m.get('numpy', '?')}; actgen commit {m.get('actgen_commit', '?')}"
           + (" with uncommitted changes" if m.get("actgen_dirty") else "") + ".",
           f"Each entry ran in fresh processes with an empty cache of its own, {data.get('jobs', 1)} at a time; "
           f"timeouts {_num(data.get('timeouts', {}).get('build_load_show'))} s per build, load and show, "
           f"{_num(data.get('timeouts', {}).get('verify'))} s per verify."]
    for run in data.get("reruns", []):
        out.append(f"Re-run of {len(run['entries'])} entries ({', '.join(run['entries'])}) at actgen commit "
                   f"{run.get('machine', {}).get('actgen_commit', '?')}: `{run['command']}`, {run.get('started', '?')} "
                   f"to {run.get('finished', '?')}.")
    out += ["", "## Summary", ""]
    by = {}
    for e in es:
        by.setdefault(e.get("build", {}).get("status"), []).append(e)
    out.append(f"{len(es)} entries from {len({e['file'] for e in es})} files "
               f"(corpus size {data.get('corpus_size', len(es))}).")
    out.append(f"- **built** (`actgen build`, C and NumPy): {len(by.get('ok', []))}")
    refused = by.get("refused", [])
    out.append(f"- **refused** with one `actgen: error:` line: {len(refused)}")
    groups = {}
    for e in refused:
        groups.setdefault(_reason(e["build"]["message"]), []).append(e["name"])
    for reason, names in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        out.append(f"  - {len(names)} x `{reason}`: {', '.join(names)}")
    crashed = by.get("crashed", [])
    out.append(f"- **crashed** with a traceback (or a signal): {len(crashed)}")
    groups = {}
    for e in crashed:
        b = e["build"]
        groups.setdefault(f"{b.get('type')} in {b.get('where')} (at {b.get('innermost_frame') or '?'})", []).append(e["name"])
    for reason, names in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        out.append(f"  - {len(names)} x {reason}: {', '.join(names)}")
    out.append(f"- **timeout** (build over {_num(data.get('timeouts', {}).get('build_load_show'))} s): "
               f"{len(by.get('timeout', []))}" + (f": {', '.join(e['name'] for e in by['timeout'])}" if by.get("timeout") else ""))
    if by.get("partial"):
        out.append(f"- **partial** (one backend refused): {', '.join(e['name'] + ' (' + _status(e) + ')' for e in by['partial'])}")
    verified = [e for e in es if e.get("verify", {}).get("status") == "ok"]
    over = [e for e in verified if e["verify"]["over_budget"]]
    vbad = [e for e in es if e.get("verify", {}).get("status") in ("crashed", "timeout", "refused")]
    out.append(f"- **verified**: {len(verified)} (`actgen verify`, both dtypes, the backends that built); "
               f"within every budget: {len(verified) - len(over)}; **over budget**: {len(over)}"
               + (f"; verify crashed or timed out: {len(vbad)} ({', '.join(e['name'] + ' ' + e['verify']['status'] for e in vbad)})" if vbad else ""))
    classes = {}
    for e in over:
        for c in e["verify"]["checks"]:
            if not c["passed"]:
                classes.setdefault((_family(c), c["dtype"]), {}).setdefault(c["backend"], set()).add(e["name"])
    for (family, dtype), per in sorted(classes.items(), key=lambda kv: (-len(set().union(*kv[1].values())), kv[0])):
        names = sorted(set().union(*per.values()))
        out.append(f"  - {family} {dtype}: {len(names)} ({', '.join(f'{b} {len(v)}' for b, v in sorted(per.items()))}): "
                   + ", ".join(names))
    stray = [e for e in es if e.get("build", {}).get("stray_stderr")]
    if stray:
        out.append(f"- builds that succeeded but wrote to stderr: {len(stray)} ("
                   + ", ".join(f"{e['name']}: `{e['build']['stray_stderr'][0][:80]}`" for e in stray) + ")")
    times = [e["build"]["seconds"] for e in by.get("ok", [])]
    loads = [1e3 * e["load"]["backends"]["c"] for e in es if e.get("load", {}).get("backends", {}).get("c") is not None]
    if times:
        slow = sorted(by["ok"], key=lambda e: -e["build"]["seconds"])[:8]
        out += ["", f"Cold build (the whole `actgen build NAME.toml`, C and NumPy, an empty cache, over the "
                f"{len(times)} built entries): median {_pct(times, 50):.2f} s, 95th percentile {_pct(times, 95):.2f} s, "
                f"max {max(times):.2f} s (goal: 2 s, 4 s, 10 s). Slowest: "
                + ", ".join(f"{e['name']} {e['build']['seconds']:.1f} s" for e in slow) + "."]
        cpu = [e["build"]["cpu"] for e in by["ok"] if "cpu" in e["build"]]
        if cpu:
            out.append(f"CPU time of the same commands (user + system, the command and its children; less "
                       f"sensitive than wall time to the shared machine's load): median {_pct(cpu, 50):.2f} s, "
                       f"95th percentile {_pct(cpu, 95):.2f} s, max {max(cpu):.2f} s.")
    if loads:
        out.append(f"Cached load (`actgen.load`, C, a new process): median {_pct(loads, 50):.1f} ms, "
                   f"95th percentile {_pct(loads, 95):.1f} ms, max {max(loads):.1f} ms (goal: 50 ms).")
    out += ["", "## Activations", "",
            "Build: which backends built; cold: the whole `actgen build` command in seconds; load: the cached "
            "`actgen.load` of the C kernels in ms; over budget: kernel checks over their `actgen verify` budget "
            "(C + NumPy); forms: the rewrites `actgen show` reports per kernel (union over dtypes; "
            "[f32 in double]: the float32 kernel computes in double; [f32 float [a, b]]: in float on that interval "
            "in C).", "",
            "| activation | file | build | cold s | load ms | over budget | forms |", "|---|---|---|---:|---:|---:|---|"]
    for e in es:
        v = e.get("verify", {})
        ob = _num(v.get("over_budget")) if v.get("status") == "ok" else v.get("status", "-")
        ld = e.get("load", {}).get("backends", {}).get("c")
        out.append(f"| {e['name']} | {Path(e['file']).stem} | {_status(e)} | {e.get('build', {}).get('seconds', 0):.2f} | "
                   f"{_num(round(1e3 * ld, 1)) if ld is not None else '-'} | {ob} | {_forms(e)} |")
    for backend, title in (("c", "C kernels"), ("numpy", "NumPy kernels")):
        out += ["", f"## Accuracy: {title}", "",
                "ULPs against mpmath on the verify sweep: max/p99; for f' (the backward kernel, dy * f'(x); "
                "for gated entries the gate's input b), in parentheses the error the budget applies to (ULPs "
                "of max(|f'|, sum |terms|)); param grads: the largest error of df/dp sums in eps * sum|terms| "
                "(and which parameter); others: fused, per-channel and from-the-output kernels; **bold**: over "
                "budget; !n: points where exactly one of kernel and reference is finite.", "",
                "| activation | fwd f32 | fwd f64 | f' f32 | f' f64 | grads f32 | grads f64 | others |",
                "|---|---:|---:|---:|---:|---:|---:|---|"]
        for e in es:
            if not any(c["backend"] == backend for c in e.get("verify", {}).get("checks", [])):
                continue
            dk = "backward_b" if e["kind"] == "gated" else "backward"
            out.append(f"| {e['name']} | {_cell(_check(e, backend, 'float32', 'forward'))} | "
                       f"{_cell(_check(e, backend, 'float64', 'forward'))} | "
                       f"{_cell(_check(e, backend, 'float32', dk), True)} | {_cell(_check(e, backend, 'float64', dk), True)} | "
                       f"{_grads(e, backend, 'float32')} | {_grads(e, backend, 'float64')} | {_others(e, backend)} |")
    out += ["", "## Failures: the work list", ""]
    for e in es:
        lines = []
        for stage in ("build", "load", "verify", "show"):
            s = e.get(stage, {})
            if s.get("status") == "crashed":
                frames = " > ".join(_path(s.get("actgen_frames", [])))
                lines.append(f"- {stage} crashed in {s.get('where')}: `{s.get('type')}: {s.get('message', '')[:200]}` "
                             f"at {s.get('innermost_frame') or '?'}" + (f"; actgen frames: {frames}" if frames else ""))
            elif s.get("status") in ("refused", "partial") and s.get("message"):
                lines.append(f"- {stage} refused: `{_reason(s['message'], mask=False)}`")
            elif s.get("status") == "timeout":
                lines.append(f"- {stage} timed out after {s.get('seconds', 0):.0f} s")
        checks = e.get("verify", {}).get("checks", [])
        points = e.get("verify", {}).get("nonfinite_points", {})
        plain = {(c["backend"], c["dtype"], _family(c)) for c in checks if not c["passed"] and c["kernel"] in
                 ("forward", "backward", "backward_b")}
        repeats = 0
        for c in checks:
            if c["passed"]:
                continue
            if c["kernel"] in ("fused_y", "fused_dydx", "forward_pc", "backward_pc") and \
                    (c["backend"], c["dtype"], _family(c)) in plain:
                repeats += 1
                continue
            lines.append(_failure(c, points))
        if repeats:
            lines.append(f"- and {repeats} fused or per-channel kernels over budget like the plain ones above")
        if lines:
            out += [f"**{e['name']}** (`{e['expr'][:120]}`, {e['file']})", *lines, ""]
    return "\n".join(out) + "\n"


