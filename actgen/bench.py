"""`actgen bench`: throughput of actgen's kernels against NumPy, PyTorch, JAX and numexpr, in one run.

For each activation, dtype, array size and thread count it measures (median of repeats, after a
warm-up) the forward, backward, backward_from_output and forward_with_derivative kernels of

- ``actgen``        the C kernels, called with ``out=``;
- ``actgen_numpy``  actgen's NumPy backend, with ``out=``;
- ``numpy``         NumPy as users write it (a hand-written formula per common built-in, allocating);
- ``torch_out``     PyTorch's CPU kernels with a preallocated ``out=`` (``grad_input=`` for backward);
- ``torch``         PyTorch's ordinary allocating calls;
- ``numexpr``       numexpr (when installed) evaluating the formula as users write it, ``out=``
                    preallocated, with the same thread count;
- ``copy``          the copy bandwidth (the faster of a threaded ``torch`` copy and ``np.copyto``),
                    the yardstick of a memory-bound kernel;

and, for any spec, forward, backward and a training step of actgen against the activation written
from its SymPy expression as a user would write it: ``torch_eager``, ``torch_compile`` (Inductor,
compile time reported apart), ``jax`` (jax.jit, backward through jax.vjp), numexpr, and
``actgen_torch`` (actgen through its autograd Function); with each one's float32 accuracy against
mpmath on verify's inputs (actgen.benchmark: user_peers, symbolic, accuracy).

It reports Gelem/s, GB/s (bytes read + written), the ratios of actgen to each peer and the % of
the copy bandwidth; a peer that is not installed or cannot express the activation says why in its
column. Timings are printed and, optionally, written as JSON and markdown with a description of
the machine, and drawn as throughput against size (``--plot``, matplotlib).

This module is the verb (its arguments and its run); ``actgen.benchmark`` holds what it runs.
Only light imports at top level: actgen.cli imports this module on every command.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys

from .benchmark.names import IMPLS, STANDARD
from .benchmark.plot import plot
from .benchmark.report import format_markdown, format_text, write_text
from .errors import ActgenError

HELP = "measure kernel throughput against NumPy, PyTorch (eager, torch.compile), JAX and numexpr"
DESCRIPTION = ("Measure Gelem/s of actgen's C kernels (forward, backward, backward_from_output, "
               "forward_with_derivative), actgen's NumPy backend, NumPy as users write it, PyTorch "
               "(out= and allocating) and numexpr when installed, and the copy bandwidth, in one run (medians of "
               "repeats after a warm-up), and print the ratios. For any spec, also forward, backward and a "
               "training step against the activation written from its expression with torch (eager and "
               "torch.compile, with its compile time), jax.jit and numexpr, and each one's float32 accuracy "
               "against mpmath. Without --size/--threads/--config it runs the standard set: 2^24 elements with "
               "all threads, and 2^16 and 2^12 elements with 1 thread (call overhead).")


def _size(text: str) -> int:
    """An element count: 4096, 2^12, 2**12 or 1e6."""
    t = text.strip().replace("**", "^")
    try:
        if "^" in t:
            base, exp = t.split("^", 1)
            value = int(base) ** int(exp)
        else:
            value = int(float(t)) if "e" in t.lower() else int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an element count: {text!r} (e.g. 4096, 2^24, 1e6)") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"an element count must be >= 1, not {text!r}")
    return value


def config_pair(text: str) -> tuple[int, int]:
    """SIZE:THREADS, e.g. 2^22:2."""
    size, sep, threads = text.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"not SIZE:THREADS: {text!r} (e.g. 2^16:1 2^22:2)")
    return _size(size), _positive(threads)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, not {text!r}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("names", nargs="*", metavar="NAME",
                   help="built-in activations or spec files (.toml: all its elementwise tables); "
                        "default: every built-in elementwise activation (as --all)")
    p.add_argument("--all", action="store_true", help="every built-in elementwise activation")
    p.add_argument("--size", "--sizes", dest="size", nargs="+", type=_size, metavar="N",
                   help="element counts, e.g. 2^24 65536 (default: the standard set, see above)")
    p.add_argument("--threads", nargs="+", type=_positive, metavar="T",
                   help="thread counts (default: the standard set; all CPUs with --size)")
    p.add_argument("--config", nargs="+", type=config_pair, metavar="SIZE:THREADS",
                   help="element counts with their thread counts, e.g. 2^16:1 2^22:2 (instead of --size "
                        "and --threads, which measure every size with every thread count)")
    p.add_argument("--dtype", nargs="+", choices=["float32", "float64"], default=["float32", "float64"])
    p.add_argument("--repeats", type=_positive, default=5, help="timed repeats; the median is reported "
                   "(default: 5; a cell slower than 4 s in all gets fewer: at least 3, 1 for calls over 0.5 s)")
    p.add_argument("--min-time", type=float, default=0.02, metavar="SECONDS",
                   help="each repeat runs the call often enough to take at least this long (default 0.02)")
    p.add_argument("--impl", nargs="+", choices=IMPLS, default=list(IMPLS),
                   help="which implementations to measure (default: all; torch ones when installed)")
    p.add_argument("--no-accuracy", action="store_true",
                   help="leave out the float32 accuracy of actgen and of each peer against mpmath on "
                        "verify's inputs (a compile per peer, and mpmath references: seconds per activation)")
    p.add_argument("--progress", action="store_true", help="a line per activation on stderr")
    p.add_argument("--json", metavar="FILE", help="write all measurements and ratios as JSON")
    p.add_argument("--markdown", metavar="FILE", help="write the ratio tables and the machine as markdown")
    p.add_argument("--plot", metavar="FILE.png", help="draw Gelem/s against the array size, per activation "
                   "and op, every implementation and the copy bandwidth's limit (needs matplotlib)")


def _configs(args) -> list[tuple[int, int]]:
    if args.config:
        if args.size or args.threads:
            raise ActgenError("actgen bench: give --config SIZE:THREADS or --size/--threads, not both")
        return list(args.config)
    ncpu = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if args.size is None and args.threads is None:
        return [(n, t or ncpu) for n, t in STANDARD]
    return [(n, t) for n in (args.size or [1 << 24]) for t in (args.threads or [ncpu])]


def run(args) -> int:
    # the one import deferred to the verb's run: actgen.cli imports this module to build its
    # parser on every command, and the measuring engine imports SymPy and the verifier (0.4 s)
    from .benchmark import pinned

    if args.all and args.names:
        raise ActgenError("actgen bench: give activation names or --all, not both")
    if args.plot and not _has_matplotlib():
        raise ActgenError("actgen bench: --plot needs matplotlib, which is not installed: pip install "
                          "matplotlib (or 'actgen[compare]'), or leave out --plot")
    configs = _configs(args)
    report = pinned.bench(args.names, sizes_threads=configs, dtypes=tuple(args.dtype), repeats=args.repeats,
                           min_time=args.min_time, impls=tuple(args.impl),
                           accuracy_of=() if args.no_accuracy else ("float32",),
                           log=lambda msg: print(f"  {msg}", file=sys.stderr, flush=True) if args.progress else None)
    command = "actgen bench " + " ".join(sys.argv[2:]) if len(sys.argv) > 1 and sys.argv[1] == "bench" else None
    report["command"] = command
    print(format_text(report))
    try:
        if args.json:
            write_text(args.json, json.dumps(report, indent=1, default=float) + "\n")
        if args.markdown:
            write_text(args.markdown, format_markdown(report, command))
        if args.plot:
            plot(report, args.plot)
    except OSError as exc:
        raise ActgenError(f"cannot write {exc.filename}: {exc.strerror}") from None
    return 0


def _has_matplotlib() -> bool:
    return importlib.util.find_spec("matplotlib") is not None
