"""Helpers called by generated NumPy kernels (imported as ``rt``). Dtype-preserving."""

from __future__ import annotations

import numpy

import math

_libm_erfc = numpy.frompyfunc(math.erfc, 1, 1)
ERFC_TAIL = 3.0


def erfc(u):
    """erfc, vectorised. SciPy's erfc is ~200 ULP off in its tail and flushes subnormal results
    to 0 (measured against mpmath); there the C library's erfc (within 2 ULP) is used, element
    by element, on the tail elements only."""
    from scipy.special import erfc as scipy_erfc

    u = numpy.asarray(u)
    out = numpy.asarray(scipy_erfc(u))
    tail = u > ERFC_TAIL
    if tail.any():
        out = out.copy() if out.ndim else out
        if out.ndim:
            out[tail] = _libm_erfc(u[tail].astype(numpy.float64)).astype(out.dtype)
        else:
            out = out.dtype.type(math.erfc(float(u)))
    return out


def erf(u):
    """SciPy's erf (float32 and float64 loops). SciPy is imported on first use: it costs
    ~0.4 s, which every build of an activation without erf would otherwise pay."""
    from scipy.special import erf as scipy_erf

    return scipy_erf(u)


def piecewise(args, *pieces):
    """Evaluate a Piecewise branch by branch, each branch only where it is taken.

    ``args`` are the arrays and scalars the branches use; each piece is (condition, value),
    both functions of ``*args`` (condition None means "otherwise"). Elements where no
    condition holds (NaN inputs make every comparison false) take the last branch.
    """
    originals = [numpy.asarray(a) for a in args]
    arrays = numpy.broadcast_arrays(*originals)
    # a value gets a 0-d argument (a scalar parameter) as it is: picking the taken elements out of
    # its stride-0 broadcast view cost 70% of a relu's time (0.02 Gelem/s)
    picked = [o if o.ndim == 0 else None for o in originals]
    dtype = numpy.result_type(*args)
    if not numpy.issubdtype(dtype, numpy.floating):
        dtype = numpy.float64
    out = numpy.empty(arrays[0].shape, dtype)
    remaining = numpy.ones(arrays[0].shape, bool)
    for cond, value in pieces:
        if cond is None:
            mask = remaining
        else:
            mask = remaining & numpy.asarray(cond(*arrays), bool)
        if mask.any():
            out[mask] = value(*[a[mask] if p is None else p for a, p in zip(arrays, picked)])
        remaining &= ~mask
        if not remaining.any():
            break
    return out if out.ndim else out[()]


def sigmoid(z):
    """1 / (1 + exp(-z)) without overflow warnings: exp(-z) for z >= 0, exp(z)/(1+exp(z)) below."""
    z = numpy.asarray(z)
    e = numpy.exp(-numpy.abs(z))
    return numpy.where(z >= 0, 1 / (1 + e), e / (1 + e))


def softplus(z):
    """log(1 + exp(z)) as max(z, 0) + log1p(exp(-|z|))."""
    z = numpy.asarray(z)
    return numpy.maximum(z, 0) + numpy.log1p(numpy.exp(-numpy.abs(z)))


# ---- models of the C prelude's float helpers (actgen_exp_f32, actgen_sigmoid_f32) -------------------
# Selection measures a float32 form computed in float with these, so that it measures what the C
# kernel computes: the same operations in float32, each rounded as C rounds it. A fused
# multiply-add is the product in double (exact for two floats) and one double add, rounded to
# float: what ACTGEN_FMAF is without FP_FAST_FMAF, and a true fmaf except where that double
# rounding lands on a float tie (rare; at most 1 ULP of that step).

_F = numpy.float32


def _fmaf(a, b, c):
    return (numpy.asarray(a, numpy.float64) * numpy.asarray(b, numpy.float64)
            + numpy.asarray(c, numpy.float64)).astype(_F)


def _pow2_f32(k):
    """2^k for integral float32 k in [-126, 127], by the exponent bits."""
    return ((k.astype(numpy.int32) + 127).astype(numpy.uint32) << numpy.uint32(23)).view(_F)


def _exp_reduced(c):
    """actgen_exp_f32's reduction (float32, NaN-free k): (k, rh, rl, r, q) with exp(c) =
    2^k (1 + rh + (rl + r^2 q)), r = rh + rl (the C helpers that reuse it: erfc_ff, softplus)."""
    k = numpy.rint(c.astype(numpy.float64) * numpy.float64(_F(1.44269502))).astype(_F)  # fma + shifter
    k = numpy.where(numpy.isnan(k), _F(0.0), k)
    rh = _fmaf(k, _F(-0.693359375), c)
    rl = k * _F(2.12194442e-4)
    r = rh + rl
    q = _F(1.39505358e-3)
    for coefficient in (8.36891960e-3, 4.16662060e-2, 1.66665182e-1, 0.5):
        q = _fmaf(q, r, _F(coefficient))
    return k, rh, rl, r, q


