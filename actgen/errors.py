"""Typed errors. Each one says where the problem is and what to do about it.

The CLI prints ``str(error)`` and exits non-zero; it never shows a traceback for an
``ActgenError`` (``ACTGEN_DEBUG=1`` prints it, with the exception it came from).
"""

from __future__ import annotations

import contextlib
import functools
import warnings


class ActgenError(Exception):
    """Base class of every error actgen raises on purpose."""


class SpecError(ActgenError, ValueError):
    """A spec file (or one activation in it) is invalid.

    The message names the file, the activation, the key and the fix.
    """

    def __init__(self, problem: str, *, path: str | None = None, activation: str | None = None,
                 key: str | None = None, fix: str | None = None):
        self.problem = problem
        self.path = path
        self.activation = activation
        self.key = key
        self.fix = fix
        super().__init__(self._format())

    def _format(self) -> str:
        where = []
        if self.path:
            where.append(str(self.path))
        if self.activation:
            where.append(f"[{self.activation}]")
        if self.key:
            where.append(self.key)
        text = (": ".join([" ".join(where), self.problem]) if where else self.problem)
        if self.fix:
            text += f"\n  fix: {self.fix}"
        return text


class UnknownActivationError(ActgenError, KeyError):
    """``actgen.load(name)`` found no built-in and no table of that name in the spec."""

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class DerivationError(SpecError):
    """Symbolic differentiation or simplification failed or exceeded its limits (a spec problem:
    the message names the file, the activation and the key when they are known)."""


class AccuracyError(SpecError):
    """No form actgen knows computes a kernel within its ULP budget on the whole sweep: the build
    stops instead of writing an inaccurate kernel. The message names the kernel, the dtype, the
    error and the input where it occurs; the fix is a rewrite of the expression, or a looser
    budget accepted explicitly (with its reason) in the spec's ``budgets``."""


class BuildError(ActgenError):
    """The C compiler failed. The message names the log file holding source, command and stderr."""


class CacheFullError(BuildError):
    """The disk (or quota) of the cache is full: nothing was built. Free space, or set
    ACTGEN_CACHE_DIR to a directory on another disk."""


class ConfigurationError(ActgenError, ValueError):
    """A setting is out of range: a thread count (``set_num_threads``, ACTGEN_NUM_THREADS,
    OMP_NUM_THREADS)."""


class ToolchainError(ActgenError):
    """No usable C compiler. Use ``backend="numpy"`` or install gcc/clang."""


class KernelArgumentError(ActgenError, TypeError):
    """An array or parameter passed to a loaded kernel cannot be used."""


class ActgenWarning(UserWarning):
    """A visible fallback: no compiler, no OpenMP, a read-only cache, a cache entry rebuilt."""


def warn_once(message: str) -> None:
    """Warn with ``message`` (an ActgenWarning) the first time this process says it."""
    _warn_once(message)


@functools.lru_cache(maxsize=None)
def _warn_once(message: str) -> None:
    warnings.warn(message, ActgenWarning, stacklevel=4)


class StageError(ActgenError):
    """An exception actgen did not anticipate (from SymPy, mpmath, cffi, the compiler, or a bug
    of actgen's own) while processing one spec table: the message names the file, the
    activation and the stage; the original exception is ``__cause__``."""

    def __init__(self, message: str, *, stage: str | None = None, path: str | None = None,
                 activation: str | None = None):
        self.stage, self.path, self.activation = stage, path, activation
        super().__init__(message)


@contextlib.contextmanager
def stage(what: str, *, path: str | None = None, activation: str | None = None):
    """Run a stage of processing a spec: an ActgenError passes through; any other exception
    becomes a StageError naming ``path``, ``activation`` and the stage ``what``, raised from it."""
    try:
        yield
    except ActgenError:
        raise
    except Exception as exc:
        where = " ".join(filter(None, [str(path) if path else None, f"[{activation}]" if activation else None]))
        detail = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        message = (f"{where + ': ' if where else ''}{what} failed with {type(exc).__name__}"
                   f"{': ' + detail if detail else ''} (an error inside actgen or a library it uses, not "
                   "a problem actgen knows how to explain; ACTGEN_DEBUG=1 shows the traceback)")
        raise StageError(message, stage=what, path=path, activation=activation) from exc
