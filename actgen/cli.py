"""The ``actgen`` command line.

Every error is one line, ``actgen: error: ...`` on stderr, never a traceback (``ACTGEN_DEBUG=1``
prints the traceback too). Exit status: 0 success, 1 an error (a spec, a build, a kernel over
its verify budget...), 2 a usage error (the command line itself), 130 interrupted. ``build``
and ``verify`` go on past a table that fails: each failure is reported, and the status is 1.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import difflib
import importlib
import importlib.util
import json
import multiprocessing
import os
import sys
import time
import traceback
from pathlib import Path

from . import fastcall, library
from .build import indexed_artifact, spec_key, table_origin, write_index
from .cache import write_atomic
from .errors import ActgenError, SpecError, StageError, ToolchainError, stage
from .orders import derived_table, order_label
from .specfile import read_spec_text, read_tables, resolve_table

EXIT_STATUS = ("exit status: 0 success; 1 an error (a spec, a build, a kernel over its verify budget...); "
               "2 a usage error (an unknown option, a missing or invalid argument); 130 interrupted. "
               "ACTGEN_DEBUG=1 prints the traceback of an error.")

NEW_TEMPLATE = '''\
# actgen spec file: one [table] per activation.
#   actgen build {file}                   compile it (C with OpenMP, and NumPy)
#   actgen show {name} --spec {file}      its derivatives and the generated C
#   python -c "import actgen; print(actgen.load('{name}', spec='{file}')([-1.0, 0.0, 1.0]))"
[{name}]
# A SymPy expression in x. Allowed: + - * / **, numbers, pi, E, the parameters below, and
#   exp log sqrt Abs sign Max Min Piecewise Heaviside tanh sinh cosh atan sin cos erf erfc
#   sigmoid softplus log1p expm1
# with comparisons (x > 0, combined with & | ~) inside Piecewise((value, condition), ..., (value, True)).
expr = "x * erf(log(1 + exp(beta * x)))"
# Named scalar parameters and their defaults (optional).
params = {{ beta = 1.0 }}
# Parameters that also get a gradient kernel, sum(dy * df/dp) (optional).
learnable = ["beta"]
description = "{name}: x * erf(softplus(beta * x)), a SERF-like activation (edit me)"
'''


def _print_err(message: str) -> None:
    print(f"actgen: error: {message}", file=sys.stderr)


def _debug_trace(exc: BaseException) -> str | None:
    """The traceback of ``exc`` (and what it came from) where ACTGEN_DEBUG=1 asks for it."""
    if os.environ.get("ACTGEN_DEBUG") != "1":
        return None
    return "".join(traceback.format_exception(exc))


def _report(message: str, trace: str | None = None) -> None:
    if trace:
        print(trace, file=sys.stderr, end="")
    _print_err(message)


@dataclasses.dataclass
class SpecTable:
    """One activation named by the SPEC arguments of build or verify, parsed, or the error
    that stopped it (``name`` is None where the file itself could not be read)."""
    path: str                   # the spec file as given, or actgen/library/NAME.toml
    builtin: bool
    name: str | None
    table: dict | None = None
    act: object = None
    error: str | None = None
    trace: str | None = None

    @property
    def spec(self) -> str | None:
        """What actgen.load takes as ``spec=``."""
        return None if self.builtin else self.path

    def failed(self, exc: ActgenError) -> "SpecTable":
        self.error, self.trace = _located(exc, self.path, self.name), _debug_trace(exc)
        return self


def _located(exc: ActgenError, path: str, name: str | None, backend: str | None = None) -> str:
    """The error line: the message, after the file, activation and backend where it does not name them."""
    if isinstance(exc, (SpecError, StageError)) or str(exc).startswith(f"{path}:"):
        return str(exc)
    where = path + (f" [{name}]" if name else "") + (f" ({backend})" if backend else "")
    return f"{where}: {exc}"


def _spec_tables(items: list[str]) -> list[SpecTable]:
    """Every activation of each SPEC argument (a .toml file, or a built-in name), parsed; a
    table that fails carries its error line and does not stop the others."""
    from .spec import parse_table          # SymPy: imported by the verbs that parse

    found = []
    for item in items:
        builtin = not (item.endswith(".toml") or Path(item).exists())
        if builtin and item not in library.names():
            close = difflib.get_close_matches(item, library.names(), n=3)
            found.append(SpecTable(item, False, None, error=(
                f"{item}: neither a spec file nor a built-in activation"
                + (f" (did you mean {', '.join(close)}?)" if close else "")
                + "; name a .toml file, or a built-in (`actgen list` shows them)")))
            continue
        path = library.display_path(item) if builtin else item
        try:
            with stage("reading the spec file", path=path):
                tables = read_tables(library.read(item) if builtin else read_spec_text(item), path=path)
        except ActgenError as exc:
            found.append(SpecTable(path, builtin, None).failed(exc))
            continue
        for name in tables:
            entry = SpecTable(path, builtin, name)
            try:
                with stage("parsing", path=path, activation=name):
                    entry.table = resolve_table(tables, name, path)
                    entry.act = parse_table(name, entry.table, path=path)
            except ActgenError as exc:
                entry.failed(exc)
            found.append(entry)
    return found


def _each_table(items: list[str], work, progress=None) -> tuple[list, bool]:
    """(the results of ``work(table)`` for every table of the SPEC arguments, whether one failed):
    a table that fails (parsing it, or in ``work``) is reported in one line and the others go
    on; ``work`` returns None for a table it skips; ``progress(table, results, seconds)`` is a
    line for stderr."""
    results, failed = [], False
    for t in _spec_tables(items):
        if t.error is not None:
            failed = True
            _report(t.error, t.trace)
            continue
        started = time.perf_counter()
        try:
            found = work(t)
        except ActgenError as exc:
            failed = True
            _report(_located(exc, t.path, t.name), _debug_trace(exc))
            continue
        if found is not None:
            results.extend(found)
            if progress:
                print(progress(t, found, time.perf_counter() - started), file=sys.stderr)
    return results, failed


def _build_activation(job) -> list[tuple[str, str, str, str | None]]:
    """Build one activation with each backend, and the derivative orders ``actgen build`` builds
    with it (build_orders): [(backend, status, module file or error line, traceback for
    ACTGEN_DEBUG or None)]. Lowering (derivation and the measured choice of forms) is skipped
    when the cache index already knows the artifact of this exact table. Runs in a worker
    process for parallel builds: it returns text, never raises."""
    act, table, path, backends = job
    lines = _build_one(act, table, path, backends, "")
    if any(status == "error" for _, status, _, _ in lines):
        return lines
    for k in build_orders(act.kind):
        name, derived = derived_table(act.name, table, k)
        lines += _build_one((act, k), derived, path, backends, f" {order_label(k)}")
    return lines


def build_orders(kind: str) -> tuple[int, ...]:
    """The derivative orders built with an activation: order 1 of an elementwise one (its
    backward is f''), the gate's or score's g and g' of a gated or rowwise one (their framework
    wrappers differentiate around them): second derivatives need no SymPy at run time."""
    return (1,) if kind == "elementwise" else (0, 1)


def _build_one(act, table, path, backends, label) -> list[tuple[str, str, str, str | None]]:
    from .higher import derived_activation                 # SymPy and the code generators
    from .pipeline import build, lower_activation

    lines, lowered = [], None
    if isinstance(act, tuple):
        parent, k = act
        with stage("differentiating", path=path, activation=parent.name):
            try:
                act = derived_activation(parent, k)
            except ActgenError as exc:
                return [(backends[0] + label, "error", _located(exc, path, parent.name), _debug_trace(exc))]
    for backend in backends:
        started = time.perf_counter()
        key = spec_key(act.name, table, backend)
        try:
            artifact = indexed_artifact(key, act.name)
            if artifact is None:
                if lowered is None:
                    with stage("lowering (derivatives and the choice of stable forms)", path=path,
                               activation=act.name):
                        lowered = lower_activation(act)
                with stage(f"building the {backend} module", path=path, activation=act.name):
                    artifact = build(act, backend, table_origin(act.name), lowered)
                    write_index(key, artifact)
        except ToolchainError as exc:
            lines.append((backend + label, "skipped", f"{exc} (--backend numpy builds the NumPy kernels only)", None))
            continue
        except ActgenError as exc:
            lines.append((backend + label, "error", _located(exc, path, act.name, backend), _debug_trace(exc)))
            if lowered is None:     # the table itself failed (e.g. its derivative): say it once
                break
            continue
        status = (f"compiled in {time.perf_counter() - started:.2f} s" if artifact.compiled
                  else f"cached ({time.perf_counter() - started:.2f} s)")
        lines.append((backend + label, status, str(artifact.module_file), None))
    return lines


def cmd_build(args) -> int:
    items = list(args.spec) + (library.names() if args.builtins else [])
    if not items:
        _print_err("nothing to build: name spec files or built-ins, or pass --builtins")
        return 2
    backends = ["c", "numpy"] if args.backend == "both" else [args.backend]
    tables = _spec_tables(items)
    jobs = [(t.act, t.table, t.path, backends) for t in tables if t.error is None]
    workers = max(1, min(args.jobs or os.cpu_count() or 1, len(jobs)))
    pool = None
    if workers > 1:
        # fork: the workers inherit SymPy and the parsed activations (no re-import)
        pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
        futures = [pool.submit(_build_activation, job) for job in jobs]
    # the C fast path of a call (actgen/fastcall.py), which every C load needs: built beside the
    # kernels (after the pool's fork: its workers start with the first submit), once per cache
    fast = fastcall.start() if "c" in backends and jobs else None
    failed, built_c, done = False, False, 0
    try:
        for t in tables:
            if t.error is not None:
                failed = True
                _report(t.error, t.trace)
                continue
            if pool is None:
                lines = _build_activation(jobs[done])
            else:
                try:
                    lines = futures[done].result()
                except concurrent.futures.process.BrokenProcessPool:
                    lines = [(backends[0], "error", f"{t.path} [{t.name}]: the worker process building it died "
                                                    "(out of memory, or killed); build it alone: --jobs 1", None)]
            done += 1
            for backend, status, where, trace in lines:
                if status == "error":
                    failed = True
                    _report(where, trace)
                elif status == "skipped":
                    print(f"{t.name:22s} [{backend:5s}] skipped: {where}", file=sys.stderr)
                else:
                    built_c = built_c or backend.startswith("c")
                    print(f"{t.name:22s} [{backend:5s}] {status:22s} {where}", flush=True)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        if fast is not None:
            fast.join()
            if not built_c:             # a command that built nothing leaves nothing behind
                fastcall.discard_if_built_here()
    return 1 if failed else 0


def cmd_list(args) -> int:
    from . import catalogue

    if args.markdown:
        from .docs import render_activations

        sys.stdout.write(render_activations())
    elif args.long:
        print(catalogue.format_long(catalogue.build()))
    else:
        print(catalogue.format_terse(catalogue.terse_rows()))
    return 0


def cmd_new(args) -> int:
    from .spec import NAME_RE

    if not NAME_RE.match(args.name):
        _print_err(f"invalid activation name {args.name!r}: use lowercase letters, digits and _, "
                   "starting with a letter")
        return 2
    sys.stdout.write(NEW_TEMPLATE.format(name=args.name, file=f"{args.name}.toml"))
    return 0


def cmd_verify(args) -> int:
    from .ir import DTYPES
    from .verify import format_table, verify

    items = list(args.spec) + (library.names() if args.all else [])
    if not items:
        _print_err("nothing to verify: name spec files or built-ins, or pass --all")
        return 2
    if args.exhaustive:
        ignored = ([f"--dtype {args.dtype}"] * (args.dtype not in ("both", "float32"))
                   + [f"--backend {args.backend}"] * (args.backend not in ("both", "c"))
                   + ["--markdown"] * bool(args.markdown) + ["--quick"] * bool(args.quick))
        if ignored:
            _print_err(f"verify --exhaustive checks the float32 C kernels at every input: {', '.join(ignored)} "
                       "does not apply to it; drop it, or verify without --exhaustive")
            return 2
        return _verify_exhaustive(items, args)
    dtypes = DTYPES if args.dtype == "both" else (args.dtype,)
    backends = ("c", "numpy") if args.backend == "both" else (args.backend,)

    def work(t: SpecTable) -> list:
        with stage("verifying", path=t.path, activation=t.name):
            return verify(t.act, spec=t.spec, backends=backends, dtypes=dtypes, quick=args.quick, orders=args.orders)

    results, failed = _each_table(items, work, args.progress and (
        lambda t, found, seconds: f"  {t.name}: {len(found)} checks, {sum(not r.passed for r in found)} over "
                                  f"budget ({seconds:.1f} s)"))
    print(format_table(results))
    if args.json:
        write_atomic(Path(args.json), json.dumps([r.as_dict() for r in results], indent=1) + "\n")
    if args.markdown:
        from .docs import render_verification, verify_command, write_page

        write_page(Path(args.markdown),
                   render_verification([r.as_dict() for r in results], verify_command(args)))
    return 0 if all(r.passed for r in results) and not failed else 1


def _verify_exhaustive(items, args) -> int:
    """verify --exhaustive: every float32 input, the float32 C kernels against the float64 ones."""
    from .exhaustive import format_table, run
    from .loading import load


    def work(t: SpecTable) -> list | None:
        if t.act.kind != "elementwise":
            print(f"  {t.name}: skipped ({t.act.kind}: not a function of one input)", file=sys.stderr)
            return None
        loaded = load(t.name, spec=t.spec, backend="c")
        with stage("verifying every float32 input", path=t.path, activation=t.name):
            return run(loaded, t.act)

    results, failed = _each_table(items, work, args.progress and (
        lambda t, found, seconds: f"  {t.name}: max {max(r.max_ulp for r in found):g} ULP ({seconds:.0f} s)"))
    print(format_table(results))
    if args.json:
        write_atomic(Path(args.json), json.dumps([r.as_dict() for r in results], indent=1) + "\n")
    return 0 if all(r.passed for r in results) and not failed else 1


def cmd_generate(args) -> int:
    from .generate import check, write

    out = Path(args.out)
    if args.check:
        problems = check(out)
        for line in problems:
            print(line)
        return 1 if problems else 0
    written = write(out)
    print(f"wrote {len(written)} files under {out}")
    return 0


EXTENSION_VERBS = [
    ("bench", "actgen.bench"),
    ("compare", "actgen.compare"),
    ("emit", "actgen.emit"),
    ("docs", "actgen.docs"),
    ("vectorised", "actgen.vectorised"),
]
EXTENSION_VERBS = [(verb, module) for verb, module in EXTENSION_VERBS
                   if importlib.util.find_spec(module) is not None]


def _count(text: str) -> int:
    """A whole number >= 0, for argparse (which makes anything else a usage error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def _order_arg(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"the order is an integer >= 0, not {text!r}")
    return int(text)


def cmd_show(args) -> int:
    from . import show          # SymPy and the code generators: imported for this verb only

    return show.run(args)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="actgen", description="Compile activation functions from TOML specs into verified "
        "C (OpenMP) and NumPy kernels with symbolic derivatives.", epilog=EXIT_STATUS)
    from . import __version__

    p.add_argument("--version", action="version", version=f"actgen {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def add_verb(name: str, **kwargs) -> argparse.ArgumentParser:
        return sub.add_parser(name, epilog=EXIT_STATUS, **kwargs)

    b = add_verb("build", help="parse, derive, generate and compile spec files or built-ins",
                       description="Build every activation of each SPEC (a .toml file or a built-in "
                       "name) into the cache; prints what it built and where.")
    b.add_argument("spec", nargs="*", help="spec files or built-in names")
    b.add_argument("--builtins", action="store_true", help="also build every built-in activation")
    b.add_argument("--backend", choices=["c", "numpy", "both"], default="both",
                   help="which kernels to build (default: both)")
    b.add_argument("--jobs", "-j", type=_count, default=0,
                   help="activations built in parallel (default: the number of CPUs)")
    b.set_defaults(func=cmd_build)

    lst = add_verb("list", help="the catalogue of built-in activations",
                         description="The built-in activations: name, kind, parameters with defaults "
                         "(* = learnable) and the frameworks that have them.")
    form = lst.add_mutually_exclusive_group()
    form.add_argument("--long", action="store_true",
                      help="also formulas, derivatives, kinks, frameworks' differences and references")
    form.add_argument("--markdown", action="store_true",
                      help="print docs/activations.md (what `actgen docs` writes)")
    lst.set_defaults(func=cmd_list)

    s = add_verb("show", help="an activation's formula, derivatives and generated code")
    s.add_argument("name")
    s.add_argument("--spec", help="the spec file (default: the built-in of that name)")
    s.add_argument("--backend", choices=["c", "numpy"], default="c", help="which source to print")
    s.add_argument("--order", type=_order_arg, default=0, metavar="K",
                   help="show the K-th derivative f^(K) (K >= 1; of the gate or score of a gated or rowwise one; "
                        "K = 0 for those shows g itself): its formula, f^(K+1) and the forms chosen")
    s.set_defaults(func=cmd_show)

    n = add_verb("new", help="print a commented spec template for a new activation")
    n.add_argument("name")
    n.set_defaults(func=cmd_new)

    v = add_verb("verify", help="measure every kernel against mpmath, in ULPs",
                       description="Check forward, backward and parameter-gradient kernels of each "
                       "activation, for each dtype and backend, against an mpmath reference at a dense "
                       "grid, log-spaced magnitudes from the smallest subnormal to overflow, +-0, +-inf, "
                       "nan, both sides of every branch boundary and random draws. Exits 1 if a kernel "
                       "is over its budget.")
    v.add_argument("spec", nargs="*", help="spec files or built-in names")
    v.add_argument("--all", action="store_true", help="every built-in activation")
    v.add_argument("--dtype", choices=["float32", "float64", "both"], default="both")
    v.add_argument("--backend", choices=["c", "numpy", "both"], default="both")
    v.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    v.add_argument("--markdown", metavar="FILE",
                   help="also write the results as a Markdown page (docs/verification.md)")
    v.add_argument("--quick", action="store_true", help="fewer points (about a third)")
    v.add_argument("--orders", type=_order_arg, default=1, metavar="K",
                   help="also verify the derivatives up to f^(K) (K = 3: f'' and f^(3), the kernels of "
                        "derivative_activation(1) and (2); of the gate or score of a gated or rowwise one)")
    v.add_argument("--progress", action="store_true", help="a line per activation on stderr")
    v.add_argument("--exhaustive", action="store_true",
                   help="instead: every one of the 2^32 float32 inputs, the float32 C kernels (f and "
                        "f') against the float64 ones rounded to float32 (elementwise activations, "
                        "default parameters; about a minute each)")
    v.set_defaults(func=cmd_verify)

    g = add_verb("generate", help="write the built-in library's sources (the generated/ folder)")
    g.add_argument("out", nargs="?", default="generated", help="output folder (default: generated)")
    g.add_argument("--check", action="store_true",
                   help="compare instead of writing; exit 1 and print a diff if they differ")
    g.set_defaults(func=cmd_generate)

    # Verbs that live in their own modules (each has HELP, DESCRIPTION, add_arguments(parser) and
    # run(args) -> exit status); imported only when that verb runs, so `actgen build` stays fast.
    for verb, module in EXTENSION_VERBS:
        mod = importlib.import_module(module)
        e = add_verb(verb, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP))
        mod.add_arguments(e)
        e.set_defaults(func=mod.run)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run a command: its exit status (argparse exits with 2 itself on a usage error)."""
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except ActgenError as exc:
        _report(str(exc), _debug_trace(exc))
        return 1
    except KeyboardInterrupt:
        print("actgen: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:        # outside any stage that names a spec: still one line
        _report(f"actgen {args.command} failed with {type(exc).__name__}: {str(exc)[:300]} (an error inside "
                "actgen or a library it uses; ACTGEN_DEBUG=1 shows the traceback)", _debug_trace(exc))
        return 1


if __name__ == "__main__":
    sys.exit(main())
