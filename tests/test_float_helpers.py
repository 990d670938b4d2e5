"""actgen's own float exp, sigmoid and softplus (``actgen_exp_f32`` and ``actgen_exp_neg_f32``, ``actgen_sigmoid_f32``,
``actgen_softplus_f32`` of actgen/csrc/actgen_math.h: kernels computed in float call them instead
of libmvec's expf and log1pf):

* over every one of the 2^32 float inputs, within 1 ULP of the float64 helpers rounded to float
  (the ``_d32`` helpers: relative error < 2^-33, so that is the correctly rounded value except
  where it lies within 2^-33 of a float tie), NaN exactly where they give NaN;
* ``actgen.numpy_runtime``'s models of them (what selection measures) agree with the C bit for
  bit without a fused multiply-add, and to 1 ULP with it (the model's fma rounds twice);
* NaN, +-inf, +-0, +-1e-30, overflow and underflow as exp, sigmoid and softplus.

Both for this machine and for baseline x86-64 (no fma: ACTGEN_FMAF is a double product)."""

from __future__ import annotations


import numpy as np
import pytest

from actgen import numpy_runtime as rt

from conftest import build_math_module, requires_cc

FUNCTIONS = ("exp", "sigmoid", "softplus")
STRIDE = {"target": 1, "no-fma": 16}

# Over all 2^32 inputs (every STRIDE-th for baseline x86-64, whose emulated fmaf is slow), in C:
# 2^32 NumPy evaluations would take minutes. The largest distance in ULPs (ordered integer
# representations) from the reference, where it is, and the count of NaN mismatches.
SWEEP = r"""
static inline int64_t key(float f) { union { float f; int32_t i; } v = {f}; return v.i < 0 ? (int64_t)INT32_MIN - v.i : v.i; }
#define SWEEP(NAME, GOT, REF)                                                              \
void sweep_##NAME(int stride, int64_t *worst, uint32_t *worst_input, int64_t *nan_mismatch) \
{                                                                                          \
    int64_t w = 0, bad = 0; uint32_t at = 0;                                               \
    _Pragma("omp parallel for schedule(static) reduction(+:bad)")                          \
    for (int64_t hi = 0; hi < 65536; ++hi) {                                               \
        int64_t lw = 0, d[4096], lbad = 0; uint32_t lat = 0;                               \
        for (int j = 0; j < 65536; j += 4096 * stride) {                                   \
            _Pragma("omp simd reduction(+:lbad)")                                          \
            for (int i = 0; i < 4096; ++i) {                                               \
                union { uint32_t u; float f; } v = {(uint32_t)(hi << 16 | (j + i * stride))}; \
                const float g = GOT(v.f), r = (float)REF((double)v.f);                     \
                lbad += (g != g) != (r != r);                                              \
                const int64_t e = key(g) - key(r);                                         \
                d[i] = (g != g || r != r) ? 0 : (e < 0 ? -e : e);                          \
            }                                                                              \
            for (int i = 0; i < 4096; ++i) if (d[i] > lw) { lw = d[i];                     \
                lat = (uint32_t)(hi << 16 | (j + i * stride)); }                           \
        }                                                                                  \
        bad += lbad;                                                                       \
        _Pragma("omp critical")                                                            \
        if (lw > w) { w = lw; at = lat; }                                                  \
    }                                                                                      \
    *worst = w; *worst_input = at; *nan_mismatch = bad;                                    \
}
SWEEP(exp, actgen_exp_f32, actgen_exp_d32)

/* actgen_exp_neg_f32 (sigmoid's, softplus's and erfc's scaling, for arguments <= 0) against
 * actgen_exp_f32: the bit patterns that differ over every float with the sign bit set and +0 */
int64_t exp_neg_mismatches(void)
{
    int64_t bad = 0;
    _Pragma("omp parallel for schedule(static) reduction(+:bad)")
    for (int64_t hi = 0x8000; hi < 0x10000; ++hi) {
        _Pragma("omp simd reduction(+:bad)")
        for (int64_t lo = 0; lo < 65536; ++lo) {
            union { uint32_t u; float f; } v = {(uint32_t)(hi << 16 | lo)}, a, b;
            a.f = actgen_exp_f32(v.f); b.f = actgen_exp_neg_f32(v.f);
            bad += (a.u != b.u) & ((a.f == a.f) | (b.f == b.f));
        }
    }
    union { float f; uint32_t u; } z0 = {actgen_exp_neg_f32(0.0F)};
    return bad + (z0.u != 0x3f800000u);
}
SWEEP(sigmoid, actgen_sigmoid_f32, actgen_sigmoid_d32)
SWEEP(softplus, actgen_softplus_f32, actgen_softplus_d32)
"""


