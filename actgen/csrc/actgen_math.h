/* actgen_math.h: the math helpers of actgen's generated C kernels, the same for every activation.
 *
 * Hand-written C (actgen/csrc/ in the actgen package), included by every generated kernel source
 * and written beside the standalone sources by `actgen emit`. Every function is static inline: a
 * kernel compiles only the helpers it calls. C99 with <math.h> and <stdint.h>; no libm function
 * but those of C99, no table, no global state.
 *
 * Names: actgen_<function>_<tag>, tag f32 (float arithmetic, float result), f64 (double, double)
 * or d32 (double arithmetic whose result is rounded to float32: accurate to about 2^-36, which
 * float32's 2^-24 does not see, at a fraction of the cost of the double function). The float
 * helpers are modelled operation by operation by actgen.numpy_runtime, which selection measures;
 * tests/test_float_helpers.py, test_float_erfc.py, test_double_helpers.py and
 * test_narrow_helpers.py compile this header and measure every helper against mpmath.
 */
#ifndef ACTGEN_MATH_H
#define ACTGEN_MATH_H

#include <math.h>
#include <stdint.h>

#if defined(__GNUC__)
#define ACTGEN_INLINE __attribute__((always_inline))
#define ACTGEN_NOINLINE __attribute__((noinline))
#define ACTGEN_CONST __attribute__((const, nothrow))
#else
#define ACTGEN_INLINE
#define ACTGEN_NOINLINE
#define ACTGEN_CONST
#endif

/* SIMD variants of libm's functions, for the vectoriser: glibc's libmvec, which exists on x86-64
 * only (glibc >= 2.35 has all of these, in SSE, AVX2 and AVX-512 variants, with IEEE semantics).
 * Declaring them lets gcc call them from an OpenMP SIMD loop without -ffast-math (math-vector.h
 * declares them only under it). const: no side effects (errno is off), which gcc no longer knows
 * of sin and cos, built with -fno-builtin-sin/cos so that it does not merge them into a scalar
 * sincos call. Elsewhere (aarch64, macOS, musl, another compiler's libm, or ACTGEN_NO_LIBMVEC
 * defined) nothing is declared: a SIMD loop that calls a libm function calls the scalar function
 * once per lane, with the same IEEE results; actgen's own helpers below (exp, sigmoid,
 * softplus, erfc in float...) are plain C and vectorise on any target. */
#if defined(__x86_64__) && defined(__GLIBC__) && !defined(ACTGEN_NO_LIBMVEC) \
    && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 35))
#define ACTGEN_LIBMVEC 1
#if !defined(_OPENMP) && defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunknown-pragmas"   /* without -fopenmp(-simd): plain declarations */
#endif
#pragma omp declare simd notinbranch
double acos(double) ACTGEN_CONST;
#pragma omp declare simd notinbranch
float acosf(float) ACTGEN_CONST;
#pragma omp declare simd notinbranch
double acosh(double) ACTGEN_CONST;
#pragma omp declare simd notinbranch
float acoshf(float) ACTGEN_CONST;
#pragma omp declare simd notinbranch
double asin(double) ACTGEN_CONST;
#pragma omp declare simd notinbranch
float asinf(float) ACTGEN_CONST;
#pragma omp declare simd notinbranch
double asinh(double) ACTGEN_CONST;
#pragma omp declare simd notinbranch
float asinhf(float) ACTGEN_CONST;
#pragma omp declare simd notinbranch
double atan(double) ACTGEN_CONST;
#pragma omp declare simd notinbranch
float atanf(float) ACTGEN_CONST;
#pragma omp declare simd notinbranch
double atanh(double) ACTGEN_CONST;
#pragma omp declare simd notinbranch
float atanhf(float) ACTGEN_CONST;
#pragma omp declare simd notinbranch
double cbrt(double) ACTGEN_CONST;
#pragma omp declare simd notinbranch
float cbrtf(float) ACTGEN_CONST;
#pragma omp declare simd notinbranch
double cos(double) ACTGEN_CONST;
#pragma omp declare simd notinbranch
float cosf(float) ACTGEN_CONST;
#pragma omp declare simd notinbranch
double cosh(double) ACTGEN_CONST;
#pragma omp declare simd notinbranch
float coshf(float) ACTGEN_CONST;
#pragma omp declare simd notinbranch
double erf(double) ACTGEN_CONST;
#pragma omp declare simd notinbranch
float erff(float) ACTGEN_CONST;
#pragma omp declare simd notinbranch
double erfc(double) ACTGEN_CONST;
#pragma omp declare simd notinbranch
float erfcf(float) ACTGEN_CONST;
#pragma omp declare simd notinbranch
double exp(double) ACTGEN_CONST;
#pragma omp declare simd notinbranch
float expf(float) ACTGEN_CONST;
#pragma omp declare simd notinbranch
double exp10(double) ACTGEN_CONST;
#pragma omp declare simd notinbranch
float exp10f(float) ACTGEN_CONST;
#pragma omp declare simd notinbranch
double exp2(double) ACTGEN_CONST;
#pragma omp declare simd notinbranch
float exp2f(float) ACTGEN_CONST;
#pragma omp declare simd notinbranch
double expm1(double) ACTGEN_CONST;
#pragma omp declare simd notinbranch
float expm1f(float) ACTGEN_CONST;
#pragma omp declare simd notinbranch
double log(double) ACTGEN_CONST;
#pragma omp declare simd notinbranch
float logf(float) ACTGEN_CONST;
#pragma omp declare simd notinbranch
double log10(double) ACTGEN_CONST;
#pragma omp declare simd notinbranch
float log10f(float) ACTGEN_CONST;
#pragma omp declare simd notinbranch
double log1p(double) ACTGEN_CONST;
#pragma omp declare simd notinbranch
float log1pf(float) ACTGEN_CONST;
#pragma omp declare simd notinbranch
double log2(double) ACTGEN_CONST;
#pragma omp declare simd notinbranch
float log2f(float) ACTGEN_CONST;
#pragma omp declare simd notinbranch
double sin(double) ACTGEN_CONST;
#pragma omp declare simd notinbranch
float sinf(float) ACTGEN_CONST;
#pragma omp declare simd notinbranch
double sinh(double) ACTGEN_CONST;
#pragma omp declare simd notinbranch
float sinhf(float) ACTGEN_CONST;
#pragma omp declare simd notinbranch
double tan(double) ACTGEN_CONST;
#pragma omp declare simd notinbranch
float tanf(float) ACTGEN_CONST;
#pragma omp declare simd notinbranch
double tanh(double) ACTGEN_CONST;
#pragma omp declare simd notinbranch
float tanhf(float) ACTGEN_CONST;
#if !defined(_OPENMP) && defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
#endif

