"""The catalogue of built-in activations, built from their specs (actgen/library/*.toml).

For each activation: its formula (as the spec writes it and as SymPy reads it), the derivatives
actgen derives (``derive.differentiate``, with its kink conventions), the parameters and their
defaults, its kind, the derivative at its kinks (spec key ``kink``, plus the values actgen's
kernels give there), the frameworks that have it and how they differ (``frameworks``) and its
reference. Nothing is written by hand here: a new spec file in the library appears by itself.

Three forms of the same data: ``terse_rows`` (no SymPy: ``actgen list``), ``format_long``
(``actgen list --long``) and ``render_markdown`` (docs/activations.md, through the template
templates/docs/activations.md.jinja; ``actgen docs`` writes it, ``actgen list --markdown``
prints it).
"""

from __future__ import annotations

from dataclasses import dataclass

from . import library

TEMPLATE = "docs/activations.md.jinja"
#: Framework keys shown first, in this order; any other key of a spec's ``frameworks`` table
#: follows, sorted. The key ``note`` is a remark, not a framework.
FRAMEWORK_ORDER = ("pytorch", "keras", "jax")
FRAMEWORK_NAMES = {"pytorch": "PyTorch", "keras": "Keras", "jax": "JAX", "tensorflow": "TensorFlow",
                   "flax": "Flax", "mxnet": "MXNet", "paddle": "Paddle", "tfa": "TF Addons"}
NOTE_KEY = "note"

#: What a kind means, for the reader (the loops differ, not the per-element expressions).
KIND_FORMULAS = {
    "elementwise": "y = f(x), element by element",
    "gated": "x = [a, b] split in two halves along an axis (default the last); y = a * g(b)",
    "rowwise": "along an axis (default the last), each element's score s(x) is normalised over the row",
}
#: The backward of each row-wise normaliser, as the kernels compute it (chain rule through s).
NORMALIZER_FORMULAS = {
    "softmax": ("y = softmax(s(x)) = exp(s_i - max s) / sum_j exp(s_j - max s)",
                "dx_i = s'(x_i) * y_i * (dy_i - sum_j dy_j * y_j)"),
    "log_softmax": ("y = log_softmax(s(x)) = (s_i - max s) - log(sum_j exp(s_j - max s))",
                    "dx_i = s'(x_i) * (dy_i - softmax(s)_i * sum_j dy_j)"),
    "sparsemax": ("y = sparsemax(s(x)) = max(s_i - t, 0), t such that sum_j y_j = 1 (the projection onto "
                  "the simplex)",
                  "dx_i = s'(x_i) * (dy_i - mean of dy_j over the support y_j > 0) where y_i > 0, else 0"),
}


# ---- the view model: plain strings, nothing SymPy -------------------------------------------

@dataclass(frozen=True)
class Param:
    name: str
    default: str              # repr of the float: 0.25, 1.0, inf
    learnable: bool


@dataclass(frozen=True)
class Formula:
    label: str                # f(x), f'(x), df/dalpha, g'(x) ...
    text: str                 # SymPy's reading, printed readably


@dataclass(frozen=True)
class Framework:
    key: str                  # pytorch
    name: str                 # PyTorch
    text: str                 # the spec's words: its name there and how it differs


