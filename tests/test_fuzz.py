"""Differential fuzzing: random specs from the grammar (tests/strategies.py) must either be
rejected with an ActgenError (one `actgen: error:` message from the CLI, no traceback) or build
with both backends and agree with the mpmath reference on the verification sweep
(actgen.verify.make_sweep, quick: ~160 points per dtype including subnormals, huge magnitudes,
+-0, +-inf, nan and every branch boundary with its float neighbours), forward and backward,
fused, per-channel and parameter gradients, float32 and float64, C and NumPy.

The rule at each point (what "agree" means)
---------------------------------------------
The kernel's value is compared with the correctly rounded reference f(x) (actgen.verify). The
budget (4/8 ULP forward, the conditioned ULPs of verify for derivatives) applies wherever the
expression can be evaluated that accurately at all. A random composition often cannot: sin(exp(x))
at x = 30 computes sin of a number rounded at 1e13 (its condition number there is ~1e14);
cosh(x) - 1 cancels near 0. So each failing point is also measured against the *straightforward
evaluation* of the expression, as SymPy holds it, in the kernel's dtype: every operation, library
call and inexact constant rounded once (relative error u, plus the subnormal quantum). Its
first-order error bound E(x) is computed by running-error analysis in mpmath (Higham, Accuracy
and Stability of Numerical Algorithms, ch. 3): each node carries its value and a bound on its
absolute error, propagated by the node's derivative (|g'(u)| e_u for a call, e_a + e_b plus a
rounding for a sum, ...). Then, at each point:

* allowed error = max(budget, 2 * E(x)) in the verifier's unit: the kernel is within budget, or
  no worse than twice what a straightforward evaluation may lose (a kernel that is wrong - a bad
  rewrite, a wrong branch, a lost term, a wrong derivative - is off by far more);
* a point is *ambiguous* and skipped when a discontinuity lies within the error bound of its
  argument (a Piecewise condition, sign or Heaviside whose argument is within 2 E of its
  boundary, a log/sqrt/division whose argument is within 2 E of its singularity): there, the
  rounded evaluation may legitimately take the other branch or leave the domain;
* where an intermediate of the straightforward evaluation overflows (or is inf or nan: at
  x = +-inf, inf - inf), an inf or nan from the kernel is tolerated, but a finite value must
  still be right. NaN input must give NaN.

The default run is small and fixed (derandomize, ACTGEN_FUZZ_EXAMPLES = 12 examples; each build
costs 1-3 s); set ACTGEN_FUZZ_EXAMPLES=300 for a long run. Failures found by long runs are kept
below as explicit regression examples.
"""

from __future__ import annotations

import contextlib
import io
import math
import os

import mpmath
import numpy as np
import pytest
import sympy as sp
from hypothesis import HealthCheck, Phase, given, settings
from sympy.codegen.cfunctions import expm1, log1p
from strategies import FuzzSpec, specs

import actgen
from actgen.ir import X, param_symbol
from actgen.errors import ActgenError, BuildError
from actgen.functions import sigmoid, softplus
from actgen.reference import _FUNCS, FORMATS, round_to_format
from actgen.verify import check
from actgen.sweep import make_sweep
from actgen.measure import ulp_distance

EXAMPLES = int(os.environ.get("ACTGEN_FUZZ_EXAMPLES", "12"))
FACTOR = 2          # allowed error: max(budget, FACTOR * E(x))


# ---- running-error analysis of the straightforward evaluation ---------------------------------

class _Ambiguous(Exception):
    """A discontinuity or singularity lies within the rounding error of its argument."""