/* max that propagates NaN (fmax drops it and blocks vectorisation) */
static inline double actgen_max_f64(double a, double b) { return (a > b || a != a) ? a : b; }
static inline float actgen_max_f32(float a, float b) { return (a > b || a != a) ? a : b; }
/* min that propagates NaN */
static inline double actgen_min_f64(double a, double b) { return (a < b || a != a) ? a : b; }
static inline float actgen_min_f32(float a, float b) { return (a < b || a != a) ? a : b; }
/* sign(0) = 0, sign(nan) = nan */
static inline double actgen_sign_f64(double z) { return z > 0 ? 1.0 : (z < 0 ? -1.0 : z); }
static inline float actgen_sign_f32(float z) { return z > 0 ? 1.0F : (z < 0 ? -1.0F : z); }
/* Heaviside(z, h0): h0 at 0, nan at nan */
static inline double actgen_heaviside_f64(double z, double h0) { return z > 0 ? 1.0 : (z < 0 ? 0.0 : (z == 0 ? h0 : z)); }
static inline float actgen_heaviside_f32(float z, float h0) { return z > 0 ? 1.0F : (z < 0 ? 0.0F : (z == 0 ? h0 : z)); }

/* a float multiply-add: fmaf where the target has it; elsewhere the product in double (exact
 * for two floats) and one add, which is what actgen's NumPy model of these helpers computes */
#ifdef FP_FAST_FMAF
#define ACTGEN_FMAF(a, b, c) fmaf(a, b, c)
#else
#define ACTGEN_FMAF(a, b, c) ((float)((double)(a) * (double)(b) + (double)(c)))
#endif

/* exp in float arithmetic, for kernels computed in float: k = rint(a / ln 2), r = a - k ln 2
 * with ln 2 = hi + lo (hi has 9 significant bits: k hi and a - k hi are exact), exp(r) =
 * 1 + (r_hi + (r_lo + r^2 q(r))), q a degree-4 fit (relative error 2^-27.5), times 2^k in two
 * factors (k in [-150, 128]: a subnormal result rounds once). Within 1 ULP of the correctly
 * rounded exp for every float input (tests/test_float_helpers.py: all 2^32); libmvec's
 * expf is within 3. NaN stays NaN; +-inf, overflow and underflow as exp. Modelled by
 * actgen.numpy_runtime.exp_f32, which selection measures (bit for bit without fmaf). */
typedef struct { float k, t, rh, rl, r, q; } actgen_exp_reduced_f32;   /* t = k + 1.5 * 2^23 */

/* the reduction: exp(c) = 2^k (1 + rh + (rl + r^2 q)), r = rh + rl (shared with the helpers that
 * keep exp unrounded: actgen_erfc_ff, actgen_softplus_f32) */
