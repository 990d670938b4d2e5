"""The build cache: keyed by content, rebuilt only when the source changes, failures logged."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import actgen
from actgen.build import ActgenWarning, cache_root, toolchain
from actgen.errors import BuildError
from actgen.pipeline import build
from actgen.spec import parse_spec_text

from conftest import requires_cc

SPEC = '[mine]\nexpr = "x * tanh(a * x)"\nparams = { a = 1.0 }\n'


def _artifacts(cache):
    """The artifacts of specs in a cache (not actgen's C fast path of a call, built beside the
    first C load of a process: whether a test builds it depends on which tests ran before)."""
    import json

    from actgen import fastcall

    found = sorted((cache / "artifacts").iterdir()) if (cache / "artifacts").exists() else []
    return [p.name for p in found if json.loads((p / "meta.json").read_text()).get("module") != fastcall.MODULE]


@requires_cc
def test_cache_rebuilds_when_the_source_changes_and_not_otherwise(fresh_cache, tmp_path):
    (act,) = parse_spec_text(SPEC, path="mine.toml")
    first = build(act, "c", "mine.toml")
    assert first.compiled and first.module_file.exists()
    again = build(act, "c", "mine.toml")
    assert not again.compiled and again.key == first.key
    assert _artifacts(fresh_cache) == [first.key]
    # the same content read from another directory: the same artifact
    (same,) = parse_spec_text(SPEC, path="elsewhere/mine.toml")
    assert build(same, "c", "mine.toml").key == first.key
    (changed,) = parse_spec_text(SPEC.replace("tanh", "sinh"), path="mine.toml")
    third = build(changed, "c", "mine.toml")
    assert third.compiled and third.key != first.key
    assert len(_artifacts(fresh_cache)) == 2


def test_numpy_artifacts_are_cached_too(fresh_cache):
    (act,) = parse_spec_text(SPEC, path="mine.toml")
    first = build(act, "numpy", "mine.toml")
    assert first.compiled and first.module_file.suffix == ".py"
    assert not build(act, "numpy", "mine.toml").compiled


@requires_cc
def test_meta_records_the_module_hash_and_a_corrupted_module_is_rebuilt(fresh_cache):
    (act,) = parse_spec_text(SPEC, path="mine.toml")
    art = build(act, "c", "mine.toml")
    meta = json.loads((art.path / "meta.json").read_text())
    assert meta["file"] == art.module_file.name and len(meta["sha256"]) == 64
    art.module_file.write_bytes(art.module_file.read_bytes()[:100])      # truncated
    with pytest.warns(ActgenWarning, match="is corrupt .* rebuilding it"):   # said, not silent
        rebuilt = build(act, "c", "mine.toml")
    assert rebuilt.compiled and rebuilt.key == art.key


@requires_cc
def test_load_uses_the_index_and_builds_on_first_use(fresh_cache, tmp_path):
    spec = tmp_path / "mine.toml"
    spec.write_text(SPEC)
    act = actgen.load("mine", spec=spec)
    assert np.allclose(act(np.array([1.0, -2.0])), [np.tanh(1.0), 2 * np.tanh(2.0)])
    assert len(list((fresh_cache / "index").iterdir())) == 1
    spec.write_text(SPEC.replace("tanh(a * x)", "tanh(2 * a * x)"))
    act2 = actgen.load("mine", spec=spec)
    assert np.allclose(act2(np.array([1.0])), [np.tanh(2.0)])
    assert len(_artifacts(fresh_cache)) == 2


@requires_cc
def test_a_failing_compile_keeps_source_command_and_stderr(fresh_cache, monkeypatch):
    from actgen import build as build_module

    tc = toolchain()
    broken = type(tc)(tc.cc, tc.version, tc.flags + ("-DACTGEN_OMP_MIN_ELEMENTS=(",), tc.openmp)
    monkeypatch.setattr(build_module, "toolchain", lambda: broken)
    monkeypatch.setattr("actgen.pipeline.toolchain", lambda: broken)
    (act,) = parse_spec_text(SPEC, path="mine.toml")
    with pytest.raises(BuildError) as info:
        build(act, "c", "mine.toml")
    message = str(info.value)
    assert "the C compiler failed building _actgen_mine_" in message
    log = message.split("are in ")[-1].strip()
    text = open(log).read()
    # the source of the translation unit that failed (the float32 or float64 kernels)
    assert "command:" in text and "---- stderr ----" in text and "actgen_mine_forward_f" in text
    assert _artifacts(fresh_cache) == []                 # nothing half-built is trusted
    assert list((fresh_cache / "tmp").iterdir()) == []


def test_cache_dir_follows_the_environment(fresh_cache):
    assert cache_root() == fresh_cache


@requires_cc
def test_toolchain_flags_never_trade_accuracy():
    tc = toolchain()
    assert "-O3" in tc.flags and "-fno-math-errno" in tc.flags
    assert not any(f in tc.flags for f in ("-ffast-math", "-Ofast", "-funsafe-math-optimizations",
                                            "-ffinite-math-only"))


@requires_cc
def test_the_kernels_of_each_dtype_compile_as_their_own_translation_unit(fresh_cache, tmp_path):
    from actgen.pipeline import lower_activation
    from actgen.render import render, render_units

    (act,) = parse_spec_text(SPEC, path="mine.toml")
    lowered = lower_activation(act)
    source = render(lowered, "c", "mine.toml")["c/mine.c"]
    units = render_units(lowered, "c", "mine.toml")
    assert len(units) == 2
    prelude = source[:source.index("/* ---- float32: element functions ---- */")]
    assert all(u.startswith(prelude) for u in units)
    assert "actgen_mine_forward_f32(" in units[0] and "actgen_mine_forward_f64(" not in units[0]
    assert "actgen_mine_forward_f64(" in units[1] and "actgen_mine_forward_f32(" not in units[1]
    epilogue = source[source.rindex("#if !defined(_OPENMP)"):]       # (each unit closes its pragmas)
    assert all(u.endswith(epilogue) for u in units)
    assert units[0][:-len(epilogue)] + units[1][len(prelude):] == source
    assert render_units(lowered, "numpy", "mine.toml") == []
    art = build(act, "c", "mine.toml")                      # built from the units and linked
    assert not [p.name for p in art.path.iterdir() if p.suffix == ".o" or "_unit" in p.name]
    spec = tmp_path / "mine.toml"
    spec.write_text(SPEC)
    mine = actgen.load("mine", spec=spec, backend="c")
    for dtype in ("float32", "float64"):
        x = np.array([-1.5, 0.25, 3.0], dtype=dtype)
        assert np.allclose(mine(x), x * np.tanh(x), rtol=1e-6)
        assert np.allclose(mine.backward(x, np.ones_like(x)), np.tanh(x) + x / np.cosh(x) ** 2, rtol=1e-6)


@requires_cc
@pytest.mark.parametrize("name", ["tanhshrink", "squareplus", "selu", "mish", "hard_swish"])
def test_kernel_loops_vectorise_without_avx512_too(name):
    # before AVX-512 there is no masked division: with trapping math, gcc 12 kept every loop
    # whose select had a division in an arm scalar (-fno-trapping-math in the flags), and
    # tanh_d32's cap of |a| did the same; the thread-dispatch loops are not kernel loops
    import re
    import subprocess
    from pathlib import Path

    tc = toolchain()
    if "gcc" not in tc.version.lower() and "cc (" not in tc.version.lower():
        pytest.skip("-fopt-info is gcc's")
    flags = [f for f in tc.flags if not f.startswith(("-march", "-mprefer-vector-width", "-shared"))]
    generated = Path(__file__).resolve().parent.parent / "generated" / "c"
    source = (generated / f"{name}.c").read_text()
    proc = subprocess.run([*tc.cc, *flags, f"-I{generated}", "-march=x86-64-v3", "-fopt-info-vec-all", "-x", "c",
                           "-c", "-", "-o", "/dev/null"], input=source, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = source.splitlines()
    scalar = [lines[int(m.group(1)) - 1].strip()
              for m in re.finditer(r"<stdin>:(\d+):\d+: missed: not vectorized: control flow in loop", proc.stderr)]
    kernel_loops = [s for s in scalar if "* share" not in s and "t / chunks" not in s]
    assert kernel_loops == [], kernel_loops
    assert "loop vectorized" in proc.stderr


_RENDER = """import sys, jinja2
if sys.argv[1] == "forbid":
    def refuse(self, *args, **kwargs):
        raise SystemExit("a template was compiled")
    jinja2.Environment.compile = refuse
