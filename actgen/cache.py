"""The cache on disk: where it is, its layout, locks, atomic writes, a full disk.

The root is ``ACTGEN_CACHE_DIR``, else ``$XDG_CACHE_HOME/actgen``, else ``~/.cache/actgen``,
with the format version appended (actgen/build.py describes what lives under it). A root that
cannot be written falls back to a private temporary one, with a warning; the configured one is
still read.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import shutil
import stat
import tempfile
from pathlib import Path

from .errors import ActgenError, CacheFullError, warn_once

FORMAT = 2   # bump when the artifact layout or meta.json schema changes

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


def _open_lock(root: Path, key: str):
    """``locks/<key>.lock`` opened for flock; a directory in its place (damage: actgen only
    writes files there) is removed first."""
    path = root / "locks" / f"{key}.lock"
    try:
        return open(path, "a+")
    except IsADirectoryError:
        remove_directory(root, path)
        return open(path, "a+")


def remove_directory(root: Path, path: Path) -> None:
    """Take a directory found where the cache keeps a file out of the way: renamed into tmp/
    (one step, so that concurrent processes do not both remove it) and deleted."""
    if path.is_symlink():
        path.unlink(missing_ok=True)
        return
    doomed = Path(tempfile.mkdtemp(prefix="stray-", dir=root / "tmp"))
    with contextlib.suppress(FileNotFoundError):
        os.rename(path, doomed / "entry")
    shutil.rmtree(doomed, ignore_errors=True)


@contextlib.contextmanager
def locked(root: Path, key: str):
    """An exclusive lock on ``key`` across processes: flock on ``locks/<key>.lock``, released
    by the kernel when the process dies, so a killed builder never leaves a lock behind."""
    with _open_lock(root, key) as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _is_unlocked(root: Path, key: str) -> bool:
    """True if no process holds the lock of ``key`` now (tried without waiting)."""
    try:
        with _open_lock(root, key) as handle:
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


def disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


@contextlib.contextmanager
def cache_writes(root: Path, what: str):
    """Writing into the cache ``root`` for ``what``: a full disk (or quota) becomes one
    CacheFullError that says where and what to do."""
    try:
        yield
    except OSError as exc:
        if disk_full(exc):
            raise full_disk(root, what, exc.strerror) from None
        raise


def full_disk(root: Path, what: str, reason: str | None = None) -> CacheFullError:
    return CacheFullError(f"{reason or 'No space left on device'}: the cache {root} is full, so {what} could not "
                          "be written (nothing half-written was kept); free some space there, or set "
                          "ACTGEN_CACHE_DIR to a directory on another disk")


def fsync_dir(path: Path) -> None:
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