static inline ACTGEN_INLINE actgen_exp_reduced_f32 actgen_exp_reduce_f32(float c)
{
    actgen_exp_reduced_f32 e;
    const float shifter = 12582912.0F;             /* 1.5 * 2^23: adding it rounds to an integer */
    e.t = ACTGEN_FMAF(c, 1.44269502F, shifter);
    e.k = e.t - shifter;
    e.rh = ACTGEN_FMAF(e.k, -0.693359375F, c);
    e.rl = e.k * 2.12194442e-4F;
    e.r = e.rh + e.rl;
    float q = 1.39505358e-3F;
    q = ACTGEN_FMAF(q, e.r, 8.36891960e-3F);
    q = ACTGEN_FMAF(q, e.r, 4.16662060e-2F);
    q = ACTGEN_FMAF(q, e.r, 1.66665182e-1F);
    e.q = ACTGEN_FMAF(q, e.r, 0.5F);
    return e;
}

/* m 2^k for an integral k in [-160, 128], in two factors: a subnormal result rounds once */
static inline ACTGEN_INLINE float actgen_scale_f32(float m, float k)
{
    const float shifter = 12582912.0F;
    const float k1 = ACTGEN_FMAF(k, 0.5F, shifter); /* k1 = rint(k / 2), k - k1 exact */
    const float k2 = (k - (k1 - shifter)) + shifter;
    union { float f; uint32_t u; } s1 = {k1}, s2 = {k2};
    s1.u = (s1.u + 127) << 23;                     /* the low bits hold the integer: 2^k1 */
    s2.u = (s2.u + 127) << 23;
    return m * s1.f * s2.f;
}

/* m 2^k for an integral k in [-160, 0], t = k + 1.5 * 2^23 (actgen_exp_reduce_f32's): m 2^(k + 126)
 * is exact (normal for m >= 2^-92), times 2^-126 rounds once, as actgen_scale_f32 does; four
 * operations against its ten (exp(-|z|) in sigmoid, softplus and erfc: 25-30% of sigmoid's time) */
static inline ACTGEN_INLINE float actgen_scale_neg_f32(float m, float t)
{
    union { float f; uint32_t u; } s = {t};
    s.u = (s.u + 253) << 23;                       /* the low bits hold k: 2^(k + 126) */
    return m * s.f * 0x1p-126F;
}

/* exp(a) for a <= 0 (NaN stays NaN): actgen_exp_f32's value with actgen_scale_neg_f32 */
static inline float actgen_exp_neg_f32(float a)
{
    const float c = a < -104.0F ? -104.0F : a;     /* exp(-104) rounds to 0 */
    const actgen_exp_reduced_f32 e = actgen_exp_reduce_f32(c);
    return actgen_scale_neg_f32(1.0F + (e.rh + ACTGEN_FMAF(e.r * e.r, e.q, e.rl)), e.t);
}

static inline float actgen_exp_f32(float a)
{
    float c = a < -104.0F ? -104.0F : a;           /* exp(-104) rounds to 0, exp(89) to inf */
    c = c > 89.0F ? 89.0F : c;
    const actgen_exp_reduced_f32 e = actgen_exp_reduce_f32(c);
    return actgen_scale_f32(1.0F + (e.rh + ACTGEN_FMAF(e.r * e.r, e.q, e.rl)), e.k);
}

/* a multiply-add: fma where the target has it, a multiply and an add where it has not (libm's
 * software fma would be ~30x slower; the _d32 and _f64 helpers need no exact product) */
#ifdef FP_FAST_FMA
#define ACTGEN_MAD(a, b, c) fma(a, b, c)
#else
#define ACTGEN_MAD(a, b, c) ((a) * (b) + (c))
#endif

/* exp(c) = m 2^k: k = rint(c / ln 2), t = k + 1.5 * 2^52 (its low bits hold k), r = c - k ln 2
 * (ln 2 = hi + lo, hi with 41 bits: k hi exact), m = exp(r) = 1 + r + r^2 q(r) with SLEEF's
 * degree-12 fit (xexp) */
