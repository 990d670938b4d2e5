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
                   min_time=0.0, impls=("actgen", "actgen_numpy", "numpy", "torch_out", "torch", "numexpr"),
                   accuracy_of=())
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


@pytest.mark.slow
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
    from actgen.benchmark import pinned
    from actgen.cli import main as cli_main

    monkeypatch.setattr(bench, "_has_matplotlib", lambda: False)
    monkeypatch.setattr(pinned, "bench", lambda *a, **k: pytest.fail("measured before the error"))
    assert cli_main(["bench", "relu", "--plot", str(tmp_path / "b.png")]) == 1
    err = capsys.readouterr().err
    assert "--plot needs matplotlib" in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())


CORPUS = ROOT / "tests" / "bench_corpus"


def _cells(text: str) -> list[str]:
    """The cells of every table row of format_text (columns are separated by 2+ spaces)."""
    import re

    return [c for line in text.splitlines() for c in re.split(r"\s{2,}", line.strip()) if line.strip()]


@requires_cc
def test_the_table_says_why_a_column_is_empty(monkeypatch):
    """A peer that is not installed, or cannot express the activation, or was left out, says so
    in its column: never a bare "-"."""
    from actgen.benchmark import measure, user_peers
    from actgen.benchmark.report import format_markdown, format_text

    real = user_peers.libraries()
    without = user_peers.Libraries(numexpr=real.numexpr,
                                   missing={"torch": "torch not installed", "jax": "jax not installed",
                                            **({} if real.numexpr else {"numexpr": "numexpr not installed"})})
    monkeypatch.setattr(measure, "libraries", lambda: without)
    report = measure.bench([str(CORPUS / "serf.toml"), "relu"], sizes_threads=[(256, 1)], dtypes=("float64",),
                           repeats=1, min_time=0.0, impls=("actgen", "numpy", "torch_out", "torch", "numexpr",
                                                            "torch_eager", "torch_compile", "jax"),
                           accuracy_of=())
    text = format_text(report)
    assert "-" not in _cells(text)
    serf = [line for line in text.splitlines() if line.startswith("serf_plain")]
    assert serf and all("n/a: torch not installed" in line for line in serf)
    assert all("n/a: none written" in line for line in serf[:3])              # no NumPy formula
    assert any("n/a: no erf in numexpr" in line for line in serf) or not real.numexpr
    assert any("n/a: jax not installed" in line for line in serf)
    assert all("n/a: not measured (--impl)" in line for line in serf[:3])     # actgen numpy left out
    relu = [line for line in text.splitlines() if line.startswith("relu ")]
    assert any("n/a: no fused y, f'" in line for line in relu)
    md = format_markdown(report)
    assert "| - |" not in md and "| -" not in md.replace("| ---", "")
    if real.torch is not None:                      # installed: a user spec has no PyTorch built-in
        monkeypatch.undo()
        report = measure.bench([str(CORPUS / "serf.toml")], sizes_threads=[(256, 1)], dtypes=("float64",),
                               repeats=1, min_time=0.0, impls=("actgen", "torch_out", "torch"), accuracy_of=())
        text = format_text(report)
        assert "n/a: no torch built-in" in text and "-" not in _cells(text)


@pytest.mark.slow
@requires_cc
def test_bench_of_a_user_spec_times_the_peers_written_from_its_expression(tmp_path):
    """The CLI on a spec file: actgen against torch eager, torch.compile, jax.jit and numexpr,
    forward, backward and a training step; compile times; float32 accuracy; JSON and markdown."""
    from actgen.benchmark.user_peers import libraries

    libs = libraries()
    out = run_cli("bench", str(CORPUS / "gated.toml"), "--config", "2^8:1", "--dtype", "float64",
                  "--repeats", "1", "--min-time", "0", "--json", str(tmp_path / "r.json"),
                  "--markdown", str(tmp_path / "r.md"))
    assert out.returncode == 0, out.stderr
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["config"]["sizes_threads"] == [[256, 1]]
    rows = {(r["name"], r["op"]): r for r in data["user_ratios"]}
    assert set(rows) == {(n, op) for n in ("swish_a", "clipped_elu") for op in ("forward", "backward", "train")}
    peers = {"torch_eager", "torch_compile", "actgen_torch"} if libs.torch else set()
    peers |= {"jax"} if libs.jax else set()
    peers |= {"numexpr"} if libs.numexpr else set()
    for r in rows.values():
        assert set(r["gelem_s"]) == {"actgen"} | peers
        for p in peers - {"actgen_torch"}:
            assert math.isclose(r[f"vs_{p}"], r["gelem_s"]["actgen"] / r["gelem_s"][p])
    trained = {(r["name"], r["impl"]) for r in data["results"] if r["op"] == "train"}
    assert ("swish_a", "actgen") in trained
    compiled = {(c["name"], c["impl"], c["what"]) for c in data["compile"]}
    if libs.torch:
        assert ("swish_a", "torch_compile", "train") in compiled
        assert data["config"]["startup_seconds"]["torch_compile"] > 0
    if libs.jax:
        assert ("clipped_elu", "jax", "train") in compiled
    accuracy = {(a["name"], a["impl"]): a for a in data["accuracy"]}
    assert accuracy["swish_a", "actgen"]["forward_ulp"] <= 4 and accuracy["swish_a", "actgen"]["dtype"] == "float32"
    assert data["sources"]["swish_a"]["torch"] == "def f(x, a):\n    return x*torch.sigmoid(a*x)\n"
    md = (tmp_path / "r.md").read_text()
    assert "against the expression as a user writes it" in md and "## accuracy, float32" in md
    assert "| swish_a | train |" in md and "`x*torch.sigmoid(a*x)`" in md
    assert "against the expression as a user writes it" in out.stdout


