"""Rendered sources -> built artifacts in a cache keyed by content.

Layout under the cache root (``ACTGEN_CACHE_DIR``, else ``$XDG_CACHE_HOME/actgen``, else
``~/.cache/actgen``)::

    v1/artifacts/<key>/   one built module: the .so (C) or .py (NumPy), meta.json, sources
    v1/index/<spec key>   which artifact a spec table builds to (lets load() skip SymPy)
    v1/failed/<key>/      source, command and stderr of a failed compile
    v1/locks/, v1/tmp/

The artifact key is a SHA-256 of the rendered source, the cffi declarations, the compiler
identity and flags, cffi's version and the Python ABI, so a changed template, printer, flag or
compiler gives a new key and nothing else does. Artifacts are built in a temporary directory
and renamed into place; a lock per key lets concurrent builders share one build; meta.json
records the SHA-256 of the module file, checked on every load.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# ActgenWarning and toolchain are not used here: fastcall, pipeline and the tests import them from here
from .errors import ActgenError, ActgenWarning, BuildError, warn_once  # noqa: F401
from .resources import template_root
from .toolchain import Toolchain, quick_toolchain_id, toolchain  # noqa: F401

FORMAT = 1   # bump when the artifact layout or meta.json schema changes

# ---- cache location ---------------------------------------------------------------------

_SUBDIRS = ("artifacts", "index", "failed", "locks", "tmp")
#: configured root -> (the root written to, the roots read from, in order)
_ROOTS: dict[Path, tuple[Path, tuple[Path, ...]]] = {}


def configured_root() -> Path:
    """The cache directory asked for: ``ACTGEN_CACHE_DIR``, else ``$XDG_CACHE_HOME/actgen``,
    else ``~/.cache/actgen`` (with the format version appended)."""
    env = os.environ.get("ACTGEN_CACHE_DIR")
    if env:
        base = Path(env)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg) if xdg else Path.home() / ".cache") / "actgen"
    return base / f"v{FORMAT}"


def _make_writable(root: Path) -> None:
    """Create the cache layout under ``root`` and prove a file can be written there (raises OSError)."""
    for sub in _SUBDIRS:
        (root / sub).mkdir(parents=True, exist_ok=True)
    fd, probe = tempfile.mkstemp(prefix="write-probe-", dir=root / "tmp")
    os.close(fd)
    os.unlink(probe)


def _private_temporary_root() -> Path:
    """``$TMPDIR/actgen-<uid>`` if it is this user's private directory, else a fresh one: a cache
    holds shared libraries that get loaded, so never one another user could have written."""
    uid = os.getuid()
    shared = Path(tempfile.gettempdir()) / f"actgen-{uid}"
    with contextlib.suppress(OSError):
        shared.mkdir(mode=0o700, exist_ok=True)
        st = os.lstat(shared)
        if stat.S_ISDIR(st.st_mode) and st.st_uid == uid and not st.st_mode & 0o077:
            return shared / f"v{FORMAT}"
    return Path(tempfile.mkdtemp(prefix="actgen-")) / f"v{FORMAT}"


def _roots() -> tuple[Path, tuple[Path, ...]]:
    root = configured_root()
    known = _ROOTS.get(root)
    if known is not None and all((known[0] / sub).is_dir() for sub in _SUBDIRS):
        return known
    try:
        _make_writable(root)
        result = (root, (root,))
    except OSError as exc:
        fallback = _private_temporary_root()
        try:
            _make_writable(fallback)
        except OSError as exc2:
            raise ActgenError(f"the cache directory {root} is not writable ({exc.strerror or exc}) and "
                              f"neither is {fallback} ({exc2.strerror or exc2}); set ACTGEN_CACHE_DIR "
                              "to a writable directory") from None
        warn_once(f"the cache directory {root} is not writable ({exc.strerror or exc}); building into "
                  f"{fallback} instead (artifacts already in {root} are still used). Set "
                  "ACTGEN_CACHE_DIR to a writable directory to keep what is built.")
        # read the configured cache too: a read-only shared cache still serves what it has
        result = (fallback, (fallback, root))
    _ROOTS[root] = result
    return result


def cache_root() -> Path:
    """The cache directory built into (created on first use). If the configured one cannot be
    written, a private temporary directory, with a warning (once)."""
    return _roots()[0]


def cache_roots() -> tuple[Path, ...]:
    """The cache directories looked up, the written one first."""
    return _roots()[1]


@contextlib.contextmanager
def locked(root: Path, key: str):
    """An exclusive lock on ``key`` across processes: flock on ``locks/<key>.lock``, released
    by the kernel when the process dies, so a killed builder never leaves a lock behind."""
    with open(root / "locks" / f"{key}.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _is_unlocked(root: Path, key: str) -> bool:
    """True if no process holds the lock of ``key`` now (tried without waiting)."""
    try:
        with open(root / "locks" / f"{key}.lock", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(handle, fcntl.LOCK_UN)
            return True
    except OSError:
        return False


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a uniquely named temporary file in the same directory,
    flushed to disk, and a rename: a reader sees the old content or the new, never a part."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# ---- keys and artifacts -----------------------------------------------------------------

def digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


@functools.lru_cache(maxsize=1)
def templates_fingerprint() -> str:
    """A hash of every template: part of the key of anything rendered from them."""
    digest_ = hashlib.sha256()
    stack, files = [template_root()], []
    while stack:
        for child in stack.pop().iterdir():
            if child.is_dir():
                stack.append(child)
            elif child.name.endswith(".jinja"):
                files.append(child)
    for f in sorted(files, key=str):
        digest_.update(f.name.encode())
        digest_.update(f.read_bytes())
    return digest_.hexdigest()


@functools.lru_cache(maxsize=1)
def generator_fingerprint() -> str:
    """A hash of actgen's own code and templates: anything that could change what is rendered."""
    h = hashlib.sha256()
    package = Path(__file__).parent
    for path in sorted(package.rglob("*.py")):
        h.update(str(path.relative_to(package)).encode())
        h.update(path.read_bytes())
    h.update(templates_fingerprint().encode())
    return h.hexdigest()