@pytest.fixture(scope="module", params=["target", "no-fma"])
def built(request, tmp_path_factory):
    loops = "\n".join(
        f"void eval_{h}(const float *x, float *y, int64_t n) "
        f"{{ for (int64_t i = 0; i < n; ++i) y[i] = actgen_{h}_f32(x[i]); }}" for h in FUNCTIONS)
    loops += "\nint fast_fmaf(void) {\n#ifdef FP_FAST_FMAF\nreturn 1;\n#else\nreturn 0;\n#endif\n}"
    cdef = "\n".join(f"void eval_{h}(const float *x, float *y, int64_t n);\n"
                     f"void sweep_{h}(int stride, int64_t *worst, uint32_t *worst_input, int64_t *nan_mismatch);"
                     for h in FUNCTIONS)
    cdef += "\nint fast_fmaf(void);\nint64_t exp_neg_mismatches(void);"
    name = f"_actgen_float_helpers_{request.param.replace('-', '_')}"
    module = build_math_module(name, f"{loops}\n{SWEEP}", cdef, request.param,
                                  tmp_path_factory.mktemp("float_helpers"))
    if request.param == "no-fma":
        assert module.lib.fast_fmaf() == 0
    return request.param, module


def _call(module, h, x):
    x = np.ascontiguousarray(x, dtype=np.float32)
    y = np.empty_like(x)
    getattr(module.lib, f"eval_{h}")(module.ffi.from_buffer("float[]", x), module.ffi.from_buffer("float[]", y),
                                    x.size)
    return y


@requires_cc
@pytest.mark.slow          # every float input: minutes (the slow set; the default suite samples)
@pytest.mark.parametrize("h", FUNCTIONS)
def test_every_float_input(built, h):
    kind, module = built
    worst, at, nan_mismatch = (module.ffi.new(t) for t in ("int64_t *", "uint32_t *", "int64_t *"))
    getattr(module.lib, f"sweep_{h}")(STRIDE[kind], worst, at, nan_mismatch)
    x = np.array([at[0]], np.uint32).view(np.float32)[0]
    assert nan_mismatch[0] == 0
    assert worst[0] <= 1, f"{h}: {worst[0]} ULP at x = {x!r}"


@requires_cc
@pytest.mark.slow
def test_exp_of_a_negative_argument_is_exp(built):
    """sigmoid, softplus, erfc and float softmax scale exp(a <= 0) by 2^(k + 126) 2^-126 (four
    operations) instead of actgen_scale_f32's two factors (ten): the same float, bit for bit."""
    _, module = built
    assert module.lib.exp_neg_mismatches() == 0


def _inputs():
    rng = np.random.default_rng(7)
    return np.concatenate([
        rng.uniform(-110, 95, 400000), rng.standard_normal(200000) * 4,
        np.geomspace(1e-38, 110, 20000), -np.geomspace(1e-38, 110, 20000),
        np.array([0.0, -0.0, 1e-30, -1e-30, 1e-45, -1e-45, np.inf, -np.inf, np.nan, 3e38, -3e38,
                  88.72, 88.73, 89.0, -87.34, -103.97, -104.0, -150.0])]).astype(np.float32)


@requires_cc
@pytest.mark.parametrize("h", FUNCTIONS)
def test_numpy_model_is_the_c(built, h):
    kind, module = built
    x = _inputs()
    got = _call(module, h, x)
    model = getattr(rt, f"{h}_f32")(x)
    assert np.array_equal(np.isnan(got), np.isnan(model))
    ok = ~np.isnan(got)
    gi, mi = got[ok].view(np.int32).astype(np.int64), model[ok].view(np.int32).astype(np.int64)
    diff = np.abs(gi - mi)
    if kind == "no-fma":
        assert diff.max() == 0                        # the same operations, the same roundings
    else:
        assert diff.max() <= 1 and np.mean(diff > 0) < 1e-3


@requires_cc
def test_special_values(built):
    _, module = built
    x = np.array([0.0, -0.0, 1e-30, -1e-30, np.inf, -np.inf, np.nan, 89.0, 1e30, -104.0, -1e30],
                 np.float32)
    e = _call(module, "exp", x)
    assert e[:4].tolist() == [1.0, 1.0, 1.0, 1.0]
    assert e[4] == np.inf and e[5] == 0.0 and np.isnan(e[6]) and e[7] == np.inf and e[8] == np.inf
    assert e[9] == 0.0 and e[10] == 0.0
    assert _call(module, "exp", np.array([-103.9], np.float32))[0] == np.float32(2.0 ** -149)
    s = _call(module, "sigmoid", x)
    assert s[:4].tolist() == [0.5, 0.5, 0.5, 0.5]
    assert s[4] == 1.0 and s[5] == 0.0 and np.isnan(s[6]) and s[7] == 1.0 and s[10] == 0.0
    # subnormal results keep their bits: sigmoid(-100) = exp(-100) / (1 + exp(-100))
    assert _call(module, "sigmoid", np.array([-100.0], np.float32))[0] == np.float32(np.exp(-100.0))


@requires_cc
def test_softplus_special_values(built):
    _, module = built
    x = np.array([0.0, -0.0, 1e-30, -1e-30, np.inf, -np.inf, np.nan, 1e30, -1e30, 89.0, -100.0, -87.0],
                 np.float32)
    s = _call(module, "softplus", x)
    assert s[:4].tolist() == [np.float32(np.log(2.0))] * 4
    assert s[4] == np.inf and s[5] == 0.0 and np.isnan(s[6]) and s[7] == np.float32(1e30) and s[8] == 0.0
    assert s[9] == np.float32(89.0)
    # log1p(exp(z)) = exp(z) to 2^-100 here: subnormal and smallest-normal results keep their bits
    assert s[10] == np.float32(np.exp(-100.0)) and s[11] == np.float32(np.exp(-87.0))
