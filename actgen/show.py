"""``actgen show``: an activation's formula, its derivatives, the stable forms chosen for each
kernel and dtype (and how much better than the naive form they measured), its kinks and the
generated source. Imported by the CLI only for this verb (it imports SymPy)."""

from __future__ import annotations

import difflib
import math
from pathlib import Path

import sympy as sp

from . import library
from .ir import X
from .orders import order_label
from .derive import differentiate, kink_points
from .higher import derived_activation
from .errors import UnknownActivationError, stage
from .pipeline import lower_activation
from .render import render
from .spec import parse_table
from .specfile import find_table, read_spec_text, read_tables, resolve_table


def run(args) -> int:
    """``actgen show NAME [--spec FILE] [--backend c|numpy]``."""
    if args.spec:
        display, path = Path(args.spec).name, args.spec
        with stage("reading the spec file", path=path):
            text = read_spec_text(args.spec)
    elif args.name in library.names():
        display = path = library.display_path(args.name)
        text = library.read(args.name)
    else:
        close = difflib.get_close_matches(args.name, library.names(), n=3)
        raise UnknownActivationError(f"no built-in activation named {args.name!r}"
                                     + (f"; did you mean {', '.join(close)}?" if close else "")
                                     + " (`actgen list` shows them); for a table of your own spec file, "
                                     f"pass --spec FILE: actgen show {args.name} --spec FILE")
    with stage("parsing", path=path, activation=args.name):
        tables = read_tables(text, path=path)
        find_table(tables, args.name, path)
        act = parse_table(args.name, resolve_table(tables, args.name, path), path=path)
    order = getattr(args, "order", 0) or 0
    if order:           # f^(k) as its derivative activation shows it: forward f^(k), backward f^(k+1)
        with stage(f"differentiating {order} times", path=path, activation=args.name):
            act = derived_activation(act, order)
    f, f1 = order_label(order), order_label(order + 1)
    with stage("lowering (derivatives and the choice of stable forms)", path=path, activation=args.name):
        lowered = lower_activation(act)
    print(f"{act.name}: {act.description}" if act.description else act.name)
    print(f"  spec: {path}")
    if act.params:
        print("  params: " + ", ".join(f"{p} = {v}" + (" (learnable)" if p in act.learnable else "")
                                       for p, v in act.params.items()))
    if order:
        print(f"  (the {order_label(order)} of {args.name}"
              + ("; of its gate" if _kind(tables, args.name) == "gated" else
                 "; of its score" if _kind(tables, args.name) == "rowwise" else "") + ")")
    print(f"\n  {f}(x) = {act.expr_text}")
    print(f"       = {act.expr}")
    for k in lowered.kernels:
        label = {"forward": f"{f}(x)", "backward": f"{f1}(x)", "backward_y": "f'(x) from the output y = f(x)"}.get(
            k.kind, f"d{f}/d{k.param}")
        if k.kind != "forward":
            print(f"\n  {label} = {k.exact}")
        for dtype in ("float32", "float64"):
            choice = lowered.choices[k.name, dtype]
            form = choice.form
            if k.kind == "backward_y":      # not measured by selection (its input is y, not x)
                print(f"  {dtype}: rewritten, in the dtype (actgen verify measures it at y = f(x))")
            else:
                print(f"  {dtype}: {describe_choice(choice, derived=bool(order))}")
            if form.rules and form.stable is not None:
                print(f"           generated as {form.stable}  [rewrites: {', '.join(form.rules)}]")
    kinks = kink_points(act)
    if kinks:
        d = differentiate(act.expr, X)
        values = ", ".join(f"{f1}({k:g}) = {sp.N(d.subs(X, sp.nsimplify(k)).subs({sp.Symbol(p, real=True): v for p, v in act.params.items()}), 6)}"
                           for k in kinks)
        print(f"\n  kinks (PyTorch's conventions): {values}")
    backend = args.backend
    with stage(f"rendering the {backend} source", path=path, activation=args.name):
        sources = render(lowered, backend, display)
    for rel, text in sources.items():
        if rel.endswith(".h"):
            continue
        print(f"\n  ---- generated {backend} source ({rel}) ----\n")
        print(text)
    return 0


def _kind(tables: dict, name: str) -> str:
    table = tables[name]
    return table.get("kind", "gated" if "gate" in table else "elementwise")


def describe_choice(choice, derived: bool = False) -> str:
    """One line: which candidate form was chosen for a kernel and dtype, and how it measured
    against the naive evaluation of the same expression (see actgen.select); ``derived``: of a
    derivative order, whose forward kernel is measured conditioned too."""
    unit = "ULP" if choice.kernel.kind == "forward" and not derived else "ULP (conditioned)"
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
