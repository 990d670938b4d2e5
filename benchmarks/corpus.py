"""The literature corpus (benchmarks/corpus/*.toml) through actgen, one activation at a time:

    PYTHONPATH=. python benchmarks/corpus.py [--jobs N] [--only NAME...] \
        --json docs/corpus.json --markdown docs/corpus.md

For every table, in fresh subprocesses with an empty cache of its own (ACTGEN_CACHE_DIR and
XDG_CACHE_HOME in a temporary directory) and a wall-clock timeout per stage:

1. build: `actgen build NAME.toml` (C and NumPy), the table alone in a spec file of its own; the
   wall time of the whole command is the cold build time (Python's start, imports, choosing the
   forms, the compiler, and the fast-call extension that every fresh cache compiles once);
2. load: `actgen.load(NAME, spec=..., backend=...)` in a new process whose cache has the build
   (the time of the call, after `import actgen`), for each backend that built;
3. verify: `actgen verify NAME.toml --json ...` for the backends that built (every kernel against
   mpmath in ULPs, both dtypes);
4. show: `actgen show NAME --spec NAME.toml`, for the forms chosen per kernel and dtype.

A stage's outcome is `ok`, `refused` (exit status 1 and one `actgen: error:` message), `crashed` (a
Python traceback, a signal or another exit status: its exception, its message and the actgen frames
it went through are recorded) or `timeout`. Nothing stops the run: each entry's record is written
to the JSON as soon as it is done (`--resume` keeps the records of unchanged tables), and the
Markdown is rendered from the JSON (`--render-only` renders it again without running anything).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from corpus_report import render     # benchmarks/corpus_report.py (this script's directory is on sys.path)

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path(__file__).resolve().parent / "corpus"
TRACEBACK = "Traceback (most recent call last):"

LOAD_SCRIPT = """
import json, sys, time
import actgen
name, spec = sys.argv[1], sys.argv[2]
times = {}
for backend in sys.argv[3:]:
    t = time.perf_counter()
    actgen.load(name, spec=spec, backend=backend)
    times[backend] = time.perf_counter() - t
print(json.dumps(times))
"""

#: where kernel and reference disagree on being finite (verify's JSON counts them, not where)
PROBE_SCRIPT = """
import json, sys
import numpy as np
import actgen
from actgen.spec import read_spec_file
from actgen.sweep import make_sweep
try:
    from actgen.verify import _each_point      # float32 C kernels: each point in a block of its own
except ImportError:
    _each_point = None
name, spec = sys.argv[1], sys.argv[2]
act = next(a for a in read_spec_file(spec) if a.name == name)
found = {}
for dtype in ("float32", "float64"):
    sweep = make_sweep(act, dtype)
    for backend in sys.argv[3:]:
        k = actgen.load(name, spec=spec, backend=backend)
        each = _each_point if (_each_point and backend == "c" and dtype == "float32") else (lambda f, *a: f(*a))
        got = {"forward": np.asarray(each(lambda x: k(x, **sweep.params), sweep.xs)),
               "backward": np.asarray(each(lambda x, dy: k.backward(x, dy, **sweep.params), sweep.xs, sweep.dys))}
        for kernel, y in got.items():
            ref = sweep.refs[kernel]
            bad = np.flatnonzero(np.isfinite(y) != np.isfinite(ref))
            if bad.size:
                found[f"{backend} {kernel} {dtype}"] = [[float(sweep.xs[i]), float(y[i]), float(ref[i])] for i in bad[:6]]
