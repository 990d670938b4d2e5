"""Typed errors. Each one says where the problem is and what to do about it.

The CLI prints ``str(error)`` and exits non-zero; it never shows a traceback for an
``ActgenError``.
"""

from __future__ import annotations


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


class ToolchainError(ActgenError):
    """No usable C compiler. Use ``backend="numpy"`` or install gcc/clang."""


class KernelArgumentError(ActgenError, TypeError):
    """An array or parameter passed to a loaded kernel cannot be used."""


class HigherDerivativeError(ActgenError, RuntimeError):
    """A framework asked for a derivative of a backward kernel (double backward, a Hessian):
    actgen generates first derivatives only."""
