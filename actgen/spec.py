"""Spec files: TOML in, validated ``Activation`` objects out. Never runs code from the file.

SymPy's ``sympify``/``parse_expr`` call ``eval``, so expressions are parsed with Python's
``ast`` and only whitelisted node types and names are turned into SymPy objects.

Format (one table per activation)::

    [swish]
    expr = "x * sigmoid(beta * x)"     # SymPy syntax; the input is always x
    params = { beta = 1.0 }            # named scalar parameters and their defaults
    learnable = ["beta"]               # optional: also emit gradient kernels w.r.t. these
    description = "Swish with a slope" # optional
"""

from __future__ import annotations

import ast
import difflib
import keyword
import math
import re
from pathlib import Path

import sympy as sp

from .activation import KINDS, NORMALIZERS, Activation
from .derive import check_output_derivative
from .errors import DerivationError, SpecError
from .functions import CONSTANTS, FUNCTIONS
from .ir import DTYPES, X, Y, param_symbol
from .reference import complex_sample_point
from .specfile import (MAX_SPEC_BYTES, MAX_TABLES, find_table, read_spec_text, read_tables,  # noqa: F401  (re-exported)
                       resolve_table)

#: Keys a table may have. Anything else is a typo and rejected.
KEYS = ("expr", "params", "learnable", "description", "budgets", "kink", "frameworks", "reference",
        "kind", "normalizer", "gate", "output_derivative", "output_derivative_valid", "save_output")
#: kernel kinds and dtypes a `budgets` entry may name, as "<kind>.<dtype>"
BUDGET_KINDS = ("forward", "backward", "param_grad")

MAX_EXPR_CHARS = 10_000           # an expression longer than this is refused unparsed
MAX_SYNTAX_DEPTH = 100            # nesting of the Python syntax tree (checked before building)
MAX_EXPR_NODES = 400              # SymPy tree nodes of a parsed expression (built-ins: <= 30)
MAX_EXPR_DEPTH = 32               # SymPy tree depth (nested function calls) of a parsed expression
MAX_INT_EXPONENT = 1_000          # largest |n| in x**n
MAX_CONSTANT_DIGITS = 400         # largest decimal exponent of a constant

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
PARAM_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")

_C_KEYWORDS = set("""auto break case char const continue default do double else enum extern float
for goto if inline int long register restrict return short signed sizeof static struct switch
typedef union unsigned void volatile while _Bool _Complex _Imaginary bool complex""".split())
#: Names the generated code uses for its own variables, plus anything a printer could emit.
_KERNEL_NAMES = {"x", "y", "dx", "dy", "n", "i", "acc", "out", "np", "numpy", "math", "nan", "inf",
                 "self", "float32", "float64", "kernels", "rt",
                 # keyword arguments of the Python API
                 "axis", "param_axis", "deriv_out", "order"}
RESERVED = (_C_KEYWORDS | set(keyword.kwlist) | _KERNEL_NAMES | set(FUNCTIONS) | set(CONSTANTS)
            | {"I", "S", "N", "O", "Q", "oo", "zoo", "nan", "True", "False", "None"})
#: C library names an element function may call (a parameter named so would shadow them)
_LIBM = {f + suffix for f in ("exp", "expm1", "exp2", "log", "log1p", "log2", "log10", "pow", "sqrt", "cbrt",
                              "fabs", "fma", "fmax", "fmin", "erf", "erfc", "tanh", "sinh", "cosh", "atan",
                              "sin", "cos", "tan", "asin", "acos", "hypot", "copysign", "floor", "ceil")
         for suffix in ("", "f")} | {"isfinite", "isnan", "isinf", "INFINITY", "NAN", "HUGE_VAL"}
RESERVED = RESERVED | _LIBM