print(json.dumps(found))
"""

# ---- the corpus --------------------------------------------------------------------------------

@dataclass
class Entry:
    name: str
    file: str        # the corpus file, relative to the repository
    text: str        # the table's own TOML text (its [name] header up to the next table)
    table: dict

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()[:16]


_HEADER = re.compile(r"^\[([^\]\[]+)\]\s*(#.*)?$", re.M)


def entries(directory: Path = CORPUS) -> list[Entry]:
    """Every table of every corpus file, each with the TOML text of its own (checked to parse to
    the same table), in file order."""
    found = []
    for path in sorted(directory.glob("*.toml")):
        text = path.read_text(encoding="utf-8")
        tables = tomllib.loads(text)
        heads = list(_HEADER.finditer(text))
        for i, head in enumerate(heads):
            name = head.group(1).strip()
            end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
            own = text[head.start():end].rstrip() + "\n"
            if tomllib.loads(own).get(name) != tables.get(name):
                raise SystemExit(f"{path}: the text of table [{name}] does not parse on its own")
            gate = tables[name].get("gate")
            if isinstance(gate, str) and gate in tables:   # a gate from the same file travels along
                gate_head = next(h for h in heads if h.group(1).strip() == gate)
                j = heads.index(gate_head)
                stop = heads[j + 1].start() if j + 1 < len(heads) else len(text)
                own += "\n" + text[gate_head.start():stop].rstrip() + "\n"
            found.append(Entry(name, str(path.relative_to(ROOT)), own, tables[name]))
    return found


# ---- running one command -----------------------------------------------------------------------

def run(cmd: list[str], env: dict, timeout: float) -> dict:
    """Run ``cmd`` in a session of its own; on timeout kill the whole process group (the compiler
    children too). Returns rc, stdout, stderr, seconds (wall), cpu (user + system of the command
    and the children it waited for, from wait4: less sensitive than wall time to a shared machine's
    load) and timed_out."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=ROOT, start_new_session=True, errors="replace")
    texts = {}
    readers = [threading.Thread(target=lambda k=k, s=s: texts.__setitem__(k, s.read()), daemon=True)
               for k, s in (("stdout", proc.stdout), ("stderr", proc.stderr))]
    for r in readers:
        r.start()
    timed_out = False
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() - start > timeout:
            timed_out = True
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            pid, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.005)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)     # so Popen does not wait for it again
    for r in readers:
        r.join()
    return {"rc": proc.returncode, "stdout": texts.get("stdout", ""), "stderr": texts.get("stderr", ""),
            "seconds": seconds, "cpu": usage.ru_utime + usage.ru_stime, "timed_out": timed_out}


def traceback_of(stderr: str) -> dict:
    """The exception of the last traceback in ``stderr``: its type and message, the actgen frames
    (module:function, outermost first) and the innermost frame outside actgen."""
    text = stderr[stderr.rindex(TRACEBACK):]
    frames = re.findall(r'^  File "([^"]+)", line (\d+), in (\S+)', text, re.M)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    last = next((ln for ln in reversed(lines) if not ln.startswith(" ") and ln != TRACEBACK), lines[-1])
    kind, _, message = last.partition(": ")
    ours = [f"{_module(f)}:{fn}" for f, _line, fn in frames if "/actgen/" in f]
    outside = [f"{_module(f)}:{fn}" for f, _line, fn in frames if "/actgen/" not in f]
    return {"type": kind.strip(), "message": message.strip()[:300], "actgen_frames": ours,
            "innermost_frame": (outside[-1] if outside and frames and "/actgen/" not in frames[-1][0]
                                else (ours[-1] if ours else ""))}


def _module(path: str) -> str:
    """A frame's file as a dotted module (actgen.select, mpmath.functions.functions, ...)."""
    for marker in ("/actgen/", "/site-packages/", "/lib/python3"):
        if marker in path:
            tail = path.split(marker, 1)[1]
            prefix = "actgen." if marker == "/actgen/" else ""
            return prefix + tail.removesuffix(".py").replace("/", ".").removeprefix("3.11.")
    return Path(path).stem


#: the build stage each actgen module belongs to (verify.py and reference.py run inside selection
#: during a build: it measures candidate forms against the mpmath reference)
STAGES = {"spec": "parse", "specfile": "parse", "activation": "parse", "functions": "parse",
          "derive": "derive", "select": "select", "rewrite": "select", "verify": "select",
          "reference": "select", "render": "render", "printers": "render", "backends": "render",
          "roles": "render", "build": "compile", "pipeline": "compile", "fastcall": "compile",
          "runtime": "load", "numpy_runtime": "load"}


