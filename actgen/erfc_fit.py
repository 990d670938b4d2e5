"""The polynomial of actgen's float erfc (``actgen_erfc_ff`` in actgen/csrc/actgen_math.h,
modelled by ``actgen.numpy_runtime.erfc_ff``), and how it was fitted.

erfc(a) = exp(-a^2) erfcx(a), and erfcx(a) = t P(t - c) with t = 1/(1 + a/4): on a in [0, 10.5]
(beyond, erfc rounds to 0 in float), t is in [0.276, 1], where erfcx(a)/t is smooth (it tends to
1/(4 sqrt(pi)) as a grows). P is fitted on two intervals of t, split at 0.6, centred at c (a
float: t - c is then exact, since |t - c| < 0.5 and both are multiples of 2^-25). Its coefficients
are floats, fitted one at a time, each refitted after the previous ones were rounded, except c0,
which is kept as a float pair (hi + lo): the rounding of c0 alone would be 2^-25 of P. A
least-squares fit reweighted towards the largest relative errors (a few dozen rounds: near
minimax) on 3000 Chebyshev nodes of each interval, against mpmath at 40 digits.

    python -m actgen.erfc_fit        # prints the table of numpy_runtime.ERFC_F32_PIECES (~1 s)
"""

from __future__ import annotations

import numpy as np

L = 4.0
A_MAX = 10.5
T_MIN = 1.0 / (1.0 + A_MAX / L)
SPLIT = 0.6
DEGREE = 8


def _target(ts: np.ndarray) -> np.ndarray:
    """erfcx(a)/t at a = L (1/t - 1), by mpmath."""
    import mpmath as mp

    with mp.workdps(40):
        out = []
        for t in ts:
            a = mp.mpf(L) * (1 - mp.mpf(t)) / mp.mpf(t)
            out.append(float(mp.erfc(a) * mp.exp(a * a) / mp.mpf(t)))
    return np.array(out)


def _weighted_fit(ws, h, degree, fixed):
    """Coefficients fixed[len(fixed)...degree] of sum c_i w^i ~ h, in relative terms."""
    resid = h - sum(c * ws**i for i, c in enumerate(fixed))
    basis = np.vander(ws, degree + 1, increasing=True)[:, len(fixed):]
    weight = 1 / np.abs(h)
    best = None
    for _ in range(80):
        c, *_ = np.linalg.lstsq(basis * weight[:, None], resid * weight, rcond=None)
        rel = np.abs((basis @ c - resid) / h)
        if best is None or rel.max() < best[1]:
            best = (c, rel.max())
        weight = weight * (1 + 10 * rel / rel.max())
        weight /= weight.mean()
    return best[0]


def fit(lo: float, hi: float, degree: int = DEGREE, nodes: int = 3000):
    """(c, c0 hi, c0 lo, (c1, ..., c_degree), max relative error) on t in [lo, hi]."""
    f32 = np.float32
    centre = float(f32((lo + hi) / 2))
    k = np.arange(nodes)
    ts = (lo + hi) / 2 + (hi - lo) / 2 * np.cos(np.pi * (k + 0.5) / nodes)
    h = _target(ts)
    ws = ts - centre
    fixed: list[float] = []
    for i in range(degree + 1):
        c = _weighted_fit(ws, h, degree, fixed)
        fixed.append(float(c[0]) if i == 0 else float(f32(c[0])))
    error = np.abs((sum(c * ws**i for i, c in enumerate(fixed)) - h) / h).max()
    c0_hi = float(f32(fixed[0]))
    return centre, c0_hi, float(f32(fixed[0] - c0_hi)), tuple(fixed[1:]), float(error)


def pieces():
    return fit(SPLIT, 1.0), fit(T_MIN, SPLIT)


def main() -> int:
    for (lo, hi), (c, c0h, c0l, rest, error) in zip(((SPLIT, 1.0), (T_MIN, SPLIT)), pieces()):
        f = [str(np.float32(v)) for v in (c, c0h, c0l, *rest)]
        print(f"t in [{lo:.4f}, {hi}]: relative error 2^{np.log2(error):.1f}")
        print(f"    ({f[0]}, {f[1]}, {f[2]},\n     ({', '.join(f[3:])})),")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