@pytest.mark.slow
@requires_cc
def test_corpus_speed_writes_its_page_from_a_directory_of_specs(tmp_path, monkeypatch, capsys):
    """benchmarks/corpus_speed.py: geometric means first, then every activation; a missing
    directory or output folder is a clear error before anything is measured."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("corpus_speed", ROOT / "benchmarks" / "corpus_speed.py")
    corpus_speed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(corpus_speed)
    assert corpus_speed.main([str(tmp_path / "nothing"), "--out", str(tmp_path / "c.md")]) == 1
    assert "no spec files" in capsys.readouterr().err
    assert corpus_speed.main([str(CORPUS), "--out", str(tmp_path / "no" / "c.md")]) == 1
    assert "no directory" in capsys.readouterr().err
    # torch.compile is timed by the CLI test above; left out here for time ("not measured")
    monkeypatch.setattr(corpus_speed, "IMPLS", ("actgen", "numexpr", "actgen_torch", "torch_eager", "jax"))
    out = tmp_path / "c.md"
    assert corpus_speed.main([str(CORPUS), "--out", str(out), "--config", "2^8:1", "--dtype", "float32",
                              "--repeats", "1", "--min-time", "0"]) == 0
    page = out.read_text()
    assert page.index("## geometric means") < page.index("## actgen over each peer") < page.index("## accuracy")
    for name in ("swish_a", "clipped_elu", "serf_plain"):
        assert f"| {name} | float32 | 2^8, 1 |" in page
    assert "n/a: no erf in numexpr" in page and "n/a: not measured (--impl)" in page
    data = json.loads(out.with_suffix(".json").read_text())
    assert {r["name"] for r in data["user_ratios"]} == {"swish_a", "clipped_elu", "serf_plain"}
    assert corpus_speed.geomean([1.0, 4.0]) == pytest.approx(2.0) and corpus_speed.geomean([]) is None


@pytest.mark.slow
@requires_cc
def test_each_thread_count_is_measured_in_a_process_allowed_that_many_cpus():
    """XLA sizes its thread pool from the process's CPUs: a 1-thread cell runs in a child process
    allowed one CPU, for every implementation alike; the report is this machine's."""
    import os

    from actgen.benchmark import pinned
    from actgen.benchmark.user_peers import libraries

    if libraries().jax is None or not hasattr(os, "sched_setaffinity"):
        pytest.skip("pinning is for JAX's thread pool, on Linux")
    ncpu = len(os.sched_getaffinity(0))
    report = pinned.bench([str(CORPUS / "serf.toml")], sizes_threads=[(256, 1), (512, 2)], dtypes=("float32",),
                          repeats=1, min_time=0.0, impls=("actgen", "jax"), accuracy_of=())
    assert len(report["config"]["cpus"]["1"]) == 1 and len(report["config"]["cpus"]["2"]) == min(2, ncpu)
    assert report["config"]["sizes_threads"] == [[256, 1], [512, 2]]
    assert report["machine"]["usable_cpus"] == ncpu
    cells = {(r["size"], r["threads"], r["op"], r["impl"]) for r in report["results"]}
    assert {(256, 1, "train", "jax"), (512, 2, "train", "jax"), (512, 2, "forward", "actgen")} <= cells
    assert {r["size"] for r in report["user_ratios"]} == {256, 512}