typedef struct { double t, k, m; } actgen_exp_reduced_f64;
static inline ACTGEN_INLINE actgen_exp_reduced_f64 actgen_exp_reduce_f64(double c)
{
    actgen_exp_reduced_f64 e;
    const double shifter = 6755399441055744.0;     /* 1.5 * 2^52: adding it rounds to an integer */
    e.t = ACTGEN_MAD(c, 1.4426950408889634, shifter);
    e.k = e.t - shifter;
    const double r = ACTGEN_MAD(e.k, -2.8235290563031577e-13, ACTGEN_MAD(e.k, -0x1.62e42fefa3p-1, c));
    double q = 2.081276378237164457e-9;
    q = ACTGEN_MAD(q, r, 2.511210703042288022e-8);
    q = ACTGEN_MAD(q, r, 2.755762628169491192e-7);
    q = ACTGEN_MAD(q, r, 2.755723402025388239e-6);
    q = ACTGEN_MAD(q, r, 2.480158687479686264e-5);
    q = ACTGEN_MAD(q, r, 1.984126989855865850e-4);
    q = ACTGEN_MAD(q, r, 1.388888888914497797e-3);
    q = ACTGEN_MAD(q, r, 8.333333333314938210e-3);
    q = ACTGEN_MAD(q, r, 4.166666666666602598e-2);
    q = ACTGEN_MAD(q, r, 1.666666666666669072e-1);
    q = ACTGEN_MAD(q, r, 0.5);
    e.m = ACTGEN_MAD(r * r, q, r) + 1.0;
    return e;
}

/* exp(a) for a <= 0 or NaN (exp(-|z|) in sigmoid and softplus), inline: m 2^k
 * (actgen_exp_reduce_f64) as m 2^(k + 1022) (exact) times 2^-1022 (rounds once: subnormal
 * results too). Within 1 ULP of the exact exp (0.87 measured, glibc's exp 0.5;
 * tests/test_double_helpers.py). No table and no call: a libmvec call in the loop spills the
 * vector registers, and on the machine of benchmarks/ float64 sigmoid at 2^24 elements, 2 threads,
 * ran 1.4 Gelem/s with libmvec's exp and 2.0 with this one (scratch A/B; exp(-|z|) alone, 2^16
 * elements, 1 thread: 1.05 and 1.27). NaN stays NaN; exp(-746) and below round to 0. */
static inline ACTGEN_INLINE double actgen_exp_neg_f64(double a)
{
    const actgen_exp_reduced_f64 e = actgen_exp_reduce_f64(a < -746.0 ? -746.0 : a);
    union { double d; uint64_t u; } s = {e.t};
    s.u = (s.u + 2045) << 52;                      /* the low bits hold k in [-1076, 0]: 2^(k + 1022) */
    return e.m * s.d * 0x1p-1022;
}

/* exp(a) for any a: actgen_exp_reduce_f64's m times 2^k in two factors
 * 2^k1 2^k2 (k1 = rint(k / 2)): m 2^k1 is exact, the second product rounds once, so that
 * subnormal results round once and exp(709.79) and above overflow to inf. NaN stays NaN. */
static inline ACTGEN_INLINE double actgen_exp_f64(double a)
{
    double c = a < -746.0 ? -746.0 : a;            /* two selects: nested ?: stops the vectoriser */
    c = c > 710.0 ? 710.0 : c;
    const actgen_exp_reduced_f64 e = actgen_exp_reduce_f64(c);
    const double shifter = 6755399441055744.0;
    const double k1 = ACTGEN_MAD(e.k, 0.5, shifter);     /* k1 = rint(k / 2), k - k1 exact */
    const double k2 = (e.k - (k1 - shifter)) + shifter;
    union { double d; uint64_t u; } s1 = {k1}, s2 = {k2};
    s1.u = (s1.u + 1023) << 52;                    /* the low bits hold the integer: 2^k1 */
    s2.u = (s2.u + 1023) << 52;
    return e.m * s1.d * s2.d;
}

/* exp for double arithmetic whose result is rounded to float32: exp(r) * 2^k, k = rint(a/ln 2),
 * |r| <= ln2/2, exp(r) by its Taylor polynomial of degree 9 (relative error < 2^-36, against
 * float32's 2^-24; tests/test_narrow_helpers.py); 2^k in two factors, so that k spans
 * [-2020, 2020] and an underflowing result rounds once. No libm call, no table: it vectorises on any target. NaN stays NaN, +-inf and
 * overflow/underflow as exp. (glibc's double exp, libmvec's included, is accurate to 2^-52 and
 * about half as fast; its float exp, to 2-3 ULP of float, too inaccurate for a 4 ULP budget.) */
