"""The build cache under stress: concurrent builders, killed builds, corrupted entries, a
read-only cache, a missing compiler or OpenMP, stale temporary files.

Every test uses a tiny spec (x * tanh(x), no parameters) so lowering and compiling stay cheap.
Subprocesses are real interpreters loading the spec as a user would.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import actgen
from actgen import build as build_module
from actgen import errors as errors_module
from actgen import fastcall, loading
from actgen.build import FORMAT, ActgenWarning, clean_stale_temporaries, locked, sha256_file, write_atomic
from actgen.errors import BuildError

from conftest import requires_cc

ROOT = Path(__file__).resolve().parent.parent
SPEC = "[tiny]\nexpr = \"x * tanh(x)\"\ndescription = \"build robustness tests\"\n"

#: what each subprocess runs: load the spec, evaluate it, report as one JSON line
LOADER = r"""
import hashlib, json, sys, warnings
import numpy as np
import actgen
from actgen.errors import ActgenError
try:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        act = actgen.load("tiny", spec=sys.argv[1], backend=sys.argv[2])
    x = np.linspace(-5.0, 5.0, 1001)
    y = act(x)
    print(json.dumps({"ok": True, "backend": act.backend, "sha": hashlib.sha256(y.tobytes()).hexdigest(),
                      "values": y.tolist(),
                      "module": sys.modules[act.meta["module"]].__file__, "warnings": [str(w.message) for w in caught]}))
except ActgenError as exc:
    print(json.dumps({"ok": False, "error": type(exc).__name__, "message": str(exc)}))
    sys.exit(3)
"""


def within_budget(report: dict) -> bool:
    """The loader's values of x * tanh(x) are within the float64 budget (8 ULP) of mpmath's
    correctly rounded ones (never compared bit for bit with a libm: tanh differs between hosts)."""
    from actgen.ir import X
    from actgen.sweep import reference_values
    from actgen.measure import ulp_distance

    import sympy as sp

    x = np.linspace(-5.0, 5.0, 1001)
    ref = reference_values(X * sp.tanh(X), x, "float64", {})
    return bool(np.max(ulp_distance(np.array(report["values"]), ref)) <= 8)


def _env(cache: Path, **extra) -> dict:
    env = {**os.environ, "ACTGEN_CACHE_DIR": str(cache),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def start_loader(spec: Path, cache: Path, backend: str = "c", **env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", LOADER, str(spec), backend], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env(cache, **env), start_new_session=True)


def finish(proc: subprocess.Popen) -> tuple[int, dict]:
    out, err = proc.communicate(timeout=600)
    assert "Traceback" not in err, err
    lines = out.strip().splitlines()
    return proc.returncode, (json.loads(lines[-1]) if lines else {})


def module_file(act) -> str:
    return sys.modules[act.meta["module"]].__file__


def entries(path: Path) -> list[Path]:
    return sorted(path.iterdir()) if path.exists() else []


def spec_artifacts(root: Path) -> list[Path]:
    """The artifacts of specs in a cache (not actgen's C fast path of a call, built beside the
    first C one: actgen/fastcall.py)."""
    return [a for a in entries(root / "artifacts")
            if json.loads((a / "meta.json").read_text()).get("module") != fastcall.MODULE]


@pytest.fixture
def spec(tmp_path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(SPEC)
    return path


def wait_for(path: Path, proc: subprocess.Popen) -> None:
    """Wait until ``path`` exists (the fake compiler started); fail if the process ends first."""
    deadline = time.monotonic() + 300
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the loader ended before compiling: {proc.communicate()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("the fake compiler never started")
        time.sleep(0.05)
    while not path.read_text().strip():
        time.sleep(0.01)


def fake_compiler(tmp_path: Path, body: str) -> Path:
    """A shell script standing in for CC. ``body`` runs for kernel compiles; the toolchain probe
    and --version go to the real compiler, so the toolchain (and every cache key) stays the same."""
    real = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    script = tmp_path / "fake-cc"
    script.write_text(f"""#!/bin/sh
case "$*" in
  *_actgen_*) {body} ;;
