"""The literature corpus (benchmarks/corpus/*.toml) and its runner (benchmarks/corpus.py).

Fast: every file is TOML that actgen's spec reader takes, every table parses with actgen's spec
parser (or is refused only for a C99 function the grammar does not have yet, which the corpus
includes on purpose), names are unique, every entry cites its source, and none is a copy of a
built-in. A small fixed sample is built and verified (C, float64, the quick sweep). The runner's
classification of outcomes (ok / refused / crashed / timeout) and its reading of `actgen show` are
tested on recorded texts, without running the corpus.
"""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path

import pytest

from actgen import library
from actgen.ir import X, param_symbol
from actgen.errors import SpecError
from actgen.reference import evaluate
from actgen.spec import parse_table
from actgen.specfile import read_spec_text, read_tables, resolve_table

from conftest import requires_cc

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "benchmarks" / "corpus"
FILES = sorted(CORPUS.glob("*.toml"))

#: functions of C99 <math.h> that SymPy has and the spec grammar does not have yet (issue 25, item 5);
#: a corpus table that uses one is refused today, and that refusal is a recorded finding
NOT_YET = {"asinh", "acosh", "atanh", "asin", "acos", "tan", "cbrt", "log2", "log10", "exp2", "hypot"}
#: points where the values of two activations are compared (tails, tiny inputs, both signs)
POINTS = [-30.0, -3.7, -1.3, -0.4, 3e-7, 0.3, 0.9, 1.6, 2.9, 12.0, 25.0]


def _tables():
    for path in FILES:
        tables = read_tables(read_spec_text(path), path=str(path))
        for name in tables:
            yield path, name, tables


@pytest.fixture(scope="module")
def parsed():
    """{name: Activation or the SpecError that refused it} for every corpus table."""
    out = {}
    for path, name, tables in _tables():
        try:
            out[name] = parse_table(name, resolve_table(tables, name, str(path)), path=str(path))
        except SpecError as exc:
            out[name] = exc
    return out


def test_the_corpus_has_at_least_160_entries_in_several_families():
    names = [name for _path, name, _tables in _tables()]
    assert len(names) >= 160
    assert len(FILES) >= 8


def test_names_are_unique_and_not_built_in_names():
    names = [name for _path, name, _tables in _tables()]
    assert len(names) == len(set(names)), sorted({n for n in names if names.count(n) > 1})
    assert not set(names) & set(library.names())


def test_every_table_parses_or_uses_a_function_the_grammar_lacks(parsed):
    refused = {name: exc for name, exc in parsed.items() if isinstance(exc, SpecError)}
    for name, exc in refused.items():
        m = re.search(r"unknown function `(\w+)`", str(exc))
        assert m and m.group(1) in NOT_YET, f"{name}: {exc}"
    assert len(refused) <= 8          # the corpus is about what actgen should build, not about refusals


def test_every_entry_cites_its_source():
    for _path, name, tables in _tables():
        table = tables[name]
        reference = table.get("reference", "")
        assert isinstance(reference, str) and len(reference) >= 20, name
        assert re.search(r"\b(19|20)\d\d\b", reference), f"{name}: no year in {reference!r}"
        assert table.get("description", "").strip(), name


def _values(act) -> tuple:
    params = {param_symbol(p): v for p, v in act.params.items()}
    out = []
    for x in POINTS:
        try:
            out.append(float(evaluate(act.expr, {**params, X: x}, 80)))
        except (ArithmeticError, ValueError, TypeError):
            out.append(math.nan)
    return tuple(out)


def _same(a, b) -> bool:
    return all((math.isnan(u) and math.isnan(v)) or abs(u - v) <= 1e-12 * max(1.0, abs(u)) for u, v in zip(a, b))


def test_no_entry_copies_a_built_in(parsed):
    """A copy: the same text, or the same values at the defaults (tails included) with the same
    parameters. Learnable generalisations that start at a built-in's values (a learnable threshold
    that starts at 0, PELU's a = b = 1) have parameters of their own and are not copies."""
    builtins = {}
    for name in library.names():
        tables = read_tables(library.read(name), path=name)
        act = parse_table(name, resolve_table(tables, name, name), path=name)
        builtins[name] = (act, _values(act))
    for name, act in parsed.items():
        if isinstance(act, SpecError):
            continue
        mine = _values(act)
        for other, (b, theirs) in builtins.items():
            if act.kind != b.kind:      # a gated table carries its gate's expression: compare gated ones
                continue
            assert act.expr_text.replace(" ", "") != b.expr_text.replace(" ", ""), f"{name} copies {other}"
            if sorted(act.params) == sorted(b.params):
                assert not _same(mine, theirs), f"{name} has the values of the built-in {other}"


