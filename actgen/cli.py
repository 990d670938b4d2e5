"""The ``actgen`` command line. Every ActgenError becomes one message and exit status 1."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import math
import sys
import time
from pathlib import Path

from . import library
from .errors import ActgenError

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


def _spec_arguments(items: list[str]):
    """Resolve each SPEC argument (a .toml file, or a built-in name) and parse all of it.

    Returns [(display, path, [(activation, table), ...])]. Raises on the first invalid spec,
    before anything is built or written.
    """
    from .spec import parse_table
    from .specfile import read_spec_text, read_tables, resolve_table

    resolved = []
    for item in items:
        if item.endswith(".toml") or Path(item).exists():
            display, path, text = Path(item).name, item, read_spec_text(item)
        else:
            display = path = library.display_path(item)
            text = library.read(item)
        tables = read_tables(text, path=path)
        resolved.append((display, path, [(parse_table(name, resolve_table(tables, name, path), path=path),
                                          resolve_table(tables, name, path)) for name in tables]))
    return resolved


def _build_activation(job) -> list[tuple[str, str, str]]:
    """Build one activation with each backend: [(backend, status, module file)]. Lowering
    (derivation and the measured choice of forms) is skipped when the cache index already
    knows the artifact of this exact table. Runs in a worker process for parallel builds."""
    from .build import lookup_artifact, read_index, spec_key, write_index
    from .errors import ActgenError, ToolchainError
    from .pipeline import build
    from .render import lower_activation

    act, table, display, backends = job
    lines, lowered = [], None
    for backend in backends:
        started = time.perf_counter()
        key = spec_key(act.name, table, display, backend)
        known = read_index(key)
        artifact = lookup_artifact(known) if known else None
        if artifact is not None:
            lines.append((backend, f"cached ({time.perf_counter() - started:.2f} s)", str(artifact.module_file)))
            continue
        try:
            lowered = lowered or lower_activation(act)
            artifact = build(act, backend, display, lowered)
        except ToolchainError as exc:
            lines.append((backend, "skipped", str(exc)))
            continue
        except ActgenError as exc:
            lines.append((backend, "error", str(exc)))
            if lowered is None:     # the spec itself failed (e.g. its derivative): say it once
                break
            continue
        write_index(key, artifact.key)
        status = (f"compiled in {time.perf_counter() - started:.2f} s" if artifact.compiled
                  else f"cached ({time.perf_counter() - started:.2f} s)")
        lines.append((backend, status, str(artifact.module_file)))
    return lines


def cmd_build(args) -> int:
    import concurrent.futures
    import multiprocessing
    import os

    from . import fastcall

    items = list(args.spec) + (library.names() if args.builtins else [])
    if not items:
        _print_err("nothing to build: name spec files or built-ins, or pass --builtins")
        return 2
    backends = ["c", "numpy"] if args.backend == "both" else [args.backend]
    jobs = [(act, table, display, backends)
            for display, _path, activations in _spec_arguments(items) for act, table in activations]
    workers = max(1, min(args.jobs or os.cpu_count() or 1, len(jobs)))
    if workers == 1:
        results = map(_build_activation, jobs)
    else:
        # fork: the workers inherit SymPy and the parsed activations (no re-import)
        pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
        results = pool.map(_build_activation, jobs)
    # the C fast path of a call (actgen/fastcall.py), which every C load needs: built beside the
    # kernels (after the pool's fork: its workers are started by map), once per cache
    fast = fastcall.start() if "c" in backends else None
    failed, built_c = False, False
    try:
        for (act, _table, _display, _backends), lines in zip(jobs, results):
            for backend, status, where in lines:
                if status == "error":
                    failed = True
                    _print_err(where)
                elif status == "skipped":
                    print(f"{act.name:22s} [{backend:5s}] skipped: {where}", file=sys.stderr)
                else:
                    built_c = built_c or backend == "c"
                    print(f"{act.name:22s} [{backend:5s}] {status:22s} {where}", flush=True)
    finally:
        if workers > 1:
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


def cmd_show(args) -> int:
    import sympy as sp

    from .derive import kink_points
    from .render import lower_activation, render
    from .spec import parse_table
    from .specfile import find_table, read_spec_text, read_tables, resolve_table

    if args.spec:
        display, path = Path(args.spec).name, args.spec
        text = read_spec_text(args.spec)
    else:
        display = path = library.display_path(args.name)
        text = library.read(args.name)
    tables = read_tables(text, path=path)
    find_table(tables, args.name, path)
    act = parse_table(args.name, resolve_table(tables, args.name, path), path=path)
    lowered = lower_activation(act)
    print(f"{act.name}: {act.description}" if act.description else act.name)
    print(f"  spec: {path}")
    if act.params:
        print("  params: " + ", ".join(f"{p} = {v}" + (" (learnable)" if p in act.learnable else "")
                                       for p, v in act.params.items()))
    print(f"\n  f(x) = {act.expr_text}")
    print(f"       = {act.expr}")
    for k in lowered.kernels:
        label = {"forward": "f(x)", "backward": "f'(x)", "backward_y": "f'(x) from the output y = f(x)"}.get(
            k.kind, f"df/d{k.param}")
        if k.kind != "forward":
            print(f"\n  {label} = {k.exact}")
        for dtype in ("float32", "float64"):
            choice = lowered.choices[k.name, dtype]
            form = choice.form
            if k.kind == "backward_y":      # not measured by selection (its input is y, not x)
                print(f"  {dtype}: rewritten, in the dtype (actgen verify measures it at y = f(x))")
            else:
                print(f"  {dtype}: {describe_choice(choice)}")
            if form.rules and form.stable is not None:
                print(f"           generated as {form.stable}  [rewrites: {', '.join(form.rules)}]")
    kinks = kink_points(act)
    if kinks:
        from .derive import differentiate
        from .activation import X

        d = differentiate(act.expr, X)
        values = ", ".join(f"f'({k:g}) = {sp.N(d.subs(X, sp.nsimplify(k)).subs({sp.Symbol(p, real=True): v for p, v in act.params.items()}), 6)}"
                           for k in kinks)
        print(f"\n  kinks (PyTorch's conventions): {values}")
    backend = args.backend
    sources = render(lowered, backend, display)
    for rel, text in sources.items():
        if rel.endswith(".h"):
            continue
        print(f"\n  ---- generated {backend} source ({rel}) ----\n")
        print(text)
    return 0


def describe_choice(choice) -> str:
    """One line: which candidate form was chosen for a kernel and dtype, and how it measured
    against the naive evaluation of the same expression (see actgen.select)."""
    unit = "ULP" if choice.kernel.kind == "forward" else "ULP (conditioned)"
    text = f"{choice.label}"
    if choice.float_range is not None:
        text += (f", in C {choice.range_text()} (blocks of inputs with one outside, and other"
                 f" parameter values, in double; NumPy: in double; in double alone: "
                 f"{choice.fallback_error:.3g} {unit})")
    elif choice.dtype == "float32" and choice.compute == "double":
        text += ", computed in double"
        in_float = _best_in_float(choice)
        if in_float is not None:
            text += f" (in float: {in_float:.3g} {unit})"
    elif choice.dtype == "float32" and choice.c_compute == "double":
        text += ", computed in double in C (libmvec's float functions are less accurate)"
    if choice.form.guards:
        text += ", limits at infinity"
    text += f": max {choice.error:.3g} {unit} on the selection sweep"
    naive = choice.naive
    if naive is not None:
        bad = f", {naive.nonfinite} spurious NaN/inf" if naive.nonfinite else ""
        text += f" (naive form: {naive.error:.3g}{bad})"
    return text


def _best_in_float(choice) -> float | None:
    """The error of the best candidate computed in float (its dense check included), which
    selection measured and found over its share of the budget; None if none was measured."""
    worst = {}
    for m in choice.measured:
        if m.compute != "dtype":
            continue
        label = m.label.removesuffix(" (dense float check)")
        error = math.inf if m.nonfinite else m.error
        worst[label] = max(worst.get(label, 0.0), error)
    return min(worst.values()) if worst else None


def cmd_new(args) -> int:
    from .spec import NAME_RE

    if not NAME_RE.match(args.name):
        _print_err(f"invalid activation name {args.name!r}: use lowercase letters, digits and _, "
                   "starting with a letter")
        return 2
    sys.stdout.write(NEW_TEMPLATE.format(name=args.name, file=f"{args.name}.toml"))
    return 0


def cmd_verify(args) -> int:
    import json

    from .verify import DTYPES, format_table, verify

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
    results = []
    for _display, path, activations in _spec_arguments(items):
        spec = None if path.startswith("actgen/library/") else path
        for act, _table in activations:
            started = time.perf_counter()
            found = verify(act, spec=spec, backends=backends, dtypes=dtypes, quick=args.quick)
            results.extend(found)
            if args.progress:
                bad = sum(not r.passed for r in found)
                print(f"  {act.name}: {len(found)} checks, {bad} over budget "
                      f"({time.perf_counter() - started:.1f} s)", file=sys.stderr)
    print(format_table(results))
    if args.json:
        from .build import write_atomic

        write_atomic(Path(args.json), json.dumps([r.as_dict() for r in results], indent=1) + "\n")
    if args.markdown:
        from .docs import render_verification, verify_command, write_page

        write_page(Path(args.markdown),
                   render_verification([r.as_dict() for r in results], verify_command(args)))
    return 0 if all(r.passed for r in results) else 1


def _verify_exhaustive(items, args) -> int:
    """verify --exhaustive: every float32 input, the float32 C kernels against the float64 ones."""
    import json

    import actgen

    from .exhaustive import format_table, run

    results = []
    for _display, path, activations in _spec_arguments(items):
        spec = None if path.startswith("actgen/library/") else path
        for act, _table in activations:
            if act.kind != "elementwise":
                print(f"  {act.name}: skipped ({act.kind}: not a function of one input)", file=sys.stderr)
                continue
            started = time.perf_counter()
            loaded = actgen.load(act.name, spec=spec, backend="c")
            found = run(loaded, act)
            results.extend(found)
            if args.progress:
                worst = max(r.max_ulp for r in found)
                print(f"  {act.name}: max {worst:g} ULP ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    print(format_table(results))
    if args.json:
        from .build import write_atomic

        write_atomic(Path(args.json), json.dumps([r.as_dict() for r in results], indent=1) + "\n")
    return 0 if all(r.passed for r in results) else 1


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


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="actgen", description="Compile activation functions from TOML specs into verified "
        "C (OpenMP) and NumPy kernels with symbolic derivatives.")
    from . import __version__

    p.add_argument("--version", action="version", version=f"actgen {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    b = sub.add_parser("build", help="parse, derive, generate and compile spec files or built-ins",
                       description="Build every activation of each SPEC (a .toml file or a built-in "
                       "name) into the cache; prints what it built and where.")
    b.add_argument("spec", nargs="*", help="spec files or built-in names")
    b.add_argument("--builtins", action="store_true", help="also build every built-in activation")
    b.add_argument("--backend", choices=["c", "numpy", "both"], default="both",
                   help="which kernels to build (default: both)")
    b.add_argument("--jobs", "-j", type=int, default=0,
                   help="activations built in parallel (default: the number of CPUs)")
    b.set_defaults(func=cmd_build)

    lst = sub.add_parser("list", help="the catalogue of built-in activations",
                         description="The built-in activations: name, kind, parameters with defaults "
                         "(* = learnable) and the frameworks that have them.")
    form = lst.add_mutually_exclusive_group()
    form.add_argument("--long", action="store_true",
                      help="also formulas, derivatives, kinks, frameworks' differences and references")
    form.add_argument("--markdown", action="store_true",
                      help="print docs/activations.md (what `actgen docs` writes)")
    lst.set_defaults(func=cmd_list)

    s = sub.add_parser("show", help="an activation's formula, derivatives and generated code")
    s.add_argument("name")
    s.add_argument("--spec", help="the spec file (default: the built-in of that name)")
    s.add_argument("--backend", choices=["c", "numpy"], default="c", help="which source to print")
    s.set_defaults(func=cmd_show)

    n = sub.add_parser("new", help="print a commented spec template for a new activation")
    n.add_argument("name")
    n.set_defaults(func=cmd_new)

    v = sub.add_parser("verify", help="measure every kernel against mpmath, in ULPs",
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
    v.add_argument("--progress", action="store_true", help="a line per activation on stderr")
    v.add_argument("--exhaustive", action="store_true",
                   help="instead: every one of the 2^32 float32 inputs, the float32 C kernels (f and "
                        "f') against the float64 ones rounded to float32 (elementwise activations, "
                        "default parameters; about a minute each)")
    v.set_defaults(func=cmd_verify)

    g = sub.add_parser("generate", help="write the built-in library's sources (the generated/ folder)")
    g.add_argument("out", nargs="?", default="generated", help="output folder (default: generated)")
    g.add_argument("--check", action="store_true",
                   help="compare instead of writing; exit 1 and print a diff if they differ")
    g.set_defaults(func=cmd_generate)

    # Verbs that live in their own modules (each has HELP, DESCRIPTION, add_arguments(parser) and
    # run(args) -> exit status); imported only when that verb runs, so `actgen build` stays fast.
    for verb, module in EXTENSION_VERBS:
        mod = importlib.import_module(module)
        e = sub.add_parser(verb, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP))
        mod.add_arguments(e)
        e.set_defaults(func=mod.run)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except ActgenError as exc:
        _print_err(str(exc))
        return 1
    except KeyboardInterrupt:
        print("actgen: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