@dataclass(frozen=True)
class Entry:
    """One activation of the catalogue, as the template and the terminal forms see it."""

    name: str
    description: str
    source: str               # actgen/library/gelu.toml
    kind: str                 # elementwise, gated, rowwise
    kind_formula: str         # what the kind means (KIND_FORMULAS / NORMALIZER_FORMULAS)
    gate: str                 # gated: the gate's name ("" if written as expr)
    normalizer: str           # rowwise: softmax, log_softmax or sparsemax
    expr_text: str            # the expression as the spec writes it
    formulas: tuple[Formula, ...]       # the function: f(x) / g(x) / s(x), SymPy's reading
    derivatives: tuple[Formula, ...]    # as derived by actgen
    backward_formula: str     # rowwise: the row's backward; gated: both halves' gradients
    output_derivative: str    # f'(x) written with y = f(x), if the spec gives it
    params: tuple[Param, ...]
    kink: str                 # the spec's words
    kink_values: tuple[str, ...]        # "f'(0) = 0", at the default parameters
    frameworks: tuple[Framework, ...]   # the frameworks that have it (not the note)
    framework_note: str
    reference: str

    @property
    def label_width(self) -> int:
        """The width of the longest formula label (to align the = signs)."""
        return max(len(f.label) for f in self.formulas + self.derivatives)

    @property
    def kind_text(self) -> str:
        return kind_label(self.kind, self.gate, self.normalizer)

    @property
    def params_text(self) -> str:
        return params_text(self.params)

    @property
    def framework_names(self) -> str:
        return ", ".join(f.name for f in self.frameworks)


def params_text(params) -> str:
    """``alpha=0.25*, beta=1.0`` (* marks a learnable parameter)."""
    return ", ".join(f"{p.name}={p.default}" + ("*" if p.learnable else "") for p in params)


def _framework_key_order(key: str):
    return (FRAMEWORK_ORDER.index(key), "") if key in FRAMEWORK_ORDER else (len(FRAMEWORK_ORDER), key)


def _frameworks(table: dict) -> tuple[tuple[Framework, ...], str]:
    found = table.get("frameworks", {}) or {}
    keys = sorted((k for k in found if k != NOTE_KEY), key=_framework_key_order)
    return (tuple(Framework(k, FRAMEWORK_NAMES.get(k, k), " ".join(str(found[k]).split())) for k in keys),
            " ".join(str(found.get(NOTE_KEY, "")).split()))


def _params(table: dict) -> tuple[Param, ...]:
    learnable = set(table.get("learnable", []))
    return tuple(Param(p, repr(float(v)), p in learnable) for p, v in (table.get("params", {}) or {}).items())


def kind_label(kind: str, gate: str, normalizer: str) -> str:
    """elementwise, gated (silu), rowwise (log_softmax)."""
    detail = gate if kind == "gated" else normalizer if kind == "rowwise" else ""
    return f"{kind} ({detail})" if detail else kind


def _kind(table: dict) -> str:
    return table.get("kind", "gated" if "gate" in table else "elementwise")


# ---- the terse form: spec tables only, no SymPy ---------------------------------------------

@dataclass(frozen=True)
class Row:
    name: str
    kind: str                 # elementwise, gated (silu), rowwise (softmax)
    params: tuple[Param, ...]
    frameworks: tuple[Framework, ...]
    description: str


def _library_tables(names=None):
    """[(name, display path, resolved table)] of the built-ins (a gated table gets its gate's keys)."""
    from .specfile import read_tables, resolve_table

    out = []
    for name in names or library.names():
        display = library.display_path(name)
        tables = read_tables(library.read(name), path=display)
        for table_name in tables:
            out.append((table_name, display, resolve_table(tables, table_name, display)))
    return out


def terse_rows(names=None) -> list[Row]:
    """One row per built-in, read from the spec tables (cheap: no SymPy)."""
    return [Row(name, kind_label(_kind(table), table.get("gate", ""), table.get("normalizer", "")),
                _params(table), _frameworks(table)[0],
                " ".join(str(table.get("description", "")).split()))
            for name, _display, table in _library_tables(names)]


def format_terse(rows: list[Row]) -> str:
    """``actgen list``: name, kind, parameters with defaults, frameworks."""
    header = ("activation", "kind", "parameters", "frameworks")
    cells = [(r.name, r.kind, params_text(r.params) or "-",
              ", ".join(f.name for f in r.frameworks) or "-") for r in rows]
    widths = [max(len(c[i]) for c in [header, *cells]) for i in range(3)]
    lines = ["  ".join(c[i].ljust(widths[i]) for i in range(3)) + "  " + c[3] for c in [header, *cells]]
    lines.insert(1, "-" * max(len(line) for line in lines))
    lines.append(f"\n{len(rows)} built-in activations; * marks a learnable parameter. "
                 "`actgen list --long` adds formulas, derivatives and kinks; `actgen show NAME` the code.")
    return "\n".join(lines)


