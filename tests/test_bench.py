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


def _has_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


@requires_cc
def test_bench_reports_every_implementation_and_the_ratios(tmp_path):
    from actgen.bench import bench, format_markdown, format_text

    report = bench(["sigmoid", "relu"], sizes_threads=[(4096, 1)], dtypes=("float32",), repeats=2,
                   min_time=0.0)
    cells = {(r["name"], r["op"], r["impl"]) for r in report["results"]}
    assert ("copy", "copy", "copy") in cells
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
        assert fwd["vs_best_peer"] == pytest.approx(
            fwd["gelem_s"]["actgen"] / max(fwd["gelem_s"][p] for p in ("numpy", "torch_out", "torch")))
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
    from actgen.bench import _time_together

    calls = []
    timings = _time_together([lambda: calls.append("a"), lambda: calls.append("b")], repeats=5, min_time=0.0)
    assert [t["repeats"] for t in timings] == [5, 5] and all(t["calls"] >= 1 for t in timings)
    assert calls[:2] == ["a", "b"]                   # one warm-up call each (min_time 0)
    timed = "".join(calls[2:])
    assert timed.startswith("ab") and "aaaaa" not in timed and "bbbbb" not in timed
    a, b = timed.count("a"), timed.count("b")
    assert a == 5 * timings[0]["calls"] and b == 5 * timings[1]["calls"]