_NODE_NAMES = {
    ast.Attribute: "attribute access (a.b)", ast.Subscript: "indexing (a[b])",
    ast.Lambda: "lambda", ast.ListComp: "a comprehension", ast.SetComp: "a comprehension",
    ast.DictComp: "a comprehension", ast.GeneratorExp: "a generator expression",
    ast.JoinedStr: "an f-string", ast.FormattedValue: "an f-string", ast.Starred: "a starred argument",
    ast.NamedExpr: "an assignment expression (:=)", ast.IfExp: "a conditional expression (a if c else b)",
    ast.List: "a list", ast.Dict: "a dict", ast.Set: "a set", ast.Await: "await", ast.Yield: "yield",
    ast.YieldFrom: "yield",
}

_BINOPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
           ast.Mult: lambda a, b: a * b, ast.Div: lambda a, b: a / b}
_COMPARE = {ast.Lt: sp.Lt, ast.LtE: sp.Le, ast.Gt: sp.Gt, ast.GtE: sp.Ge, ast.Eq: sp.Eq, ast.NotEq: sp.Ne}


def _is_condition(value) -> bool:
    """A comparison or a combination of them (SymPy's Symbol is also a Boolean, so be precise)."""
    return isinstance(value, (sp.core.relational.Relational, sp.logic.boolalg.BooleanFunction,
                              sp.logic.boolalg.BooleanAtom))


class _ExprError(Exception):
    """Raised inside the expression builder; turned into a SpecError with the location."""

    def __init__(self, problem: str, fix: str | None = None):
        super().__init__(problem)
        self.problem, self.fix = problem, fix


def _short(value, limit: int = 40) -> str:
    """``str(value)`` cut to ``limit`` characters (a message never quotes a 400-digit number)."""
    text = str(value)
    return text if len(text) <= limit else f"{text[:limit - 12]}...({len(text):,} chars)"


def _suggest(name: str, candidates) -> str | None:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return close[0] if close else None