_DERIVATIVES = {
    sp.exp: mpmath.exp, sp.log: lambda u: 1 / u, sp.tanh: lambda u: 1 - mpmath.tanh(u) ** 2,
    sp.sinh: mpmath.cosh, sp.cosh: mpmath.sinh, sp.atan: lambda u: 1 / (1 + u * u), sp.sin: mpmath.cos,
    sp.cos: lambda u: -mpmath.sin(u), sp.erf: lambda u: 2 / mpmath.sqrt(mpmath.pi) * mpmath.exp(-u * u),
    sp.erfc: lambda u: -2 / mpmath.sqrt(mpmath.pi) * mpmath.exp(-u * u),
    sigmoid: lambda u: 1 / (2 + 2 * mpmath.cosh(u)), softplus: lambda u: 1 / (1 + mpmath.exp(-u)),
    log1p: lambda u: 1 / (1 + u), expm1: mpmath.exp,
}
_SINGULAR = {sp.log: lambda u: u, log1p: lambda u: 1 + u}   # where the function leaves its domain


class Straightforward:
    """Value and first-order absolute error bound of evaluating an expression node by node in
    a float format (see the module docstring)."""

    def __init__(self, dtype: str):
        self.fmt = FORMATS[dtype]
        self.u = mpmath.mpf(2) ** -self.fmt[0]
        self.eta = mpmath.mpf(2) ** (self.fmt[1] - self.fmt[0])      # half the subnormal quantum
        self.largest = mpmath.ldexp(1, self.fmt[2] + 1)           # beyond it, the dtype overflows
        self.overflow = False

    def rounding(self, v, inputs_err=None):
        """The rounding error bound of a result v; none if it is exact (operands exact and v
        representable: x - 2 at x = 2 is exactly 0)."""
        if not mpmath.isfinite(v):
            return mpmath.mpf(0)
        if abs(v) >= self.largest:
            self.overflow = True
        if inputs_err == 0 and mpmath.mpf(round_to_format(v, *self.fmt)) == v:
            return mpmath.mpf(0)
        return self.u * abs(v) + self.eta

    def _check_boundary(self, distance, err):
        if err > 0 and abs(distance) <= FACTOR * err:
            raise _Ambiguous()

    def run(self, e, env):
        v, err = self._run(e, env)
        if not mpmath.isfinite(v) or not mpmath.isfinite(err):
            self.overflow = True
        return v, err

    def _run(self, e, env):
        if e.is_Symbol:
            return env[e], mpmath.mpf(0)
        if e.is_Number or e.is_NumberSymbol:
            v = mpmath.mpf(sp.Float(e, 40)) if not e.is_Integer else mpmath.mpf(int(e))
            exact = mpmath.mpf(round_to_format(v, *self.fmt)) == v
            return v, (mpmath.mpf(0) if exact else self.rounding(v))
        if e.is_Add:
            parts = [self._run(a, env) for a in e.args]
            err = mpmath.fsum(p[1] for p in parts)
            partial = parts[0][0]
            for v, _ in parts[1:]:
                partial += v
                err += self.rounding(partial, err)
            return partial, err
        if e.is_Mul:
            parts = [self._run(a, env) for a in e.args]
            value = mpmath.fprod(p[0] for p in parts)
            err = mpmath.mpf(0)
            for i, (_, ei) in enumerate(parts):
                if ei:
                    err += ei * abs(mpmath.fprod(p[0] for j, p in enumerate(parts) if j != i))
            return value, err + (len(parts) - 1) * self.rounding(value, err)
        if e.is_Pow:
            (b, eb), (p, ep) = self._run(e.base, env), self._run(e.exp, env)
            if e.exp.is_Integer and int(e.exp) < 0 or not e.exp.is_Integer:
                self._check_boundary(b, eb)       # a pole, or the edge of the real domain
            if b < 0 and not e.exp.is_Integer:
                raise _Ambiguous()                # not real (the reference is NaN)
            if b == 0:
                return mpmath.mpf(0) ** p, mpmath.mpf(0)
            value = mpmath.power(b, p)
            err = abs(p * mpmath.power(b, p - 1)) * eb + abs(value * mpmath.log(abs(b))) * ep
            steps = 1 if not e.exp.is_Integer else max(1, abs(int(e.exp)).bit_length())
            return value, err + steps * self.rounding(value, err)
        if isinstance(e, sp.Piecewise):
            for value, cond in e.args:
                if self._cond(cond, env):
                    return self._run(value, env)
            raise _Ambiguous()                    # undefined: the reference is NaN
        if isinstance(e, (sp.Max, sp.Min)):
            parts = [self._run(a, env) for a in e.args]
            pick = (max if isinstance(e, sp.Max) else min)(parts, key=lambda p: p[0])
            return pick[0], max(p[1] for p in parts)
        if isinstance(e, sp.Abs):
            v, err = self._run(e.args[0], env)
            return abs(v), err
        if isinstance(e, (sp.sign, sp.Heaviside)):
            v, err = self._run(e.args[0], env)
            self._check_boundary(v, err)
            if isinstance(e, sp.sign):
                return mpmath.sign(v), mpmath.mpf(0)
            return (mpmath.mpf(1) if v > 0 else mpmath.mpf(0) if v < 0 else mpmath.mpf(0.5)), mpmath.mpf(0)
        func = next((c for c in type(e).__mro__ if c in _DERIVATIVES), None)
        if func is None or len(e.args) != 1:
            raise TypeError(f"no error model for {e.func}")
        u, eu = self._run(e.args[0], env)
        if func in _SINGULAR:
            self._check_boundary(_SINGULAR[func](u), eu)
        g = _FUNCS[func] if func in _FUNCS else _FUNCS[next(c for c in type(e).__mro__ if c in _FUNCS)]
        value = g(u)
        if isinstance(value, mpmath.mpc):
            raise _Ambiguous()
        spread = abs(_DERIVATIVES[func](u)) * eu
        if eu:
            # first order fails where g' vanishes (cos(pi*x) at an even integer x, with pi
            # rounded): also take g's change to the ends of u +- e_u, and for sin and cos
            # with e_u >= 1 their whole range
            for end in (u - eu, u + eu):
                with contextlib.suppress(ZeroDivisionError, ValueError, ArithmeticError):
                    other = g(end)
                    if not isinstance(other, mpmath.mpc):
                        spread = max(spread, abs(other - value))
            if func in (sp.sin, sp.cos) and eu >= 1:
                spread = max(spread, mpmath.mpf(2))
        # a library call: within a few ULP of its exact value (counted as two roundings)
        return value, spread + 2 * self.rounding(value)

    def _cond(self, c, env) -> bool:
        if c is sp.true or c is sp.false:
            return bool(c)
        if isinstance(c, sp.And):
            return all([self._cond(a, env) for a in c.args])
        if isinstance(c, sp.Or):
            return any([self._cond(a, env) for a in c.args])
        if isinstance(c, sp.Not):
            return not self._cond(c.args[0], env)
        (a, ea), (b, eb) = self._run(c.lhs, env), self._run(c.rhs, env)
        self._check_boundary(a - b, ea + eb)
        return bool({sp.StrictLessThan: a < b, sp.LessThan: a <= b, sp.StrictGreaterThan: a > b,
                     sp.GreaterThan: a >= b, sp.Equality: a == b, sp.Unequality: a != b}[type(c)])