static inline double actgen_exp_d32(double a)
{
    double c = a < -1400.0 ? -1400.0 : a;         /* two selects: nested ?: stops the vectoriser */
    c = c > 1400.0 ? 1400.0 : c;
    const double shifter = 6755399441055744.0;     /* 1.5 * 2^52: adding it rounds to an integer */
    const double t = ACTGEN_MAD(c, 1.4426950408889634, shifter);
    const double k = t - shifter;
    /* ln 2 = hi + lo, hi with 32 significant bits (fdlibm's): k hi is exact even without fma */
    const double r = ACTGEN_MAD(k, -1.9082149292705877e-10, ACTGEN_MAD(k, -0.6931471803691238, c));
    double p = 2.7557319223985891e-06;
    p = ACTGEN_MAD(p, r, 2.4801587301587302e-05);
    p = ACTGEN_MAD(p, r, 1.9841269841269841e-04);
    p = ACTGEN_MAD(p, r, 1.3888888888888889e-03);
    p = ACTGEN_MAD(p, r, 8.3333333333333333e-03);
    p = ACTGEN_MAD(p, r, 4.1666666666666667e-02);
    p = ACTGEN_MAD(p, r, 1.6666666666666667e-01);
    p = ACTGEN_MAD(p, r, 0.5);
    p = ACTGEN_MAD(p, r, 1.0);
    p = ACTGEN_MAD(p, r, 1.0);
    const double k1 = ACTGEN_MAD(k, 0.5, shifter);        /* k1 = rint(k / 2), k - k1 exact */
    const double k2 = (k - (k1 - shifter)) + shifter;
    union { double d; uint64_t u; } s1 = {k1}, s2 = {k2};
    s1.u = (s1.u + 1023) << 52;                    /* the low bits hold the integer: 2^k1 */
    s2.u = (s2.u + 1023) << 52;
    return p * s1.d * s2.d;
}

/* expm1 for a float32 result: its Taylor polynomial (degree 10) where |a| <= 0.35, where
 * exp(a) - 1 would cancel; exp(a) - 1 beyond */
static inline double actgen_expm1_d32(double a)
{
    double p = 2.7557319223985891e-07;
    p = ACTGEN_MAD(p, a, 2.7557319223985891e-06);
    p = ACTGEN_MAD(p, a, 2.4801587301587302e-05);
    p = ACTGEN_MAD(p, a, 1.9841269841269841e-04);
    p = ACTGEN_MAD(p, a, 1.3888888888888889e-03);
    p = ACTGEN_MAD(p, a, 8.3333333333333333e-03);
    p = ACTGEN_MAD(p, a, 4.1666666666666667e-02);
    p = ACTGEN_MAD(p, a, 1.6666666666666667e-01);
    p = ACTGEN_MAD(p, a, 0.5);
    p = ACTGEN_MAD(p, a, 1.0) * a;
    const double e = actgen_exp_d32(a) - 1.0;
    return ((a <= 0.35) & (a >= -0.35)) ? p : e;
}

/* log1p(e) for e in [0, 1] (softplus: e = exp(-|z|)) and a float32 result: 2 atanh(s),
 * s = e / (2 + e) in [0, 1/3], by its series to s^21 (relative error < 2^-35) */
static inline double actgen_log1p_unit_d32(double e)
{
    const double q = 2.0 / (2.0 + e), s = 0.5 * e * q, s2 = s * s;   /* q: e stays exact where tiny */
    double p = 1.0 / 21;
    p = ACTGEN_MAD(p, s2, 1.0 / 19);
    p = ACTGEN_MAD(p, s2, 1.0 / 17);
    p = ACTGEN_MAD(p, s2, 1.0 / 15);
    p = ACTGEN_MAD(p, s2, 1.0 / 13);
    p = ACTGEN_MAD(p, s2, 1.0 / 11);
    p = ACTGEN_MAD(p, s2, 1.0 / 9);
    p = ACTGEN_MAD(p, s2, 1.0 / 7);
    p = ACTGEN_MAD(p, s2, 1.0 / 5);
    p = ACTGEN_MAD(p, s2, 1.0 / 3);
    p = ACTGEN_MAD(p, s2, 1.0);
    return e * q * p;
}

/* tanh for a float32 result: sign(a) E/(E + 2), E = expm1(2|a|); 1 beyond |a| = 30, where tanh is 1
 * to 2^-86 (and E/(E + 2) would become inf/inf). The select comes last: capping |a| first made
 * gcc 12 leave the loop scalar without AVX-512 ("control flow in loop"). copysign keeps -0. */
static inline double actgen_tanh_d32(double a)
{
    const double m = fabs(a);
    const double e = actgen_expm1_d32(2.0 * m);
    const double r = e / (e + 2.0);
    return copysign(m > 30.0 ? 1.0 : r, a);
}

/* cosh for a float32 result: h + 1/(4h), h = exp(|a|)/2 = exp(|a| - ln 2) (finite as far as cosh is) */
static inline double actgen_cosh_d32(double a) { const double h = actgen_exp_d32(fabs(a) - 0.6931471805599453); return h + 0.25 / h; }

/* sigmoid for a float32 result: e/(1 + e) or 1/(1 + e), e = exp(-|z|) (actgen_exp_d32), one division */
static inline double actgen_sigmoid_d32(double z) { const double e = actgen_exp_d32(-fabs(z)); return (z >= 0 ? 1.0 : e) / (1.0 + e); }