class _Builder:
    """Turns an ``ast`` expression tree into a SymPy expression, whitelisting as it goes."""

    def __init__(self, source: str, params: dict[str, sp.Symbol]):
        self.source = source
        self.names: dict[str, sp.Basic] = {"x": X, **params, **CONSTANTS}
        self.params = params

    def build(self, node: ast.AST) -> sp.Basic:
        method = getattr(self, "_" + type(node).__name__, None)
        if method is None:
            what = _NODE_NAMES.get(type(node), f"Python syntax `{type(node).__name__}`")
            raise _ExprError(f"{what} is not allowed in an expression",
                             "use only arithmetic, comparisons and the listed functions")
        return method(node)

    def _Expression(self, node):
        return self.build(node.body)

    def _Constant(self, node):
        value = node.value
        if isinstance(value, bool):
            return sp.true if value else sp.false
        if isinstance(value, int):
            if len(str(abs(value))) > MAX_CONSTANT_DIGITS:
                raise _ExprError(f"integer literal with more than {MAX_CONSTANT_DIGITS} digits")
            return sp.Integer(value)
        if isinstance(value, float):
            text = ast.get_source_segment(self.source, node) or repr(value)
            exponent = re.search(r"[eE]([+-]?\d+)$", text)
            if not math.isfinite(value) or (exponent and abs(int(exponent.group(1))) > MAX_CONSTANT_DIGITS):
                raise _ExprError(f"float literal {text} is out of range")
            # The decimal the user wrote, exactly (0.2 means 1/5, not the nearest double).
            return sp.Rational(text.replace("_", ""))
        raise _ExprError(f"literal {_short(repr(value))} is not a number",
                         "strings, bytes and complex numbers are not allowed")

    def _Name(self, node):
        name = node.id
        if name in self.names:
            return self.names[name]
        if name in FUNCTIONS:
            raise _ExprError(f"`{name}` is a function; call it as {name}(...)")
        hint = _suggest(name, list(self.names) + list(FUNCTIONS))
        fix = (f"did you mean `{hint}`? " if hint else "") + \
            "the input is `x`; every other name must be declared in `params` or be a listed function"
        raise _ExprError(f"unknown name `{_short(name)}` (a free symbol that is neither x nor a parameter)", fix)

    def _BinOp(self, node):
        op = type(node.op)
        if op is ast.Pow:
            return self._pow(self.build(node.left), self.build(node.right))
        if op is ast.BitXor:
            raise _ExprError("`^` is not a power in SymPy syntax", "write powers as x**2")
        if op is ast.BitAnd or op is ast.BitOr:
            left, right = self._cond(node.left), self._cond(node.right)
            return sp.And(left, right) if op is ast.BitAnd else sp.Or(left, right)
        if op not in _BINOPS:
            raise _ExprError(f"operator `{_short(ast.unparse(node), 60)}` is not allowed", "use + - * / **")
        # a long sum or product is a left-deep chain: walk it with a loop, not recursion
        chain = [node]
        while _is_arithmetic(chain[-1].left):
            chain.append(chain[-1].left)
        result = self.build(chain[-1].left)
        for link in reversed(chain):
            right = self.build(link.right)
            for side in (result, right):
                if _is_condition(side):
                    raise _ExprError(f"a condition is used as a number in `{_short(ast.unparse(link), 60)}`",
                                     "use Piecewise((value, condition), ...) or Heaviside(...)")
            result = _BINOPS[type(link.op)](result, right)
        return result

    def _pow(self, base, exponent):
        for side in (base, exponent):
            if _is_condition(side):
                raise _ExprError("a condition is used as a number in a power")
        if exponent.is_Rational and abs(exponent) > MAX_INT_EXPONENT:
            raise _ExprError(f"exponent {_short(exponent)} is too large (limit {MAX_INT_EXPONENT})",
                             "an activation never needs such a power")
        if base.is_Number and exponent.is_Number and not base.is_zero:
            # SymPy evaluates number**number eagerly: 10**10**10 would never finish. Estimate the
            # size from the logarithm (exact for huge integers, where float() would overflow).
            magnitude = abs(float(exponent)) * abs(_log10(base))
            if magnitude > MAX_CONSTANT_DIGITS:
                raise _ExprError(f"the constant {_short(base)}**{_short(exponent)} is out of range "
                                 f"(about 10**{magnitude:.3g})", "write the constant as a float literal")
        return sp.Pow(base, exponent)

    def _UnaryOp(self, node):
        op = type(node.op)
        if op is ast.Not or op is ast.Invert:
            return sp.Not(self._cond(node.operand))
        operand = self.build(node.operand)
        if _is_condition(operand):
            raise _ExprError(f"a condition is used as a number in `{_short(ast.unparse(node), 60)}`")
        return -operand if op is ast.USub else operand

    def _cond(self, node):
        value = self.build(node)
        if not _is_condition(value):
            raise _ExprError(f"`{_short(ast.unparse(node), 60)}` is not a condition",
                             "conditions are comparisons such as x > 0, combined with & | ~")
        return value

    def _BoolOp(self, node):
        parts = [self._cond(v) for v in node.values]
        return sp.And(*parts) if isinstance(node.op, ast.And) else sp.Or(*parts)

    def _Compare(self, node):
        terms = [self.build(node.left)] + [self.build(c) for c in node.comparators]
        for term in terms:
            if _is_condition(term):
                raise _ExprError(f"cannot compare a condition in `{_short(ast.unparse(node), 60)}`")
        parts = [_COMPARE[type(op)](a, b) for op, a, b in zip(node.ops, terms, terms[1:])
                 if type(op) in _COMPARE or self._bad_compare(op)]
        return sp.And(*parts) if len(parts) > 1 else parts[0]

    def _bad_compare(self, op):
        raise _ExprError(f"comparison `{type(op).__name__}` is not allowed", "use < <= > >= == !=")

    def _Tuple(self, node):
        return sp.Tuple(*[self.build(e) for e in node.elts])

    def _Call(self, node):
        if not isinstance(node.func, ast.Name):
            raise _ExprError(f"only the listed functions can be called, not `{_short(ast.unparse(node.func), 60)}`",
                             "call a listed function by its name, e.g. exp(x); methods, attributes and "
                             "calls of calls are not allowed")
        name = node.func.id
        if name not in FUNCTIONS:
            hint = _suggest(name, FUNCTIONS)
            raise _ExprError(f"unknown function `{_short(name)}`",
                             (f"did you mean `{hint}`? " if hint else "")
                             + "allowed: " + ", ".join(sorted(FUNCTIONS)))
        if node.keywords:
            raise _ExprError(f"keyword arguments are not allowed in `{name}(...)`",
                             f"pass arguments by position, e.g. {name}(x)")
        args = [self.build(a) for a in node.args]
        if name == "Piecewise":
            return self._piecewise(args, node)
        try:
            return FUNCTIONS[name](*args)
        except (TypeError, ValueError, AttributeError) as exc:
            raise _ExprError(f"invalid call `{_short(ast.unparse(node), 60)}`: {exc}") from None

    def _piecewise(self, args, node):
        pieces = []
        for arg in args:
            if not (isinstance(arg, sp.Tuple) and len(arg) == 2):
                raise _ExprError("Piecewise takes (value, condition) pairs",
                                 "write Piecewise((x, x > 0), (0, True))")
            value, cond = arg
            if not _is_condition(cond):
                raise _ExprError(f"`{_short(cond)}` is not a condition in Piecewise")
            if _is_condition(value):
                raise _ExprError(f"a Piecewise value `{_short(value)}` is a condition, not a number")
            pieces.append((value, cond))
        if not pieces:
            raise _ExprError("Piecewise needs at least one (value, condition) pair")
        if pieces[-1][1] is not sp.true:
            raise _ExprError("the last Piecewise pair must have the condition True (the otherwise case)",
                             "end with (value, True) so every x has a value")
        try:
            return sp.Piecewise(*pieces)
        except (TypeError, ValueError) as exc:
            raise _ExprError(f"invalid Piecewise: {exc}") from None