def stage_of(frames: list[str], default: str) -> str:
    """The stage a crash happened in: that of the innermost actgen frame whose module names one."""
    for frame in reversed(frames):
        module = frame.split(":", 1)[0].split(".")
        if len(module) > 1 and module[1] in STAGES:
            return STAGES[module[1]]
    return default


def outcome(result: dict, stage: str) -> dict:
    """Classify one command's result: ok / refused / crashed / timeout, with the evidence."""
    err = result["stderr"]
    base = {"stage": stage, "seconds": round(result["seconds"], 3), "cpu": round(result["cpu"], 3),
            "rc": result["rc"]}
    if result["timed_out"]:
        return {**base, "status": "timeout"}
    if TRACEBACK in err:
        tb = traceback_of(err)
        return {**base, "status": "crashed", **tb,
                "where": stage_of(tb["actgen_frames"], stage) if stage == "build" else stage}
    errors = [ln[len("actgen: error: "):] for ln in err.splitlines() if ln.startswith("actgen: error: ")]
    if result["rc"] == 0:
        stray = [ln for ln in err.splitlines() if ln.strip() and "] skipped:" not in ln]
        return {**base, "status": "ok", **({"stray_stderr": stray[:5]} if stray else {})}
    if result["rc"] == 1 and errors:
        detail = err[err.index("actgen: error: "):].strip()
        return {**base, "status": "refused", "message": errors[0][:400], "detail": detail[:1500]}
    if result["rc"] == 1 and stage == "verify":    # verify: exit 1 = a kernel over its budget
        return {**base, "status": "ok"}
    what = f"signal {-result['rc']}" if result["rc"] < 0 else f"exit status {result['rc']}"
    tail = [ln for ln in err.splitlines() if ln.strip()][-3:]
    return {**base, "status": "crashed", "type": what, "message": " | ".join(tail)[:300],
            "actgen_frames": [], "innermost_frame": "", "where": stage}


# ---- the stages of one entry -------------------------------------------------------------------

def build_backends(stdout: str, stderr: str, name: str) -> dict:
    """Per backend, what `actgen build` said: compiled/cached with its time, error, or skipped."""
    found = {}
    for ln in (stdout + "\n" + stderr).splitlines():
        m = re.match(rf"^{re.escape(name)}\s+\[(c|numpy)\s*\]\s+(.*)$", ln)
        if m:
            status = m.group(2)
            t = re.search(r"(compiled in|cached \()\s*([\d.]+) s", status)
            found[m.group(1)] = {"status": "skipped" if status.startswith("skipped") else "built",
                                 **({"seconds": float(t.group(2))} if t else {})}
    return found


def verify_summary(results: list[dict]) -> dict:
    """The verify results in short: every check (rounded), and what the report's columns need."""
    checks = []
    for r in results:
        checks.append({k: (float(f"{v:.6g}") if isinstance(v, float) and k != "worst_x" else v)
                       for k, v in r.items() if k in ("backend", "dtype", "kernel", "kind", "max_ulp",
                                                     "p99_ulp", "error", "budget", "worst_x", "worst_got",
                                                     "worst_ref", "nonfinite_extra", "nonfinite_missing",
                                                     "passed", "unit")})
    return {"checks": checks, "over_budget": sum(not c["passed"] for c in checks)}


def parse_show(text: str) -> list[dict]:
    """The forms `actgen show` reports: per kernel (f, f', f' from y, df/dp) and dtype, the choice
    line and the generated expression with its rewrites."""
    kernels, current = [], None
    for ln in text.split("---- generated", 1)[0].splitlines():
        head = re.match(r"^  (f\(x\)|f'\(x\)(?: from the output y = f\(x\))?|df/d\w+) = ", ln)
        if head:
            current = {"kernel": head.group(1), "forms": {}}
            kernels.append(current)
            continue
        m = re.match(r"^  (float32|float64): (.*)$", ln)
        if m and current is not None:
            current["forms"][m.group(1)] = {"choice": m.group(2).strip()}
            last = m.group(1)
            continue
        g = re.match(r"^\s+generated as (.*?)(?:\s+\[rewrites: (.*)\])?$", ln)
        if g and current is not None and current["forms"]:
            current["forms"][last].update({"generated": g.group(1)[:300], "rewrites": g.group(2) or ""})
    return kernels


