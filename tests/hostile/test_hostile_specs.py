"""A corpus of hostile and broken spec files, each with the exact error it must produce.

Every case is a spec file (text, raw bytes, or something made on disk: a FIFO, a directory, a
10 MB file) and the error it must raise: the type, the activation and key the error names
(SpecError carries them as attributes), phrases of the problem and of the fix. Each case is
tried twice:

* through the Python API: ``actgen.load(name, spec=FILE)`` raises the typed error, runs nothing
  from the file and writes no file to the cache;
* through the CLI, in process (``actgen.cli.main(["build", FILE])``): exit status 1, exactly one
  ``actgen: error:`` line, no traceback, nothing written to the working directory or the cache.

A few cases also run as a real ``python -m actgen.cli build FILE`` subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Union

import pytest

import actgen
from actgen import cli
from actgen.errors import DerivationError, SpecError, UnknownActivationError

ROOT = Path(__file__).resolve().parents[2]

SpecSource = Union[str, bytes, Callable[[Path], Path]]

EXPR_ONLY = "use only arithmetic, comparisons and the listed functions"
CALL_FIX = "call a listed function by its name"
NAMES_FIX = "every other name must be declared in `params`"
NOT_NUMBER_FIX = "strings, bytes and complex numbers are not allowed"
NESTING_FIX = "an activation never needs such nesting"
EXPR_FIX = "write an expression in x with numbers, the declared parameters"
TOML_FIX = "check the TOML syntax"


@dataclass(frozen=True)
class Case:
    id: str
    spec: SpecSource
    error: type
    activation: str | None       # what the error names as the activation (None: a file-level error)
    key: str | None              # the key it names
    phrases: tuple[str, ...]     # in the message
    fix: str | None              # in the fix line (None only for UnknownActivationError)
    name: str = "a"              # the activation to load
    cli: bool = True             # `actgen build FILE` fails too (it builds every table of the file)


def expr(text: str, extra: str = "", name: str = "a") -> str:
    """A one-table spec with ``expr`` as a TOML literal string (so quotes need no escaping)."""
    return f"[{name}]\nexpr = '''{text}'''\n{extra}"


def _fifo(tmp: Path) -> Path:
    path = tmp / "fifo.toml"
    os.mkfifo(path)
    return path


def _directory(tmp: Path) -> Path:
    path = tmp / "dir.toml"
    path.mkdir()
    return path


def _ten_megabytes(tmp: Path) -> Path:
    path = tmp / "big.toml"
    with open(path, "wb") as f:
        f.write(b'[a]\nexpr = "x"\n')
        f.write((b"# padding " * 100 + b"\n") * 10_400)
    return path


def _missing(tmp: Path) -> Path:
    return tmp / "missing.toml"


def _many_tables(tmp: Path) -> Path:
    path = tmp / "many.toml"
    path.write_text("".join(f'[a{i}]\nexpr = "{i} * x"\n' for i in range(300)))
    return path


M = "{marker}"   # replaced by a path the payload would create if it ever ran

CASES = [
    # ---- code injection: nothing is ever evaluated, every node type is whitelisted ----
    Case("import", expr(f"__import__('os').system('touch {M}')", name="evil"), SpecError, "evil", "expr",
         ("only the listed functions can be called, not `__import__('os').system`",), CALL_FIX, name="evil"),
    Case("dunder_import", expr("__import__('os')", name="evil"), SpecError, "evil", "expr",
         ("unknown function `__import__`",), "allowed: Abs", name="evil"),
    Case("dunder_attr", expr("x.__class__", name="evil"), SpecError, "evil", "expr",
         ("attribute access (a.b) is not allowed",), EXPR_ONLY, name="evil"),
    Case("dunder_chain", expr("x.__class__.__mro__[1].__subclasses__()", name="evil"), SpecError, "evil",
         "expr", ("only the listed functions can be called",), CALL_FIX, name="evil"),
    Case("lambda_call", expr(f"(lambda: __import__('os').system('touch {M}'))()", name="evil"), SpecError,
         "evil", "expr", ("only the listed functions can be called, not `lambda",), CALL_FIX, name="evil"),
    Case("lambda", expr("lambda x: x", name="evil"), SpecError, "evil", "expr",
         ("lambda is not allowed",), EXPR_ONLY, name="evil"),
    Case("list_comprehension", expr("[c for c in ().__class__.__bases__]", name="evil"), SpecError, "evil",
         "expr", ("a comprehension is not allowed",), EXPR_ONLY, name="evil"),
    Case("generator", expr("sum(c for c in (x, x))", name="evil"), SpecError, "evil", "expr",
         ("unknown function `sum`",), "allowed: Abs", name="evil"),
    Case("fstring", expr("f'{__import__(\"os\").getcwd()}'", name="evil"), SpecError, "evil", "expr",
         ("an f-string is not allowed",), EXPR_ONLY, name="evil"),
    Case("eval", expr("eval('x')", name="evil"), SpecError, "evil", "expr",
         ("unknown function `eval`",), "allowed: Abs", name="evil"),
    Case("exec", expr("exec('import os')", name="evil"), SpecError, "evil", "expr",
         ("unknown function `exec`",), "allowed: Abs", name="evil"),
    Case("open", expr(f"open('{M}', 'w')", name="evil"), SpecError, "evil", "expr",
         ("unknown function `open`",), "allowed: Abs", name="evil"),
    Case("getattr", expr("getattr(x, '__class__')", name="evil"), SpecError, "evil", "expr",
         ("unknown function `getattr`",), "allowed: Abs", name="evil"),
    Case("subscript", expr("x[0]", name="evil"), SpecError, "evil", "expr",
         ("indexing (a[b]) is not allowed",), EXPR_ONLY, name="evil"),
    Case("starred", expr("exp(*[x])", name="evil"), SpecError, "evil", "expr",
         ("a starred argument is not allowed",), EXPR_ONLY, name="evil"),
    Case("walrus", expr("(y := x)", name="evil"), SpecError, "evil", "expr",
         ("an assignment expression (:=) is not allowed",), EXPR_ONLY, name="evil"),
    Case("call_on_call", expr("exp(x)(x)", name="evil"), SpecError, "evil", "expr",
         ("only the listed functions can be called, not `exp(x)`",), CALL_FIX, name="evil"),
    Case("builtins_name", expr("__builtins__", name="evil"), SpecError, "evil", "expr",
         ("unknown name `__builtins__`",), NAMES_FIX, name="evil"),
    Case("statement", expr("x\nimport os", name="evil"), SpecError, "evil", "expr",
         ("syntax error",), "write one Python-syntax expression", name="evil"),
    Case("conditional", expr("x if x > 0 else 0", name="evil"), SpecError, "evil", "expr",
         ("a conditional expression (a if c else b) is not allowed",), EXPR_ONLY, name="evil"),
    Case("dict_literal", expr("{'a': x}", name="evil"), SpecError, "evil", "expr",
         ("a dict is not allowed",), EXPR_ONLY, name="evil"),
    Case("keyword_argument", expr("exp(x=1)", name="evil"), SpecError, "evil", "expr",
         ("keyword arguments are not allowed in `exp(...)`",), "pass arguments by position", name="evil"),
    Case("string_literal", expr("'text' * x", name="evil"), SpecError, "evil", "expr",
         ("literal 'text' is not a number",), NOT_NUMBER_FIX, name="evil"),
    Case("complex_literal", expr("1j * x", name="evil"), SpecError, "evil", "expr",
         ("literal 1j is not a number",), NOT_NUMBER_FIX, name="evil"),
    Case("floor_division", expr("x // 2", name="evil"), SpecError, "evil", "expr",
         ("operator `x // 2` is not allowed",), "use + - * / **", name="evil"),

    # ---- unknown names, free symbols ----
    Case("free_symbol", expr("x * sigmoid(beta * x)"), SpecError, "a", "expr",
         ("unknown name `beta` (a free symbol that is neither x nor a parameter)",), NAMES_FIX),
    Case("unknown_function", expr("swish(x)"), SpecError, "a", "expr",
         ("unknown function `swish`",), "allowed: Abs"),
    Case("homoglyph_x", expr("\u0445 * 2"), SpecError, "a", "expr",        # Cyrillic kha
         ("unknown name `\u0445`",), NAMES_FIX),
    Case("function_as_value", expr("exp"), SpecError, "a", "expr",
         ("`exp` is a function; call it as exp(...)",), EXPR_FIX),
    Case("division_by_zero", expr("x / 0"), SpecError, "a", "expr",
         ("infinite or undefined constant",), "remove the division by zero"),
    Case("not_real", expr("sqrt(x)"), SpecError, "a", "expr",
         ("not real-valued", "complex at x = -1000"), "restrict it with Abs, Max or Piecewise"),

    # ---- wrong types and keys ----
    Case("expr_not_string", "[a]\nexpr = 42\n", SpecError, "a", "expr",
         ("`expr` must be a non-empty string",), 'e.g. expr = "x * sigmoid(x)"'),
    Case("expr_empty", "[a]\nexpr = ''\n", SpecError, "a", "expr",
         ("`expr` must be a non-empty string",), 'e.g. expr = "x * sigmoid(x)"'),
    Case("missing_expr", "[a]\ndescription = 'no expression'\n", SpecError, "a", "expr",
         ("missing `expr`",), 'add expr = "..."'),
    Case("params_not_table", expr("x", "params = 3\n"), SpecError, "a", "params",
         ("`params` must be a table of name = number",), "params = { beta = 1.0 }"),
    Case("param_string", expr("beta * x", "params = { beta = '1.0' }\n"), SpecError, "a", "params.beta",
         ("default of 'beta' is '1.0', not a number",), "write beta = 1.0"),
    Case("param_bool", expr("beta * x", "params = { beta = true }\n"), SpecError, "a", "params.beta",
         ("default of 'beta' is True, not a number",), "write beta = 1.0"),
    Case("param_reserved", expr("x", "params = { exp = 1.0 }\n"), SpecError, "a", "params.exp",
         ("parameter name 'exp' is reserved",), "choose another name"),
    Case("learnable_string", expr("beta * x", "params = { beta = 1.0 }\nlearnable = 'beta'\n"), SpecError,
         "a", "learnable", ("`learnable` must be a list of parameter names",), "learnable = [\"beta\"]"),
    Case("learnable_unknown", expr("beta * x", "params = { beta = 1.0 }\nlearnable = ['gamma']\n"),
         SpecError, "a", "learnable", ("learnable 'gamma' is not in params",), "add gamma = <default>"),
    Case("unknown_key", expr("x", "exprr = 'x'\n"), SpecError, "a", "exprr",
         ("unknown key 'exprr'",), "did you mean 'expr'?"),
    Case("value_not_table", "a = 'x * sigmoid(x)'\n", SpecError, "a", None,
         ("is a value, not a table",), "write [a] followed by expr"),
    Case("bad_name", expr("x", name="Bad-Name"), SpecError, "Bad-Name", None,
         ("invalid activation name 'Bad-Name'",), "use lowercase letters", name="Bad-Name"),
    Case("unknown_kind", expr("x", "kind = 'banana'\n"), SpecError, "a", "kind",
         ("unknown kind 'banana'",), "kind is one of elementwise"),
    Case("gate_itself", "[a]\ngate = 'a'\n", SpecError, "a", "gate",
         ("cannot be its own gate",), 'gate = "sigmoid"'),
    Case("not_in_file", '[b]\nexpr = "x"\n', UnknownActivationError, None, None,
         ("no activation named 'a'", "it has: b"), None, cli=False),

    # ---- duplicate tables and keys (invalid TOML) ----
    Case("duplicate_table", '[a]\nexpr = "x"\n[a]\nexpr = "2 * x"\n', SpecError, None, None,
         ("invalid TOML", "Cannot declare ('a',) twice"), TOML_FIX),
    Case("duplicate_key", '[a]\nexpr = "x"\nexpr = "2 * x"\n', SpecError, None, None,
         ("invalid TOML", "Cannot overwrite a value"), TOML_FIX),

    # ---- NaN / inf ----
    Case("nan_default", expr("beta * x", "params = { beta = nan }\n"), SpecError, "a", "params.beta",
         ("default of 'beta' is nan",), "give a number"),
    Case("inf_budget", expr("x", "budgets = { 'forward.float64' = inf }\n"), SpecError, "a",
         "budgets.forward.float64", ("must be a positive finite number (ULPs), not inf",), '"forward.float64" = 16'),
    Case("nan_budget", expr("x", "budgets = { 'forward.float32' = nan }\n"), SpecError, "a",
         "budgets.forward.float32", ("not nan",), '"forward.float32" = 16'),
    Case("overflowing_float", expr("1e999 * x"), SpecError, "a", "expr",
         ("float literal 1e999 is out of range",), EXPR_FIX),

    # ---- huge literals and powers ----
    Case("power_tower", expr("x**10**10"), SpecError, "a", "expr",
         ("exponent 10000000000 is too large (limit 1000)",), "an activation never needs such a power"),
    Case("constant_tower", expr("10**10**10 * x"), SpecError, "a", "expr",
         ("exponent 10000000000 is too large",), "an activation never needs such a power"),
    Case("huge_integer", expr("1" * 500 + " * x"), SpecError, "a", "expr",
         ("integer literal with more than 400 digits",), EXPR_FIX),
    Case("huge_constant_power", expr("(10**400)**2 * x"), SpecError, "a", "expr",
         ("is out of range (about 10**800)", "(401 chars)"), "write the constant as a float literal"),
    Case("huge_rational_exponent", expr("x**(10**400/3)"), SpecError, "a", "expr",
         ("is too large (limit 1000)",), "an activation never needs such a power"),
    Case("overflowing_function", expr("exp(exp(exp(exp(10)))) * x"), SpecError, "a", "expr",
         ("the constant exp(exp(exp(exp(10)))) overflows",), "at most 1e300"),
    Case("beyond_double", expr("x * sin(10**399)"), SpecError, "a", "expr",
         ("out of the range of a double",), "between 1e-300 and 1e300"),
    Case("huge_default", expr("b * x", "params = { b = 99999999999999999999 }\n"), SpecError, "a", "params.b",
         ("too large to be exact in float64",), "write it as a float"),

    # ---- deep nesting: a clear error, never a RecursionError ----
    Case("parentheses_1e5", expr("(" * 100_000 + "x" + ")" * 100_000), SpecError, "a", "expr",
         ("the expression is 200,001 characters; the limit is 10,000",), EXPR_FIX),
    Case("parentheses_3000", expr("(" * 3000 + "x" + ")" * 3000), SpecError, "a", "expr",
         ("nested too deeply",), NESTING_FIX),
    Case("unary_minus_9000", expr("-" * 9000 + "x"), SpecError, "a", "expr",
         ("nested",), NESTING_FIX),
    Case("unary_minus_500", expr("-" * 500 + "x"), SpecError, "a", "expr",
         ("nested more than 100 levels deep",), NESTING_FIX),
    Case("nested_functions", expr("sin(" * 60 + "x" + ")" * 60), SpecError, "a", "expr",
         ("nests functions 61 levels deep (limit 32)",), NESTING_FIX),
    Case("toml_arrays_1e5", expr("x", "p = " + "[" * 100_000 + "]" * 100_000 + "\n"), SpecError, None, None,
         ("arrays or tables nested too deeply",), "no nesting"),
    Case("toml_inline_tables", expr("x", "p = " + "{a=" * 3000 + "1" + "}" * 3000 + "\n"), SpecError, None,
         None, ("arrays or tables nested too deeply",), "no nesting"),

    # ---- size limits ----
    Case("ten_megabytes", _ten_megabytes, SpecError, None, None,
         ("bytes; a spec file may be at most 1,048,576",), "split a large one"),
    Case("many_tables", _many_tables, SpecError, None, None,
         ("300 activation tables; a spec file may have at most 256",), "split a large one"),
    Case("long_expression", expr("+".join(f"sin({k}*x)/{k}" for k in range(1, 151))), SpecError, "a",
         "expr", ("more than 400 terms and operations",), "the built-in activations have at most 30"),
    Case("derivative_explodes", expr("*".join(f"sigmoid({k}*x)" for k in range(1, 41))), DerivationError, "a",
         "expr", ("the derivative with respect to x", "more than 2,000 operations"),
         "the built-in activations' derivatives have at most 60 nodes"),
    Case("parameter_gradient_explodes",
         expr("x * " + "*".join(f"sigmoid({k}*b)" for k in range(1, 41)), "params = { b = 0.5 }\nlearnable = ['b']\n"),
         DerivationError, "a", "expr", ("the derivative with respect to b", "more than 2,000 operations"),
         "derivatives have at most 60 nodes"),

    # ---- bytes: encodings, empty files, odd files ----
    Case("invalid_utf8", b'[a]\nexpr = "x" # caf\xe9\n', SpecError, None, None,
         ("not valid UTF-8 (byte 20)",), "save the file as UTF-8"),
    Case("utf16", '[a]\nexpr = "x"\n'.encode("utf-16"), SpecError, None, None,
         ("not valid UTF-8 (byte 0)",), "save the file as UTF-8"),
    Case("empty", b"", SpecError, None, None, ("no activation tables",), "`actgen new myact`"),
    Case("only_comments", "# nothing here\n\n", SpecError, None, None, ("no activation tables",),
         "`actgen new myact`"),
    Case("nul_byte", b'[a]\nexpr = "x\x00"\n', SpecError, None, None,
         ("invalid TOML", "Illegal character"), TOML_FIX),
    Case("bom_twice", "\ufeff\ufeff[a]\nexpr = 'x'\n", SpecError, None, None, ("invalid TOML",), TOML_FIX),
    Case("fifo", _fifo, SpecError, None, None, ("cannot read spec file: it is not a regular file",),
         "name a .toml file"),
    Case("directory", _directory, SpecError, None, None, ("cannot read spec file: it is a directory",),
         "name a .toml file"),
    Case("missing_file", _missing, SpecError, None, None, ("cannot read spec file: No such file",),
         "check the path"),
]

IDS = [c.id for c in CASES]
assert len(set(IDS)) == len(IDS)

#: run as a real subprocess too (each costs an interpreter start)
SUBPROCESS = ("import", "fstring", "parentheses_1e5", "toml_arrays_1e5", "ten_megabytes", "invalid_utf8",
              "derivative_explodes", "fifo")


def test_the_corpus_has_at_least_forty_hostile_specs():
    assert len(CASES) >= 40


def materialize(case: Case, where: Path) -> Path:
    """Write the case's spec file under ``where`` (the marker path filled in); return its path."""
    where.mkdir(parents=True, exist_ok=True)
    if callable(case.spec):
        return case.spec(where)
    path = where / f"{case.id}.toml"
    data = case.spec
    if isinstance(data, str):
        data = data.replace(M, str(where / "pwned")).encode("utf-8")
    path.write_bytes(data)
    return path