esac
exec {real} "$@"
""")
    script.chmod(0o755)
    return script


# ---- concurrency ---------------------------------------------------------------------------

@requires_cc
def test_eight_processes_loading_one_spec_at_once_share_one_artifact(spec, tmp_path):
    cache = tmp_path / "cache"
    procs = [start_loader(spec, cache) for _ in range(8)]
    results = [finish(p) for p in procs]
    assert [status for status, _ in results] == [0] * 8, results
    reports = [r for _, r in results]
    assert len({r["sha"] for r in reports}) == 1 and within_budget(reports[0])
    assert {r["backend"] for r in reports} == {"c"}
    assert len({r["module"] for r in reports}) == 1
    root = cache / f"v{FORMAT}"
    (artifact,) = spec_artifacts(root)                        # one artifact, built once
    meta = json.loads((artifact / "meta.json").read_text())
    assert sha256_file(artifact / meta["file"]) == meta["sha256"]   # not corrupt
    assert len(entries(root / "index")) == 1
    assert entries(root / "tmp") == []
    assert not any(r["warnings"] for r in reports), reports


def test_atomic_index_writes_from_many_threads_leave_one_whole_file(tmp_path):
    target = tmp_path / "entry"
    errors = []

    def writer(i):
        try:
            for j in range(50):
                write_atomic(target, json.dumps({"artifact": f"{i:032d}{j:032d}"}))
                json.loads(target.read_text())                 # never a partial file
        except Exception as exc:                               # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert entries(tmp_path) == [target]                       # no temporary file left


# ---- interrupted builds --------------------------------------------------------------------

@requires_cc
def test_builds_killed_mid_compile_leave_nothing_trusted_and_the_next_load_rebuilds(spec, tmp_path):
    cache = tmp_path / "cache"
    root = cache / f"v{FORMAT}"
    # the fake compiler writes its pid to $ACTGEN_TEST_HANG and sleeps, until killed
    # (the kernels of each dtype and the wrapper compile at once: each appends its pid)
    cc = fake_compiler(tmp_path, 'if [ -n "$ACTGEN_TEST_HANG" ]; then echo $$ >> "$ACTGEN_TEST_HANG"; '
                                 'exec sleep 600; fi')
    recovered = 0

    # 1. SIGKILL the whole build (the Python process and its compiler) in the middle of compiling
    marker = tmp_path / "hang-1"
    proc = start_loader(spec, cache, CC=cc, ACTGEN_TEST_HANG=marker)
    wait_for(marker, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert entries(root / "artifacts") == [] and entries(root / "index") == []
    assert len(entries(root / "tmp")) == 1                     # the half build, never renamed into place

    # 2. SIGKILL only the compiler: the load fails with a BuildError naming a log
    marker = tmp_path / "hang-2"
    proc = start_loader(spec, cache, CC=cc, ACTGEN_TEST_HANG=marker)
    wait_for(marker, proc)
    os.kill(int(marker.read_text().split()[0]), signal.SIGKILL)       # one of them: the others are stopped
    status, report = finish(proc)
    assert status == 3 and report["error"] == "BuildError", report
    log = Path(report["message"].split("are in ")[-1].strip())
    text = log.read_text()
    assert "exit status: killed by signal 9" in text and "command: " in text and "---- source ----" in text
    assert entries(root / "artifacts") == [] and entries(root / "index") == []
    assert entries(root / "tmp") == []                         # its own and the stale one from 1. removed

    # 3. the next load (same compiler, same keys) rebuilds and works
    for _ in range(2):
        status, report = finish(start_loader(spec, cache, CC=cc))
        assert status == 0 and within_budget(report), report
        recovered += 1
    assert len(spec_artifacts(root)) == 1 and entries(root / "tmp") == []
    assert entries(root / "failed") == []                      # the failed compile's log: stale now
    assert recovered == 2


def test_stale_temporaries_are_removed_unless_their_build_holds_its_lock(tmp_path):
    root = tmp_path / f"v{FORMAT}"
    for sub in ("tmp", "locks"):
        (root / sub).mkdir(parents=True)
    stale, busy = "a" * 64, "b" * 64
    (root / "tmp" / f"{stale}-x1").mkdir()
    (root / "tmp" / f"{stale}-x1" / "half.so").write_bytes(b"\x7fELF")
    (root / "tmp" / f"{busy}-x2").mkdir()
    (root / "tmp" / "write-probe-123").write_text("")          # not a build: left alone
    with locked(root, busy):                                   # a build of `busy` is running
        removed = clean_stale_temporaries(root)
    assert [p.name for p in removed] == [f"{stale}-x1"]
    assert sorted(p.name for p in entries(root / "tmp")) == [f"{busy}-x2", "write-probe-123"]


# ---- corrupted entries ---------------------------------------------------------------------

DAMAGE = {
    "truncated module": lambda art, meta: _truncate(art / meta["file"]),
    "flipped byte": lambda art, meta: _flip(art / meta["file"]),
    "missing module": lambda art, meta: (art / meta["file"]).unlink(),
    "truncated meta.json": lambda art, meta: (art / "meta.json").write_text('{"file": "x'),
}


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_corrupted_cache_entry_is_detected_by_its_hash_and_rebuilt_with_a_warning(damage, spec, fresh_cache,
                                                                                    monkeypatch):
    actgen.load("tiny", spec=spec, backend="numpy")
    (artifact,) = entries(fresh_cache / "artifacts")
    meta = json.loads((artifact / "meta.json").read_text())
    DAMAGE[damage](artifact, meta)
    monkeypatch.setattr(loading, "_LOADED", {})
    monkeypatch.setattr(build_module, "_MODULES", {})
    with pytest.warns(ActgenWarning, match="is corrupt .*; rebuilding it"):
        act = actgen.load("tiny", spec=spec, backend="numpy")
    x = np.linspace(-5.0, 5.0, 101)
    assert np.allclose(act(x), x * np.tanh(x))
    (artifact,) = entries(fresh_cache / "artifacts")
    meta = json.loads((artifact / "meta.json").read_text())
    assert sha256_file(artifact / meta["file"]) == meta["sha256"]
    assert entries(fresh_cache / "tmp") == []


# ---- read-only cache -----------------------------------------------------------------------

@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """Where the fallback cache goes (never the real $TMPDIR/actgen-<uid> from a test)."""
    import tempfile

    where = tmp_path / "tmpdir"
    where.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(where))
    monkeypatch.setattr(loading, "_LOADED", {})
    errors_module._warn_once.cache_clear()
    return where


def _unwritable_dirs(tmp_path):
    """Cache directories this process cannot write: below a regular file (for everyone), and a
    directory without write permission (only where permissions bind: not for root)."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    yield "below a file", blocker / "cache"
    locked_dir = tmp_path / "read-only"
    locked_dir.mkdir()
    locked_dir.chmod(stat.S_IRUSR | stat.S_IXUSR)
    probe = locked_dir / "probe"
    try:
        probe.write_text("")
        probe.unlink()                      # root: permissions do not stop it
    except OSError:
        yield "read-only", locked_dir / "cache"


