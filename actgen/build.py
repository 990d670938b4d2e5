"""Rendered sources -> built artifacts in a cache keyed by content.

Layout under the cache root (``ACTGEN_CACHE_DIR``, else ``$XDG_CACHE_HOME/actgen``, else
``~/.cache/actgen``)::

    v2/artifacts/<key>/   one built module: the .so (C) or .py (NumPy), meta.json, sources
    v2/index/<spec key>   which artifact a spec table builds to (lets load() skip SymPy)
    v2/failed/<module>/   source, command and stderr of a failed compile (removed by a later success)
    v2/locks/, v2/tmp/

The artifact key is a SHA-256 of the rendered source, the cffi declarations, the compiler
identity and flags, cffi's version and the Python ABI, so a changed template, printer, flag or
compiler gives a new key and nothing else does. Artifacts are built in a temporary directory
and renamed into place; a lock per key lets concurrent builders share one build.

What a load trusts is checked first: meta.json (how to call the module: its functions,
parameters and defaults) carries a seal, the SHA-256 of everything else in it, the module
file's SHA-256 among them, and its own key, which must be the directory's name; an index entry
names the artifact by a hexadecimal key and records its activation's name and seal. An entry
that fails a check is not used: it is reported (a warning) and rebuilt.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# Some names are imported here only to be imported from here (by fastcall, pipeline, docs,
# compare and the tests): FORMAT, write_atomic, ActgenWarning, toolchain.
from .cache import (FORMAT, cache_root, cache_roots, cache_writes, clean_stale_temporaries, disk_full,  # noqa: F401
                    fsync_dir, full_disk, locked, remove_directory, sha256_file, write_atomic)
from .errors import ActgenError, ActgenWarning, BuildError, CacheFullError, warn_once  # noqa: F401
from .resources import template_root
from .toolchain import Toolchain, quick_toolchain_id, toolchain  # noqa: F401


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
    """A hash of actgen's own code (its hand-written C included) and templates: anything that could
    change what is rendered or what it includes."""
    # An installed wheel maps the top-level templates/ into the package (actgen/templates, with an
    # __init__.py a checkout does not have): the templates are hashed by templates_fingerprint alone,
    # so that a checkout and the wheel built from it share keys, and cache entries.
    h = hashlib.sha256()
    package = Path(__file__).parent
    for path in sorted(p for p in package.rglob("*")
                       if p.suffix in (".py", ".h", ".c") and p.relative_to(package).parts[0] != "templates"):
        h.update(str(path.relative_to(package)).encode())
        h.update(path.read_bytes())
    h.update(templates_fingerprint().encode())
    return h.hexdigest()


def spec_key(name: str, table: dict, backend: str) -> str:
    """The key of the index entry for one spec table built with one backend: the table's content,
    actgen's code and the toolchain, not the file the table is in (the same table in two files
    is one entry, and one artifact)."""
    return digest({"name": name, "table": table, "backend": backend,
                   "generator": generator_fingerprint(), "toolchain": quick_toolchain_id()})


def table_origin(name: str) -> str:
    """What the sources built into the cache say they were generated from: the table, not its
    file. Where a table came from is not part of what is built, so copying a table into another
    file compiles nothing."""
    return f"the spec table [{name}]"


def is_key(text) -> bool:
    """True for a cache key: 64 lowercase hexadecimal digits (a SHA-256), nothing that could
    name a path."""
    return isinstance(text, str) and len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def seal(meta: dict) -> str:
    """The SHA-256 of everything in an artifact's metadata but the seal itself."""
    return digest({k: v for k, v in meta.items() if k != "seal"})


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
        if not isinstance(meta, dict):
            return None, "meta.json is not an object"
        if meta.get("seal") != seal(meta):
            return None, "meta.json does not match its seal (edited, or written by another actgen)"
        if meta["key"] != path.name:
            return None, f"it holds the artifact {str(meta['key'])[:16]}..., not {path.name[:16]}... (copied or renamed)"
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
    """The artifact ``key`` if a cache holds it complete and matching its recorded hash and
    seal. An entry that fails the check is never used; it is reported (a warning) and rebuilt
    by the next build."""
    if not is_key(key):
        return None
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
    fsync_dir(final.parent)
    return final


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
        tmp = None
        with cache_writes(root, f"the module {meta.get('module') or key[:16]}"):
            try:
                tmp = Path(tempfile.mkdtemp(prefix=f"{key}-", dir=root / "tmp"))
                filename = make(tmp)
                with open(tmp / filename, "rb+") as handle:
                    os.fsync(handle.fileno())
                meta = dict(meta, key=key, backend=backend, file=filename,
                            sha256=sha256_file(tmp / filename), built=time.strftime("%Y-%m-%dT%H:%M:%S"))
                meta["seal"] = seal(meta)
                write_atomic(tmp / "meta.json", json.dumps(meta, indent=1, sort_keys=True))
                final = _install(root, key, tmp)
            except BaseException:
                if tmp is not None:
                    shutil.rmtree(tmp, ignore_errors=True)
                raise
        if meta.get("module"):        # the evidence of an earlier failed compile of this module is stale
            shutil.rmtree(root / "failed" / meta["module"], ignore_errors=True)
        return Artifact(key, final, meta, compiled=True, seconds=time.perf_counter() - started)


