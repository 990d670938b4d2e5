"""The OpenMP thread count of the C kernels, and what fork does to it.

GNU OpenMP's thread pool does not survive fork: a child process runs the kernels on one thread.
The count is a one-element list read by every kernel call (actgen/kernels.py) and handed to the
C fast path (actgen/fastcall.py) when it changes.
"""

from __future__ import annotations

import os

from . import fastcall
from .errors import warn_once


def _default_threads() -> int:
    for var in ("ACTGEN_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "").split(",")[0].strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


THREADS = [_default_threads()]
FORKED = [False]


def set_num_threads(n: int) -> None:
    """The number of OpenMP threads the C kernels use (default: ACTGEN_NUM_THREADS, else
    OMP_NUM_THREADS, else the CPUs this process may run on). Small arrays use one thread
    whatever this says. In a child process created by fork it is 1: GNU OpenMP's thread pool
    does not survive fork, so a child that asks for more threads gets a warning and one thread."""
    n = int(n)
    if n < 1:
        raise ValueError(f"the number of threads must be at least 1, not {n}")
    if FORKED[0] and n > 1:
        warn_once("this process was forked from one that may have used OpenMP threads; GNU OpenMP "
                  "cannot start threads after fork, so actgen's kernels run on one thread here "
                  "(start worker processes with the 'spawn' or 'forkserver' method to use threads)")
        n = 1
    THREADS[0] = n
    if (fc := fastcall.loaded()) is not None:
        fc.set_threads(n)


def get_num_threads() -> int:
    return THREADS[0]




def _after_fork_in_child() -> None:
    FORKED[0] = True
    THREADS[0] = 1
    if (fc := fastcall.loaded()) is not None:
        fc.set_threads(1)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
