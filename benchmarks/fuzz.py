"""Fuzz `actgen build` with random specs from the grammar: no traceback, no hang, ever.

    python benchmarks/fuzz.py --examples 10000 --jobs 2 --json benchmarks/fuzz.json > benchmarks/fuzz.md

Each spec (tests/strategies.py: random compositions of every function the grammar allows,
parameters, Piecewise, powers) is written to a file and built by the whole command, `python -m
actgen build FILE --backend numpy` (or --backend both with --c: then the C compiler runs too), in
a worker process that keeps its imports; a build that takes longer than --timeout seconds is
killed and counted as a hang. Every outcome is one of:

  built       exit status 0
  refused     exit status 1 with one `actgen: error:` message (a spec the grammar or the
              numerics refuse, said in one line) and no traceback
  crash       anything else: a traceback, another status, output that is not actgen's
  hang        over the timeout

The report lists every crash and hang with its spec; those become regression cases in
tests/test_fuzz.py. Not part of the test suite (hours for 10,000 specs on 2 cores).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import hypothesis  # noqa: E402
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402

from strategies import specs  # noqa: E402


def draw_specs(count: int, seed: int, max_depth: int) -> list[str]:
    """Up to ``count`` spec texts from the strategy, the same for the same seed."""
    drawn: list[str] = []

    @hypothesis.seed(seed)
    @settings(max_examples=count, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(specs(max_depth=max_depth))
    def collect(spec):
        drawn.append(spec.toml)

    collect()
    return drawn


def build(spec_text: str, backend: str, timeout: float, cache: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix="actgen-fuzz-") as tmp:
        path = Path(tmp) / "fuzz.toml"
        path.write_text(spec_text, encoding="utf-8")
        env = dict(os.environ, ACTGEN_CACHE_DIR=str(cache),
                   PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
        start = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, "-m", "actgen", "build", str(path), "--backend", backend],
                                  capture_output=True, text=True, env=env, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"outcome": "hang", "seconds": timeout, "spec": spec_text}
        seconds = time.perf_counter() - start
    err = proc.stderr
    if proc.returncode == 0:
        outcome = "built"
    elif (proc.returncode == 1 and "Traceback" not in err and err.startswith("actgen: error:")):
        outcome = "refused"
    else:
        outcome = "crash"
    return {"outcome": outcome, "seconds": round(seconds, 2), "status": proc.returncode,
            "stderr": err.strip().splitlines()[:3] if outcome != "built" else [], "spec": spec_text}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--max-depth", type=int, default=3)
    parser.add_argument("--c", action="store_true", help="build the C backend too (slower)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    texts = draw_specs(args.examples, args.seed, args.max_depth)
    backend = "both" if args.c else "numpy"
    results = []
    with tempfile.TemporaryDirectory(prefix="actgen-fuzz-cache-") as cache:
        with ThreadPoolExecutor(args.jobs) as pool:
            for i, result in enumerate(pool.map(lambda t: build(t, backend, args.timeout, Path(cache)), texts), 1):
                results.append(result)
                if i % 100 == 0:
                    counts = collections.Counter(r["outcome"] for r in results)
                    print(f"{i}/{len(texts)}: {dict(counts)}", file=sys.stderr)
    counts = collections.Counter(r["outcome"] for r in results)
    seconds = sorted(r["seconds"] for r in results)
    print(f"# Fuzzing `actgen build` ({len(results)} random specs, seed {args.seed}, backend {backend}, "
          f"timeout {args.timeout:g} s)\n")
    print("| outcome | count |\n|---|---:|")
    for outcome in ("built", "refused", "crash", "hang"):
        print(f"| {outcome} | {counts.get(outcome, 0)} |")
    if seconds:
        print(f"\nBuild time: median {seconds[len(seconds) // 2]:.2f} s, max {seconds[-1]:.2f} s.")
    reasons = collections.Counter(r["stderr"][0].split(":", 3)[-1].strip()[:90] for r in results
                                  if r["outcome"] == "refused" and r["stderr"])
    if reasons:
        print("\nMost common refusals:\n")
        for reason, n in reasons.most_common(15):
            print(f"- {n} x {reason}")
    bad = [r for r in results if r["outcome"] in ("crash", "hang")]
    if bad:
        print("\n## Crashes and hangs\n")
        for r in bad:
            print(f"- {r['outcome']}: `{r['spec'].strip()}`: {' / '.join(r.get('stderr', []))[:300]}")
    if args.json:
        args.json.write_text(json.dumps({"counts": counts, "results": results}, indent=1), encoding="utf-8")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