def spec_key(name: str, table: dict, spec_display: str, backend: str) -> str:
    """The key of the index entry for one spec table built with one backend."""
    return digest({"name": name, "table": table, "spec": spec_display, "backend": backend,
                   "generator": generator_fingerprint(), "toolchain": quick_toolchain_id()})


@dataclass
class Artifact:
    key: str
    path: Path          # the artifact directory
    meta: dict
    compiled: bool      # True if this call built it, False if it came from the cache
    seconds: float = 0.0

    @property
    def module_file(self) -> Path:
        return self.path / self.meta["file"]


def _check(path: Path) -> tuple[dict | None, str | None]:
    """(meta.json of a complete, uncorrupted artifact, None) or (None, what is wrong with it)."""
    if not path.exists():
        return None, None
    try:
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
        module = path / meta["file"]
        if Path(meta["file"]).name != meta["file"]:
            return None, "meta.json names a file outside the entry"
        if sha256_file(module) != meta["sha256"]:
            return None, f"{meta['file']} does not match the SHA-256 in meta.json (truncated or modified)"
        return meta, None
    except FileNotFoundError as exc:
        return None, f"{Path(exc.filename or '?').name} is missing"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return None, f"meta.json is unreadable ({type(exc).__name__})"


def lookup_artifact(key: str, *, warn: bool = True) -> Artifact | None:
    """The artifact ``key`` if a cache holds it complete and matching its recorded hash. An entry
    that fails the check is never used; it is reported (a warning) and rebuilt by the next build."""
    for root in cache_roots():
        path = root / "artifacts" / key
        meta, problem = _check(path)
        if meta:
            return Artifact(key, path, meta, compiled=False)
        if problem and warn:
            warn_once(f"the cache entry {path} is corrupt ({problem}); rebuilding it")
    return None


