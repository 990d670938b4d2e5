"""``actgen emit``: the standalone C sources compile with plain gcc (with and without OpenMP) and
their example prints the numbers the cffi-built kernels give."""

from __future__ import annotations

import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import actgen
from actgen.cli import main as cli_main
from actgen.emit import EXAMPLE_DY, EXAMPLE_X

GCC = shutil.which("gcc")
requires_gcc = pytest.mark.skipif(GCC is None, reason="no gcc on this machine")
#: what a user who vendors the sources may build them with: warnings are errors here
STRICT = ["-std=c99", "-Wall", "-Wextra", "-pedantic", "-Werror", "-O2"]
GENERATED = Path(__file__).resolve().parent.parent / "generated" / "c"

SPEC = '''\
[serfish]
expr = "x * erf(softplus(beta * x))"
params = { beta = 1.25 }
learnable = ["beta"]
description = "a SERF-like test activation"

[tanh_glu]
gate = "tanh"
description = "a * tanh(b)"
'''

TAGS = {"f32": np.float32, "f64": np.float64}


def _run_example(directory, name, openmp: bool) -> dict[str, np.ndarray]:
    exe = directory / (f"{name}_example" + ("_omp" if openmp else ""))
    command = [GCC, "-O2", *(["-fopenmp"] if openmp else []), "-std=c99", f"{name}.c", f"{name}_example.c",
               "-lm", "-o", str(exe)]
    built = subprocess.run(command, cwd=directory, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    ran = subprocess.run([str(exe)], capture_output=True, text=True, check=True)
    values = {}
    for line in ran.stdout.splitlines()[1:]:
        label, _, numbers = line.partition(":")
        values[label] = np.array([float(v) for v in numbers.split()])
    return values


def _expected(act, tag: str) -> dict[str, np.ndarray]:
    """The values the example prints, computed with actgen.load(...)'s kernels."""
    dt = TAGS[tag]
    x = np.array(EXAMPLE_X, dtype=dt)
    dy = np.array(EXAMPLE_DY, dtype=dt)
    out = {}
    if act.kind == "gated":
        dy = dy[:4]
    y = act(x)
    out[f"forward_{tag}"] = y
    out[f"backward_{tag}"] = act.backward(x, dy)
    if act.kind != "gated":
        if act.has_output_derivative:
            out[f"backward_y_{tag}"] = act.backward_from_output(y, dy)
    if act.kind == "elementwise":
        out[f"forward_deriv_{tag}_deriv"] = act.forward_with_derivative(x)[1]
    for p, g in act.param_grads(x, dy).items():
        out[f"grad_{p}_{tag}"] = np.array([g])
    if act.kind == "elementwise" and act.params:
        pc = {p: np.array([v, 0.75 * v], dtype=dt) for p, v in act.params.items()}
        x3, dy3 = x.reshape(2, 2, 2), dy.reshape(2, 2, 2)
        out[f"forward_pc_{tag}"] = act(x3, param_axis=1, **pc).ravel()
        out[f"backward_pc_{tag}"] = act.backward(x3, dy3, param_axis=1, **pc).ravel()
        for p, g in act.param_grads(x3, dy3, param_axis=1, **pc).items():
            out[f"grad_{p}_pc_{tag}"] = np.asarray(g)
    return out


def _check(values, act):
    expected = {**_expected(act, "f32"), **_expected(act, "f64")}
    assert set(expected) <= set(values), sorted(set(expected) - set(values))
    for label, want in expected.items():
        # the same C source; only libm vs libmvec and compiler flags may differ (a few ULPs)
        rtol = 4e-6 if label.endswith("f32") or "_f32_" in label else 1e-13
        np.testing.assert_allclose(values[label], np.asarray(want, dtype=np.float64), rtol=rtol, atol=1e-300,
                                   err_msg=f"{act.name}: {label}")
    np.testing.assert_array_equal(values["x"], EXAMPLE_X)


@requires_gcc
@pytest.mark.parametrize("openmp", [True, False], ids=["fopenmp", "no-openmp"])
def test_emit_builtin_swish_compiles_and_matches_load(tmp_path, capsys, openmp):
    out = tmp_path / "vendor"
    assert cli_main(["emit", "swish", "--c", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["actgen_dd.h", "actgen_math.h", "swish.c", "swish.h", "swish_example.c"]
    header = (out / "swish.h").read_text()
    assert "gcc -O2 -fopenmp -std=c99 swish.c swish_example.c -lm" in header
    assert "#define ACTGEN_SWISH_BETA_DEFAULT 1.0" in header
    assert "Python" not in (out / "swish.c").read_text() and "cffi" not in (out / "swish.c").read_text()
    values = _run_example(out, "swish", openmp)
    _check(values, actgen.load("swish"))
    assert "grad_beta_pc_f32" in values and values["grad_beta_pc_f32"].shape == (2,)


@requires_gcc
def test_emit_spec_file_elementwise_and_gated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.toml").write_text(SPEC)
    assert cli_main(["emit", "mine.toml", "--c", "out"]) == 0
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["actgen_dd.h", "actgen_math.h", "serfish.c", "serfish.h", "serfish_example.c", "tanh_glu.c", "tanh_glu.h",
                     "tanh_glu_example.c"]
    for name in ("serfish", "tanh_glu"):
        _check(_run_example(tmp_path / "out", name, openmp=True), actgen.load(name, spec="mine.toml"))


@requires_gcc
def test_emit_rowwise_softmax(tmp_path):
    assert cli_main(["emit", "softmax", "--c", str(tmp_path)]) == 0
    values = _run_example(tmp_path, "softmax", openmp=False)
    _check(values, actgen.load("softmax"))
    assert "backward_y_f64" in values
    # a second activation into the same folder: its actgen_math.h is the one already there
    assert cli_main(["emit", "log_softmax", "--c", str(tmp_path)]) == 0
    _check(_run_example(tmp_path, "log_softmax", openmp=False), actgen.load("log_softmax"))


def test_emit_refuses_to_overwrite_and_names_must_exist(tmp_path, capsys):
    (tmp_path / "mine.toml").write_text(SPEC)
    spec = str(tmp_path / "mine.toml")
    out = tmp_path / "out"
    out.mkdir()
    (out / "tanh_glu.h").write_text("mine\n")
    assert cli_main(["emit", spec, "tanh_glu", "--c", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("actgen: error:") and "--force" in err and "Traceback" not in err
    assert (out / "tanh_glu.h").read_text() == "mine\n" and sorted(p.name for p in out.iterdir()) == ["tanh_glu.h"]

    assert cli_main(["emit", spec, "nope", "--c", str(tmp_path / "other")]) == 1
    assert "no activation [nope]" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()

    assert cli_main(["emit", spec, "tanh_glu", "--c", str(out), "--force"]) == 0
    assert "tanh_glu_forward_f32" in (out / "tanh_glu.h").read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]   # no temporary left


def test_emit_bad_spec_writes_nothing(tmp_path, capsys):
    (tmp_path / "bad.toml").write_text('[bad]\nexpr = "x * undefined_function(x)"\n')
    assert cli_main(["emit", str(tmp_path / "bad.toml"), "--c", str(tmp_path / "out")]) == 1
    assert capsys.readouterr().err.startswith("actgen: error:")
    assert not (tmp_path / "out").exists()


def _compiler(name):
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (Debian: apt-get install {name})")
    return path


def _strict_errors(cc, openmp, sources, include):
    """(source, stderr) of each source that does not compile cleanly with STRICT flags."""
    def one(src):
        proc = subprocess.run([cc, *STRICT, *(["-fopenmp"] if openmp else []), f"-I{include}", "-c", str(src),
                               "-o", "/dev/null"], capture_output=True, text=True)
        return (src.name, proc.stderr) if proc.returncode != 0 or proc.stderr else None
    with ThreadPoolExecutor(2) as pool:
        return [r for r in pool.map(one, sources) if r is not None]


@pytest.mark.parametrize("compiler", ["gcc", "clang"])
@pytest.mark.parametrize("openmp", [True, False], ids=["fopenmp", "no-openmp"])
def test_emitted_c_compiles_without_a_warning(tmp_path, compiler, openmp):
    """Issue 29: what actgen emit writes compiles with -std=c99 -Wall -Wextra -pedantic (and
    -Werror), with and without -fopenmp, under gcc and clang: no GNU statement expression, no
    unknown OpenMP pragma, no unused parameter or function. Every kind: elementwise with a learnable
    parameter (per-channel functions), selects that call functions (elu), float-float (gelu), gated,
    the three row normalisations. The example programs too."""
    cc = _compiler(compiler)
    names = ["swish", "elu", "gelu", "swiglu", "softmax", "log_softmax", "sparsemax"]
    for name in names:
        assert cli_main(["emit", name, "--c", str(tmp_path)]) == 0
    sources = [tmp_path / f"{n}{suffix}.c" for n in names for suffix in ("", "_example")]
    assert _strict_errors(cc, openmp, sources, tmp_path) == []


@pytest.mark.slow          # every built-in, both compilers (the slow set; one emit is checked by default)
@pytest.mark.parametrize("compiler", ["gcc", "clang"])
@pytest.mark.parametrize("openmp", [True, False], ids=["fopenmp", "no-openmp"])
def test_every_generated_kernel_source_compiles_without_a_warning(compiler, openmp):
    """The same for the kernels of every built-in (generated/c: the .c that actgen emit writes, but
    for the standalone header it includes)."""
    cc = _compiler(compiler)
    sources = sorted(p for p in GENERATED.glob("*.c") if p.name != "actgen_fastcall.c")
    assert len(sources) >= 43
    assert _strict_errors(cc, openmp, sources, GENERATED) == []
