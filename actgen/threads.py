"""The OpenMP thread count of the C kernels, and what fork does to it.

GNU OpenMP's thread pool does not survive fork: a child process runs the kernels on one thread.
The count is a one-element list read by every kernel call (actgen/kernels.py) and handed to the
C fast path (actgen/fastcall.py) when it changes. It is decided by the first ``load`` (or
``get_num_threads``), from the environment, unless ``set_num_threads`` was called first.
"""

from __future__ import annotations

import operator
import os

from . import fastcall
from .errors import ConfigurationError, warn_once

#: The most threads a kernel call asks OpenMP for. GNU OpenMP starts what it is asked for, and
#: a call with 65536 threads crashed inside GOMP_parallel (thread creation fails there);
#: beyond a few times the CPUs, more threads only add oversubscription.
MAX_THREADS = 1024

THREADS = [0]           # 0 until decided (resolve)
FORKED = [False]


def _checked(value, what: str) -> int:
    """``value`` as a thread count, or a ConfigurationError naming ``what`` and the range."""
    try:
        if isinstance(value, bool):
            raise TypeError
        n = operator.index(value)
    except TypeError:
        raise ConfigurationError(f"{what} must be a whole number of threads, not {value!r:.40}") from None
    if not 1 <= n <= MAX_THREADS:
        raise ConfigurationError(f"{what} = {n}: actgen's kernels run on 1 to {MAX_THREADS} OpenMP threads "
                                 f"(this process may use {_cpus()} CPUs)")
    return n


def _cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _from_environment() -> int:
    for var in ("ACTGEN_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "").split(",")[0].strip()       # OpenMP's nested list: the outer level
        if value:
            try:
                number = int(value)
            except ValueError:
                raise ConfigurationError(f"{var}={os.environ[var]!r:.40} is not a number of threads; set it to "
                                         f"a whole number from 1 to {MAX_THREADS}, or unset it") from None
            return _checked(number, f"{var}")
    return _cpus()


def resolve() -> int:
    """The thread count, read from the environment the first time (ACTGEN_NUM_THREADS, else
    OMP_NUM_THREADS, else the CPUs this process may run on); a value that is not a whole
    number from 1 to MAX_THREADS is a ConfigurationError that names the variable."""
    if THREADS[0] == 0:
        THREADS[0] = _from_environment()
    return THREADS[0]


def set_num_threads(n: int) -> None:
    """The number of OpenMP threads the C kernels use, 1 to MAX_THREADS (1024) (default:
    ACTGEN_NUM_THREADS, else OMP_NUM_THREADS, else the CPUs this process may run on). Small
    arrays use one thread whatever this says. In a child process created by fork it is 1: GNU
    OpenMP's thread pool does not survive fork, so a child that asks for more threads gets a
    warning and one thread. Anything else is refused (ConfigurationError, a ValueError) and the
    count stays as it was."""
    n = _checked(n, "set_num_threads")
    if FORKED[0] and n > 1:
        warn_once("this process was forked from one that may have used OpenMP threads; GNU OpenMP "
                  "cannot start threads after fork, so actgen's kernels run on one thread here "
                  "(start worker processes with the 'spawn' or 'forkserver' method to use threads)")
        n = 1
    THREADS[0] = n
    if (fc := fastcall.loaded()) is not None:
        fc.set_threads(n)


def get_num_threads() -> int:
    return resolve()


def _after_fork_in_child() -> None:
    FORKED[0] = True
    THREADS[0] = 1
    if (fc := fastcall.loaded()) is not None:
        fc.set_threads(1)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