def test_the_copy_check_sees_a_copy():
    """The check above finds a renamed built-in (so that it is not a test that cannot fail)."""
    tables = read_tables('[my_sparse_sigmoid]\nexpr = "Max(0, Min(1, (x + 1) / 2))"\n', path="t.toml")
    mine = parse_table("my_sparse_sigmoid", tables["my_sparse_sigmoid"], path="t.toml")
    theirs = parse_table("sparse_sigmoid", read_tables(library.read("sparse_sigmoid"), path="s")["sparse_sigmoid"],
                         path="s")
    assert _same(_values(mine), _values(theirs))


#: a few entries of different shapes that build and verify today (docs/corpus.md): a piecewise tanh,
#: an ELU with two learnable parameters, a composition with a naive softplus
SAMPLE = ["penalized_tanh", "pelu", "serf"]


@requires_cc
@pytest.mark.parametrize("name", SAMPLE)
def test_a_sample_builds_and_verifies(name, parsed):
    from actgen.verify import verify

    path = next(p for p, n, _t in _tables() if n == name)
    results = verify(parsed[name], spec=str(path), backends=("c",), dtypes=("float64",), quick=True)
    over = [f"{r.kernel} {r.dtype}: {r.error:g} > {r.budget:g}" for r in results if not r.passed]
    assert results and not over, over


# ---- the runner's reading of what the commands said --------------------------------------------

@pytest.fixture(scope="module")
def runner():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import corpus
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return corpus


def _result(rc=0, stdout="", stderr="", timed_out=False):
    return {"rc": rc, "stdout": stdout, "stderr": stderr, "seconds": 1.0, "cpu": 0.5, "timed_out": timed_out}


CRASH = """Traceback (most recent call last):
  File "/x/actgen/cli.py", line 80, in _build_activation
    lowered = lowered or lower_activation(act)
  File "/x/actgen/render.py", line 40, in lower_activation
    choices = choose_all(act)
  File "/x/actgen/select.py", line 500, in add_guards
    folded = fold_constants(e)
  File "/x/actgen/rewrite.py", line 90, in fold_constants
    return mpmath.mpf(v)
  File "/v/lib/python3.11/site-packages/mpmath/ctx_mp_python.py", line 77, in mpf_convert_arg
    raise TypeError("cannot create mpf from " + repr(x))
TypeError: cannot create mpf from zoo
"""


def test_runner_classifies_outcomes(runner):
    crashed = runner.outcome(_result(1, stderr=CRASH), "build")
    assert crashed["status"] == "crashed" and crashed["type"] == "TypeError"
    assert crashed["message"] == "cannot create mpf from zoo"
    assert crashed["where"] == "select"                 # the innermost actgen frame, rewrite.py
    assert crashed["innermost_frame"] == "mpmath.ctx_mp_python:mpf_convert_arg"
    refused = runner.outcome(_result(1, stderr="actgen: error: t.toml [a] expr: unknown function `asinh`\n"
                                               "  fix: use sinh\n"), "build")
    assert refused["status"] == "refused" and "unknown function" in refused["message"]
    assert runner.outcome(_result(timed_out=True, rc=-9), "build")["status"] == "timeout"
    assert runner.outcome(_result(-11), "build")["type"] == "signal 11"
    assert runner.outcome(_result(1, stdout="table"), "verify")["status"] == "ok"   # over budget: exit 1
    stray = runner.outcome(_result(0, stderr="RuntimeWarning: overflow\n"), "build")
    assert stray["status"] == "ok" and stray["stray_stderr"] == ["RuntimeWarning: overflow"]


def test_runner_times_and_kills_a_hung_command(runner):
    started = runner.run([sys.executable, "-c", "import time; time.sleep(30)"], None, timeout=0.5)
    assert started["timed_out"] and started["seconds"] < 10


def test_runner_reads_the_forms_actgen_show_prints(runner):
    text = """serf
  f(x) = x * erf(log(1 + exp(x)))
       = x*erf(log(exp(x) + 1))
  float32: rewritten, computed in double: max 1 ULP on the selection sweep
           generated as x*erf(softplus(x))  [rewrites: softplus]
  float64: rewritten: max 2 ULP on the selection sweep

  f'(x) = erf(log(exp(x) + 1))
  float32: as written: max 0 ULP (conditioned) on the selection sweep

  ---- generated c source (c/serf.c) ----
  float64: not a form
"""
    kernels = runner.parse_show(text)
    assert [k["kernel"] for k in kernels] == ["f(x)", "f'(x)"]
    assert kernels[0]["forms"]["float32"]["rewrites"] == "softplus"
    assert kernels[0]["forms"]["float64"]["choice"].startswith("rewritten")
    assert list(kernels[1]["forms"]) == ["float32"]


def test_runner_gives_each_table_a_text_of_its_own(runner):
    entries = runner.entries()
    assert len(entries) == len(list(_tables()))
    for e in entries:
        own = read_tables(e.text, path=e.name)
        assert own[e.name] == e.table