def compile_c(module_name: str, c_source: str, declarations: str, tmp: Path, tc: Toolchain,
              header: str | None = None, units: list[str] | None = None) -> str:
    """Compile one cffi API-mode extension in ``tmp``; return its file name.

    With ``header`` (the C prototypes of the exported functions) and ``units`` (``c_source`` as
    translation units: render.render_units, the kernels of each dtype), the units and cffi's
    wrapper (which then includes only the prototypes) are compiled as separate objects, all at
    once, and linked: on 2 cores a new activation compiles in about half the time."""
    import cffi
    from cffi.recompiler import make_c_source

    units = units if header is not None and units and len(units) > 1 else [c_source]
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


#: a compiler that fails without a word while its disk has less than this free ran out of space:
#: its stderr goes to a file beside the objects, which a full disk leaves empty
_LOW_DISK = 64 << 20


def _compile_failure(module_name, c_source, command, proc) -> BuildError | CacheFullError:
    root, what = cache_root(), f"the module {module_name}"
    if any(s in proc.stderr for s in (os.strerror(errno.ENOSPC), os.strerror(errno.EDQUOT))):
        return full_disk(root, what)                           # the compiler or linker said so
    if proc.returncode > 0 and not proc.stderr.strip():
        with contextlib.suppress(OSError):
            free = shutil.disk_usage(root).free
            if free < _LOW_DISK:
                return full_disk(root, what, f"{os.strerror(errno.ENOSPC)} (the compiler failed without a "
                                             f"message, with {free >> 10} KB free on the cache's disk)")
    try:
        return _compile_failure_logged(root, module_name, c_source, command, proc)
    except OSError as exc:
        if disk_full(exc):                  # the log did not fit either
            shutil.rmtree(root / "failed" / module_name, ignore_errors=True)
            return full_disk(root, what, exc.strerror)
        raise


def _compile_failure_logged(root, module_name, c_source, command, proc) -> BuildError:
    failed = root / "failed" / module_name
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

def read_index(key: str, *, warn: bool = True) -> dict | None:
    """The entry the spec index records for ``key``: {"artifact": its key, "name": the
    activation, "seal": the artifact's seal}, or None. An entry that is there but damaged (not
    such an object, a key that is not hexadecimal) reads as absent, with a warning; the build
    that follows writes it again."""
    for root in cache_roots():
        path = root / "index" / key
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, NotADirectoryError):
            continue
        except (OSError, ValueError) as exc:
            problem = f"unreadable ({type(exc).__name__})"
        else:
            if (isinstance(entry, dict) and is_key(entry.get("artifact")) and isinstance(entry.get("name"), str)
                    and is_key(entry.get("seal"))):
                return entry
            problem = "not an entry this version of actgen wrote"
        if warn:
            warn_once(f"the cache index entry {path} is damaged ({problem}); rebuilding it")
    return None


def indexed_artifact(key: str, name: str, *, warn: bool = True) -> Artifact | None:
    """The artifact the spec index records for ``key``, if it is the one that was built there:
    complete and uncorrupted, of the activation ``name``, with the seal the index recorded.
    Anything else is not used (and said, with ``warn``)."""
    entry = read_index(key, warn=warn)
    if entry is None:
        return None
    artifact = lookup_artifact(entry["artifact"], warn=warn)
    if artifact is None:
        return None
    if entry["name"] != name or artifact.meta.get("name") != name or artifact.meta.get("seal") != entry["seal"]:
        if warn:
            warn_once(f"the cache index entry {key[:16]}... for {name!r} names {artifact.path}, which is not the "
                      f"artifact built for it ({artifact.meta.get('name')!r}, another seal); rebuilding it")
        return None
    return artifact


def write_index(key: str, artifact: Artifact | str) -> None:
    """Record that the spec key ``key`` builds to ``artifact`` (an Artifact, or the key of one in
    the cache). A directory in the entry's place (damage) is removed first."""
    if isinstance(artifact, str):
        found = lookup_artifact(artifact, warn=False)
        if found is None:
            raise ActgenError(f"the cache has no valid artifact {artifact}")
        artifact = found
    root = cache_root()
    path = root / "index" / key
    with cache_writes(root, f"the index entry of {artifact.meta.get('name')!r}"):
        if path.is_dir():
            remove_directory(root, path)
        write_atomic(path, json.dumps({"artifact": artifact.key, "name": artifact.meta.get("name"),
                                       "seal": artifact.meta["seal"]}))
