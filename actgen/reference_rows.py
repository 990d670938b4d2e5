"""The mpmath reference of the row-wise activations (softmax, log_softmax, sparsemax over rows).

Each row is computed exactly at high precision (a softmax needs the whole row, so the
elementwise reference of reference.py does not apply), with the conventions of the kernels: a
NaN in the row, or an infinite maximum, makes the row NaN.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np

from .activation import Activation
from .derive import derive
from .ir import X, param_symbol
from .reference import FORMATS, Undefined, exp_reference, evaluate, round_to_format


def row_reference(act: Activation, rows: np.ndarray, dys: np.ndarray, params: dict, dtype: str, prec: int = 320):
    """Correctly rounded (at ``prec`` bits) softmax/log_softmax/sparsemax of each row and its
    backward dy -> dx, the backward's conditioning scale, the exact parameter gradients (sum, sum
    of |terms|) and, for sparsemax, the forward's conditioning scale (None otherwise), with the
    row conventions of the kernels (a NaN, or an infinite maximum, makes the row NaN)."""
    kernels = {k.name: k for k in derive(act)}
    score, ds = kernels["forward"].exact, kernels["backward"].exact
    grads = {p: kernels[f"grad_{p}"].exact for p in act.learnable}
    symbols = {param_symbol(p): v for p, v in params.items()}
    fmt = FORMATS[dtype]
    y = np.empty(rows.shape)
    dx = np.empty(rows.shape)
    scale = np.empty(rows.shape)
    sums = {p: [] for p in grads}
    softmax, sparse = act.normalizer == "softmax", act.normalizer == "sparsemax"
    fscale = np.zeros(rows.shape)

    def ev(e, x):
        try:
            return evaluate(e, {**symbols, X: x}, prec)
        except (Undefined, ZeroDivisionError, ValueError):
            return mpmath.nan

    with mpmath.workprec(prec):
        for r in range(rows.shape[0]):
            xr = [mpmath.mpf(float(v)) if math.isfinite(v) else mpmath.mpf(float(v)) for v in rows[r]]
            s = [ev(score, v) for v in xr]
            bad = any(mpmath.isnan(v) for v in s)
            m = max(s) if not bad else mpmath.nan
            if bad or mpmath.isinf(m):
                y[r] = dx[r] = math.nan
                scale[r] = fscale[r] = math.nan
                for p in grads:
                    sums[p].append((mpmath.nan, mpmath.mpf(0)))
                continue
            d = [mpmath.mpf(float(v)) for v in dys[r]]
            if sparse:
                # sort-based (Martins & Astudillo 2016), exactly: u = s - m, the support is the k
                # largest with 1 + k u_(k) > u_(1) + ... + u_(k), t = (that sum - 1) / k
                u = [v - m for v in s]
                z = sorted(u, reverse=True)
                k, total, acc = 1, z[0], mpmath.mpf(0)
                for i, zi in enumerate(z, 1):
                    acc += zi
                    if 1 + i * zi > acc:
                        k, total = i, acc
                t = (total - 1) / k
                prob = [max(v - t, mpmath.mpf(0)) for v in u]
                support = [pp > 0 for pp in prob]
                a = mpmath.fsum(dd for dd, on in zip(d, support) if on) / k
                a_abs = mpmath.fsum(abs(dd) for dd, on in zip(d, support) if on) / k
                g = [dd - a if on else mpmath.mpf(0) for dd, on in zip(d, support)]
                g_scale = [abs(dd) + a_abs if on else mpmath.mpf(0) for dd, on in zip(d, support)]
                # the output u - t cancels near the support's edge: its conditioning scale is the
                # magnitude of its terms (t's own: the sum over the support, divided by k)
                t_abs = (mpmath.fsum(abs(v) for v, on in zip(u, support) if on) + 1) / k
                for j, v in enumerate(u):      # (an element at -inf is 0 exactly)
                    fscale[r, j] = float(abs(v) + abs(t) + t_abs) if mpmath.isfinite(v) else 0.0
            else:
                e = [exp_reference(v - m) for v in s]
                total = mpmath.fsum(e)
                prob = [v / total for v in e]
                # log(total) as log1p of the terms but the maximum's exp(0) = 1: with one score far
                # above the rest, total is 1 + 1e-161, which 320 bits round to 1 (the reference said
                # log_softmax = 0 there, the kernel's -1e-161 was right)
                top = s.index(m)
                logs = [(v - m) - mpmath.log1p(mpmath.fsum(e[:top] + e[top + 1:])) for v in s]
                if softmax:
                    a = mpmath.fsum(dd * pp for dd, pp in zip(d, prob))
                    a_abs = mpmath.fsum(abs(dd * pp) for dd, pp in zip(d, prob))
                    g = [pp * (dd - a) for dd, pp in zip(d, prob)]
                    g_scale = [pp * (abs(dd) + a_abs) for dd, pp in zip(d, prob)]
                else:
                    a = mpmath.fsum(d)
                    a_abs = mpmath.fsum(abs(dd) for dd in d)
                    g = [dd - pp * a for dd, pp in zip(d, prob)]
                    g_scale = [abs(dd) + pp * a_abs for dd, pp in zip(d, prob)]
            for j, v in enumerate(xr):
                y[r, j] = round_to_format(prob[j] if softmax or sparse else logs[j], *fmt)
                dsj = ev(ds, v)
                dx[r, j] = round_to_format(dsj * g[j], *fmt)
                scale[r, j] = float(abs(dsj) * g_scale[j])
            for p, e_p in grads.items():
                # a term whose dL/ds is 0 is 0 (an x = -inf: probability 0, ds/dp = inf)
                terms = [mpmath.mpf(0) if g[j] == 0 else ev(e_p, v) * g[j] for j, v in enumerate(xr)]
                sums[p].append((mpmath.fsum(terms), mpmath.fsum(abs(t) for t in terms)))
    totals = {}
    for p, parts in sums.items():
        finite = [t for t in parts if not mpmath.isnan(t[0])]
        totals[p] = (mpmath.fsum(t[0] for t in finite), mpmath.fsum(t[1] for t in finite))
    return y.astype(dtype), dx.astype(dtype), scale, totals, (fscale if sparse else None)
