"""A cache whose metadata, index or directories were edited never yields wrong numbers, a
crash or a foreign module: the entry is rebuilt with a warning, or the load works around it
(issue 30, items 2, 3 and 6).

Every scenario starts from a copy of one cache holding two activations of one spec file (tiny,
with a parameter, and other), damages it, and loads tiny in a fresh interpreter, which reports
its values, the warnings and where the module came from as one JSON line; a segfault or a
traceback fails the test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from actgen.build import FORMAT

from conftest import requires_cc

ROOT = Path(__file__).resolve().parent.parent
SPEC = """[tiny]
expr = "x * tanh(a * x)"
params = { a = 1.5 }

[other]
expr = "x * sigmoid(x)"
"""

LOADER = r"""
import json, sys, warnings
import numpy as np
import actgen
from actgen.errors import ActgenError
name, spec, backend = sys.argv[1:4]
want = {"tiny": lambda x: x * np.tanh(1.5 * x), "other": lambda x: x / (1 + np.exp(-x))}[name]
try:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        act = actgen.load(name, spec=spec, backend=backend)
        x = np.linspace(-3.0, 3.0, 101)
        y, dx = act(x), act.backward(x, np.ones_like(x))
    print(json.dumps({"ok": True, "error": float(np.max(np.abs(y - want(x)))), "params": act.params,
                      "module": sys.modules[act.meta["module"]].__file__,
                      "warnings": [str(w.message) for w in caught]}))
except ActgenError as exc:
    print(json.dumps({"ok": False, "error": type(exc).__name__, "message": str(exc)}))
    sys.exit(3)