/* sigmoid in float: n / (1 + e), e = exp(-|z|) (actgen_exp_neg_f32), n = 1 or e; 1 + e held exactly
 * as dh + dl (e <= 1), and the quotient corrected once by its remainder: within 1 ULP of the
 * correctly rounded sigmoid over every float input (a plain n / (1 + e): 2) */
static inline float actgen_sigmoid_f32(float z)
{
    const float e = actgen_exp_neg_f32(-fabsf(z));
    const float n = z >= 0 ? 1.0F : e;
    const float dh = 1.0F + e, dl = (1.0F - dh) + e;
    const float r = 1.0F / dh, q = n * r;
    return ACTGEN_FMAF(ACTGEN_FMAF(-q, dh, n) - q * dl, r, q);
}

/* 1 / (1 + exp(-z)) as n / (1 + e), e = exp(-|z|) (actgen_exp_neg_f64), n = 1 or e: no overflow,
 * subnormal results kept, one division */
static inline double actgen_sigmoid_f64(double z) { const double e = actgen_exp_neg_f64(-fabs(z)); return (z >= 0 ? 1.0 : e) / (1.0 + e); }

/* softplus for a float32 result: max(z, 0) + log1p(exp(-|z|)) with actgen's exp and log1p */
static inline double actgen_softplus_d32(double z) { return actgen_max_f64(z, 0.0) + actgen_log1p_unit_d32(actgen_exp_d32(-fabs(z))); }

/* softplus in float: max(z, 0) + log1p(e), e = exp(-|z|) = 2^k (ph + pl) by actgen_exp_f32's
 * reduction with its last addition kept exact (no rounding of e: relative error 2^-27);
 * log1p(e) = 2 atanh(s), s = e/(2 + e) in [0, 1/3] held as sh + sl (the quotient's remainder by
 * fma), 2 atanh(s) = 2s + 2s^3 Q(s^2), Q the series to s^10 (2^-21 of a term that is at most 4% of
 * the sum): one rounding of the sum, then of max(z, 0) + it; for e < 2^-24, e (1 - e/2), scaled
 * by 2^k last. Within 1 ULP of the float64 helper rounded (the correctly rounded softplus but
 * near ties) over every float input (tests/test_float_helpers.py). Modelled by
 * actgen.numpy_runtime.softplus_f32. */
static inline ACTGEN_INLINE float actgen_softplus_f32(float z)
{
    float c = -fabsf(z);
    c = c < -104.0F ? -104.0F : c;                 /* exp(-104) rounds to 0 */
    const actgen_exp_reduced_f32 x = actgen_exp_reduce_f32(c);
    const float k = x.k, kt = x.t, rh = x.rh, rl = x.rl, r = x.r, q = x.q;
    const float p0 = 1.0F + rh;                    /* exp(r) = ph + pl: (1 - p0) + rh is exact */
    const float p1 = ((1.0F - p0) + rh) + ACTGEN_FMAF(r * r, q, rl);
    const float ph = p0 + p1, pl = p1 - (ph - p0); /* |pl| <= ulp(ph) / 2 */
    const float eh = actgen_scale_neg_f32(ph, kt), el = actgen_scale_neg_f32(pl, kt);
    const float d = 2.0F + eh, dl = ((2.0F - d) + eh) + el;     /* 2 + e = d + dl */
    const float inv = 1.0F / d;
    const float sh = eh * inv;
    const float sl = (ACTGEN_FMAF(-sh, d, eh) + el - sh * dl) * inv;   /* s - sh */
    const float t = sh * sh;
    float w = 7.69230769e-2F;
    w = ACTGEN_FMAF(w, t, 9.09090909e-2F);
    w = ACTGEN_FMAF(w, t, 1.11111111e-1F);
    w = ACTGEN_FMAF(w, t, 1.42857143e-1F);
    w = ACTGEN_FMAF(w, t, 2.0e-1F);
    w = ACTGEN_FMAF(w, t, 3.33333333e-1F);
    /* e < 2^-24: log1p(e) = e (1 - e/2) to 2^-50, scaled last (a subnormal e would lose el) */
    const float tiny = actgen_scale_neg_f32(ph + (pl - 0.5F * ph * eh), kt);
    const float l = k < -24.0F ? tiny : 2.0F * (sh + ACTGEN_FMAF(sh * t, w, sl));
    return actgen_max_f32(z, 0.0F) + l;
}

/* log(1 + exp(z)) = max(z, 0) + log1p(exp(-|z|)) (actgen_exp_neg_f64): no overflow */
static inline double actgen_softplus_f64(double z) { return actgen_max_f64(z, 0.0) + log1p(actgen_exp_neg_f64(-fabs(z))); }