# ---- the full catalogue: SymPy -----------------------------------------------------------------

def readable(expr) -> str:
    """SymPy's str of ``expr``, with huge integers and floats written as short floats
    (3.4028234663852886e+38, not 340282346638528860000000000000000000000)."""
    from decimal import Decimal

    from sympy.printing.str import StrPrinter

    class _Printer(StrPrinter):
        def _print_Integer(self, e):
            if abs(e.p) >= 10**16 and int(Decimal(repr(float(e.p)))) == e.p:
                return repr(float(e.p))
            return super()._print_Integer(e)

        def _print_Float(self, e):
            value = float(e)
            return repr(value) if e == value else super()._print_Float(e)

    return _Printer({"order": None}).doprint(expr)


def tidy(expr):
    """The same function, easier to read: nested Piecewise folded into one
    (``piecewise_fold``) and each branch condition simplified (exact boolean logic)."""
    import sympy as sp

    folded = sp.piecewise_fold(expr)

    def simpler(pw):
        args = []
        for value, cond in pw.args:
            if cond is not sp.true and sp.count_ops(cond) <= 40:
                cond = sp.simplify(cond)
            args.append((value, cond))
        return sp.Piecewise(*args)

    return folded.replace(lambda e: isinstance(e, sp.Piecewise), simpler)


def _kink_values(act, derivative, label: str) -> tuple[str, ...]:
    """``f'(k) = v`` at each kink k of the activation, at the default parameters, as actgen's
    derivative gives it (the branch whose condition holds at k). x and the parameters are the
    exact values of the floats a kernel sees there."""
    import math

    import sympy as sp

    from .ir import X, param_symbol
    from .derive import kink_points

    values = {param_symbol(p): (sp.oo if v == math.inf else -sp.oo if v == -math.inf else sp.Rational(v))
              for p, v in act.params.items()}
    out = []
    for k in kink_points(act):
        value = derivative.subs(values).subs(X, sp.Rational(k))
        if value.has(sp.zoo, sp.nan) and not value.free_symbols:
            # 1/0 at a pole (log1mexp at 0): the kernel's IEEE arithmetic gives the limit from
            # the side of the zero's sign; the page states the one at +k
            branch = derivative.subs(values)
            while isinstance(branch, sp.Piecewise):     # the branch taken at k, as a kernel does
                branch = next(e for e, c in branch.args if c.subs(X, sp.Rational(k)) == sp.true)
            value = sp.limit(branch, X, sp.Rational(k), "+")
        point = f"{k:g}" if float(f"{k:g}") == k else repr(float(k))    # the exact float, shortest
        out.append(f"{label.replace('(x)', '')}({point}) = {_value_text(value)}")
    return tuple(out)


def _value_text(value) -> str:
    """1, 0.01 (not 5764607523034235/576460752303423488), 1/6, sigmoid(20) ~= 0.9999999979388464,
    inf."""
    import sympy as sp

    if value in (sp.oo, -sp.oo):
        return "inf" if value == sp.oo else "-inf"
    if value.is_Integer:
        return str(value)
    if value.is_Rational:
        short = repr(float(value))
        return short if len(short) <= 8 or value.q > 1000 else readable(value)
    if value.is_number and value.is_finite:
        text = readable(value)
        return f"{text} ~= {float(value)!r}" if len(text) <= 40 else repr(float(value))
    return readable(value)


