"""Every float32 input: the float32 C kernels against the float64 C kernels, rounded to float32.

``actgen verify`` measures kernels against mpmath at a few hundred chosen points; a float32
kernel can still lose precision somewhere between them (a subnormal intermediate, a select's
edge). There are only 2^32 float32 inputs, so this module tries them all: for each input x, the
float32 kernel's f(x) (and f'(x), the backward with dy = 1) against the float64 kernel's value
at the same x rounded to float32. The float64 kernels are themselves verified against mpmath
(within 8 ULP of float64, 2^-50 relative): their rounded value is the correctly rounded float32
one except where the true value lies within that distance of a rounding boundary, where it may
be the neighbour; a reported distance is therefore exact to +-1 ULP. What this cannot see is a
formula that is wrong in both dtypes alike: that is the mpmath sweep's part.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from .derive import derive
from .measure import conditioned_distance, term_scale
from .rewrite import stable_form
from .sweep import param_values

#: float32 codes per call (64 MB of float32)
CHUNK = 1 << 24


@dataclass
class ExhaustiveResult:
    activation: str
    op: str                    # "forward" or "derivative" (the backward with dy = 1)
    inputs: int
    max_ulp: float             # against the float64 kernel rounded to float32 (+-1); for the
                               # derivative in ULPs of max(|f'|, sum |terms|), as actgen verify
    worst_x: float
    differing: int             # inputs where the two differ at all
    nonfinite_mismatch: int    # NaN/inf in one and not in the other
    budget: float
    seconds: float

    @property
    def passed(self) -> bool:
        return self.max_ulp <= self.budget + 1 and self.nonfinite_mismatch == 0

    def as_dict(self) -> dict:
        return dict(asdict(self), passed=self.passed)


def compare(x: np.ndarray, got: np.ndarray, ref: np.ndarray, scale_at=None) -> tuple[float, float, int, int]:
    """(max ULP distance, the x where it is largest, how many differ, NaN/inf mismatches) of
    float32 ``got`` against float32 ``ref`` (+0 and -0 equal, NaN equal to NaN). With
    ``scale_at`` (xs -> the magnitude a derivative is computed from, sum |terms|), in ULPs of
    max(|ref|, that), as ``actgen verify`` measures derivatives: near a root of f' no fixed
    precision keeps relative accuracy. It is evaluated only where the two differ."""
    differ = got.view(np.uint32) != ref.view(np.uint32)
    differ &= ~(np.isnan(got) & np.isnan(ref))
    if not differ.any():
        return 0.0, float("nan"), 0, 0
    idx = np.flatnonzero(differ)
    g, r = got[idx], ref[idx]
    finite_mismatch = np.isfinite(g) != np.isfinite(r)
    nonfinite = int(np.sum(finite_mismatch | (np.isnan(g) != np.isnan(r))))
    dist = conditioned_distance(g, r, None if scale_at is None else scale_at(x[idx]))
    dist = np.where(finite_mismatch, 0.0, dist)           # counted above, not as a distance
    k = int(np.argmax(dist))
    return float(dist[k]), float(x[idx[k]]), int(idx.size), nonfinite


def run(act, activation, *, codes: tuple[int, int] = (0, 1 << 32), chunk: int = CHUNK) -> list[ExhaustiveResult]:
    """The forward and the derivative of ``act`` (``activation`` loaded: elementwise, C
    backend), float32, at every input whose bit pattern is in [codes[0], codes[1]) (default:
    all 2^32), at the default parameters rounded to float32 (for both dtypes)."""
    # both kernels get the parameters as float32 holds them (selu's lambda in double made its
    # float64 kernel overflow one input later than the float32 one: not an error of either)
    params = param_values(activation, "float32")
    ops = [("forward", lambda v, out: act(v, out=out, **params), None)]
    backward = next(k for k in derive(activation) if k.kind == "backward")
    terms = stable_form(backward, activation.expr).stable
    ops.append(("derivative", lambda v, out: act.backward(v, np.ones_like(v), out=out, **params),
                lambda xs: term_scale(terms, xs, params)))
    start, stop = codes
    stats = {op: [0.0, float("nan"), 0, 0, 0.0] for op, _, _ in ops}
    y32 = np.empty(min(chunk, stop - start), np.float32)
    y64 = np.empty(y32.size, np.float64)
    for lo in range(start, stop, chunk):
        hi = min(lo + chunk, stop)
        x = np.arange(lo, hi, dtype=np.uint64).astype(np.uint32).view(np.float32)
        with np.errstate(invalid="ignore"):                 # signalling NaNs become quiet ones
            x64 = x.astype(np.float64)
        n = hi - lo
        for op, call, scale_at in ops:
            t0 = time.perf_counter()
            with np.errstate(all="ignore"):
                call(x, y32[:n])
                call(x64, y64[:n])
                ref = y64[:n].astype(np.float32)
            worst, wx, differing, nonfinite = compare(x, y32[:n], ref, scale_at)
            s = stats[op]
            if worst > s[0]:
                s[0], s[1] = worst, wx
            s[2] += differing
            s[3] += nonfinite
            s[4] += time.perf_counter() - t0
    kinds = {"forward": "forward", "derivative": "backward"}         # op -> the budget's kernel kind
    return [ExhaustiveResult(activation.name, op, stop - start, s[0], s[1], s[2], s[3],
                             activation.budget(kinds[op], "float32"), s[4])
            for op, s in stats.items()]


def format_table(results: list[ExhaustiveResult]) -> str:
    head = ("activation", "op", "inputs", "max ULP", "worst x", "differing", "NaN/inf", "budget", "s", "")
    rows = [head] + [(r.activation, r.op, f"{r.inputs:,}", f"{r.max_ulp:g}",
                      "-" if r.differing == 0 else f"{r.worst_x:.9g}",
                      f"{r.differing:,}", str(r.nonfinite_mismatch), f"{r.budget:g}", f"{r.seconds:.0f}",
                      "ok" if r.passed else "OVER")
                     for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines) + ("\nmax ULP: against the float64 kernel rounded to float32, exact to +-1 "
                               "(ok: within the budget + 1); for the derivative, ULPs of max(|f'|, "
                               "sum |terms|), as actgen verify measures f'\n")