def files_under(path: Path) -> list[Path]:
    """The files under ``path``, except empty lock files (a lock is a file that flock holds; a
    spec refused while it is lowered, e.g. for its derivative, was lowered under its lock) and
    the cache's compiled templates (jinja/: actgen's own templates, whole, whatever the spec)."""
    if not path.exists():
        return []
    return sorted(p for p in path.rglob("*")
                  if p.is_file() and not (p.parent.name == "locks" and p.stat().st_size == 0)
                  and not (p.parent.name == "jinja" and p.suffix == ".jinja"))


def check_error(case: Case, error: BaseException, path: Path) -> None:
    message = str(error)
    assert type(error) is case.error, (type(error), message)
    for phrase in case.phrases:
        assert phrase in message, (phrase, message)
    assert len(message) < 600, message       # never the whole 10 MB file or a 400-digit number
    assert str(path) in message
    if isinstance(error, SpecError):
        assert error.path == str(path)
        assert error.activation == case.activation, (error.activation, message)
        assert error.key == case.key, (error.key, message)
        assert error.fix and case.fix in error.fix, (case.fix, message)
        assert f"\n  fix: {error.fix}" in message


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_the_api_refuses_with_a_typed_error_and_writes_nothing(case, tmp_path, fresh_cache):
    path = materialize(case, tmp_path / "specs")
    with pytest.raises(actgen.ActgenError) as info:
        actgen.load(case.name, spec=path)
    check_error(case, info.value, path)
    assert not (tmp_path / "specs" / "pwned").exists()
    assert files_under(fresh_cache.parent) == []