def _log10(number) -> float:
    """log10 |number| of a SymPy number, without overflowing for huge rationals."""
    number = abs(sp.Rational(number)) if number.is_Rational else abs(number)
    if number.is_Rational:
        p, q = int(number.p), int(number.q)
        return (math.log10(p) if p else 0.0) - math.log10(q)
    return math.log10(float(number))


def _is_arithmetic(node: ast.AST) -> bool:
    return isinstance(node, ast.BinOp) and type(node.op) in _BINOPS


def _syntax_depth(tree: ast.AST) -> int:
    """The nesting depth of a syntax tree, without recursion (a tree may be 10^5 deep). The left
    operand of + - * / does not count as nesting: a sum of many terms is a chain, built by a loop."""
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > deepest:
            deepest = depth
            if deepest > MAX_SYNTAX_DEPTH:
                return deepest
        for child in ast.iter_child_nodes(node):
            chained = _is_arithmetic(node) and child is node.left and _is_arithmetic(child)
            stack.append((child, depth if chained else depth + 1))
    return deepest


def tree_size(expr: sp.Basic, limit: int | None = None) -> tuple[int, int]:
    """(nodes, depth) of a SymPy tree, counted without recursion; stops early past ``limit`` nodes."""
    nodes, deepest, stack = 0, 0, [(expr, 1)]
    while stack:
        node, depth = stack.pop()
        nodes += 1
        deepest = max(deepest, depth)
        if limit is not None and nodes > limit:
            break
        stack.extend((arg, depth + 1) for arg in node.args)
    return nodes, deepest