def _install(root: Path, key: str, tmp: Path) -> Path:
    """Rename the finished ``tmp`` into place. A corrupt entry already there is first renamed
    away (one atomic step), so a reader sees the old entry, no entry, or the new one."""
    final = root / "artifacts" / key
    if final.exists():
        doomed = Path(tempfile.mkdtemp(prefix=f"{key}-corrupt-", dir=root / "tmp"))
        os.rename(final, doomed / "entry")
        shutil.rmtree(doomed, ignore_errors=True)
    os.rename(tmp, final)
    _fsync_dir(final.parent)
    return final


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def clean_stale_temporaries(root: Path, key: str | None = None) -> list[Path]:
    """Remove what killed builds left in ``tmp/``. Every build works in ``tmp/<key>-...`` while
    holding the lock of ``key``, so an entry whose key is not locked now is stale: decided by
    the lock, not by its age. (``key``: the caller holds that key's lock.) Returns what was removed."""
    removed = []
    with contextlib.suppress(OSError):
        for entry in (root / "tmp").iterdir():
            owner = entry.name.split("-", 1)[0]
            if len(owner) != 64 or not all(c in "0123456789abcdef" for c in owner):
                continue                      # the write probe, or not ours
            if owner == key or _is_unlocked(root, owner):
                shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
                removed.append(entry)
    return removed