def test_an_unwritable_cache_falls_back_to_a_private_temporary_one_with_a_warning(spec, tmp_path, private_tmp,
                                                                                  monkeypatch):
    tried = 0
    for label, cache in _unwritable_dirs(tmp_path):
        monkeypatch.setenv("ACTGEN_CACHE_DIR", str(cache))
        monkeypatch.setattr(loading, "_LOADED", {})
        with pytest.warns(ActgenWarning, match=f"the cache directory {cache}/v{FORMAT} is not writable"):
            act = actgen.load("tiny", spec=spec, backend="numpy")
        x = np.linspace(-3.0, 3.0, 7)
        assert np.allclose(act(x), x * np.tanh(x)), label
        fallback = private_tmp / f"actgen-{os.getuid()}" / f"v{FORMAT}"
        assert len(entries(fallback / "artifacts")) == tried + 1, label     # built there
        assert stat.S_IMODE(fallback.parent.stat().st_mode) == 0o700
        tried += 1
    assert tried >= 1


def test_a_temporary_cache_directory_owned_by_someone_else_is_not_used(tmp_path, private_tmp, monkeypatch):
    """$TMPDIR/actgen-<uid> that is group/world writable (or not ours) could hold planted code."""
    planted = private_tmp / f"actgen-{os.getuid()}"
    planted.mkdir()
    planted.chmod(0o777)
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("ACTGEN_CACHE_DIR", str(blocker / "cache"))
    with pytest.warns(ActgenWarning, match="not writable"):
        root = build_module.cache_root()
    # compare paths, not strings: as root, mkdtemp's actgen-0xxxx shares a prefix with actgen-0
    assert planted not in root.parents and root.parent != planted and root.parent.parent == private_tmp


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through permissions")
@requires_cc
def test_a_read_only_cache_still_serves_what_it_holds(spec, tmp_path, private_tmp, monkeypatch):
    cache = tmp_path / "shared"
    monkeypatch.setenv("ACTGEN_CACHE_DIR", str(cache))
    actgen.load("tiny", spec=spec, backend="numpy")
    for path in sorted(cache.rglob("*"), reverse=True):
        path.chmod(path.stat().st_mode & ~0o222)
    cache.chmod(cache.stat().st_mode & ~0o222)
    try:
        monkeypatch.setattr(loading, "_LOADED", {})
        with pytest.warns(ActgenWarning, match="not writable"):
            act = actgen.load("tiny", spec=spec, backend="numpy")
        x = np.linspace(-3.0, 3.0, 7)
        assert np.allclose(act(x), x * np.tanh(x))
        fallback = private_tmp / f"actgen-{os.getuid()}" / f"v{FORMAT}"
        assert entries(fallback / "artifacts") == []              # found in the shared cache, not rebuilt
    finally:
        for path in [cache, *cache.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)


