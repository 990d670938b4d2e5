"""actgen: a symbolic activation-function compiler.

Write an activation once as a SymPy expression in a TOML spec; actgen derives its derivatives,
rewrites them for numerical stability, generates C (OpenMP, SIMD) and NumPy kernels, compiles
them into a content-keyed cache and verifies them against mpmath in ULPs.

    import actgen, numpy as np
    act = actgen.load("swish")                   # a built-in
    act = actgen.load("serf", spec="serf.toml")  # a table of your own spec file
    y = act(x, beta=1.5); dx = act.backward(x, dy); g = act.param_grads(x, dy)

Importing actgen does not import SymPy; loading an unchanged spec from the cache does not either.
"""

from .errors import (ActgenError, ActgenWarning, BuildError, DerivationError, KernelArgumentError, SpecError,
                     ToolchainError, UnknownActivationError)
from .kinds import GatedActivation, RowwiseActivation
from .loading import load
from .runtime import LoadedActivation
from .threads import get_num_threads, set_num_threads

#: the public name of what ``load`` returns (an elementwise activation; the gated and rowwise
#: kinds are its subclasses)
Activation = LoadedActivation

__version__ = "0.1.0"


def builtins() -> list[str]:
    """Names of the built-in activations."""
    from . import library

    return library.names()


__all__ = ["load", "builtins", "set_num_threads", "get_num_threads", "Activation", "LoadedActivation", "GatedActivation",
           "RowwiseActivation", "ActgenError", "ActgenWarning", "SpecError",
           "UnknownActivationError", "DerivationError", "BuildError", "ToolchainError",
           "KernelArgumentError", "__version__"]