def _pow2_pair(k):
    """2^k as two factors 2^k1 * 2^(k - k1), k1 = rint(k / 2): a subnormal product rounds once."""
    k1 = numpy.rint(k.astype(numpy.float64) / 2).astype(_F)
    return _pow2_f32(k1), _pow2_f32(k - k1)


def _pow2_neg(k):
    """2^k for integral float32 k in [-160, 0] as actgen_scale_neg_f32 applies it: 2^(k + 126),
    then 2^-126 (the first product exact, the second rounds once)."""
    return _pow2_f32(k + _F(126.0)), _F(2.0 ** -126)


def exp_f32(a):
    """actgen_exp_f32: exp in float32 arithmetic (see templates/c/prelude.jinja)."""
    a = numpy.asarray(a, _F)
    with numpy.errstate(all="ignore"):
        c = numpy.where(a < _F(-104.0), _F(-104.0), a)
        c = numpy.where(c > _F(89.0), _F(89.0), c)
        k, rh, rl, r, q = _exp_reduced(c)
        p = _F(1.0) + (rh + _fmaf(r * r, q, rl))
        s1, s2 = _pow2_pair(k)
        return numpy.where(numpy.isnan(a), a, p * s1 * s2)


def sigmoid_f32(z):
    """actgen_sigmoid_f32: n / (1 + e) in float32, 1 + e exact as dh + dl, one correction."""
    z = numpy.asarray(z, _F)
    with numpy.errstate(all="ignore"):
        e = exp_f32(-numpy.abs(z))      # C: actgen_exp_neg_f32, the same float for a <= 0
        n = numpy.where(z >= 0, _F(1.0), e)
        dh = _F(1.0) + e
        dl = (_F(1.0) - dh) + e
        r = _F(1.0) / dh
        q = n * r
        return _fmaf(_fmaf(-q, dh, n) - q * dl, r, q)


# ---- float-float arithmetic (compensated arguments of float32 kernels computed in float) ---------
# The C prelude's actgen_ff_*: (hi, lo) float32 pairs, exact products by (modelled) fma.

def ff(hi):
    hi = numpy.asarray(hi, _F)
    return hi, numpy.zeros_like(hi)


def _ff_renorm(s, e):
    with numpy.errstate(all="ignore"):
        h = s + e
        return h, numpy.where(numpy.isfinite(h), e - (h - s), _F(0.0))


def ff_add(a, b):
    with numpy.errstate(all="ignore"):
        s = a[0] + b[0]
        bb = s - a[0]
        e = (a[0] - (s - bb)) + (b[0] - bb) + a[1] + b[1]
        return _ff_renorm(s, numpy.where(numpy.isfinite(s), e, _F(0.0)))


def ff_mul(a, b):
    with numpy.errstate(all="ignore"):
        p = a[0] * b[0]
        e = numpy.where(numpy.isfinite(p), _fmaf(a[0], b[0], -p) + (a[0] * b[1] + a[1] * b[0]), _F(0.0))
        return _ff_renorm(p, e)


def ff_neg(a):
    return -a[0], -a[1]


def ff_prod(a, b):
    """actgen_ff_prod: the exact product of two float32 values, (p, fma(a, b, -p))."""
    a, b = numpy.asarray(a, _F), numpy.asarray(b, _F)
    with numpy.errstate(all="ignore"):
        p = a * b
        return p, numpy.where(numpy.isfinite(p), _fmaf(a, b, -p), _F(0.0))


def exp_ff(u):
    """actgen_exp_ff: exp(hi) (1 + lo) in float32."""
    e = exp_f32(u[0])
    with numpy.errstate(all="ignore"):
        return numpy.where(numpy.isfinite(e), _fmaf(e, u[1], e), e)


def sigmoid_ff(u):
    """actgen_sigmoid_ff: s + s (1 - s) lo, s = sigmoid(hi), in float32."""
    s = sigmoid_f32(u[0])
    with numpy.errstate(all="ignore"):
        return _fmaf(s * (_F(1.0) - s), numpy.asarray(u[1], _F), s)