def _check_numbers(expr: sp.Basic) -> None:
    """Refuse constants that are infinite, undefined (1/0) or overflow when evaluated."""
    if expr.has(sp.zoo, sp.nan, sp.oo, -sp.oo):
        raise _ExprError("the expression contains an infinite or undefined constant (such as 1/0)",
                         "remove the division by zero")
    for node in sp.preorder_traversal(expr):
        if node.is_Rational and max(len(str(abs(node.p))), len(str(node.q))) > MAX_CONSTANT_DIGITS + 1:
            raise _ExprError(f"the constant {_short(node)} has more than {MAX_CONSTANT_DIGITS} digits",
                             "an activation never needs such a constant")
        if node.is_Rational and node != 0 and not -300 <= _log10(node) <= 300:
            raise _ExprError(f"the constant {_short(node)} is out of the range of a double (about "
                             f"10**{_log10(node):.0f})", "write constants between 1e-300 and 1e300 in magnitude")
        if node.is_Atom or node.free_symbols or not isinstance(node, sp.Expr):
            continue
        try:
            value = complex(sp.N(node, 20))
        except (ArithmeticError, ValueError, TypeError, RecursionError, MemoryError):
            value = complex(math.inf)
        if not (math.isfinite(value.real) and math.isfinite(value.imag)) or abs(value) > 1e300:
            raise _ExprError(f"the constant {_short(node)} overflows (it is not a finite number)",
                             "write a constant of at most 1e300 in magnitude")


def parse_expression(text: str, params: dict[str, sp.Symbol] | None = None) -> sp.Expr:
    """Parse ``text`` into a SymPy expression in ``X`` and ``params`` without eval.

    Raises ``_ExprError`` (callers wrap it in a ``SpecError`` naming file and activation).
    """
    if len(text) > MAX_EXPR_CHARS:
        raise _ExprError(f"the expression is {len(text):,} characters; the limit is {MAX_EXPR_CHARS:,}")
    nested = "split it: an activation never needs such nesting"
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        if "too many nested" in str(exc.msg):
            raise _ExprError(f"the expression is nested too deeply ({exc.msg})", nested) from None
        raise _ExprError(f"syntax error: {exc.msg} (column {exc.offset})",
                         "write one Python-syntax expression in x, e.g. \"x * sigmoid(x)\"") from None
    except (RecursionError, MemoryError):
        raise _ExprError("the expression is nested too deeply to parse", nested) from None
    if _syntax_depth(tree) > MAX_SYNTAX_DEPTH:
        raise _ExprError(f"the expression is nested more than {MAX_SYNTAX_DEPTH} levels deep", nested)
    try:
        expr = _Builder(text.strip(), params or {}).build(tree)
    except RecursionError:
        raise _ExprError("the expression is nested too deeply", nested) from None
    if _is_condition(expr) or isinstance(expr, sp.Tuple):
        raise _ExprError("the expression is a condition or a tuple, not a number",
                         "wrap conditions in Piecewise((value, condition), (other, True))")
    nodes, depth = tree_size(expr, MAX_EXPR_NODES)
    if nodes > MAX_EXPR_NODES:
        raise _ExprError(f"the expression has more than {MAX_EXPR_NODES} terms and operations (SymPy tree "
                         "nodes)", "simplify it: the built-in activations have at most 30")
    if depth > MAX_EXPR_DEPTH:
        raise _ExprError(f"the expression nests functions {depth} levels deep (limit {MAX_EXPR_DEPTH})", nested)
    try:
        _check_numbers(expr)
    except RecursionError:
        raise _ExprError("the expression is nested too deeply", nested) from None
    return expr


def _check_real(expr: sp.Expr, params: dict[str, float]) -> str | None:
    """Return a description of where ``expr`` is not real-valued, or None if it looks real."""
    if expr.is_extended_real is False:
        return "SymPy proves it is not real"
    where = complex_sample_point(expr, params)
    return None if where is None else f"it is complex at x = {where}"