/* float-float, for float32 kernels computed in float: hi + lo carries the rounding error of a
 * sensitive function's argument (exact products by fma), and the function takes it into account */
typedef struct { float hi, lo; } actgen_ff;
static inline actgen_ff actgen_ff_make(float hi, float lo) { actgen_ff r; r.hi = hi; r.lo = lo; return r; }
static inline actgen_ff actgen_ff_renorm(float s, float e) { const float h = s + e; return actgen_ff_make(h, isfinite(h) ? e - (h - s) : 0.0F); }
static inline actgen_ff actgen_ff_add(actgen_ff a, actgen_ff b) { const float s = a.hi + b.hi, bb = s - a.hi; const float e = (a.hi - (s - bb)) + (b.hi - bb) + a.lo + b.lo; return actgen_ff_renorm(s, isfinite(s) ? e : 0.0F); }
static inline actgen_ff actgen_ff_mul(actgen_ff a, actgen_ff b) { const float p = a.hi * b.hi; const float e = isfinite(p) ? ACTGEN_FMAF(a.hi, b.hi, -p) + (a.hi * b.lo + a.lo * b.hi) : 0.0F; return actgen_ff_renorm(p, e); }
static inline actgen_ff actgen_ff_neg(actgen_ff a) { return actgen_ff_make(-a.hi, -a.lo); }
/* a b of two floats, exactly (TwoProduct): the pair actgen_ff_mul gives for (a, 0) and (b, 0)
 * where the error does not underflow, in 2 operations instead of 12 */
static inline actgen_ff actgen_ff_prod(float a, float b) { const float p = a * b; return actgen_ff_make(p, isfinite(p) ? ACTGEN_FMAF(a, b, -p) : 0.0F); }
/* exp(hi + lo) = exp(hi) (1 + lo); where exp(hi) overflows, inf (not inf * lo + inf) */
static inline float actgen_exp_ff(actgen_ff u) { const float e = actgen_exp_f32(u.hi); return isfinite(e) ? ACTGEN_FMAF(e, u.lo, e) : e; }
/* sigmoid(hi + lo) = s + s (1 - s) lo, s = sigmoid(hi): towards -inf sigmoid's relative condition
 * is |u|, so a rounded argument b * x (a learnable b away from a power of two) costs |b x| / 2 ULP;
 * the pair keeps it (hi = +-inf or NaN has lo = 0: s itself) */
static inline float actgen_sigmoid_ff(actgen_ff u) { const float s = actgen_sigmoid_f32(u.hi); return ACTGEN_FMAF(s * (1.0F - s), u.lo, s); }

/* erfc(hi + lo) in float: erfc(a) = exp(-a^2) erfcx(a) for a = |hi| <= 10.5 (beyond, erfc rounds
 * to 0 in float), erfc(-a) = 2 - erfc(a). a^2 = p + pl exactly (fma); exp(-p) = 2^k (1 + s) by
 * actgen_exp_f32's reduction; exp(-p - pl) = exp(-p) (1 - pl). erfcx(a) = t P(t - c), t = 1/(1 + a/4),
 * P of degree 8 fitted on t >= 0.6 and on t < 0.6 (relative error 2^-28.8 and 2^-32.5, float
 * coefficients but c0 as hi + lo; actgen/erfc_fit.py), chosen per lane; t - c is exact. t (c0 + c1 w)
 * is held exactly (fma products, a Fast2Sum); the rest of P, the first-order corrections for the
 * rounding of t (erfcx' = 2a erfcx - 2/sqrt(pi)), of a^2 and for lo, and the product with 1 + s
 * are added to it at the end, one rounding. Within 2 ULP of libm's double erfc rounded to float
 * over every float hi with lo = 0 (tests/test_float_erfc.py); libmvec's erfcf is not used. Modelled by
 * actgen.numpy_runtime.erfc_ff (bit for bit without fmaf). */
