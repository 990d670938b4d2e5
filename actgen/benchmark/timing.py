"""Medians of repeats, the repeats of several calls interleaved."""

from __future__ import annotations

import statistics
import time


def time_call(fn, repeats: int, min_time: float, max_time: float = 4.0) -> dict:
    """Median seconds per call of ``fn()`` over ``repeats`` repeats, after a warm-up; each repeat
    loops enough calls to last ``min_time``. A slow cell (a repeat over ``max_time`` / repeats)
    gets fewer repeats: at least 3, or 1 for calls over ``max_time`` / 8 (seconds each)."""
    return time_together([fn], repeats, min_time, max_time)[0]


def time_together(fns, repeats: int, min_time: float, max_time: float = 4.0,
                  clock=time.perf_counter) -> list[dict]:
    """time_call for several functions (one activation's kernels and their peers), their repeats
    interleaved: repeat 1 of each, then repeat 2 of each, ... A busy spell of a shared machine
    then slows actgen and its peers alike, and the ratios of their medians keep their meaning.
    ``clock``: wall time, or time.process_time (this process's CPU time, all its threads: what
    the other jobs of a crowded machine do not add to, where they only delay it)."""
    plans = []
    for fn in fns:
        t0 = clock()
        fn()                                                # warm-up (page faults, caches, threads)
        single = max(clock() - t0, 1e-7)
        if single < min_time:
            t0 = clock()
            fn()
            single = max(clock() - t0, 1e-7)
        number = max(1, int(min_time / single))
        floor = 1 if single > max_time / 8 else 3
        plans.append((number, max(min(repeats, floor), min(repeats, int(max_time / (single * number))))))
    times = [[] for _ in fns]
    for k in range(max((r for _, r in plans), default=0)):
        for i, fn in enumerate(fns):
            number, count = plans[i]
            if k >= count:
                continue
            t0 = clock()
            for _ in range(number):
                fn()
            times[i].append((clock() - t0) / number)
    out = []
    for (number, count), ts in zip(plans, times):
        med = statistics.median(ts)
        out.append({"seconds": med, "best": min(ts), "spread": (max(ts) - min(ts)) / med if med > 0 else 0.0,
                    "calls": number, "repeats": count})
    return out