def straightforward_error(expr, x: float, params: dict, dtype: str):
    """(E(x) the first-order error bound, overflow?) of evaluating ``expr`` at x in ``dtype``,
    or None where the point is ambiguous."""
    model = Straightforward(dtype)
    env = {param_symbol(p): mpmath.mpf(v) for p, v in params.items()}
    with mpmath.workprec(256):
        try:
            _, err = model.run(expr, {**env, X: mpmath.mpf(x)})
        except (_Ambiguous, ZeroDivisionError, ValueError):
            return None
    return float(err), model.overflow


# ---- the check of one spec --------------------------------------------------------------------

def _cli_build(path) -> tuple[int, str]:
    from actgen import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["build", str(path), "--jobs", "1"])
    return code, err.getvalue()


def _build(act, table, path):
    """Build both backends (one lowering) the way `actgen build` does, keeping the exception type."""
    from actgen.build import spec_key, write_index
    from actgen.pipeline import build
    from actgen.pipeline import lower_activation

    lowered = lower_activation(act)
    for backend in ("c", "numpy"):
        artifact = build(act, backend, path.name, lowered)
        write_index(spec_key(act.name, table, backend), artifact.key)


def _kernel_exprs(act):
    from actgen.derive import derive

    return {k.name: k for k in derive(act)}


