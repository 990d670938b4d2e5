"""Learnable parameters off their defaults (issue 26, item 2): float32 speed at +10% and +50%.

    python benchmarks/learnable_speed.py [--out benchmarks/learnable_speed.md]

Training moves a learnable parameter at every step. A float32 kernel that selection computes in
float on an interval keeps that path for the parameters in the box selection certified (default
+-50%, select.Choice.param_box; actgen verify measures the kernels there); outside it, every block
is computed in double. This times ``act(x)`` and ``act.backward(x, dy)`` in float32 with every
learnable parameter at its default, at 1.1 and 1.5 times it (all moved at once), and at 2.5 times
it (outside the box: the double path, for scale), at 2^22 elements on 2 threads and 2^16 on 1
thread (``--config``), medians (and fastest) of interleaved repeats (actgen.benchmark.timing), and
gives each one's speed relative to the defaults (time at the defaults / time there: >= 0.9 is
within 10%).
The activations: swish (beta) and those of benchmarks/corpus whose float32 kernels are computed in
float on an interval and have learnable parameters.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import actgen                                                        # noqa: E402
from actgen.bench import config_pair                                 # noqa: E402
from actgen.benchmark.machine import machine                         # noqa: E402
from actgen.benchmark.report import markdown_table, shown_size, write_text  # noqa: E402
from actgen.benchmark.timing import time_together                    # noqa: E402

CORPUS = ROOT / "benchmarks" / "corpus"
#: (name, spec file or None for a built-in)
ACTIVATIONS = (("swish", None), ("preu", CORPUS / "exponential_linear.toml"),
               ("delu", CORPUS / "exponential_linear.toml"), ("reltanh", CORPUS / "exponential_linear.toml"),
               ("lrelu_plus", CORPUS / "algebraic_sqrt.toml"))
FACTORS = (1.0, 1.1, 1.5, 2.5)
#: "cpu": the process's CPU time (its threads' sum), which other jobs on a crowded machine do not
#: add to; "wall": elapsed time
CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}
DEFAULT_CONFIGS = ((1 << 22, 2), (1 << 16, 1))


def measure(act, size: int, threads: int, repeats: int, min_time: float, clock: str = "cpu") -> dict:
    """{(op, statistic): [seconds at each of FACTORS]} for one activation and configuration, the
    statistic "seconds" (the median of the repeats) or "best" (the fastest repeat)."""
    actgen.set_num_threads(threads)
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(size) * 2).astype(np.float32)
    dy = rng.standard_normal(size).astype(np.float32)
    y, dx = np.empty_like(x), np.empty_like(x)
    settings = [{p: float(np.float32(act.params[p] * f)) for p in act.learnable} for f in FACTORS]
    fns = {"forward": [lambda s=s: act(x, out=y, **s) for s in settings],
           "backward": [lambda s=s: act.backward(x, dy, out=dx, **s) for s in settings]}
    timed = time_together(fns["forward"] + fns["backward"], repeats, min_time, clock=CLOCKS[clock])
    n = len(FACTORS)
    return {(op, stat): [t[stat] for t in part] for op, part in (("forward", timed[:n]), ("backward", timed[n:]))
            for stat in ("seconds", "best")}


def box_text(act) -> str:
    boxes = act.meta.get("float_params", {})
    parts = []
    for kernel, box in boxes.items():
        ranges = ", ".join(f"{p} in [{lo:g}, {hi:g}]" for p, (lo, hi) in box.items())
        parts.append(f"{kernel}: {ranges}")
    return "; ".join(parts) or "none"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "learnable_speed.md"))
    p.add_argument("--config", nargs="+", type=config_pair, default=list(DEFAULT_CONFIGS),
                   metavar="SIZE:THREADS", help="sizes with their thread counts (default: 2^22:2 2^16:1)")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--min-time", type=float, default=0.02)
    p.add_argument("--clock", choices=sorted(CLOCKS), default="cpu",
                   help="cpu: this process's CPU time (default; steadier on a shared machine), wall: elapsed")
    args = p.parse_args(argv)
    body, best, boxes = [], [], []
    for name, spec in ACTIVATIONS:
        act = actgen.load(name, spec=None if spec is None else str(spec))
        defaults = ", ".join(f"{q} = {act.params[q]:g}" for q in act.learnable)
        boxes.append([name, defaults, box_text(act)])
        for size, threads in args.config:
            times = measure(act, size, threads, args.repeats, args.min_time, args.clock)
            for (op, stat), seconds in times.items():
                base = seconds[0]
                (body if stat == "seconds" else best).append(
                    [name, f"{shown_size(size)}, {threads}", op, f"{base * 1e6:.0f}"] + [f"{base / s:.2f}" for s in seconds[1:]])
    m = machine()
    command = "python benchmarks/learnable_speed.py" + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:]))
    lines = [f"<!-- generated by `{command}`; do not edit -->",
             "# Learnable parameters off their defaults: float32 speed", "",
             f"Machine: {m.get('cpu')}, {m.get('usable_cpus')} CPUs, {m.get('cc')}; actgen commit "
             f"{m.get('actgen_commit')}. A shared 2-core machine (other jobs ran at the same time): medians of "
             f"{args.repeats} interleaved repeats of the {'CPU time of the process (its threads summed)' if args.clock == 'cpu' else 'elapsed time'}; compare the ratios, not the absolute times.", ""]
    lines += markdown_table("Certified boxes (float32 kernels computed in float on an interval)",
                            ["activation", "learnable (defaults)", "box"], boxes, [])
    lines += markdown_table(
        "Speed relative to the defaults",
        ["activation", "elements, threads", "op", "us at the defaults", "x1.1", "x1.5", "x2.5 (outside)"], body,
        ["Each column: the time at the defaults divided by the time with every learnable parameter at that "
         "multiple of its default (1.00: as fast; >= 0.90: within 10%). x2.5 lies outside the certified box: "
         "every block in double, as every value but the defaults was before."])
    lines += markdown_table(
        "Speed relative to the defaults, fastest repeats",
        ["activation", "elements, threads", "op", "us at the defaults", "x1.1", "x1.5", "x2.5 (outside)"], best,
        ["The same runs, each setting's fastest repeat instead of the median: less sensitive to the other "
         "jobs of a shared machine."])
    write_text(args.out, "\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