@pytest.mark.parametrize("case", [c for c in CASES if c.cli], ids=[c.id for c in CASES if c.cli])
def test_the_cli_exits_1_with_one_error_line_and_leaves_no_files(case, tmp_path, fresh_cache, capsys,
                                                                  monkeypatch):
    path = materialize(case, tmp_path / "specs")
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    status = cli.main(["build", str(path)])
    out, err = capsys.readouterr()
    assert status == 1
    assert out == ""
    assert [line for line in err.splitlines() if line.startswith("actgen: error:")] == err.splitlines()[:1]
    assert err.startswith(f"actgen: error: {path}")
    assert "Traceback" not in err
    for phrase in case.phrases:
        assert phrase in err
    assert files_under(work) == []
    assert files_under(fresh_cache.parent) == []
    assert not (tmp_path / "specs" / "pwned").exists()


@pytest.mark.parametrize("case_id", SUBPROCESS)
def test_the_cli_subprocess_never_shows_a_traceback(case_id, tmp_path):
    case = next(c for c in CASES if c.id == case_id)
    path = materialize(case, tmp_path / "specs")
    work, cache = tmp_path / "cwd", tmp_path / "cache"
    work.mkdir()
    proc = subprocess.run([sys.executable, "-m", "actgen.cli", "build", str(path)], cwd=work,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "ACTGEN_CACHE_DIR": str(cache),
                               "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])})
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert lines[0].startswith(f"actgen: error: {path}"), proc.stderr
    assert sum(line.startswith("actgen: error:") for line in lines) == 1
    assert "Traceback" not in proc.stderr
    for phrase in case.phrases:
        assert phrase in proc.stderr
    assert files_under(work) == [] and files_under(cache) == []
    assert not (tmp_path / "specs" / "pwned").exists()


def test_a_leading_byte_order_mark_is_accepted(tmp_path):
    """Some Windows editors write one; TOML forbids it, actgen drops it (only one, only first)."""
    from actgen.spec import read_spec_file

    path = tmp_path / "bom.toml"
    path.write_bytes("\ufeff[a]\nexpr = 'x * sigmoid(x)'\n".encode("utf-8"))
    (act,) = read_spec_file(path)
    assert act.name == "a" and str(act.expr) == "x*sigmoid(x)"


def test_an_exploding_derivative_is_refused_by_count_before_sympy_differentiates(monkeypatch):
    """The guard is a count on the tree, not a clock: sp.diff is never called for it."""
    import sympy as sp

    from actgen import derive
    from actgen.ir import X
    from actgen.spec import parse_expression

    expr = parse_expression("*".join(f"sigmoid({k}*x)" for k in range(1, 81)))
    assert derive.derivative_size_estimate(expr, X) > derive.MAX_DERIVATIVE_ESTIMATE

    def no_diff(*args, **kwargs):
        raise AssertionError("sp.diff was called")

    monkeypatch.setattr(derive.sp, "diff", no_diff)
    with pytest.raises(DerivationError, match="would have more than 2,000 operations"):
        derive.differentiate(expr, X)
    assert sp.diff is no_diff


def test_the_derivative_estimate_bounds_the_builtins_and_the_limit_leaves_room():
    """Every built-in's derivative is far below the limit, and the estimate is from above."""
    from actgen import derive, library
    from actgen.ir import X
    from actgen.spec import parse_table
    from actgen.specfile import read_tables, resolve_table

    for name in library.names():
        where = library.display_path(name)
        act = parse_table(name, resolve_table(read_tables(library.read(name), path=where), name, where),
                          path=where)
        actual = derive._size(derive.differentiate(act.expr, X), 10**6)
        # the largest: tanhshrink's rational form for |x| < 2, 411 nodes (most are below 100)
        assert actual * 4 < derive.MAX_DERIVATIVE_NODES, name
        assert derive.derivative_size_estimate(derive.ties_to_piecewise(act.expr, X), X) >= actual, name