EXPR_FIX = ("write an expression in x with numbers, the declared parameters, + - * / ** and the listed "
            "functions (see `actgen new NAME` for a template)")


def parse_table(name: str, table, *, path: str) -> Activation:
    """Validate one spec table and build its Activation."""

    def fail(problem, key=None, fix=None):
        raise SpecError(problem, path=path, activation=_short(name, 70), key=key and _short(key, 70), fix=fix)

    if not NAME_RE.match(name):
        fail(f"invalid activation name {_short(repr(name))}",
             fix="use lowercase letters, digits and _, starting with a letter (at most 64 characters)")
    if not isinstance(table, dict):
        fail("is a value, not a table", fix=f"write [{name}] followed by expr = \"...\"")
    for key in table:
        if key not in KEYS:
            hint = _suggest(key, KEYS)
            fail(f"unknown key {_short(repr(key))}", key=key,
                 fix=(f"did you mean {hint!r}? " if hint else "") + "allowed keys: " + ", ".join(KEYS))

    expr_text = table.get("expr")
    if expr_text is None:
        fail("missing `expr`", key="expr", fix='add expr = "..." (a SymPy expression in x)')
    if not isinstance(expr_text, str) or not expr_text.strip():
        fail("`expr` must be a non-empty string", key="expr", fix='e.g. expr = "x * sigmoid(x)"')

    params = table.get("params", {})
    if not isinstance(params, dict):
        fail("`params` must be a table of name = number", key="params", fix="params = { beta = 1.0 }")
    defaults: dict[str, float] = {}
    for pname, value in params.items():
        if not PARAM_RE.match(pname):
            fail(f"invalid parameter name {_short(repr(pname))}", key=f"params.{pname}",
                 fix="use letters, digits and _, starting with a letter")
        if pname in RESERVED or re.fullmatch(r"t\d+", pname) or pname.startswith("actgen"):
            fail(f"parameter name {pname!r} is reserved (a function, constant, keyword or a name the "
                 "generated code uses)", key=f"params.{pname}", fix="choose another name")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            fail(f"default of {pname!r} is {_short(repr(value))}, not a number", key=f"params.{pname}",
                 fix=f"write {pname} = 1.0")
        if isinstance(value, float) and math.isnan(value):
            fail(f"default of {pname!r} is nan", key=f"params.{pname}", fix="give a number")
        if isinstance(value, int) and abs(value) > 2**53:
            fail(f"default of {pname!r} is too large to be exact in float64", key=f"params.{pname}",
                 fix=f"write it as a float, e.g. {pname} = {float(value):.6g}")
        defaults[pname] = float(value)

    learnable = table.get("learnable", [])
    if not isinstance(learnable, list) or not all(isinstance(p, str) for p in learnable):
        fail("`learnable` must be a list of parameter names", key="learnable", fix='learnable = ["beta"]')
    for pname in learnable:
        if pname not in defaults:
            fail(f"learnable {pname!r} is not in params", key="learnable",
                 fix=f"add {pname} = <default> to params, or remove it from learnable")
    if len(set(learnable)) != len(learnable):
        fail("`learnable` lists a parameter twice", key="learnable", fix="name each parameter once")

    description = table.get("description", "")
    if not isinstance(description, str):
        fail("`description` must be a string", key="description", fix='description = "what it is"')

    info = {}
    for key in ("kink", "reference"):
        value = table.get(key, "")
        if not isinstance(value, str):
            fail(f"`{key}` must be a string", key=key, fix=f'{key} = "..."')
        if value:
            info[key] = value.strip()
    frameworks = table.get("frameworks", {})
    if not isinstance(frameworks, dict) or not all(isinstance(v, str) for v in frameworks.values()):
        fail("`frameworks` must be a table of strings", key="frameworks",
             fix='frameworks = { pytorch = "torch.nn.SiLU", keras = "keras.activations.silu" }')
    if frameworks:
        info["frameworks"] = {k: v.strip() for k, v in frameworks.items()}

    budgets = table.get("budgets", {})
    if not isinstance(budgets, dict):
        fail("`budgets` must be a table", key="budgets",
             fix='budgets = { "backward.float64" = { ulp = 16, reason = "why it cannot be closer" } }')
    reasons, budgets = {}, dict(budgets)     # (a copy: the caller's table stays as it was)
    for entry, value in list(budgets.items()):
        kind, _, dtype = entry.partition(".")
        if not (kind in BUDGET_KINDS or re.fullmatch(r"order([2-9]|[1-9]\d)", kind)) or dtype not in DTYPES:
            fail(f"unknown budget {_short(repr(entry))}", key=f"budgets.{entry}",
                 fix="name it <kind>.<dtype>, kind one of forward, backward, param_grad, or order<k> (f^(k), k >= 2)")
        if isinstance(value, dict):          # { ulp = N, reason = "..." }: the reason kept with it
            unknown = set(value) - {"ulp", "reason"}
            reason = value.get("reason")
            if unknown or not isinstance(reason, str) or not reason.strip():
                fail(f"budget {_short(repr(entry))} must be {{ ulp = N, reason = \"...\" }}"
                     + (f" (unknown keys: {', '.join(sorted(map(str, unknown)))})" if unknown else ""),
                     key=f"budgets.{entry}", fix=f'"{entry}" = {{ ulp = 16, reason = "why it cannot be closer" }}')
            reasons[entry] = reason.strip()
            value = value.get("ulp")
            budgets[entry] = value
            if value == math.inf:            # NaN or inf where the function is finite, accepted
                continue                     # with its reason (a bare number must be finite)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
            fail(f"budget {_short(repr(entry))} must be a positive finite number (ULPs), not "
                 f"{_short(repr(value))}", key=f"budgets.{entry}",
                 fix=f'"{entry}" = 16, or {{ ulp = inf, reason = "..." }} to accept NaN or inf where '
                     'the function is finite')
    if reasons:
        info["budget_reasons"] = reasons

    kind = table.get("kind", "gated" if "gate" in table else "elementwise")
    if kind not in KINDS:
        fail(f"unknown kind {kind!r}", key="kind", fix="kind is one of " + ", ".join(KINDS))
    normalizer = table.get("normalizer", "")
    if kind == "rowwise":
        if normalizer not in NORMALIZERS:
            fail(f"a rowwise activation needs normalizer = {' or '.join(map(repr, NORMALIZERS))}"
                 + (f", not {normalizer!r}" if normalizer else ""), key="normalizer",
                 fix='normalizer = "softmax" (expr is then the score of each element, e.g. "x / T")')
    elif "normalizer" in table:
        fail("`normalizer` is only for kind = \"rowwise\"", key="normalizer",
             fix='remove it, or set kind = "rowwise"')
    gate = table.get("gate", "")
    if "gate" in table and (kind != "gated" or not isinstance(gate, str)):
        fail("`gate` names the elementwise activation of a gated one", key="gate",
             fix='gate = "gelu" (a built-in or another table of this file)')
    for key in ("output_derivative", "output_derivative_valid"):
        if key in table and kind != "elementwise":
            fail(f"`{key}` is only for elementwise activations", key=key, fix=f"remove `{key}`")
        if key in table and not isinstance(table[key], str):
            fail(f"`{key}` must be a string", key=key, fix='e.g. output_derivative = "y * (1 - y)"')
    if "save_output" in table and ("output_derivative" not in table or not isinstance(table["save_output"], bool)):
        fail("`save_output` (true or false) says whether framework wrappers keep y for the backward; "
             "it needs `output_derivative`", key="save_output",
             fix="save_output = false (keep x), with output_derivative given; or remove save_output")
    if "output_derivative_valid" in table and "output_derivative" not in table:
        fail("`output_derivative_valid` without `output_derivative`", key="output_derivative_valid",
             fix="add output_derivative, or remove output_derivative_valid")

    symbols = {p: param_symbol(p) for p in defaults}
    try:
        expr = parse_expression(expr_text, symbols)
    except _ExprError as exc:
        fail(exc.problem, key="expr", fix=exc.fix or EXPR_FIX)
    try:
        problem = _check_real(expr, defaults)
    except (ArithmeticError, ValueError, TypeError, RecursionError, MemoryError) as exc:
        fail(f"the expression cannot be evaluated at the default parameters: {_short(exc, 120)}", key="expr",
             fix="check the constants and parameter defaults")
    if problem:
        fail(f"the expression is not real-valued: {problem}", key="expr",
             fix="restrict it with Abs, Max or Piecewise so it is real for every real x")

    output_derivative, valid = None, sp.true
    if "output_derivative" in table:
        output_derivative, valid = _output_derivative(table, symbols, fail)

    act = Activation(name=name, expr=expr, params=defaults, learnable=tuple(learnable),
                     description=description.strip(), source=path, expr_text=expr_text.strip(),
                     kind=kind, normalizer=normalizer, gate=gate, output_derivative=output_derivative,
                     output_derivative_valid=valid,
                     budgets={tuple(k.split(".")): float(v) for k, v in budgets.items()}, info=info)
    if output_derivative is not None:
        try:
            problem = check_output_derivative(act)
        except DerivationError as exc:
            fail(exc.problem, key="expr", fix=exc.fix)
        if problem:
            fail(f"`output_derivative` is not f'(x) written with y = f(x): {problem}",
                 key="output_derivative",
                 fix="write f' in terms of y (e.g. y * (1 - y) for sigmoid), restrict it with "
                     "output_derivative_valid, or remove it (backward then always uses x)")
    return act