static inline ACTGEN_INLINE float actgen_erfc_ff(actgen_ff u)
{
    const float m0 = fabsf(u.hi);
    const float a = m0 > 10.5F ? 10.5F : m0;
    const float al = m0 > 10.5F ? 0.0F : (u.hi < 0 ? -u.lo : u.lo);
    const float p = a * a, pl = ACTGEN_FMAF(a, a, -p);
    const actgen_exp_reduced_f32 x = actgen_exp_reduce_f32(-p);     /* k in [-159, 0] */
    const float t2 = x.t, rh = x.rh, rl = x.rl, r = x.r, q = x.q;
    const float sx = ACTGEN_FMAF(r * r, q, rl);     /* exp(r) - 1 = rh + sx */
    const float h = a * 0.25F, d = 1.0F + h, dl = h - (d - 1.0F);   /* 1 + a/4 = d + dl */
    const float t = 1.0F / d;
    const int upper = t >= 0.6F;
    const float w = t - (upper ? 0.8F : 0.43793103F);
    float p2 = upper ? -0.24257529F : 0.35383213F;
    p2 = ACTGEN_FMAF(p2, w, upper ? 1.2829369F : 0.66286725F);
    p2 = ACTGEN_FMAF(p2, w, upper ? 3.7736006F : 0.89654917F);
    p2 = ACTGEN_FMAF(p2, w, upper ? 5.7173986F : 0.9999713F);
    p2 = ACTGEN_FMAF(p2, w, upper ? 6.0678015F : 0.95534235F);
    p2 = ACTGEN_FMAF(p2, w, upper ? 4.8732805F : 0.8013433F);
    p2 = ACTGEN_FMAF(p2, w, upper ? 3.0366256F : 0.5993058F);
    const float c1 = upper ? 1.4663696F : 0.4036229F;
    const float c0h = upper ? 0.5344795F : 0.24643083F, c0l = upper ? -1.071247e-08F : -5.5347518e-09F;
    const float twh = t * w, twl = ACTGEN_FMAF(t, w, -twh);
    const float ah = t * c0h, al0 = ACTGEN_FMAF(t, c0h, -ah);
    const float bh = c1 * twh, bl = ACTGEN_FMAF(c1, twh, -bh);
    const float s = ah + bh, e2 = bh - (s - ah);     /* |ah| >= |bh| */
    const float rest = ACTGEN_FMAF(twh * w, p2, al0 + bl + c1 * twl + t * c0l);
    const float g0 = s + rest;
    const float delta = 4.0F * (ACTGEN_FMAF(t, d, -1.0F) + t * dl) * d;  /* a - 4 (1/t - 1) */
    const float corr = delta * (2.0F * a * g0 - 1.1283791670955126F) - g0 * pl - 1.1283791670955126F * al;
    const float e = e2 + rest + corr;
    const float m = s + ACTGEN_FMAF(rh, s, ACTGEN_FMAF(sx, s, e + (rh + sx) * e));
    const float value = actgen_scale_neg_f32(m, t2);
    return u.hi < 0 ? 2.0F - value : value;
}

/* double-double: hi + lo carries the rounding error of an argument (fma: exact products); a
 * sensitive function gets f(hi) plus the first-order correction f'(hi) * lo */
#include "actgen_dd.h"   /* actgen_dd and its arithmetic (and the functions of double-double kernels) */
static inline double actgen_exp_dd(actgen_dd u) { return exp(u.hi) * (1.0 + u.lo); }
static inline double actgen_erfc_dd(actgen_dd u) { return erfc(u.hi) - 1.1283791670955126 * exp(-u.hi * u.hi) * u.lo; }
static inline double actgen_sigmoid_dd(actgen_dd u) { const double s = actgen_sigmoid_f64(u.hi); return s + s * actgen_sigmoid_f64(-u.hi) * u.lo; }
static inline double actgen_softplus_dd(actgen_dd u) { return actgen_softplus_f64(u.hi) + actgen_sigmoid_f64(u.hi) * u.lo; }
static inline double actgen_cosh_dd(actgen_dd u) { return cosh(u.hi) + sinh(u.hi) * u.lo; }
static inline double actgen_sinh_dd(actgen_dd u) { return sinh(u.hi) + cosh(u.hi) * u.lo; }

/* exp(s - m) for a row of softmax whose score s is at most m: s - m = hi + lo exactly (a two-sum),
 * and exp(s - m) = exp(hi) (1 + lo), so that exp keeps the score's bits. In float (a float32 row
 * whose score is computed in float; hi <= 0 or NaN, actgen's float exp, within 1 ULP), in double
 * for a float32 row (actgen_exp_d32, to 2^-36) and for a float64 row (actgen_exp_f64, to 1 ULP). */
static inline float actgen_row_exp_f32(const float s, const float m)
{
    const float hi = s - m, bb = hi - s;
    const float lo = isfinite(hi) ? (s - (hi - bb)) + (-m - bb) : 0.0F;
    const float e = actgen_exp_neg_f32(hi);
    return ACTGEN_FMAF(e, lo, e);
}

static inline double actgen_row_exp_d32(const double s, const double m)
{
    const double hi = s - m, bb = hi - s;
    const double lo = isfinite(hi) ? (s - (hi - bb)) + (-m - bb) : 0.0;
    return actgen_exp_d32(hi) * (1.0 + lo);
}

static inline double actgen_row_exp_f64(const double s, const double m)
{
    const double hi = s - m, bb = hi - s;
    const double lo = isfinite(hi) ? (s - (hi - bb)) + (-m - bb) : 0.0;
    return actgen_exp_f64(hi) * (1.0 + lo);
}

#endif