# ---- missing toolchain pieces ------------------------------------------------------------

@pytest.fixture
def fresh_toolchain():
    build_module.toolchain.cache_clear()
    errors_module._warn_once.cache_clear()
    yield
    build_module.toolchain.cache_clear()


def test_no_c_compiler_is_reported_once_and_the_numpy_backend_is_used(spec, tmp_path, fresh_cache, monkeypatch,
                                                                       fresh_toolchain):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    other = tmp_path / "other.toml"
    other.write_text(SPEC.replace("[tiny]", "[other]").replace("x * tanh(x)", "2 * x * tanh(x)"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = actgen.load("tiny", spec=spec)
        second = actgen.load("other", spec=other)
    messages = [str(w.message) for w in caught if issubclass(w.category, ActgenWarning)]
    assert len(messages) == 1, messages
    assert "no C compiler found" in messages[0] and "Using the NumPy backend instead" in messages[0]
    assert first.backend == second.backend == "numpy"
    x = np.linspace(-2.0, 2.0, 5)
    assert np.allclose(first(x), x * np.tanh(x)) and np.allclose(second(x), 2 * x * np.tanh(x))


@requires_cc
def test_no_openmp_is_reported_once_and_kernels_are_built_serial(spec, tmp_path, fresh_cache, monkeypatch,
                                                                 fresh_toolchain):
    real = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    cc = tmp_path / "cc-without-openmp"
    cc.write_text(f"""#!/bin/sh
for arg in "$@"; do
  if [ "$arg" = "-fopenmp" ]; then echo "cc: error: unsupported option '-fopenmp'" >&2; exit 1; fi
done
exec {real} "$@"
""")
    cc.chmod(0o755)
    monkeypatch.setenv("CC", str(cc))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        act = actgen.load("tiny", spec=spec)
        build_module.toolchain()
    messages = [str(w.message) for w in caught if issubclass(w.category, ActgenWarning)]
    assert len(messages) == 1 and "OpenMP is not available" in messages[0], messages
    tc = build_module.toolchain()
    assert not tc.openmp and "-fopenmp-simd" in tc.flags and "-fopenmp" not in tc.flags
    assert act.backend == "c"
    x = np.linspace(-2.0, 2.0, 100_001)
    assert np.allclose(act(x), x * np.tanh(x))


@requires_cc
def test_a_march_the_compiler_rejects_is_reported_once_and_the_other_probes_still_decide(
        spec, fresh_cache, monkeypatch, fresh_toolchain):
    # the probes run at once, all with -march; when it is rejected they run again without it
    monkeypatch.setenv("ACTGEN_MARCH", "no-such-cpu")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tc = build_module.toolchain()
        act = actgen.load("tiny", spec=spec)
    messages = [str(w.message) for w in caught if issubclass(w.category, ActgenWarning)]
    assert len(messages) == 1 and "rejected -march=no-such-cpu" in messages[0], messages
    assert not any(f.startswith("-march") for f in tc.flags)
    assert tc.openmp and "-fopenmp" in tc.flags
    assert act.backend == "c"
    x = np.linspace(-2.0, 2.0, 100_001)
    assert np.allclose(act(x), x * np.tanh(x))