def entry(act, table: dict) -> Entry:
    """The catalogue entry of a parsed activation (``table``: its resolved spec table)."""
    from .ir import X, param_symbol
    from .derive import differentiate

    frameworks, note = _frameworks(table)
    derivative = differentiate(act.expr, X)
    if act.kind == "gated":
        f, d = "g(x)", "g'(x)"
        kind_formula = KIND_FORMULAS["gated"] + (f", g = {act.gate}" if act.gate else "")
        backward = "da = dy * g(b); db = dy * a * g'(b)"
    elif act.kind == "rowwise":
        f, d = "s(x)", "s'(x)"
        forward_text, backward = NORMALIZER_FORMULAS[act.normalizer]
        kind_formula = f"{KIND_FORMULAS['rowwise']}: {forward_text}"
    else:
        f, d = "f(x)", "f'(x)"
        kind_formula, backward = KIND_FORMULAS["elementwise"], ""
    derivatives = [Formula(d, readable(tidy(derivative)))]
    letter = f[0]
    for p in act.learnable:
        derivatives.append(Formula(f"d{letter}/d{p}", readable(tidy(differentiate(act.expr, param_symbol(p))))))
    return Entry(
        name=act.name, description=act.description, source=act.source, kind=act.kind,
        kind_formula=kind_formula, gate=act.gate, normalizer=act.normalizer,
        expr_text=" ".join(act.expr_text.split()), formulas=(Formula(f, readable(act.expr)),),
        derivatives=tuple(derivatives), backward_formula=backward,
        output_derivative=readable(act.output_derivative) if act.output_derivative is not None else "",
        params=_params(table), kink=" ".join(act.info.get("kink", "").split()),
        kink_values=_kink_values(act, derivative, d), frameworks=frameworks, framework_note=note,
        reference=" ".join(act.info.get("reference", "").split()))


def build(names=None) -> list[Entry]:
    """The catalogue of the built-in activations (all, or those named), in name order."""
    from .spec import parse_table

    return [entry(parse_table(name, table, path=display), table)
            for name, display, table in _library_tables(names)]


# ---- the long terminal form and the Markdown page --------------------------------------------

def format_long(entries: list[Entry]) -> str:
    """``actgen list --long``: a block per activation."""
    blocks = []
    for e in entries:
        lines = [f"{e.name}  [{e.kind_text}]  {e.description}", f"  spec:        {e.source}",
                 f"  kind:        {e.kind_formula}"]
        if e.params:
            lines.append(f"  parameters:  {e.params_text}")
        lines.append(f"  expr:        {e.expr_text}")
        lines += [f"  {x.label + ' =':12s} {x.text}" for x in e.formulas + e.derivatives]
        if e.backward_formula:
            lines.append(f"  backward:    {e.backward_formula}")
        if e.output_derivative:
            lines.append(f"  f'(x) from y: {e.output_derivative}")
        if e.kink or e.kink_values:
            lines.append("  kinks:       " + "; ".join(filter(None, [e.kink, ", ".join(e.kink_values)])))
        for fw in e.frameworks:
            lines.append(f"  {fw.name + ':':12s} {fw.text}")
        if e.framework_note:
            lines.append(f"  note:        {e.framework_note}")
        if e.reference:
            lines.append(f"  reference:   {e.reference}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + f"\n\n{len(entries)} built-in activations; * marks a learnable parameter."


def _cell(text: str) -> str:
    """Text for a Markdown table cell (a | would end the cell)."""
    return text.replace("|", "\\|")


def template_environment():
    """The Jinja environment of the documentation templates (templates/docs/): strict, like the
    code templates', with one filter, ``cell``, for text inside a Markdown table."""
    from .resources import environment

    env = environment().overlay()
    env.filters["cell"] = _cell
    return env


def render_markdown(entries: list[Entry]) -> str:
    """docs/activations.md."""
    return template_environment().get_template(TEMPLATE).render(
        entries=entries, banner=f"generated by actgen from actgen/library/*.toml and templates/{TEMPLATE}; do not edit")
