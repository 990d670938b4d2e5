"""actgen's float erfc and the float-float arithmetic of compensated float32 kernels computed in
float (``actgen_erfc_ff``, ``actgen_exp_ff``, ``actgen_ff_*`` of actgen/csrc/actgen_math.h; GELU's
float32 kernels call them):

* erfc over every one of the 2^32 float inputs (lo = 0), within 2 ULP of libm's double erfc
  rounded to float (the helper is within 1.4 ULP of erfc, measured), NaN exactly where it is;
* ``actgen.numpy_runtime``'s models (what selection measures) agree with the C bit for bit
  without a fused multiply-add, and to 1 ULP with it (the model's fma rounds twice, and the
  compiler contracts a * b + c into fma where the model does not);
* the lo part is taken into account (erfc(hi + lo) where erfc(hi) differs), and is ignored
  where erfc rounds to 0 or 2; +-0, +-inf, NaN;
* the polynomial's table is what ``actgen.erfc_fit`` fits.

Both for this machine and for baseline x86-64 (no fma: ACTGEN_FMAF is a double product)."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

from actgen import erfc_fit
from actgen import numpy_runtime as rt
from actgen.measure import ulp_distance

from conftest import build_math_module, requires_cc

STRIDE = {"target": 1, "no-fma": 16}

CODE = r"""
#pragma omp declare simd notinbranch
double erfc(double);
static inline int64_t key(float f) { union { float f; int32_t i; } v = {f}; return v.i < 0 ? (int64_t)INT32_MIN - v.i : v.i; }
void sweep_erfc(int stride, int64_t *worst, uint32_t *worst_input, int64_t *nan_mismatch)
{
    int64_t w = 0, bad = 0; uint32_t at = 0;
    #pragma omp parallel for schedule(static) reduction(+:bad)
    for (int64_t hi = 0; hi < 65536; ++hi) {
        int64_t lw = 0, d[4096], lbad = 0; uint32_t lat = 0;
        for (int j = 0; j < 65536; j += 4096 * stride) {
            #pragma omp simd reduction(+:lbad)
            for (int i = 0; i < 4096; ++i) {
                union { uint32_t u; float f; } v = {(uint32_t)(hi << 16 | (j + i * stride))};
                const float g = actgen_erfc_ff(actgen_ff_make(v.f, 0.0F)), r = (float)erfc((double)v.f);
                lbad += (g != g) != (r != r);
                const int64_t e = key(g) - key(r);
                d[i] = (g != g || r != r) ? 0 : (e < 0 ? -e : e);
            }
            for (int i = 0; i < 4096; ++i) if (d[i] > lw) { lw = d[i]; lat = (uint32_t)(hi << 16 | (j + i * stride)); }
        }
        bad += lbad;
        #pragma omp critical
        if (lw > w) { w = lw; at = lat; }
    }
    *worst = w; *worst_input = at; *nan_mismatch = bad;
}
void eval_erfc(const float *hi, const float *lo, float *y, int64_t n)
{ for (int64_t i = 0; i < n; ++i) y[i] = actgen_erfc_ff(actgen_ff_make(hi[i], lo[i])); }
void eval_exp(const float *hi, const float *lo, float *y, int64_t n)
{ for (int64_t i = 0; i < n; ++i) y[i] = actgen_exp_ff(actgen_ff_make(hi[i], lo[i])); }
void eval_sigmoid(const float *hi, const float *lo, float *y, int64_t n)
{ for (int64_t i = 0; i < n; ++i) y[i] = actgen_sigmoid_ff(actgen_ff_make(hi[i], lo[i])); }
void eval_prod(const float *a, const float *b, float *hi, float *lo, int64_t n)
{ for (int64_t i = 0; i < n; ++i) { actgen_ff p = actgen_ff_prod(a[i], b[i]); hi[i] = p.hi; lo[i] = p.lo; } }
void eval_mul(const float *a, const float *b, float *hi, float *lo, int64_t n)
{ for (int64_t i = 0; i < n; ++i) { actgen_ff p = actgen_ff_mul(actgen_ff_make(a[i], 0.0F), actgen_ff_make(b[i], 0.0F)); hi[i] = p.hi; lo[i] = p.lo; } }
int fast_fmaf(void) {
#ifdef FP_FAST_FMAF
return 1;
#else
return 0;
#endif
}
"""

CDEF = """
void sweep_erfc(int stride, int64_t *worst, uint32_t *worst_input, int64_t *nan_mismatch);
void eval_erfc(const float *hi, const float *lo, float *y, int64_t n);
void eval_exp(const float *hi, const float *lo, float *y, int64_t n);
void eval_mul(const float *a, const float *b, float *hi, float *lo, int64_t n);
void eval_sigmoid(const float *hi, const float *lo, float *y, int64_t n);
void eval_prod(const float *a, const float *b, float *hi, float *lo, int64_t n);
int fast_fmaf(void);
"""


@pytest.fixture(scope="module", params=["target", "no-fma"])
def built(request, tmp_path_factory):
    name = f"_actgen_float_erfc_{request.param.replace('-', '_')}"
    module = build_math_module(name, CODE, CDEF, request.param, tmp_path_factory.mktemp("float_erfc"))
    if request.param == "no-fma":
        assert module.lib.fast_fmaf() == 0
    return request.param, module


def _buf(module, a):
    return module.ffi.from_buffer("float[]", a)


def _erfc(module, hi, lo=None):
    hi = np.ascontiguousarray(hi, np.float32)
    lo = np.zeros_like(hi) if lo is None else np.ascontiguousarray(lo, np.float32)
    y = np.empty_like(hi)
    module.lib.eval_erfc(_buf(module, hi), _buf(module, lo), _buf(module, y), hi.size)
    return y


def _exp(module, hi, lo):
    hi, lo = np.ascontiguousarray(hi, np.float32), np.ascontiguousarray(lo, np.float32)
    y = np.empty_like(hi)
    module.lib.eval_exp(_buf(module, hi), _buf(module, lo), _buf(module, y), hi.size)
    return y


@requires_cc
@pytest.mark.slow          # every float input (the slow set)
def test_every_float_input(built):
    kind, module = built
    worst, at, nan_mismatch = (module.ffi.new(t) for t in ("int64_t *", "uint32_t *", "int64_t *"))
    module.lib.sweep_erfc(STRIDE[kind], worst, at, nan_mismatch)
    x = np.array([at[0]], np.uint32).view(np.float32)[0]
    assert nan_mismatch[0] == 0
    assert worst[0] <= 2, f"erfc: {worst[0]} ULP at x = {x!r}"


def _inputs():
    rng = np.random.default_rng(11)
    return np.concatenate([
        rng.uniform(-12, 12, 300000), rng.standard_normal(100000) * 3,
        np.geomspace(1e-38, 11, 20000), -np.geomspace(1e-38, 11, 20000),
        np.array([0.0, -0.0, 1e-30, -1e-30, 1e-45, np.inf, -np.inf, np.nan, 3e38, -3e38,
                  2.6666667, 2.6666665, 9.19, 10.05, 10.5, 10.6, -10.6])]).astype(np.float32)


@requires_cc
def test_numpy_models_are_the_c(built):
    kind, module = built
    x = _inputs()
    lo = (x * np.float32(3e-8)).astype(np.float32)       # a lo part of the size rounding leaves
    lo[~np.isfinite(lo)] = 0.0
    with np.errstate(over="ignore"):
        big = x * np.float32(8)
    for got, model in [(_erfc(module, x, lo), rt.erfc_ff((x, lo))), (_exp(module, big, lo), rt.exp_ff((big, lo)))]:
        assert np.array_equal(np.isnan(got), np.isnan(model))
        ok = ~np.isnan(got)
        diff = np.abs(got[ok].view(np.int32).astype(np.int64) - model[ok].view(np.int32).astype(np.int64))
        if kind == "no-fma":
            assert diff.max() == 0                    # the same operations, the same roundings
        else:                                         # erfc has ~25 fma: 0.14% differ
            assert diff.max() <= 1 and np.mean(diff > 0) < 1e-2
    a, b = x[np.isfinite(x)], np.float32(-0.70710677)
    b = np.full_like(a, b)
    hi, lo = np.empty_like(a), np.empty_like(a)
    module.lib.eval_mul(_buf(module, a), _buf(module, b), _buf(module, hi), _buf(module, lo), a.size)
    mh, ml = rt.ff_mul(rt.ff(a), rt.ff(b))
    assert np.array_equal(hi, mh) and np.array_equal(lo, ml)
    # hi + lo is the exact product (both finite and normal here)
    normal = np.abs(hi) > 1e-30
    exact = a[normal].astype(np.float64) * b[normal].astype(np.float64)
    assert np.array_equal(hi[normal].astype(np.float64) + lo[normal].astype(np.float64), exact)


@requires_cc
def test_the_lo_part_counts_and_special_values(built):
    _, module = built
    # erfc'(a)/erfc(a) ~ -2a: lo = 2^-22 at a = 5 moves erfc by 2.4e-6 relative (40 ULP)
    hi = np.array([5.0, 5.0, 2.0, -1.5, 0.25, 9.0], np.float32)
    lo = np.array([2.0**-22, -(2.0**-22), 1e-7, -1e-7, 1e-8, 4e-7], np.float32)
    got = _erfc(module, hi, lo)
    for h, low, g in zip(hi, lo, got):
        exact = mpmath.erfc(mpmath.mpf(float(h)) + mpmath.mpf(float(low)))
        without = mpmath.erfc(mpmath.mpf(float(h)))
        unit = float(np.spacing(np.float32(float(exact))))
        assert abs(float(g) - float(exact)) <= 1.5 * unit, (h, low)
        if abs(float(exact - without)) > 4 * unit:          # lo moves erfc by several ULP
            assert abs(float(g) - float(without)) > 2 * unit, (h, low)
    special = _erfc(module, np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 10.5, 11.0, -11.0, 3e38], np.float32),
                    np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1e-6, -1e-6, 1e31], np.float32))
    assert special[:4].tolist() == [1.0, 1.0, 0.0, 2.0] and np.isnan(special[4])
    assert special[5:].tolist() == [0.0, 0.0, 2.0, 0.0]
    # exp(hi + lo): where exp(hi) overflows, inf (not inf * lo + inf = NaN)
    e = _exp(module, np.array([89.0, 88.0, -104.0, 0.0, np.nan], np.float32),
             np.array([-1e-6, 1e-6, 1e-6, 0.0, 0.0], np.float32))
    assert e[0] == np.inf and e[2] == 0.0 and e[3] == 1.0 and np.isnan(e[4])
    assert abs(float(e[1]) - float(mpmath.exp(mpmath.mpf(88.0) + mpmath.mpf(1e-6 * 1.0000000000)))) \
        <= 2 * float(np.spacing(e[1]))


def test_the_table_is_the_fit():
    """actgen/erfc_fit.py reproduces the committed table: the same centres and, as polynomials, the
    same function to 2^-27 on the fit's nodes, each within 2^-28 of erfcx(a)/t. (The coefficients
    themselves may differ in their last bits between LAPACK builds: each is rounded to float after
    a least-squares solve, and the later ones are fitted to the rounded earlier ones.)"""
    fitted = erfc_fit.pieces()
    ranges = ((erfc_fit.SPLIT, 1.0), (erfc_fit.T_MIN, erfc_fit.SPLIT))
    for (lo, hi), (c, c0h, c0l, rest, error), (tc, th, tl, trest) in zip(ranges, fitted, rt.ERFC_F32_PIECES):
        assert np.float32(c) == np.float32(tc) and error < 2.0 ** -28
        k = np.arange(400)
        ts = (lo + hi) / 2 + (hi - lo) / 2 * np.cos(np.pi * (k + 0.5) / k.size)
        h, ws = erfc_fit._target(ts), ts - float(np.float32(c))

        def poly(c0h, c0l, rest):
            coeffs = [float(np.float32(c0h)) + float(np.float32(c0l)), *[float(np.float32(v)) for v in rest]]
            return sum(v * ws**i for i, v in enumerate(coeffs))

        table, refit = poly(th, tl, trest), poly(c0h, c0l, rest)
        assert np.abs((table - h) / h).max() < 2.0 ** -28
        assert np.abs((table - refit) / h).max() < 2.0 ** -27


@requires_cc
def test_float_float_sigmoid_and_the_exact_product_are_their_models_and_accurate(built):
    """actgen_sigmoid_ff and actgen_ff_prod (a learnable b times x as a pair: swish's float32
    kernels at any b) against numpy_runtime's models, bit for bit without fma; the product is the
    pair actgen_ff_mul gives for the two lifted; sigmoid of the pair is within 2 ULP of sigmoid(b x)
    where sigmoid of the rounded product is up to |b x| / 2 ULP off."""
    kind, module = built
    x = _inputs()
    x = x[np.isfinite(x) & (np.abs(x) < 80)]
    b = np.full_like(x, np.float32(1.1))
    hi, lo = np.empty_like(x), np.empty_like(x)
    module.lib.eval_prod(_buf(module, b), _buf(module, x), _buf(module, hi), _buf(module, lo), x.size)
    mh, ml = rt.ff_prod(b, x)
    assert np.array_equal(hi, mh) and np.array_equal(lo, ml)
    wh, wl = rt.ff_mul(rt.ff(b), rt.ff(x))
    normal = np.abs(mh) >= 2.0 ** -100          # (below, the product's error underflows)
    assert np.array_equal(mh[normal], wh[normal]) and np.array_equal(ml[normal], wl[normal])
    assert np.array_equal((hi.astype(np.float64) + lo)[normal], (b.astype(np.float64) * x)[normal])   # exact
    y = np.empty_like(x)
    module.lib.eval_sigmoid(_buf(module, hi), _buf(module, lo), _buf(module, y), x.size)
    model = rt.sigmoid_ff((hi, lo))
    diff = np.abs(y.view(np.int32).astype(np.int64) - model.view(np.int32).astype(np.int64))
    assert diff.max() == 0 if kind == "no-fma" else diff.max() <= 1
    u = b.astype(np.float64) * x
    exact = (1 / (1 + np.exp(-u))).astype(np.float32)           # double: within 2^-50 of exact
    assert ulp_distance(y, exact).max() <= 2
    assert ulp_distance(rt.sigmoid_f32(hi), exact).max() > 8     # what the pair's low part gains