# erfcx(a) = t P(t - c), t = 1/(1 + a/4), on two intervals of t (the C prelude's table; fitted
# by actgen.erfc_fit): (c, c0 hi, c0 lo, (c1, ..., c8))
ERFC_F32_SPLIT = 0.6
ERFC_F32_PIECES = (
    (0.8, 0.5344795, -1.071247e-08,
     (1.4663696, 3.0366256, 4.8732805, 6.0678015, 5.7173986, 3.7736006, 1.2829369, -0.24257529)),
    (0.43793103, 0.24643083, -5.5347518e-09,
     (0.4036229, 0.5993058, 0.8013433, 0.95534235, 0.9999713, 0.89654917, 0.66286725, 0.35383213)),
)
_TWO_OVER_SQRT_PI = 1.1283791670955126


def erfc_ff(u):
    """actgen_erfc_ff: erfc of a float32 argument carried as (hi, lo), in float32 arithmetic
    (see templates/c/prelude.jinja)."""
    hi, lo = (numpy.asarray(v, _F) for v in u)
    with numpy.errstate(all="ignore"):
        m0 = numpy.abs(hi)
        a = numpy.where(m0 > _F(10.5), _F(10.5), m0)
        al = numpy.where(m0 > _F(10.5), _F(0.0), numpy.where(hi < 0, -lo, lo))
        p = a * a
        pl = _fmaf(a, a, -p)
        k, rh, rl, r, q = _exp_reduced(-p)
        sx = _fmaf(r * r, q, rl)
        h = a * _F(0.25)
        d = _F(1.0) + h
        dl = h - (d - _F(1.0))
        t = _F(1.0) / d
        upper = t >= _F(ERFC_F32_SPLIT)
        (ca, c0ha, c0la, cas), (cb, c0hb, c0lb, cbs) = ERFC_F32_PIECES

        def pick(x, y):
            return numpy.where(upper, _F(x), _F(y))
        w = t - pick(ca, cb)
        p2 = pick(cas[-1], cbs[-1])
        for x, y in zip(cas[-2:0:-1], cbs[-2:0:-1]):
            p2 = _fmaf(p2, w, pick(x, y))
        c1, c0h, c0l = pick(cas[0], cbs[0]), pick(c0ha, c0hb), pick(c0la, c0lb)
        twh = t * w
        twl = _fmaf(t, w, -twh)
        ah = t * c0h
        al0 = _fmaf(t, c0h, -ah)
        bh = c1 * twh
        bl = _fmaf(c1, twh, -bh)
        s = ah + bh
        e2 = bh - (s - ah)
        rest = _fmaf(twh * w, p2, al0 + bl + c1 * twl + t * c0l)
        g0 = s + rest
        delta = _F(4.0) * (_fmaf(t, d, _F(-1.0)) + t * dl) * d
        corr = delta * (_F(2.0) * a * g0 - _F(_TWO_OVER_SQRT_PI)) - g0 * pl - _F(_TWO_OVER_SQRT_PI) * al
        e = e2 + rest + corr
        m = s + _fmaf(rh, s, _fmaf(sx, s, e + (rh + sx) * e))
        s1, s2 = _pow2_neg(k)
        value = m * s1 * s2
        return numpy.where(hi < 0, _F(2.0) - value, value)


def softplus_f32(z):
    """actgen_softplus_f32: max(z, 0) + 2 atanh(e/(2 + e)) in float32, e = exp(-|z|) unrounded."""
    z = numpy.asarray(z, _F)
    with numpy.errstate(all="ignore"):
        c = -numpy.abs(z)
        c = numpy.where(c < _F(-104.0), _F(-104.0), c)
        k, rh, rl, r, q = _exp_reduced(c)
        p0 = _F(1.0) + rh
        p1 = ((_F(1.0) - p0) + rh) + _fmaf(r * r, q, rl)
        ph = p0 + p1
        pl = p1 - (ph - p0)
        scale1, scale2 = _pow2_neg(k)
        eh, el = ph * scale1 * scale2, pl * scale1 * scale2
        d = _F(2.0) + eh
        dl = ((_F(2.0) - d) + eh) + el
        inv = _F(1.0) / d
        sh = eh * inv
        sl = (_fmaf(-sh, d, eh) + el - sh * dl) * inv
        t = sh * sh
        w = _F(7.69230769e-2)
        for coefficient in (9.09090909e-2, 1.11111111e-1, 1.42857143e-1, 2.0e-1, 3.33333333e-1):
            w = _fmaf(w, t, _F(coefficient))
        tiny = (ph + (pl - _F(0.5) * ph * eh)) * scale1 * scale2
        value = numpy.where(k < _F(-24.0), tiny, _F(2.0) * (sh + _fmaf(sh * t, w, sl)))
        return numpy.maximum(z, _F(0.0)) + value