def _explained(act, sweep, result, loaded) -> list[str]:
    """Re-measure a kernel that is over budget point by point under the rule of the module
    docstring; the points it does not explain."""
    from actgen.select import candidates
    from actgen.measure import conditioned_distance, term_scale

    kernels = _kernel_exprs(act)
    xs, dys, params, dtype = sweep.xs, sweep.dys, sweep.params, sweep.dtype
    name = result.kernel
    if result.kind == "param_grad":
        return _explained_grad(act, sweep, result, kernels)
    base = {"forward": "forward", "fused_y": "forward", "forward_pc": "forward",
            "backward": "backward", "fused_dydx": "backward", "backward_pc": "backward"}.get(name)
    if base is None:
        return [f"{name}: no rule for this kernel ({result.error:.3g} > {result.budget})"]
    arrays = {p: np.full(xs.shape, v, dtype=xs.dtype) for p, v in params.items()}
    with np.errstate(all="ignore"):
        if name == "forward":
            got, weight = np.asarray(loaded(xs, **params)), None
        elif name == "forward_pc":
            got, weight = np.asarray(loaded(xs, **arrays)), None
        elif name == "fused_y":
            got, weight = loaded.forward_with_derivative(xs, **params)[0], None
        elif name == "backward":
            got, weight = np.asarray(loaded.backward(xs, dys, **params)), dys
        elif name == "backward_pc":
            got, weight = np.asarray(loaded.backward(xs, dys, **arrays)), dys
        else:
            got, weight = loaded.forward_with_derivative(xs, **params)[1], None
    if base == "forward":
        ref, scale = sweep.refs["forward"], None
    else:
        ref = sweep.refs["backward"] if weight is not None else sweep.kernel_refs["backward"]
        scale = term_scale(candidates(act, kernels["backward"])[0][1].stable, xs, params)
        if weight is not None:
            scale = scale * np.abs(dys)
    dist = conditioned_distance(got, ref, scale)
    nonfinite = np.isfinite(got) != np.isfinite(ref)
    bad = np.flatnonzero(nonfinite | (dist > result.budget) | (np.isnan(got) != np.isnan(ref)))
    unexplained = []
    for i in bad:
        x = float(xs[i])
        if math.isnan(x):
            if not np.isnan(got[i]):
                unexplained.append(f"{name} {dtype} [{loaded.backend}] at x = nan: {got[i]!r}, not nan")
            continue
        model = straightforward_error(kernels[base].exact, x, params, dtype)
        if model is None:
            continue                                   # ambiguous point
        err, overflow = model
        w = 1.0 if weight is None else abs(float(weight[i]))
        if overflow and not np.isfinite(got[i]):
            continue                                   # the straightforward evaluation overflows too
        if not np.isfinite(got[i]) or not np.isfinite(ref[i]):
            if not (np.isnan(got[i]) and np.isnan(ref[i])) and got[i] != ref[i]:
                unexplained.append(f"{name} {dtype} [{loaded.backend}] at x = {x!r}: {got[i]!r}, "
                                   f"reference {ref[i]!r}")
            continue
        # E of dy * f'(x) is |dy| E(f'(x)) plus the product's rounding
        allowed = FACTOR * (w * err + abs(float(ref[i])) * float(np.finfo(dtype).eps))
        miss = abs(float(got[i]) - float(ref[i]))
        if miss > allowed:
            unexplained.append(f"{name} {dtype} [{loaded.backend}] at x = {x!r}: {got[i]!r}, reference "
                               f"{ref[i]!r}: {dist[i]:.3g} ULP > budget and |error| {miss:.3g} > {FACTOR} E "
                               f"= {allowed:.3g}")
    return unexplained


