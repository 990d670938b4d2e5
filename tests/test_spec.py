"""Spec files: the format, the safe expression parser, and every rejection message."""

from __future__ import annotations

import sympy as sp
import pytest

from actgen.ir import X, param_symbol
from actgen.errors import SpecError, UnknownActivationError
from actgen.functions import sigmoid
from actgen.spec import find_table, parse_spec_text, read_spec_file, read_tables

SWISH = '''
[swish]
expr = "x * sigmoid(beta * x)"     # SymPy syntax; the input is always x
params = { beta = 1.0 }            # named scalar parameters and their defaults
learnable = ["beta"]               # optional
description = "Swish with a slope" # optional
'''


def test_the_documented_example_parses():
    (act,) = parse_spec_text(SWISH, path="s.toml")
    beta = param_symbol("beta")
    assert act.name == "swish"
    assert act.expr == X * sigmoid(beta * X)
    assert act.params == {"beta": 1.0}
    assert act.learnable == ("beta",)
    assert act.description == "Swish with a slope"


def test_several_tables_keep_file_order_and_params_keep_declaration_order():
    text = '[b]\nexpr = "x"\n[a]\nexpr = "x * z * w"\nparams = { z = 2, w = 3.5 }\n'
    acts = parse_spec_text(text, path="t.toml")
    assert [a.name for a in acts] == ["b", "a"]
    assert list(acts[1].params) == ["z", "w"] and acts[1].params == {"z": 2.0, "w": 3.5}


def test_decimal_literals_are_exact_rationals():
    (act,) = parse_spec_text('[h]\nexpr = "0.2 * x + 0.5"\n', path="h.toml")
    assert act.expr == sp.Rational(1, 5) * X + sp.Rational(1, 2)


def test_every_listed_function_and_constant_is_accepted():
    expr = ("exp(x) + log(2 + x**2) + sqrt(1 + x**2) + Abs(x) + sign(x) + Max(0, x) + Min(x, 6) "
            "+ Heaviside(x) + tanh(x) + sinh(x) + cosh(x) + atan(x) + sin(x) + cos(x) + erf(x) "
            "+ erfc(x) + sigmoid(x) + softplus(x) + log1p(x**2) + expm1(x) + pi + E "
            "+ Piecewise((x, (x > 0) & (x < 1) | Eq(x, 3)), (0, True))")
    (act,) = parse_spec_text(f'[all]\nexpr = "{expr}"\n', path="a.toml")
    assert act.expr.has(sigmoid) and act.expr.has(sp.Piecewise)


def test_python_comparison_operators_and_chains_become_sympy_relations():
    (act,) = parse_spec_text('[p]\nexpr = "Piecewise((x, 0 < x <= 1), (0, x == 5), (1, True))"\n',
                             path="p.toml")
    pw = act.expr
    assert pw.args[0].cond == sp.And(X > 0, X <= 1)
    assert pw.args[1].cond == sp.Eq(X, 5)


# ---- rejections: (spec text, fragments the message must contain) -----------------------
BAD = [
    ('[a]\nexpr = "x" +\n', ["bad.toml", "invalid TOML"]),
    ("", ["bad.toml", "no activation tables", "actgen new"]),
    ('[a]\nparams = { b = 1.0 }\n', ["[a]", "expr", "missing `expr`"]),
    ('[a]\nexpr = ""\n', ["[a]", "expr", "non-empty"]),
    ('[a]\nexpr = "   "\n', ["[a]", "non-empty"]),
    ('[a]\nexpr = 3\n', ["[a]", "non-empty string"]),
    ('[a]\nexpr = "frobnicate(x)"\n', ["[a] expr", "unknown function `frobnicate`"]),
    ('[a]\nexpr = "sigmod(x)"\n', ["unknown function `sigmod`", "did you mean `sigmoid`"]),
    ('[a]\nexpr = "x * bta"\nparams = { beta = 1.0 }\n',
     ["unknown name `bta`", "neither x nor a parameter", "did you mean `beta`"]),
    ('[a]\nexpr = "x * y"\n', ["unknown name `y`", "free symbol"]),
    ('[a]\nexpr = "x * b"\nparams = { b = "one" }\n', ["params.b", "not a number"]),
    ('[a]\nexpr = "x * b"\nparams = { b = true }\n', ["params.b", "not a number"]),
    ('[a]\nexpr = "x * b"\nparams = { b = nan }\n', ["params.b", "nan"]),
    ('[a]\nexpr = "x * b"\nparams = { b = [1, 2] }\n', ["params.b", "not a number"]),
    ('[a]\nexpr = "x"\nparams = 3\n', ["params", "table of name = number"]),
    ('[a]\nexpr = "x * b"\nparams = { b = 1.0 }\nlearnable = ["c"]\n',
     ["learnable", "'c' is not in params"]),
    ('[a]\nexpr = "x"\nlearnable = "b"\n', ["learnable", "list of parameter names"]),
    ('[a]\nexpr = "sqrt(x)"\n', ["[a] expr", "not real-valued", "complex at x = -1000"]),
    ('[a]\nexpr = "log(x)"\n', ["not real-valued"]),
    ('[a]\nexpr = "x ** 0.5"\n', ["not real-valued"]),
    ('[a]\nexpr = "x"\nexprs = "y"\n', ["unknown key 'exprs'", "allowed keys"]),
    ('[Bad-Name]\nexpr = "x"\n', ["invalid activation name"]),
    ('[a]\nexpr = "x * n"\nparams = { n = 1.0 }\n', ["params.n", "reserved"]),
    ('[a]\nexpr = "x * exp"\nparams = { exp = 1.0 }\n', ["params.exp", "reserved"]),
    ('[a]\nexpr = "x ^ 2"\n', ["`^` is not a power", "x**2"]),
    ('[a]\nexpr = "x > 0"\n', ["condition"]),
    ('[a]\nexpr = "Piecewise((x, x > 0))"\n', ["last Piecewise pair", "True"]),
    ('[a]\nexpr = "Piecewise((x, 1))"\n', ["is not a condition"]),
    ('[a]\nexpr = "exp"\n', ["`exp` is a function"]),
    ('[a]\nexpr = "exp(x, x)"\n', ["invalid call"]),
    ('[a]\nexpr = "x ** 10 ** 10"\n', ["exponent", "too large"]),
    ('[a]\nexpr = "10 ** 10 ** 10 * x"\n', ["exponent 10000000000 is too large"]),
    ('[a]\nexpr = "10 ** 500 * x"\n', ["the constant 10**500 is out of range"]),
    ('[a]\nexpr = "1e999 * x"\n', ["out of range"]),
    ('[a]\nexpr = "x +* 2"\n', ["syntax error"]),
    ('[a]\nexpr = "\'text\' * x"\n', ["not a number"]),
    ('[a]\nexpr = "exp(x=1)"\n', ["keyword arguments"]),
]