def nan_guard(x, value):
    """NaN where x is NaN (a select would otherwise turn NaN into a number)."""
    return numpy.where(numpy.isnan(x), x, value)


# ---- double-double arithmetic (compensated arguments; float64) -----------------------------------
# A value is a pair (hi, lo) with hi + lo the unevaluated sum. NumPy has no fused multiply-add,
# so products use Dekker's splitting; where an intermediate overflows, lo is 0 (hi is then
# inf and the guards of the kernel take over).

_SPLIT = 134217729.0  # 2**27 + 1


def dd(hi):
    return hi, 0.0


def _split(a):
    c = _SPLIT * a
    hi = c - (c - a)
    ok = numpy.isfinite(c)
    return numpy.where(ok, hi, a), numpy.where(ok, a - hi, 0.0)


def _two_prod(a, b):
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p, numpy.where(numpy.isfinite(p), e, 0.0)


def _renorm(s, e):
    h = s + e
    return h, numpy.where(numpy.isfinite(h), e - (h - s), 0.0)


def dd_add(a, b):
    s = a[0] + b[0]
    bb = s - a[0]
    e = (a[0] - (s - bb)) + (b[0] - bb) + a[1] + b[1]
    return _renorm(s, numpy.where(numpy.isfinite(s), e, 0.0))


def dd_mul(a, b):
    p, e = _two_prod(a[0], b[0])
    return _renorm(p, e + a[0] * b[1] + a[1] * b[0])


def dd_neg(a):
    return -a[0], -a[1]


def exp_dd(u):
    return numpy.exp(u[0]) * (1.0 + u[1])


def erfc_dd(u):
    return erfc(u[0]) - 1.1283791670955126 * numpy.exp(-u[0] * u[0]) * u[1]


def sigmoid_dd(u):
    s = sigmoid(u[0])
    return s + s * sigmoid(-u[0]) * u[1]


def softplus_dd(u):
    return softplus(u[0]) + sigmoid(u[0]) * u[1]


def cosh_dd(u):
    return numpy.cosh(u[0]) + numpy.sinh(u[0]) * u[1]


def sinh_dd(u):
    return numpy.sinh(u[0]) + numpy.cosh(u[0]) * u[1]


# ---- rowwise normalisation (softmax, log_softmax, sparsemax) along an axis, in float64 ------
# As the C row loops: the maximum m of the row's scores s, s - m carried as hi + lo (its
# rounding error), exp(s - m) = exp(hi) * (1 + lo), the elements equal to m counted exactly so
# that log(sum) = log(ties) + log1p(rest / ties) does not cancel. NaN or an infinite maximum
# makes the row NaN (as PyTorch's softmax).

def _row_terms(s, axis):
    s = numpy.asarray(s, numpy.float64)
    m = numpy.max(s, axis=axis, keepdims=True) if s.size else numpy.zeros_like(s)
    hi = s - m
    bb = hi - s
    lo = numpy.where(numpy.isfinite(hi), (s - (hi - bb)) + (-m - bb), 0.0)
    tie = s == m
    e = numpy.exp(hi) * (1.0 + lo)
    ties = numpy.sum(tie, axis=axis, keepdims=True, dtype=numpy.float64)
    rest = numpy.sum(numpy.where(tie, 0.0, e), axis=axis, keepdims=True)
    ties = numpy.where(numpy.isfinite(m), ties, numpy.nan)   # an infinite maximum: a NaN row
    return hi, lo, e, ties, rest


def _softmax(s, axis):
    hi, lo, e, ties, rest = _row_terms(s, axis)
    return e / (ties + rest)