def run_entry(entry: Entry, timeout: float, verify_timeout: float) -> dict:
    record = {"name": entry.name, "file": entry.file, "digest": entry.digest,
              "kind": entry.table.get("kind", "gated" if "gate" in entry.table else "elementwise"),
              "expr": entry.table.get("expr", f"gate = {entry.table.get('gate')}"),
              "params": entry.table.get("params", {}), "learnable": entry.table.get("learnable", []),
              "reference": entry.table.get("reference", ""), "description": entry.table.get("description", "")}
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix=f"actgen-corpus-{entry.name}-") as tmp:
        spec = Path(tmp) / f"{entry.name}.toml"
        spec.write_text(entry.text, encoding="utf-8")
        cache = Path(tmp) / "cache"
        env = dict(os.environ, ACTGEN_CACHE_DIR=str(cache), XDG_CACHE_HOME=str(cache),
                   PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        env.pop("PYTHONWARNINGS", None)

        built = run([py, "-m", "actgen", "build", str(spec), "--jobs", "1"], env, timeout)
        record["build"] = outcome(built, "build")
        record["build"]["backends"] = build_backends(built["stdout"], built["stderr"], entry.name)
        ok = [b for b, v in record["build"]["backends"].items() if v["status"] == "built"]
        if record["build"]["status"] == "refused" and ok:
            record["build"]["status"] = "partial"          # one backend built, the other refused
        if not ok:
            return record

        loaded = run([py, "-c", LOAD_SCRIPT, entry.name, str(spec), *ok], env, timeout)
        record["load"] = outcome(loaded, "load")
        if record["load"]["status"] == "ok":
            try:
                record["load"]["backends"] = json.loads(loaded["stdout"].strip().splitlines()[-1])
            except (ValueError, IndexError):
                record["load"]["status"] = "crashed"
                record["load"]["message"] = f"unreadable output: {loaded['stdout'][-200:]!r}"

        out = Path(tmp) / "verify.json"
        backend = "both" if len(ok) == 2 else ok[0]
        verified = run([py, "-m", "actgen", "verify", str(spec), "--backend", backend, "--json", str(out)],
                       env, verify_timeout)
        record["verify"] = outcome(verified, "verify")
        if record["verify"]["status"] == "ok":
            try:
                record["verify"].update(verify_summary(json.loads(out.read_text())))
            except (OSError, ValueError) as exc:
                record["verify"].update(status="crashed", type="no JSON written",
                                        message=f"{exc}; stderr: {verified['stderr'][-200:]}")

        if record["kind"] == "elementwise" and any(c["nonfinite_extra"] + c["nonfinite_missing"]
                                                   for c in record["verify"].get("checks", [])):
            probed = run([py, "-c", PROBE_SCRIPT, entry.name, str(spec), *ok], env, verify_timeout)
            try:
                record["verify"]["nonfinite_points"] = json.loads(probed["stdout"].strip().splitlines()[-1])
            except (ValueError, IndexError):
                record["verify"]["nonfinite_points"] = {"probe failed": [[0, 0, 0]]}
                record["verify"]["probe_error"] = probed["stderr"][-300:]

        shown = run([py, "-m", "actgen", "show", entry.name, "--spec", str(spec)], env, timeout)
        record["show"] = outcome(shown, "show")
        if record["show"]["status"] == "ok":
            record["show"]["kernels"] = parse_show(shown["stdout"])
    return record


# ---- the run -----------------------------------------------------------------------------------

def machine() -> dict:
    from actgen.benchmark.machine import machine as bench_machine

    info = bench_machine()
    try:
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "actgen", "templates"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        info["actgen_dirty"] = bool(dirty)
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        info["load_average"] = os.getloadavg()
    except OSError:
        pass
    return info


def write_json(path: Path, data: dict) -> None:
    """The run's header indented, each entry on a line of its own (readable diffs, a smaller file)."""
    head = json.dumps({k: v for k, v in data.items() if k != "entries"}, indent=1)
    body = ",\n".join(json.dumps(e, separators=(",", ":")) for e in data.get("entries", []))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(head[:-2] + ',\n "entries": [\n' + body + "\n ]\n}\n", encoding="utf-8")
    os.replace(tmp, path)


def progress(i: int, n: int, r: dict) -> str:
    b = r.get("build", {})
    text = f"[{i}/{n}] {r['name']}: build {b.get('status')} {b.get('seconds', 0):.1f} s"
    if b.get("status") in ("crashed", "refused"):
        text += f" ({b.get('type', '')} {b.get('message', '')[:100]})"
    v = r.get("verify")
    if v:
        text += f"; verify {v['status']}" + (f", {v.get('over_budget')} over budget" if v["status"] == "ok" else "")
    return text


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", "-j", type=int, default=1, help="entries run at once (default 1)")
    p.add_argument("--only", nargs="+", metavar="NAME", help="only these corpus entries")
    p.add_argument("--json", default="docs/corpus.json", help="where the records go")
    p.add_argument("--markdown", default="docs/corpus.md", help="where the report goes")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per build, load and show (120)")
    p.add_argument("--verify-timeout", type=float, default=300.0, help="seconds per verify (300)")
    p.add_argument("--resume", action="store_true", help="keep records of unchanged tables from --json")
    p.add_argument("--render-only", action="store_true", help="write --markdown from --json, run nothing")
    args = p.parse_args(argv)

    json_path, md_path = Path(args.json), Path(args.markdown)
    if args.render_only:
        md_path.write_text(render(json.loads(json_path.read_text())), encoding="utf-8")
        return 0
    todo = entries()
    names = [e.name for e in todo]
    if len(set(names)) != len(names):
        raise SystemExit(f"duplicate corpus names: {sorted({n for n in names if names.count(n) > 1})}")
    if args.only:
        unknown = set(args.only) - set(names)
        if unknown:
            raise SystemExit(f"not in the corpus: {', '.join(sorted(unknown))}")
        todo = [e for e in todo if e.name in args.only]
    command = "PYTHONPATH=. python benchmarks/corpus.py " + " ".join(argv or sys.argv[1:])
    run_info = {"command": command, "machine": machine(), "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                "timeouts": {"build_load_show": args.timeout, "verify": args.verify_timeout}, "jobs": args.jobs}
    old = json.loads(json_path.read_text()) if (args.resume or args.only) and json_path.exists() else {}
    previous = {r["name"]: r for r in old.get("entries", [])}
    records = {n: previous[n] for n in names if n in previous}
    if args.resume:
        todo = [e for e in todo if previous.get(e.name, {}).get("digest") != e.digest]
    if old:     # a partial run joins the records of an earlier one: the header keeps both
        data = {**{k: v for k, v in old.items() if k != "entries"}, "corpus_size": len(names), "entries": []}
        data["reruns"] = old.get("reruns", []) + [{**run_info, "entries": [e.name for e in todo]}]
        current = data["reruns"][-1]
    else:
        data = {**run_info, "corpus_size": len(names), "entries": []}
        current = data
    lock, done = threading.Lock(), [0]

    def finish(record):
        with lock:
            done[0] += 1
            record["actgen_commit"] = run_info["machine"].get("actgen_commit")
            records[record["name"]] = record
            data["entries"] = [records[n] for n in names if n in records]
            current["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
            write_json(json_path, data)
            print(progress(done[0], len(todo), record), file=sys.stderr, flush=True)

    with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
        futures = [pool.submit(run_entry, e, args.timeout, args.verify_timeout) for e in todo]
        for future in concurrent.futures.as_completed(futures):
            finish(future.result())
    data["entries"] = [records[n] for n in names if n in records]
    write_json(json_path, data)
    md_path.write_text(render(data), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