@pytest.mark.parametrize("text, fragments", BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_specs_are_rejected_with_a_message_naming_file_activation_and_problem(text, fragments):
    with pytest.raises(SpecError) as info:
        parse_spec_text(text, path="bad.toml")
    message = str(info.value)
    assert message.startswith("bad.toml"), message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


INJECTIONS = [
    "__import__('os').system('touch {marker}')",
    "x.__class__",
    "x.__class__.__mro__[1].__subclasses__()",
    "(lambda: __import__('os').system('touch {marker}'))()",
    "[c for c in ().__class__.__bases__]",
    "f'{{x}}'",
    "eval('1')",
    "exec('import os')",
    "open('{marker}', 'w')",
    "getattr(x, 'func')",
    "x if x > 0 else 0",
    "(y := x)",
    "exp(*[x])",
    "{{'a': x}}",
    "__builtins__",
    "x[0]",
]


@pytest.mark.parametrize("payload", INJECTIONS)
def test_code_in_a_spec_is_refused_and_never_run(payload, tmp_path):
    marker = tmp_path / "pwned"
    expr = payload.format(marker=marker)
    text = '[evil]\nexpr = """' + expr + '"""\n'
    with pytest.raises(SpecError) as info:
        parse_spec_text(text, path="evil.toml")
    assert "[evil] expr" in str(info.value)
    assert not marker.exists()


def test_reading_files_names_the_file(tmp_path):
    missing = tmp_path / "nope.toml"
    with pytest.raises(SpecError, match="nope.toml: cannot read spec file"):
        read_spec_file(missing)
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b'[a]\nexpr = "x" # caf\xe9\n')
    with pytest.raises(SpecError, match="latin1.toml: not valid UTF-8"):
        read_spec_file(bad)
    big = tmp_path / "big.toml"
    big.write_bytes(b"#" * (2 << 20))
    with pytest.raises(SpecError, match="big.toml: the file is .* bytes; a spec file may be at most"):
        read_spec_file(big)


def test_duplicate_tables_are_invalid_toml():
    with pytest.raises(SpecError, match="invalid TOML"):
        parse_spec_text('[a]\nexpr = "x"\n[a]\nexpr = "2*x"\n', path="d.toml")


def test_find_table_suggests_close_names():
    tables = read_tables('[swish]\nexpr = "x"\n', path="s.toml")
    with pytest.raises(UnknownActivationError, match="did you mean 'swish'"):
        find_table(tables, "swsh", "s.toml")


def test_an_overlong_expression_is_refused_before_parsing():
    text = '[a]\nexpr = "' + "+".join(["x"] * 6000) + '"\n'
    with pytest.raises(SpecError, match="the limit is 10,000"):
        parse_spec_text(text, path="long.toml")


def test_parsing_a_table_leaves_it_as_it_was():
    """A budget with its reason ({ ulp = inf, reason }) was written back into the caller's table as
    a bare inf, so parsing the same table again (a loaded activation's .activation) failed."""
    import copy

    from actgen.spec import parse_table

    table = {"expr": "x * tanh(x)",
             "budgets": {"forward.float64": {"ulp": float("inf"), "reason": "a reason"}}}
    before = copy.deepcopy(table)
    parse_table("t", table, path="t.toml")
    assert table == before
    parse_table("t", table, path="t.toml")