def _explained_grad(act, sweep, result, kernels) -> list[str]:
    """A parameter gradient: a sum of dy * df/dp over the finite points; allowed
    max(budget, 2 * sum |dy| E_i / (eps * sum |terms|)); skipped if any term is ambiguous."""
    import mpmath as mp

    xs, dys, params, dtype = sweep.xs, sweep.dys, sweep.params, sweep.dtype
    finite = np.isfinite(xs)
    total = 0.0
    for x, dy in zip(xs[finite], dys[finite]):
        model = straightforward_error(kernels[result.kernel].exact, float(x), params, dtype)
        if model is None or model[1]:
            return []
        total += abs(float(dy)) * model[0]
    _, scale = sweep.grad_refs[result.kernel[len("grad_"):]]
    if not scale or not math.isfinite(result.error):
        return [] if not math.isfinite(float(scale or 0)) else \
            [f"{result.kernel} {dtype} [{result.backend}]: got {result.worst_got!r}, exact {result.worst_ref!r}"]
    allowed = max(result.budget, FACTOR * total / (float(np.finfo(dtype).eps) * float(mp.mpf(scale))))
    if result.error > allowed:
        return [f"{result.kernel} {dtype} [{result.backend}]: {result.error:.3g} eps*sum|terms| > {allowed:.3g}"]
    return []


def check_spec(spec: FuzzSpec, tmp_path) -> str:
    """Reject or verify one random spec. Returns "rejected: <message>" or "verified"; raises
    (AssertionError, or the unexpected exception) on a failure."""
    from actgen.spec import parse_spec_text
    from actgen.specfile import read_tables, resolve_table

    path = tmp_path / "fz.toml"
    path.write_text(spec.toml)
    try:
        (act,) = parse_spec_text(spec.toml, path=str(path))
        table = resolve_table(read_tables(spec.toml, path=str(path)), spec.name, str(path))
        _build(act, table, path)
    except BuildError:
        raise                                      # the generated code did not compile: a bug
    except ActgenError as exc:
        # rejected: the CLI says so in one message, exit status 1, no traceback
        code, err = _cli_build(path)
        assert code == 1 and err.startswith("actgen: error: ") and "Traceback" not in err, (exc, err)
        assert str(exc).strip()
        return "rejected: " + str(exc).splitlines()[0]
    failures = []
    for dtype in ("float32", "float64"):
        sweep = make_sweep(act, dtype, quick=True, seed=3)
        for backend in ("c", "numpy"):
            loaded = actgen.load(spec.name, spec=path, backend=backend)
            for result in check(loaded, sweep):
                if not result.passed:
                    failures += _explained(act, sweep, result, loaded)
    assert not failures, f"\n{spec.toml}" + "\n".join(failures[:12])
    return "verified"


def _fuzz_settings():
    # no shrinking: each step rebuilds a spec (1-3 s); the failing spec is printed in full
    return settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                    phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


@pytest.mark.slow          # random specs through build and verify (benchmarks/fuzz.py runs thousands)
@_fuzz_settings()
@given(spec=specs())
def test_random_specs_are_rejected_or_verified(spec, tmp_path):
    check_spec(spec, tmp_path)


# ---- regressions: bugs the long runs found, each pinned by its spec ---------------------------