def _sparsemax(s, axis):
    """(u, t, bad): the scores less the row maximum m, the threshold t (relative to m: the
    output is max(u - t, 0)) and the rows that are NaN (a NaN score, or an infinite maximum, as
    TF Addons). Sort-based (Martins & Astudillo 2016): the support is the k largest, k the last
    r with 1 + r z_(r) > z_(1) + ... + z_(r); t = (z_(1) + ... + z_(k) - 1) / k. Working
    relative to m keeps the largest element's output exact (s = 1e30 gives 1, not 0)."""
    s = numpy.asarray(s, numpy.float64)
    if not s.size:
        return s, s, numpy.zeros(s.shape, bool)
    m = numpy.max(s, axis=axis, keepdims=True)
    bad = ~numpy.isfinite(m)
    u = s - numpy.where(bad, 0.0, m)
    z = -numpy.sort(-numpy.where(bad, 0.0, u), axis=axis)
    c = numpy.cumsum(z, axis=axis)
    shape = [1] * s.ndim
    shape[axis] = s.shape[axis]
    r = numpy.arange(1, s.shape[axis] + 1, dtype=numpy.float64).reshape(shape)
    with numpy.errstate(invalid="ignore"):                    # -inf scores: -inf > -inf
        k = numpy.max(numpy.where(1.0 + r * z > c, r, 1.0), axis=axis, keepdims=True)
    t = (numpy.take_along_axis(c, k.astype(numpy.intp) - 1, axis=axis) - 1.0) / k
    return u, numpy.where(bad, numpy.nan, t), numpy.broadcast_to(bad, s.shape)


def row_forward(s, axis, normalizer):
    if normalizer == "sparsemax":
        u, t, bad = _sparsemax(s, axis)
        return numpy.where(bad, numpy.nan, numpy.maximum(u - t, 0.0))
    hi, lo, e, ties, rest = _row_terms(s, axis)
    if normalizer == "softmax":
        return e / (ties + rest)
    return (hi - (numpy.log(ties) + numpy.log1p(rest / ties))) + lo


def _sparsemax_jvp(support, bad, dy, axis):
    """dL/ds of sparsemax: on the support (the outputs > 0), dy less its mean there; 0 off it
    (TF Addons' convention: an output exactly 0 is off the support)."""
    k = numpy.sum(support, axis=axis, keepdims=True, dtype=numpy.float64)
    with numpy.errstate(invalid="ignore", divide="ignore"):
        a = numpy.sum(numpy.where(support, dy, 0.0), axis=axis, keepdims=True) / k
    return numpy.where(bad, numpy.nan, numpy.where(support, dy - a, 0.0))


def _dl_ds(s, dy, axis, normalizer):
    """dL/ds given dL/dy: p * (dy - sum(dy * p)) for softmax, dy - p * sum(dy) for log_softmax,
    dy - mean(dy on the support) on the support for sparsemax."""
    dy = numpy.asarray(dy, numpy.float64)
    if normalizer == "sparsemax":
        u, t, bad = _sparsemax(s, axis)
        return _sparsemax_jvp(u - t > 0.0, bad, dy, axis)
    p = _softmax(s, axis)
    if normalizer == "softmax":
        return p * (dy - numpy.sum(dy * p, axis=axis, keepdims=True))
    return dy - p * numpy.sum(dy, axis=axis, keepdims=True)


def row_backward(s, ds_dx, dy, axis, normalizer):
    dl = _dl_ds(s, dy, axis, normalizer)
    if normalizer == "sparsemax":          # off the support dL/ds is 0, whatever ds/dx is there
        return numpy.where(dl == 0.0, 0.0, numpy.asarray(ds_dx, numpy.float64) * dl)
    return numpy.asarray(ds_dx, numpy.float64) * dl


def row_backward_y(y, ds_dx, dy, axis, normalizer):
    """From the saved output y (softmax, log_softmax or sparsemax values); ds/dx is a constant."""
    y = numpy.asarray(y, numpy.float64)
    dy = numpy.asarray(dy, numpy.float64)
    if normalizer == "sparsemax":
        return numpy.asarray(ds_dx, numpy.float64) * _sparsemax_jvp(y > 0.0, numpy.isnan(y), dy, axis)
    if normalizer == "softmax":
        g = y * (dy - numpy.sum(dy * y, axis=axis, keepdims=True))
    else:
        g = dy - numpy.exp(y) * numpy.sum(dy, axis=axis, keepdims=True)
    return numpy.asarray(ds_dx, numpy.float64) * g


def row_grad_terms(s, ds_dp, dy, axis, normalizer):
    """Per-element terms of dL/dp = sum(ds/dp * dL/ds)."""
    dl = _dl_ds(s, dy, axis, normalizer)
    # a term whose dL/ds is 0 is 0 (an x = -inf has probability 0 and ds/dp = inf)
    return numpy.where(dl == 0, 0.0, numpy.asarray(ds_dp, numpy.float64) * dl)


def __getattr__(name: str):
    """``rt.mp`` and ``rt.wide``, for kernels computed in double-double (select's "wide"): from
    numpy_wide, imported on first use (it imports mpmath: 60 ms that a cached load of any other
    NumPy kernel does not pay)."""
    if name in ("mp", "wide"):
        from . import numpy_wide

        return getattr(numpy_wide, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