def _output_derivative(table: dict, symbols: dict, fail):
    """Parse output_derivative (an expression in y and the parameters) and its validity
    condition (on the parameters only)."""
    text = table["output_derivative"]
    try:
        expr = parse_expression(text, {**symbols, "y": Y})
    except _ExprError as exc:
        fail(exc.problem, key="output_derivative", fix=exc.fix or EXPR_FIX)
    if X in expr.free_symbols:
        fail("`output_derivative` uses x; it must be written with y = f(x) and the parameters",
             key="output_derivative", fix="e.g. output_derivative = \"y * (1 - y)\"")
    valid = sp.true
    if "output_derivative_valid" in table:
        cond_text = table["output_derivative_valid"]
        try:
            # the safe parser reads conditions inside a Piecewise only
            wrapped = parse_expression(f"Piecewise((1, {cond_text}), (0, True))", symbols)
        except _ExprError as exc:
            fail(exc.problem, key="output_derivative_valid", fix=exc.fix or EXPR_FIX)
        if wrapped == 1:
            valid = sp.true
        elif isinstance(wrapped, sp.Piecewise) and len(wrapped.args) == 2 and wrapped.args[1] == (0, True):
            valid = wrapped.args[0][1]
        else:
            fail(f"`output_derivative_valid` is not a condition: {cond_text!r}", key="output_derivative_valid",
                 fix='a condition on the parameters, e.g. "alpha >= 0"')
        if X in valid.free_symbols or Y in valid.free_symbols:
            fail("`output_derivative_valid` is a condition on the parameters only",
                 key="output_derivative_valid", fix='e.g. "alpha >= 0"')
    return expr, valid


def parse_spec_text(text: str, *, path: str = "<string>") -> list[Activation]:
    """Parse the text of a spec file into its activations, in file order."""
    tables = read_tables(text, path=path)
    return [parse_table(name, resolve_table(tables, name, path), path=path) for name in tables]


def read_spec_file(path: str | Path) -> list[Activation]:
    """Read and parse a spec file, with errors that name it."""
    return parse_spec_text(read_spec_text(path), path=str(path))
