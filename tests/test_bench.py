"""`actgen bench`: the structure of its report on tiny sizes (never its timings)."""

from __future__ import annotations

import json
import math

import pytest

from conftest import ROOT, requires_cc


def run_cli(*args):
    """This checkout's CLI (an installed ``actgen`` script may belong to another one)."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "actgen.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=600)


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _has_torch() -> bool:
    return _has("torch")


@requires_cc
def test_bench_reports_every_implementation_and_the_ratios(tmp_path):
    from actgen.benchmark.measure import bench
    from actgen.benchmark.report import format_markdown, format_text

    report = bench(["sigmoid", "relu"], sizes_threads=[(4096, 1)], dtypes=("float32",), repeats=2,
                   min_time=0.0)
    cells = {(r["name"], r["op"], r["impl"]) for r in report["results"]}
    assert ("copy", "copy", "copy") in cells
    assert ("sigmoid", "copy", "copy") in cells and ("relu", "copy", "copy") in cells   # timed with their cells
    for name in ("sigmoid", "relu"):
        for impl in ("actgen", "actgen_numpy"):
            for op in ("forward", "backward", "forward_with_derivative"):
                assert (name, op, impl) in cells
        assert (name, "forward", "numpy") in cells and (name, "backward", "numpy") in cells
        if _has_torch():
            assert {(name, "forward", "torch_out"), (name, "forward", "torch"),
                    (name, "backward", "torch_out"), (name, "backward", "torch")} <= cells
    for r in report["results"]:
        assert r["seconds"] > 0 and r["gelem_s"] > 0 and r["calls"] >= 1
        assert math.isclose(r["gelem_s"], r["size"] / r["seconds"] / 1e9)
    rows = {(r["name"], r["op"]): r for r in report["ratios"]}
    fwd = rows["sigmoid", "forward"]
    assert math.isclose(fwd["vs_numpy"], fwd["gelem_s"]["actgen"] / fwd["gelem_s"]["numpy"])
    assert fwd["pct_copy"] > 0 and fwd["copy_gb_s"] > 0
    if _has_torch():
        assert math.isclose(fwd["vs_torch_out"], fwd["gelem_s"]["actgen"] / fwd["gelem_s"]["torch_out"])
    peers = [p for p in ("numpy", "torch_out", "torch", "numexpr") if p in fwd["gelem_s"]]
    assert fwd["vs_best_peer"] == pytest.approx(fwd["gelem_s"]["actgen"] / max(fwd["gelem_s"][p] for p in peers))
    if _has("numexpr"):
        assert {(name, op, "numexpr") for name in ("sigmoid", "relu") for op in ("forward", "backward")} <= cells
    text = format_text(report)
    assert "float32, 2^12 elements, 1 thread" in text and "vs torch out=" in text
    md = format_markdown(report, "actgen bench sigmoid relu")
    assert "## Machine" in md and "| sigmoid | fwd |" in md and report["machine"]["cpu"] in md


@requires_cc
def test_bench_cli_writes_json_and_markdown(tmp_path):
    out = run_cli("bench", "relu", "--size", "2^10", "--threads", "1", "--dtype", "float64",
                  "--repeats", "1", "--min-time", "0", "--impl", "actgen", "numpy",
                  "--json", str(tmp_path / "r.json"), "--markdown", str(tmp_path / "r.md"))
    assert out.returncode == 0, out.stderr
    assert "float64, 2^10 elements, 1 thread" in out.stdout
    data = json.loads((tmp_path / "r.json").read_text())
    assert set(data) >= {"machine", "config", "results", "ratios"}
    assert {r["impl"] for r in data["results"]} == {"copy", "actgen", "numpy"}
    assert data["config"]["sizes_threads"] == [[1024, 1]]
    assert (tmp_path / "r.md").read_text().startswith("# actgen benchmark")


def test_bench_cli_rejects_a_bad_size():
    out = run_cli("bench", "relu", "--size", "lots")
    assert out.returncode != 0 and "not an element count" in out.stderr


def test_the_repeats_of_an_activation_and_its_peers_are_interleaved():
    from actgen.benchmark.timing import time_together

    calls = []
    timings = time_together([lambda: calls.append("a"), lambda: calls.append("b")], repeats=5, min_time=0.0)
    assert [t["repeats"] for t in timings] == [5, 5] and all(t["calls"] >= 1 for t in timings)
    assert calls[:2] == ["a", "b"]                   # one warm-up call each (min_time 0)
    timed = "".join(calls[2:])
    assert timed.startswith("ab") and "aaaaa" not in timed and "bbbbb" not in timed
    a, b = timed.count("a"), timed.count("b")
    assert a == 5 * timings[0]["calls"] and b == 5 * timings[1]["calls"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_numexpr_peers_compute_the_activation_and_its_derivative(dtype):
    """A wrong formula would time the wrong thing: each numexpr peer agrees with actgen's kernels
    (forward and dy * f'(x)) away from overflow, and stays in the array's dtype."""
    ne = pytest.importorskip("numexpr")
    import numpy as np

    import actgen
    from actgen.benchmark.builtin_peers import defaults_match, numexpr_calls, numexpr_formulas

    x = np.concatenate([np.linspace(-8, 8, 641), [-20.0, -3.0, -2.5, -1.0, 0.0, 1.0, 2.5, 3.0, 6.0, 20.0]])
    x = x.astype(dtype)
    dy = np.linspace(0.5, 1.5, x.size).astype(dtype)
    tol = 2e-5 if dtype == "float32" else 1e-12
    formulas = numexpr_formulas()
    assert len(formulas) >= 24
    for name, formula in formulas.items():
        act = actgen.load(name, backend="numpy")
        assert defaults_match(formula[0], act), name
        y, dx = np.empty_like(x), np.empty_like(x)
        fwd, bwd = numexpr_calls(ne, formula, x, dy, y, dx)
        assert fwd() is y and bwd() is dx and y.dtype == dx.dtype == np.dtype(dtype)
        kink = np.isin(x, [0.0, -3.0, 3.0, -2.5, 2.5, -1.0, 1.0, 6.0, 0.5, -0.5])   # conventions differ there
        np.testing.assert_allclose(y, act(x), rtol=tol, atol=tol, err_msg=name)
        np.testing.assert_allclose(dx[~kink], act.backward(x, dy)[~kink], rtol=tol, atol=tol, err_msg=name)


def test_bench_all_and_names_together_is_a_clear_error():
    out = run_cli("bench", "relu", "--all")
    assert out.returncode != 0 and "names or --all, not both" in out.stderr and "Traceback" not in out.stderr


@requires_cc
def test_bench_sizes_and_plot(tmp_path):
    pytest.importorskip("matplotlib")
    plot = tmp_path / "bench.png"
    out = run_cli("bench", "relu", "sigmoid", "--sizes", "2^8", "2^10", "--threads", "1", "--dtype", "float32",
                  "--repeats", "1", "--min-time", "0", "--impl", "actgen", "numpy", "--plot", str(plot))
    assert out.returncode == 0, out.stderr
    assert "float32, 2^8 elements, 1 thread" in out.stdout and "float32, 2^10 elements, 1 thread" in out.stdout
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["bench.png"]          # no temporary left


def test_bench_plot_without_matplotlib_says_so_before_measuring(monkeypatch, capsys, tmp_path):
    from actgen import bench
    from actgen.benchmark import measure
    from actgen.cli import main as cli_main

    monkeypatch.setattr(bench, "_has_matplotlib", lambda: False)
    monkeypatch.setattr(measure, "bench", lambda *a, **k: pytest.fail("measured before the error"))
    assert cli_main(["bench", "relu", "--plot", str(tmp_path / "b.png")]) == 1
    err = capsys.readouterr().err
    assert "--plot needs matplotlib" in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())