REGRESSIONS = [
    # a result that does not depend on x (only on a parameter) returned 1 for x = nan: the NaN
    # guard looked for "no free symbols" instead of "no x" (rewrite.Form.needs_nan_guard)
    FuzzSpec("fz", "a", {"a": 1.0}, ()),
    # mpmath's erfc raises OverflowError beyond x ~ 2**500: the reference (and the limit at
    # -inf, evaluated at x = -2**1024...) crashed (reference._erfc: asymptotic series there)
    FuzzSpec("fz", "(erfc(x)) + (Min(x, x))", {}, ()),
    # at x = +-inf both sides of Max(x - E, pi*x) are inf: the derivative's select took the
    # tie branch, (1 + pi)/2, instead of the limit pi (select._select_at_infinity)
    FuzzSpec("fz", "(Max(x - E, pi * x)) + ((atan(x)) - (tanh(x)))", {}, ()),
    # the reference of exp(exp(x)) at x = 1e308 reduced exp's argument (2**(1.4e308)) with
    # that many bits of log(2): the build hung (reference._exp and _far: exp beyond 2**32 is
    # inf or 0, sinh/cosh/expm1 likewise, sin/cos beyond 2**1100 NaN, as in the float kernel)
    FuzzSpec("fz", "exp(exp(x))", {}, ()),
]


@pytest.mark.parametrize("spec", REGRESSIONS, ids=[s.expr for s in REGRESSIONS])
def test_fuzz_regressions(spec, tmp_path):
    assert check_spec(spec, tmp_path) == "verified"


def test_a_constant_beyond_the_double_range_is_refused(tmp_path):
    """Found by the fuzzer: sqrt(sinh(4e8)) (1.7e+86858896) was printed as a bare `inf`, a
    NameError in NumPy code (printers.KernelNumbers._literal now prints the printer's inf, see
    test_constants_beyond_the_double_range_print_as_inf); the parser now refuses it first."""
    outcome = check_spec(FuzzSpec("fz", "(sinh(5e2 * 8e5))**0.5", {}, ()), tmp_path)
    assert outcome.startswith("rejected:") and "overflows" in outcome, outcome


def test_nan_guard_when_the_result_ignores_x():
    from actgen.rewrite import lower

    a = param_symbol("a")
    assert lower(a + 1).needs_nan_guard
    assert not lower(sp.exp(X) * a).needs_nan_guard
    assert not lower(sp.exp(X) * (sp.exp(X) + 1)).needs_nan_guard   # x through a temporary


def test_constants_beyond_the_double_range_print_as_inf():
    from actgen.printers.c import KernelCPrinter
    from actgen.printers.numpy import KernelNumPyPrinter

    huge = sp.Float("1.7e+86858896", 30)
    assert KernelNumPyPrinter(frozenset(), False).doprint(-huge) == "(-numpy.inf)"
    assert KernelCPrinter("double").doprint(huge) == "INFINITY"
    assert KernelCPrinter("float").doprint(sp.Float(2.5)) == "2.5F"


def test_reference_of_arguments_beyond_the_float_range_is_quick():
    from actgen.reference import reference

    assert reference(sp.exp(sp.exp(X)), {X: 1e308}) == math.inf
    assert reference(X * sp.exp(-sp.exp(X)), {X: 1e308}) == 0.0
    assert reference(sp.cosh(sp.exp(X)), {X: 1e308}) == math.inf
    assert math.isnan(reference(sp.sin(sp.exp(X)), {X: 1e308}))
    assert math.isfinite(reference(sp.sin(sp.exp(X)), {X: 700.0}))     # 1e304: still computed


def test_reference_erfc_far_beyond_mpmaths_range():
    from actgen.reference import reference

    assert reference(sp.erfc(X), {X: 2.0 ** 1000}) == 0.0
    assert reference(sp.erfc(X), {X: -(2.0 ** 1000)}) == 2.0
    # the asymptotic series where it matters: erfc(x) * exp(x**2) * x -> 1/sqrt(pi)
    assert reference(sp.erfc(X) * sp.exp(X ** 2) * X, {X: 1e300}) == float(1 / mpmath.sqrt(mpmath.pi))


# ---- the checks can fail ------------------------------------------------------------------------

class _Tampered:
    """A loaded activation with one function replaced (everything else delegated)."""

    def __init__(self, loaded, **replaced):
        self._loaded, self._replaced = loaded, replaced

    def __call__(self, *args, **kwargs):
        return self._replaced.get("forward", self._loaded)(*args, **kwargs)

    def __getattr__(self, name):
        return self._replaced.get(name, getattr(self._loaded, name))