"""


def load_in_subprocess(cache: Path, spec: Path, name: str = "tiny", backend: str = "c") -> dict:
    env = {**os.environ, "ACTGEN_CACHE_DIR": str(cache),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", LOADER, name, str(spec), backend], capture_output=True,
                          text=True, env=env, timeout=600)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode in (0, 3), (proc.returncode, proc.stderr)
    lines = proc.stdout.strip().splitlines()
    return json.loads(lines[-1])


def root_of(cache: Path) -> Path:
    return cache / f"v{FORMAT}"


def entry_of(cache: Path, name: str, backend: str) -> tuple[Path, Path]:
    """(the index file, the artifact directory) of ``name`` built with ``backend``."""
    root = root_of(cache)
    for index in sorted((root / "index").iterdir()):
        key = json.loads(index.read_text())["artifact"]
        meta = json.loads((root / "artifacts" / key / "meta.json").read_text())
        if meta["name"] == name and meta["backend"] == backend:
            return index, root / "artifacts" / key
    raise AssertionError(f"no index entry for {name} [{backend}]")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    """(a spec file, a cache holding its two activations for both backends)."""
    where = tmp_path_factory.mktemp("integrity")
    spec = where / "two.toml"
    spec.write_text(SPEC)
    cache = where / "cache"
    for name in ("tiny", "other"):
        for backend in ("c", "numpy"):
            report = load_in_subprocess(cache, spec, name, backend)
            assert report["ok"] and report["error"] < 1e-12, report
    return spec, cache


@pytest.fixture
def cache(built, tmp_path) -> Path:
    copy = tmp_path / "cache"
    shutil.copytree(built[1], copy, symlinks=True)
    return copy


def assert_right(report: dict, cache: Path, warned: str | None = "rebuilding") -> None:
    assert report["ok"], report
    assert report["error"] < 1e-12 and report["params"] == {"a": 1.5}, report
    assert Path(report["module"]).resolve().is_relative_to(cache.resolve()), report
    if warned is not None:
        assert any(warned in w for w in report["warnings"]), report


def _edit_meta(change):
    def edit(artifact: Path) -> None:
        meta = json.loads((artifact / "meta.json").read_text())
        (artifact / "meta.json").write_text(json.dumps(change(meta)))
    return edit


def _swap_symbols(meta):
    f = meta["functions"]
    f["forward"], f["backward"] = f["backward"], f["forward"]
    return meta


META_EDITS = {
    "a changed parameter default": _edit_meta(lambda m: {**m, "params": [["a", 3.0]]}),
    "no parameters": _edit_meta(lambda m: {**m, "params": []}),
    "swapped function symbols": _edit_meta(_swap_symbols),
    "no functions": _edit_meta(lambda m: {k: v for k, v in m.items() if k != "functions"}),
    "another kind": _edit_meta(lambda m: {**m, "kind": "rowwise"}),
    "another module name": _edit_meta(lambda m: {**m, "module": "os"}),
    "not an object": lambda artifact: (artifact / "meta.json").write_text("[]"),
}


@requires_cc
@pytest.mark.parametrize("backend", ["c", "numpy"])
@pytest.mark.parametrize("edit", [e if i < 3 else pytest.param(e, marks=pytest.mark.slow)   # (the rest: slow set)
                                  for i, e in enumerate(META_EDITS)])
def test_edited_metadata_is_rebuilt_with_a_warning(edit, backend, built, cache):
    _, artifact = entry_of(cache, "tiny", backend)
    META_EDITS[edit](artifact)
    assert_right(load_in_subprocess(cache, built[0], backend=backend), cache)
    assert_right(load_in_subprocess(cache, built[0], backend=backend), cache, warned=None)   # repaired


def _point_at_other(cache: Path) -> None:
    index, _ = entry_of(cache, "tiny", "c")
    _, other = entry_of(cache, "other", "c")
    index.write_text(json.dumps({"artifact": other.name}))


def _copy_other_over_tiny(cache: Path) -> None:
    _, tiny = entry_of(cache, "tiny", "c")
    _, other = entry_of(cache, "other", "c")
    shutil.rmtree(tiny)
    shutil.copytree(other, tiny)


def _outside(cache: Path) -> None:
    """The index names a valid artifact outside the cache by a 64-character relative path."""
    index, _ = entry_of(cache, "tiny", "c")
    _, other = entry_of(cache, "other", "c")
    key = "../../../" + "o" * 55                            # from <cache>/v2/artifacts to beside <cache>
    assert len(key) == 64
    shutil.copytree(other, cache.parent / key[9:])
    index.write_text(json.dumps({"artifact": key}))


INDEX_EDITS = {
    "pointed at another activation's artifact": _point_at_other,
    "an artifact directory copied from another": _copy_other_over_tiny,
    "a key naming a directory outside the cache": _outside,
    "a key that is not hexadecimal": lambda cache: entry_of(cache, "tiny", "c")[0].write_text(
        json.dumps({"artifact": "Z" * 64})),
}


@requires_cc
@pytest.mark.parametrize("edit", list(INDEX_EDITS))
def test_an_index_naming_the_wrong_artifact_is_not_trusted(edit, built, cache):
    INDEX_EDITS[edit](cache)
    report = load_in_subprocess(cache, built[0])
    assert_right(report, cache, warned=None)
    assert report["warnings"], report                       # said, not silent
    assert_right(load_in_subprocess(cache, built[0]), cache, warned=None)


def _index_is_a_directory(cache: Path) -> None:
    index, _ = entry_of(cache, "tiny", "c")
    index.unlink()
    index.mkdir()
    (index / "stray").write_text("")


def _locks_are_directories(cache: Path) -> None:
    index, artifact = entry_of(cache, "tiny", "c")
    shutil.rmtree(artifact)                                 # so that the load builds, taking both locks
    for key in (index.name, artifact.name):
        lock = root_of(cache) / "locks" / f"{key}.lock"
        lock.unlink(missing_ok=True)
        lock.mkdir()


@requires_cc
@pytest.mark.parametrize("damage", [_index_is_a_directory, _locks_are_directories],
                         ids=["an index entry that is a directory", "lock files that are directories"])
def test_a_directory_where_the_cache_expects_a_file_is_replaced(damage, built, cache):
    damage(cache)
    assert_right(load_in_subprocess(cache, built[0]), cache, warned=None)
    assert_right(load_in_subprocess(cache, built[0]), cache, warned=None)