def build_artifact(key: str, backend: str, meta: dict, make) -> Artifact:
    """Build the artifact ``key`` with ``make(tmpdir) -> file name`` unless the cache has it.

    Concurrent builders of one key take turns on its lock: the first builds, the others find
    its result. The build happens in ``tmp/<key>-*`` and is renamed into place complete, with
    meta.json (holding the module's SHA-256) written last inside it; a builder killed at any
    point leaves only a stale temporary directory, removed by the next build."""
    root = cache_root()
    existing = lookup_artifact(key, warn=False)
    if existing:
        return existing
    with locked(root, key):
        existing = lookup_artifact(key)       # another process may have built it meanwhile
        if existing:
            return existing
        clean_stale_temporaries(root, key)
        started = time.perf_counter()
        tmp = Path(tempfile.mkdtemp(prefix=f"{key}-", dir=root / "tmp"))
        try:
            filename = make(tmp)
            with open(tmp / filename, "rb+") as handle:
                os.fsync(handle.fileno())
            meta = dict(meta, key=key, backend=backend, file=filename,
                        sha256=sha256_file(tmp / filename), built=time.strftime("%Y-%m-%dT%H:%M:%S"))
            write_atomic(tmp / "meta.json", json.dumps(meta, indent=1, sort_keys=True))
            final = _install(root, key, tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return Artifact(key, final, meta, compiled=True, seconds=time.perf_counter() - started)


#: where templates/c/activation.c.jinja starts each dtype's kernels
_SECTION = re.compile(r"^/\* ---- (float32|float64): element functions ---- \*/$", re.M)


def split_units(c_source: str) -> list[str]:
    """The kernel source as translation units that can be compiled at the same time: the
    prelude (includes, macros, helpers) followed by one dtype's kernels, for each dtype; the
    whole source as one unit if it has fewer than two dtype sections."""
    starts = [m.start() for m in _SECTION.finditer(c_source)]
    if len(starts) < 2:
        return [c_source]
    prelude = c_source[:starts[0]]
    bounds = starts + [len(c_source)]
    return [prelude + c_source[a:b] for a, b in zip(bounds, bounds[1:])]


def compile_c(module_name: str, c_source: str, declarations: str, tmp: Path, tc: Toolchain,
              header: str | None = None) -> str:
    """Compile one cffi API-mode extension in ``tmp``; return its file name.

    With ``header`` (the C prototypes of the exported functions), the kernels of each dtype and
    cffi's wrapper (which then includes only the prototypes) are compiled as separate objects,
    all at once, and linked: on 2 cores a new activation compiles in about half the time."""
    import cffi
    from cffi.recompiler import make_c_source

    units = split_units(c_source) if header is not None else [c_source]
    ffi = cffi.FFI()
    ffi.cdef(declarations)
    wrapper = tmp / f"{module_name}.c"
    make_c_source(ffi, module_name, c_source if len(units) == 1 else header, str(wrapper), verbose=False)
    output = f"{module_name}{sysconfig.get_config_var('EXT_SUFFIX')}"
    include = f"-I{sysconfig.get_paths()['include']}"
    if len(units) == 1:
        command = [*tc.cc, *tc.flags, include, str(wrapper), "-o", str(tmp / output), "-lm"]
        proc = subprocess.run(command, capture_output=True, text=True, cwd=tmp)
        if proc.returncode != 0:
            raise _compile_failure(module_name, c_source, command, proc)
        return output
    jobs = []                                   # (source file, its text, command, process)
    try:
        for i, text in enumerate([None, *units]):
            if text is None:
                src, text = wrapper, wrapper.read_text()
            else:
                src = tmp / f"{module_name}_unit{i}.c"
                src.write_text(text)
            command = [*tc.cc, *tc.flags, include, "-c", str(src), "-o", str(src.with_suffix(".o"))]
            with open(src.with_suffix(".log"), "w") as log:      # a file: a full pipe cannot stall gcc
                jobs.append((src, text, command, subprocess.Popen(command, stdout=log, stderr=log, cwd=tmp)))
        failure = _wait_all(module_name, jobs)
        if failure is not None:
            raise failure
        command = [*tc.cc, *tc.flags, *[str(src.with_suffix(".o")) for src, *_ in jobs],
                   "-o", str(tmp / output), "-lm"]
        proc = subprocess.run(command, capture_output=True, text=True, cwd=tmp)
        if proc.returncode != 0:
            raise _compile_failure(module_name, c_source, command, proc)
    finally:
        for src, _, _, process in jobs:
            if process.poll() is None:
                process.kill()
                process.wait()
            for suffix in (".o", ".log") + ((".c",) if src != wrapper else ()):
                src.with_suffix(suffix).unlink(missing_ok=True)
    return output


def _wait_all(module_name, jobs) -> BuildError | None:
    """Wait for the compilations; at the first that fails, stop the others and return its error."""
    pending = list(jobs)
    while pending:
        for job in list(pending):
            src, text, command, process = job
            if process.poll() is None:
                continue
            pending.remove(job)
            if process.returncode != 0:
                stderr = src.with_suffix(".log").read_text(errors="replace")
                for other in pending:
                    other[3].kill()
                return _compile_failure(module_name, text, command,
                                        subprocess.CompletedProcess(command, process.returncode, "", stderr))
        time.sleep(0.005)
    return None


def _compile_failure(module_name, c_source, command, proc) -> BuildError:
    failed = cache_root() / "failed" / module_name
    failed.mkdir(parents=True, exist_ok=True)
    numbered = "\n".join(f"{i + 1:5d}  {line}" for i, line in enumerate(c_source.splitlines()))
    log = failed / "build.log"
    status = (f"killed by signal {-proc.returncode}" if proc.returncode < 0 else str(proc.returncode))
    write_atomic(log, f"command: {shlex.join(command)}\nexit status: {status}\n\n"
                      f"---- stderr ----\n{proc.stderr}\n---- source ----\n{numbered}\n")
    first = next((line for line in proc.stderr.splitlines() if "error" in line), proc.stderr[:200])
    if not first.strip():
        first = f"exit status {status}"
    return BuildError(f"the C compiler failed building {module_name}: {first.strip()}\n"
                      f"  the source, command and full stderr are in {log}")


_MODULES: dict[str, object] = {}


def import_module_file(module_name: str, path: Path):
    """Import a built module (extension or .py) from its file, once per process."""
    if module_name in _MODULES:
        return _MODULES[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ActgenError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules.setdefault(module_name, module)
    _MODULES[module_name] = module
    return module


# ---- the spec index ------------------------------------------------------------------------

def read_index(key: str) -> str | None:
    """The artifact key the spec index records for ``key`` (written atomically; a damaged entry
    reads as absent, and the artifact it names is hash-checked before use anyway)."""
    for root in cache_roots():
        try:
            artifact = json.loads((root / "index" / key).read_text(encoding="utf-8"))["artifact"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if isinstance(artifact, str) and len(artifact) == 64:
            return artifact
    return None


def write_index(key: str, artifact_key: str) -> None:
    write_atomic(cache_root() / "index" / key, json.dumps({"artifact": artifact_key}))
