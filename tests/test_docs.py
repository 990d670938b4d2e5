"""The generated documentation: docs/activations.md (the catalogue, kept in sync with the specs),
`actgen list` in its three forms, and docs/verification.md's renderer (on a small JSON)."""

from __future__ import annotations

import json
import math
import re
import tomllib
from pathlib import Path

import pytest

from actgen import catalogue, cli, docs, library

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def rendered() -> str:
    return docs.render_activations()


def test_activations_md_is_up_to_date(rendered):
    problems = docs.check(ROOT / "docs", rendered)
    assert not problems, "\n".join(problems)


def test_check_reports_a_diff_and_the_update_command(tmp_path, rendered):
    assert docs.check(tmp_path, rendered) == [f"missing: {tmp_path / 'activations.md'}",
                                              f"{tmp_path / 'activations.md'} is out of date; "
                                              "update it with: actgen docs docs"]
    (tmp_path / "activations.md").write_text(rendered.replace("f'(x) = 1\n", "f'(x) = 2\n", 1))
    problems = docs.check(tmp_path, rendered)
    assert "-f'(x) = 2" in problems and "+f'(x) = 1" in problems
    assert problems[-1].endswith("update it with: actgen docs docs")
    (tmp_path / "activations.md").write_text(rendered)
    assert docs.check(tmp_path, rendered) == []