def _spec(tmp_path, expr):
    from actgen.spec import parse_spec_text

    path = tmp_path / "t.toml"
    path.write_text(f'[t]\nexpr = "{expr}"\n')
    (act,) = parse_spec_text(path.read_text(), path=str(path))
    return act, actgen.load("t", spec=path)


def test_the_verifier_catches_a_wrong_derivative(tmp_path):
    """Forward right, backward of a slightly different function (and with a sign error)."""
    act, good = _spec(tmp_path, "x * sigmoid(x)")
    spec = tmp_path / "w.toml"
    spec.write_text('[w]\nexpr = "x * sigmoid(1.0000001 * x)"\n')
    wrong = actgen.load("w", spec=spec)
    sweep = make_sweep(act, "float64", quick=True)
    assert all(r.passed for r in check(good, sweep))
    fused = lambda x, **p: (good(x, **p), wrong.forward_with_derivative(x, **p)[1])  # noqa: E731
    tampered = _Tampered(good, backward=wrong.backward, forward_with_derivative=fused)
    bad = {r.kernel for r in check(tampered, sweep) if not r.passed}
    assert bad == {"backward", "fused_dydx"}
    flipped = _Tampered(good, backward=lambda x, dy, **p: -good.backward(x, dy, **p))
    assert {r.kernel for r in check(flipped, sweep) if not r.passed} == {"backward"}
    # and the fuzz rule does not excuse it (x * sigmoid(x) is well conditioned)
    result = next(r for r in check(tampered, sweep) if r.kernel == "backward")
    assert _explained(act, sweep, result, tampered)


def test_the_verifier_catches_nan_and_lost_nan(tmp_path):
    """A kernel that overflows to NaN for large |x| (where the reference is finite), and one
    that turns NaN input into a number, are over budget with the non-finite counts set."""
    act, good = _spec(tmp_path, "x * sigmoid(x)")
    sweep = make_sweep(act, "float32", quick=True)

    def overflowing(x, *a, **p):
        with np.errstate(all="ignore"):
            return np.where(np.abs(x) > 100, np.nan, good(x, *a, **p)).astype(x.dtype)

    def nan_to_zero(x, *a, **p):
        return np.nan_to_num(good(x, *a, **p), nan=0.0)

    (r,) = [r for r in check(_Tampered(good, forward=overflowing), sweep) if r.kernel == "forward"]
    assert not r.passed and r.nonfinite_extra > 0
    assert _explained(act, sweep, r, _Tampered(good, forward=overflowing))
    (r,) = [r for r in check(_Tampered(good, forward=nan_to_zero), sweep) if r.kernel == "forward"]
    assert not r.passed and r.nonfinite_missing > 0
    assert _explained(act, sweep, r, _Tampered(good, forward=nan_to_zero))


def test_the_fuzz_rule_excuses_ill_conditioning_only():
    """sin(exp(x)) at x = 30 is ill conditioned (exp(30) ~ 1e13 is rounded before the sine):
    the straightforward evaluation's bound E is ~1e-3 there; at x = 0.5 it is a few ULP."""
    e = sp.sin(sp.exp(X))
    big, _ = straightforward_error(e, 30.0, {}, "float64")
    small, _ = straightforward_error(e, 0.5, {}, "float64")
    assert big > 1e-4 and small < 1e-15
    # cos(pi*x) at an even integer: cos' vanishes, but pi's rounding moves the argument by ~7
    assert straightforward_error(sp.cos(sp.pi * X), 5.912332579582771e16, {}, "float32")[0] >= 1
    # a discontinuity within the rounding of its argument: ambiguous, skipped
    assert straightforward_error(sp.Heaviside(X - sp.E), float(mpmath.e), {}, "float64") is None
    assert straightforward_error(sp.Heaviside(X - 2), 2.0, {}, "float64") is not None
