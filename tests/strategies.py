"""Hypothesis strategies for differential fuzzing: random activation specs from the spec grammar.

An expression is a random composition of the functions a spec may call (actgen.functions:
exp log sqrt Abs sign Max Min Piecewise Heaviside tanh sinh cosh atan sin cos erf erfc sigmoid
softplus log1p expm1), the operators + - * / **, numbers (integers, decimals, exponents),
pi and E, and the spec's parameters (with defaults, some learnable). Piecewise takes one to
three branches whose conditions compare a subexpression with a random boundary and combine
comparisons with & | ~; most end with a (value, True) branch, some do not (undefined where no
condition holds). The output is the text of a spec file (TOML), exactly what a user would write.

Nothing here filters out invalid or nasty specs (complex-valued, poles, huge constants): each
one must be rejected with an ActgenError or build and verify (tests/test_fuzz.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

UNARY = ("exp", "log", "sqrt", "Abs", "sign", "Heaviside", "tanh", "sinh", "cosh", "atan", "sin", "cos",
         "erf", "erfc", "sigmoid", "softplus", "log1p", "expm1")
BINARY_FUNCTIONS = ("Max", "Min")
OPERATORS = ("+", "-", "*", "/")
PARAM_NAMES = ("a", "beta", "alpha", "k")
#: defaults a parameter may take: typical activation constants, a negative one, zero
DEFAULTS = (1.0, 0.5, 2.0, 1.702, 0.044715, -0.5, 0.0, 3, 1.0507)

_numbers = st.one_of(
    st.integers(-3, 6).map(str),
    st.sampled_from(["0.5", "1.5", "1.702", "0.044715", "2.5", "0.1", "1e-3", "6.0", "1.0507009873554805",
                     "1.6732632423543772", "20"]),
    st.builds(lambda m, e: f"{m}e{e}", st.integers(1, 9), st.integers(-8, 8)),
)


def _wrap(text: str) -> str:
    """Parenthesise anything but a plain name or number (negative numbers included)."""
    return text if text.replace(".", "").replace("_", "").isalnum() else f"({text})"


@st.composite
def _leaf(draw, params: tuple[str, ...]) -> str:
    choices = ["x", "x", "x", "number", "pi", "E"] + (["param"] * 2 if params else [])
    kind = draw(st.sampled_from(choices))
    if kind == "number":
        number = draw(_numbers)
        return f"({number})" if number.startswith("-") else number
    if kind == "param":
        return draw(st.sampled_from(params))
    return kind


@st.composite
def conditions(draw, params: tuple[str, ...], depth: int = 1) -> str:
    """A comparison of x (or a subexpression) with a boundary, or a combination with & | ~."""
    how = draw(st.sampled_from(["compare"] * 4 + (["and", "or", "not"] if depth > 0 else [])))
    if how == "compare":
        left = draw(st.one_of(st.just("x"), st.just("x"), expressions(params, depth=1)))
        boundary = draw(st.one_of(st.integers(-5, 5).map(str), _numbers,
                                  st.sampled_from(params) if params else st.just("0")))
        op = draw(st.sampled_from(["<", "<=", ">", ">=", ">", "<"]))
        return f"{_wrap(left)} {op} {_wrap(boundary)}"
    if how == "not":
        return f"~({draw(conditions(params, depth - 1))})"
    a, b = draw(conditions(params, depth - 1)), draw(conditions(params, depth - 1))
    return f"({a}) {'&' if how == 'and' else '|'} ({b})"


@st.composite
def expressions(draw, params: tuple[str, ...] = (), depth: int = 3) -> str:
    """The text of a random expression in x and ``params``, at most ``depth`` calls deep."""
    if depth <= 0:
        return draw(_leaf(params))
    kind = draw(st.sampled_from(["leaf", "unary", "unary", "unary", "binary", "binary", "binary", "power",
                                 "maxmin", "piecewise"]))
    sub = expressions(params, depth - 1)
    if kind == "leaf":
        return draw(_leaf(params))
    if kind == "unary":
        return f"{draw(st.sampled_from(UNARY))}({draw(sub)})"
    if kind == "binary":
        return f"{_wrap(draw(sub))} {draw(st.sampled_from(OPERATORS))} {_wrap(draw(sub))}"
    if kind == "power":
        exponent = draw(st.one_of(st.sampled_from(["2", "3", "(-1)", "(-2)", "0.5", "1.5", "(1/3)"]),
                                  st.sampled_from(params) if params else st.just("2")))
        return f"{_wrap(draw(sub))}**{exponent}"
    if kind == "maxmin":
        return f"{draw(st.sampled_from(BINARY_FUNCTIONS))}({draw(sub)}, {draw(sub)})"
    branches = [f"({draw(sub)}, {draw(conditions(params))})" for _ in range(draw(st.integers(1, 3)))]
    if draw(st.integers(0, 9)) > 0:
        branches.append(f"({draw(sub)}, True)")
    return f"Piecewise({', '.join(branches)})"


@dataclass(frozen=True)
class FuzzSpec:
    name: str
    expr: str
    params: dict
    learnable: tuple

    @property
    def toml(self) -> str:
        lines = [f"[{self.name}]", f"expr = {_toml_string(self.expr)}"]
        if self.params:
            lines.append("params = { " + ", ".join(f"{p} = {v!r}" for p, v in self.params.items()) + " }")
        if self.learnable:
            lines.append("learnable = [" + ", ".join(f'"{p}"' for p in self.learnable) + "]")
        return "\n".join(lines) + "\n"


def _toml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@st.composite
def specs(draw, max_depth: int = 3) -> FuzzSpec:
    """A random elementwise activation spec: expression, parameters with defaults, learnable ones."""
    names = tuple(draw(st.lists(st.sampled_from(PARAM_NAMES), max_size=2, unique=True)))
    params = {p: draw(st.sampled_from(DEFAULTS)) for p in names}
    learnable = tuple(p for p in names if draw(st.booleans()))
    expr = draw(expressions(names, depth=draw(st.integers(1, max_depth))))
    return FuzzSpec("fz", expr, params, learnable)