def _section(text: str, name: str) -> str:
    match = re.search(rf"^## {re.escape(name)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"no section for {name}"
    return match.group(1)


def test_every_builtin_appears_with_its_parameters_in_the_checked_in_page():
    text = (ROOT / "docs" / "activations.md").read_text(encoding="utf-8")
    names = library.names()
    assert f"{len(names)} built-in activations" in text
    for name in names:
        table = tomllib.loads(library.read(name))[name]
        if "gate" in table:      # a gated table takes its gate's parameters
            gate = tomllib.loads(library.read(table["gate"]))[table["gate"]]
            table = {**table, **{k: gate[k] for k in ("params", "learnable") if k in gate}}
        assert f"| [{name}](#{name}) |" in text, name
        section = _section(text, name)
        assert f"`actgen/library/{name}.toml`" in section
        for p, default in table.get("params", {}).items():
            learnable = "yes" if p in table.get("learnable", []) else "no"
            assert f"| `{p}` | {float(default)!r} | {learnable} |" in section, (name, p)
        for key, value in table.get("frameworks", {}).items():
            assert " ".join(value.split()) in section, (name, key)
        for key in ("kink", "reference"):
            if key in table:
                assert " ".join(table[key].split()) in section, (name, key)


def test_derivatives_and_kink_values_are_actgens():
    entries = {e.name: e for e in catalogue.build(["prelu", "leaky_relu", "relu", "softplus", "swish",
                                                   "softmin", "glu", "hard_sigmoid"])}
    prelu = entries["prelu"]
    assert [(d.label, d.text) for d in prelu.derivatives] == [
        ("f'(x)", "Piecewise((1, x > 0), (alpha, True))"),
        ("df/dalpha", "Piecewise((0, x > 0), (x, True))")]
    assert prelu.kink_values == ("f'(0) = 0.25",)
    assert entries["leaky_relu"].kink_values == ("f'(0) = 0.01",)
    assert entries["relu"].kink_values == ("f'(0) = 0",)            # PyTorch's relu'(0)
    assert entries["hard_sigmoid"].kink_values == ("f'(-3) = 0", "f'(3) = 0")
    assert entries["softplus"].kink_values[0].startswith("f'(20) = sigmoid(20) ~= 0.99999999")
    # huge constants printed as floats, not 39-digit integers
    assert "3.4028234663852886e+38" in entries["relu"].formulas[0].text
    assert entries["swish"].derivatives[1].label == "df/dbeta"
    softmin = entries["softmin"]
    assert (softmin.kind_text, softmin.formulas[0].text, softmin.derivatives[0].text) == \
        ("rowwise (softmax)", "-x", "-1")
    assert "y_i * (dy_i - sum_j dy_j * y_j)" in softmin.backward_formula
    assert entries["glu"].kind_text == "gated (sigmoid)"
    assert [f.name for f in entries["glu"].frameworks] == ["PyTorch", "Keras", "JAX"]


def test_tidy_changes_how_a_derivative_reads_not_its_values():
    import sympy as sp

    from actgen.ir import X
    from actgen.derive import differentiate
    from actgen.spec import parse_spec_text

    for name in ("hard_sigmoid", "hard_sigmoid_keras2", "relu", "elu"):
        (act,) = parse_spec_text(library.read(name), path=name)
        d = differentiate(act.expr, X).subs({s: act.params[p] for p, s in act.symbols.items()})
        tidy = catalogue.tidy(d)
        for x in (-4, -3, -2.5, -1e-9, 0, 1e-9, 2.5, 3, 4):
            assert float(tidy.subs(X, sp.nsimplify(x))) == float(d.subs(X, sp.nsimplify(x))), (name, x)
    assert catalogue.tidy(differentiate(sp.Min(sp.Max(X + 3, 0), 6) / 6, X)).count(sp.Piecewise) == 1


def test_a_new_spec_in_the_library_is_catalogued_by_itself(monkeypatch):
    extra = {"temp_softmax": '[temp_softmax]\nkind = "rowwise"\nnormalizer = "softmax"\nexpr = "x / T"\n'
                             'params = { T = 2.0 }\nlearnable = ["T"]\ndescription = "Softmax at a temperature."\n'
                             'frameworks = { pytorch = "F.softmax(x / T, dim)", mxnet = "npx.softmax(x, temperature=T)" }\n',
             "swishglu": '[swishglu]\ngate = "swish"\ndescription = "a * swish(b)"\n'
                         'kink = "none"\nreference = "Shazeer 2020"\n'}
    names, read = library.names, library.read
    monkeypatch.setattr(library, "names", lambda: sorted(names() + list(extra)))
    monkeypatch.setattr(library, "read", lambda name: extra[name] if name in extra else read(name))
    rows = {r.name: r for r in catalogue.terse_rows()}
    assert catalogue.params_text(rows["temp_softmax"].params) == "T=2.0*"
    assert rows["swishglu"].kind == "gated (swish)" and catalogue.params_text(rows["swishglu"].params) == "beta=1.0*"
    text = catalogue.render_markdown(catalogue.build(["temp_softmax", "swishglu"]))
    section = _section(text, "temp_softmax")
    assert "s(x)  = x/T" in section and "ds/dT = -x/T**2" in section
    assert "| `T` | 2.0 | yes |" in section
    assert "- PyTorch: F.softmax(x / T, dim)\n- MXNet: npx.softmax(x, temperature=T)" in section
    swishglu = _section(text, "swishglu")
    assert "dg/dbeta = " in swishglu and "Kinks: none" in swishglu and "reference: Shazeer 2020" in swishglu


def test_list_terse_long_and_markdown(capsys, rendered):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["activation", "kind", "parameters", "frameworks"]
    assert re.search(r"^swish +elementwise +beta=1\.0\* +-?", out, re.M)
    assert re.search(r"^softmax +rowwise \(softmax\) +- +PyTorch, Keras, JAX$", out, re.M)
    assert f"{len(library.names())} built-in activations" in out
    assert cli.main(["list", "--markdown"]) == 0
    assert capsys.readouterr().out == rendered
    assert cli.main(["list", "--long"]) == 0
    out = capsys.readouterr().out
    assert "  df/dalpha =  Piecewise((0, x > 0), (x, True))" in out
    kinks = [line for line in out.split("\nleaky_relu ")[1].splitlines() if line.startswith("  kinks:")]
    assert kinks and kinks[0].endswith("f'(0) = 0.01"), kinks


# ---- docs/verification.md ----------------------------------------------------------------------

def _record(activation, kernel, kind, dtype, backend, max_ulp, error, budget, **extra):
    r = dict(activation=activation, backend=backend, dtype=dtype, kernel=kernel, kind=kind, points=389,
             max_ulp=max_ulp, p99_ulp=min(max_ulp, 1.0), worst_x=-3.5, worst_got=0.0, worst_ref=0.0,
             nonfinite_extra=0, nonfinite_missing=0, budget=budget, error=error, unit="ulp")
    r.update(extra)
    r["passed"] = r["error"] <= r["budget"] and not r["nonfinite_extra"] and not r["nonfinite_missing"]
    return r


RECORDS = [
    _record("gelu", "forward", "forward", "float32", "c", 1.0, 1.0, 4.0),
    _record("gelu", "backward", "backward", "float32", "c", 2.5e6, 3.0, 4.0),
    _record("gelu", "forward", "forward", "float32", "numpy", 6.0, 6.0, 4.0),          # over
    _record("swish", "grad_beta", "param_grad", "float64", "c", 0.0, 0.058, 64.0, unit="eps*sum|terms|"),
    _record("softmax", "forward_axis0", "forward", "float64", "c", 0.0, 0.0, 0.0, unit="ulp vs the plain kernel"),
    _record("softmax", "forward", "forward", "float64", "numpy", math.inf, 0.0, 8.0, nonfinite_extra=3),
]


def test_verification_page_from_a_small_json(tmp_path, capsys):
    path = tmp_path / "v.json"
    path.write_text(json.dumps(RECORDS))
    assert cli.main(["docs", str(tmp_path / "out"), "--verification", str(path)]) == 0
    text = (tmp_path / "out" / "verification.md").read_text()
    assert (tmp_path / "out" / "activations.md").exists()
    assert "6 kernel checks of 3 activations" in text and "2 over budget" in text
    assert f"Regenerate with `actgen docs {tmp_path / 'out'} --verification {path}`" in text
    # per activation: max and p99 ULPs, error, budget, non-finite counts, worst x, status
    assert "| forward | float32 | c | 389 | 1 | 1 | 1 | 4 | 0/0 | -3.5 | ok |" in _section3(text, "gelu")
    assert "| backward | float32 | c | 389 | 2.5e+06 | 1 | 3 | 4 | 0/0 | -3.5 | ok |" in text
    assert "| grad_beta | float64 | c | 389 | 0 | 0 | 0.058 (eps*sum\\|terms\\|) | 64 | 0/0 |  | ok |" in text
    assert "| forward | float64 | numpy | 389 | inf | 1 | 0 | 8 | 3/0 |  | OVER BUDGET |" in text
    over = text.split("## Over budget", 1)[1].split("## Per activation", 1)[0]
    assert "| gelu | forward | float32 | numpy | 6 |" in over and "| softmax | forward | float64 | numpy |" in over
    assert "| gelu |" not in over.replace("| gelu | forward | float32 | numpy", "")
    # the summary: worst error and error/budget per kind, dtype and backend
    assert "| forward | float32 | numpy | 1 | 6 | gelu forward | 1.50 | gelu forward | 0 | 1 |" in text
    assert "| forward | float64 | c | 1 | 0 | softmax forward_axis0 | 0.00 |" in text


def _section3(text: str, name: str) -> str:
    return text.split(f"### {name}\n", 1)[1].split("###", 1)[0]


def test_verification_page_without_failures_has_no_over_budget_section():
    text = docs.render_verification([r for r in RECORDS if r["passed"]], "actgen verify x")
    assert "## Over budget" not in text and "0 over budget" in text


@pytest.mark.parametrize("content, fragment", [
    ("not json", "not a JSON file from `actgen verify --json`"),
    ("[]", "(no records)"),
    ('[{"activation": "gelu"}]', "records lack backend"),
])
def test_a_bad_verify_json_is_one_error_line(tmp_path, capsys, content, fragment):
    path = tmp_path / "v.json"
    path.write_text(content)
    assert cli.main(["docs", str(tmp_path / "out"), "--verification", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("actgen: error: ") and fragment in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_verify_writes_the_markdown_page(tmp_path, capsys):
    out = tmp_path / "verification.md"
    assert cli.main(["verify", "linear", "--dtype", "float32", "--backend", "numpy", "--quick",
                     "--markdown", str(out)]) == 0
    text = out.read_text()
    assert f"`actgen verify linear --dtype float32 --backend numpy --quick --markdown {out}`" in text
    rows = [line for line in _section3(text, "linear").splitlines() if line.startswith("| forward |")]
    assert rows and rows[0].startswith("| forward | float32 | numpy |") and rows[0].endswith("| ok |")


def test_kink_values_on_the_page_are_what_the_kernels_return():
    """The page says what f'(k) is at each kink; the NumPy kernels must return just that."""
    from fractions import Fraction

    import numpy as np

    import actgen

    checked = 0
    for e in catalogue.build([n for n in library.names()
                              if catalogue.terse_rows([n])[0].kind == "elementwise"]):
        for text in e.kink_values:
            point, value = re.fullmatch(r"f'\((.+?)\) = (.+)", text).groups()
            want = (float(value.split(" ~= ")[-1]) if " ~= " in value
                    else float(value) if value in ("inf", "-inf") else float(Fraction(value)))
            x = np.array([float(point)])
            got = actgen.load(e.name, backend="numpy").backward(x, np.ones_like(x))[0]
            assert got == pytest.approx(want, rel=1e-15, abs=0), (e.name, text)
            checked += 1
    assert checked >= 5


def test_docs_verb_is_listed_and_has_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["docs", "--help"])
    assert exit_.value.code == 0 and "usage: actgen docs" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "docs " in capsys.readouterr().out