import actgen
actgen.load(sys.argv[2], spec=sys.argv[3], backend="numpy")
"""


def test_compiled_templates_are_kept_in_the_cache_and_damage_costs_only_a_compile(tmp_path):
    """A fresh process's first build compiled every template (about a second); the cache's jinja/
    keeps them. A damaged or unwritable jinja/ is a cache miss, never an error."""
    import subprocess
    import sys

    from actgen.cache import FORMAT
    from conftest import ROOT

    def build(mode, name, cache):
        (tmp_path / f"{name}.toml").write_text(f'[{name}]\nexpr = "x * tanh(x) + {len(name)}"\n')
        env = {**os.environ, "ACTGEN_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT)}
        return subprocess.run([sys.executable, "-c", _RENDER, mode, name, str(tmp_path / f"{name}.toml")],
                              capture_output=True, text=True, env=env, timeout=600)

    cache = tmp_path / "cache"
    assert build("allow", "a", cache).returncode == 0
    kept = list(cache.glob("v*/jinja/*"))
    assert kept
    second = build("forbid", "bb", cache)            # another spec: rendered, from the kept templates
    assert second.returncode == 0, second.stderr
    for path in kept:
        path.write_bytes(b"damaged")
    assert build("forbid", "ccc", cache).returncode != 0          # damage is a miss: compiled ...
    third = build("allow", "dddd", cache)
    assert third.returncode == 0, third.stderr                    # ... without an error
    assert build("forbid", "eeeee", cache).returncode == 0        # and kept again
    other = tmp_path / "other"
    (other / f"v{FORMAT}").mkdir(parents=True)
    (other / f"v{FORMAT}" / "jinja").write_text("a file where the folder goes")
    blocked = build("allow", "f", other)
    assert blocked.returncode == 0 and "Traceback" not in blocked.stderr, blocked.stderr
