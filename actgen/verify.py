"""Kernels vs. the mpmath reference, in ULPs.

The metric is the distance, in units in the last place, between a kernel's output and the
correctly rounded reference value: 0 means correctly rounded. Infinite where one side is NaN
and the other is not, or one is infinite and the other finite (counted separately too).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import mpmath
import numpy as np

from .build import indexed_artifact, spec_key, table_origin, write_index
from .higher import derived_activation
from .loading import load, load_table, spec_table
from .orders import derived_table
from .activation import Activation
from .derive import derive
from .ir import DTYPES, X, Y, param_symbol
from .measure import conditioned_distance, term_scale, ulp_distance
from .pipeline import build, lower_activation
from .reference import evaluate
from .reference_rows import row_reference
from .ranges import box_points
from .render import FLOAT_BLOCK
from .rewrite import stable_form
from .sweep import Sweep, memoised_reference, make_sweep, param_values

@dataclass
class Result:
    activation: str
    backend: str
    dtype: str
    kernel: str
    kind: str
    points: int
    max_ulp: float            # plain ULPs of the correctly rounded reference
    p99_ulp: float
    worst_x: float
    worst_got: float
    worst_ref: float
    nonfinite_extra: int      # kernel NaN/inf where the reference is finite
    nonfinite_missing: int    # kernel finite where the reference is NaN/inf
    budget: float
    error: float = 0.0        # what the budget applies to: max_ulp for forward kernels; for
                              # derivatives, ULPs of max(|ref|, |dy| * sum|terms|) (conditioned)
    unit: str = "ulp"         # "ulp", or "eps*sum|terms|" for parameter gradients
    order: int | None = None  # the derivative of the spec's function the kernel computes (0: f,
                              # 1: f', 2: f''...; in a gated or rowwise one's derivative
                              # activations, of its gate or score); None for parameter gradients
    of: str = ""              # the spec activation a derived order's kernels belong to

    @property
    def passed(self) -> bool:
        # (a budget of inf, given with its reason, accepts NaN or inf where the function is finite)
        finite_ok = self.budget == math.inf or (self.nonfinite_extra == 0 and self.nonfinite_missing == 0)
        return self.error <= self.budget and finite_ok

    def as_dict(self) -> dict:
        return dict(asdict(self), passed=self.passed)


def _ulp_result(act_name, backend, sweep, kernel, kind, got, ref, scale=None, extra_ulps=0.0) -> Result:
    xs = sweep.xs
    dist = ulp_distance(got, ref)
    cond = conditioned_distance(got, ref, scale)
    finite_ref = np.isfinite(ref)
    extra = int(np.sum(~np.isfinite(got) & finite_ref))
    missing = int(np.sum(np.isfinite(got) & ~finite_ref))
    # a mismatch in finiteness is counted above; the ULP statistics cover the comparable points
    comparable = ~(np.isinf(dist) & (np.isfinite(got) != np.isfinite(ref)))
    d = dist[comparable] if comparable.any() else np.zeros(1)
    c = cond[comparable] if comparable.any() else np.zeros(1)
    worst = int(np.flatnonzero(comparable)[np.argmax(c)]) if comparable.any() else 0
    return Result(act_name, backend, sweep.dtype, kernel, kind, int(xs.size), float(np.max(d)),
                  float(np.percentile(d, 99)), float(xs[worst]), float(got[worst]), float(ref[worst]),
                  extra, missing, sweep.act.budget(kind, sweep.dtype) + extra_ulps, float(np.max(c)))


def check(loaded, sweep: Sweep) -> list[Result]:
    """Every exported function of a loaded activation against the sweep's references."""
    kind = sweep.act.kind
    if kind == "gated":
        return _check_gated(loaded, sweep)
    if kind == "rowwise":
        return _check_rowwise(loaded, sweep)
    return _check_elementwise(loaded, sweep)


def _grad_result(act, loaded, sweep, p, got, exact, scale, points) -> Result:
    """A parameter gradient (a sum) in units of eps * sum |terms|."""
    eps = float(np.finfo(sweep.dtype).eps)
    limit = float(np.finfo(sweep.dtype).max)
    if mpmath.isnan(exact) or abs(exact) > limit:
        err = 0.0 if (np.isinf(got) and abs(exact) > limit and (got > 0) == (exact > 0)) \
            or (np.isnan(got) and mpmath.isnan(exact)) else np.inf
    else:
        err = float(abs(mpmath.mpf(got) - exact) / scale) / eps if scale else (0.0 if got == 0 else np.inf)
    return Result(act.name, loaded.backend, sweep.dtype, f"grad_{p}", "param_grad", points, err, err,
                  float("nan"), got, float(exact), 0, 0, act.budget("param_grad", sweep.dtype), err,
                  unit="eps*sum|terms|")


def _exact_sum(expr, xs, weights, params) -> tuple:
    """(sum of expr(x) * prod(weights), sum of |terms|) at 200 bits over the finite x."""
    symbols = {param_symbol(p): v for p, v in params.items()}
    terms = []
    for i, x in enumerate(xs):
        w = math.prod(float(a[i]) for a in weights)
        try:
            terms.append(evaluate(expr, {**symbols, X: float(x)}, 200) * w)
        except ArithmeticError:
            terms.append(mpmath.nan)
    with mpmath.workprec(200):
        return mpmath.fsum(terms), mpmath.fsum(abs(t) for t in terms)


def _identical(act, loaded, sweep, name, kind, got, want) -> Result:
    """A function that must reproduce another bit for bit (the fused and per-channel loops
    call the same element functions as the plain ones)."""
    got, want = np.asarray(got).ravel(), np.asarray(want).ravel()
    same = (got == want) | (np.isnan(got) & np.isnan(want))
    dist = ulp_distance(got, want)
    worst = int(np.argmax(np.where(same, 0, dist))) if got.size else 0
    err = 0.0 if same.all() else float(np.max(np.where(same, 0, dist)))
    return Result(act.name, loaded.backend, sweep.dtype, name, kind, int(got.size), err, err,
                  float(sweep.xs.ravel()[worst % sweep.xs.size]) if got.size else math.nan,
                  float(got[worst]) if got.size else math.nan, float(want[worst]) if got.size else math.nan,
                  0, 0, 0.0, err, unit="ulp vs the plain kernel")


def _check_elementwise(loaded, sweep: Sweep) -> list[Result]:
    act, out = sweep.act, []
    params = sweep.params
    xs, dys = sweep.xs, sweep.dys
    kernels = {k.name: k for k in derive(act)}
    each = _each_point if loaded.backend == "c" and sweep.dtype == "float32" else (lambda f, *a: f(*a))
    y = np.asarray(each(lambda x: loaded(x, **params), xs))
    # a derived order's forward kernel is a derivative: measured conditioned (select.plain_ulps)
    fscale = None if not act.order else term_scale(stable_form(kernels["forward"], act.expr).stable, xs, params)
    out.append(_ulp_result(act.name, loaded.backend, sweep, "forward", "forward", y, sweep.refs["forward"], fscale))
    dx = np.asarray(each(lambda x, dy: loaded.backward(x, dy, **params), xs, dys))
    back = kernels["backward"]
    scale = term_scale(stable_form(back, act.expr).stable, xs, params) * np.abs(dys)
    out.append(_ulp_result(act.name, loaded.backend, sweep, "backward", "backward", dx, sweep.refs["backward"],
                           scale))
    # the fused forward and derivative (its loop may vectorise differently: measured on its own)
    fy, fd = each(lambda x: np.stack(loaded.forward_with_derivative(x, **params)), xs)
    out.append(_ulp_result(act.name, loaded.backend, sweep, "fused_y", "forward", fy, sweep.refs["forward"], fscale))
    out.append(_ulp_result(act.name, loaded.backend, sweep, "fused_dydx", "backward", fd,
                           sweep.kernel_refs["backward"], scale / np.where(dys == 0, 1, np.abs(dys))))
    # per-channel parameters (here equal to the scalars)
    if act.params:
        arrays = {p: np.full(xs.shape, v, dtype=xs.dtype) for p, v in params.items()}
        out.append(_ulp_result(act.name, loaded.backend, sweep, "forward_pc", "forward",
                               np.asarray(loaded(xs, **arrays)), sweep.refs["forward"], fscale))
        out.append(_ulp_result(act.name, loaded.backend, sweep, "backward_pc", "backward",
                               np.asarray(loaded.backward(xs, dys, **arrays)), sweep.refs["backward"], scale))
    # from the saved output: at the correctly rounded y = f(x), against g(y) exactly
    if "backward_y" in kernels and loaded._kernels.valid(sweep.dtype, tuple(params.values())):
        ys = sweep.refs["forward"]
        g = kernels["backward_y"].exact
        ref = memoised_reference(g, ys, sweep.dtype, params, dys=dys, variable=Y)
        got = np.asarray(loaded.backward_from_output(ys, dys, **params))
        out.append(_ulp_result(act.name, loaded.backend, sweep, "backward_y", "backward", got, ref))
    finite = np.isfinite(xs)
    if sweep.grad_refs:
        grads = loaded.param_grads(xs[finite], dys[finite], **params)
        for p, (exact, scale) in sweep.grad_refs.items():
            out.append(_grad_result(act, loaded, sweep, p, float(grads[p]), exact, scale, int(finite.sum())))
    return out


def _each_point(fn, *arrays):
    """``fn`` of arrays (on their last axis) with every point repeated to a block of its own: a
    float32 C kernel computed in float on an interval only (select.Choice.float_range) checks
    blocks of render.FLOAT_BLOCK inputs, and computes a block with any input outside in double.
    The sweep mixes both kinds in one block; this way each point takes the path that an array of
    such points takes (in float where it lies in the interval)."""
    got = fn(*[np.repeat(a, FLOAT_BLOCK) for a in arrays])
    return np.asarray(got)[..., ::FLOAT_BLOCK]


def _check_gated(loaded, sweep: Sweep) -> list[Result]:
    """y = a * f(b) with b the sweep's points and a random (both halves along axis 0)."""
    act, out = sweep.act, []
    params, dtype = sweep.params, sweep.dtype
    b, dy = sweep.xs, sweep.dys
    a = np.random.default_rng(5).uniform(-2.0, 2.0, b.size).astype(dtype)
    x = np.stack([a, b])
    kernels = {k.name: k for k in derive(act)}
    f, fprime = kernels["forward"].exact, kernels["backward"].exact
    # a * f(b): the gate's budget plus the product's rounding
    y = np.asarray(loaded(x, axis=0, **params))[0]
    out.append(_ulp_result(act.name, loaded.backend, sweep, "forward", "forward", y,
                           memoised_reference(f, b, dtype, params, weights=(a,)), extra_ulps=1))
    dx = np.asarray(loaded.backward(x, dy[None, :], axis=0, **params))
    out.append(_ulp_result(act.name, loaded.backend, sweep, "backward_a", "backward", dx[0],
                           memoised_reference(f, b, dtype, params, dys=dy)))
    scale = term_scale(stable_form(kernels["backward"], act.expr).stable, b, params) * np.abs(dy * a)
    out.append(_ulp_result(act.name, loaded.backend, sweep, "backward_b", "backward", dx[1],
                           memoised_reference(fprime, b, dtype, params, dys=dy, weights=(a,)), scale,
                           extra_ulps=1))
    finite = np.isfinite(b)
    if act.learnable:
        grads = loaded.param_grads(x[:, finite], dy[None, finite], axis=0, **params)
        for p in act.learnable:
            exact, total = _exact_sum(kernels[f"grad_{p}"].exact, b[finite], (dy[finite], a[finite]), params)
            out.append(_grad_result(act, loaded, sweep, p, float(grads[p]), exact, total, int(finite.sum())))
    return out


ROW = 8


def _rows_of(xs: np.ndarray) -> np.ndarray:
    """Rows of ROW elements from the sweep: its points in their order (neighbouring magnitudes)
    and shuffled, padded with zeros."""
    shuffled = xs[np.random.default_rng(11).permutation(xs.size)]
    pts = np.concatenate([xs, shuffled])
    pad = (-pts.size) % ROW
    return np.concatenate([pts, np.zeros(pad, xs.dtype)]).reshape(-1, ROW)


def _check_rowwise(loaded, sweep: Sweep) -> list[Result]:
    act, out = sweep.act, []
    params, dtype = sweep.params, sweep.dtype
    rows = _rows_of(sweep.xs)
    dys = np.random.default_rng(13).uniform(-2.0, 2.0, rows.shape).astype(dtype)
    ref_y, ref_dx, scale, totals, fscale = row_reference(act, rows.astype(np.float64), dys, params, dtype)
    row_sweep = Sweep(act, dtype, rows.ravel(), dys.ravel(), params, {}, {}, {})
    y = np.asarray(loaded(rows, **params))
    out.append(_ulp_result(act.name, loaded.backend, row_sweep, "forward", "forward", y.ravel(), ref_y.ravel(),
                           None if fscale is None else fscale.ravel()))
    dx = np.asarray(loaded.backward(rows, dys, **params))
    out.append(_ulp_result(act.name, loaded.backend, row_sweep, "backward", "backward", dx.ravel(),
                           ref_dx.ravel(), scale.ravel()))
    # along another axis: the same values (the rows are moved, not recomputed differently)
    along0 = np.asarray(loaded(np.ascontiguousarray(rows.T), axis=0, **params)).T
    out.append(_identical(act, loaded, row_sweep, "forward_axis0", "forward", along0, y))
    if loaded.has_output_derivative:
        ok = np.isfinite(y).all(axis=1)
        got = np.asarray(loaded.backward_from_output(y[ok], dys[ok], **params))
        out.append(_ulp_result(act.name, loaded.backend, Sweep(act, dtype, rows[ok].ravel(), dys[ok].ravel(),
                                                               params, {}, {}, {}),
                               "backward_y", "backward", got.ravel(), ref_dx[ok].ravel(), scale[ok].ravel()))
    if act.learnable:
        ok = np.isfinite(ref_y).all(axis=1)
        grads = loaded.param_grads(rows[ok], dys[ok], **params)
        for p in act.learnable:
            exact, total = totals[p]
            out.append(_grad_result(act, loaded, row_sweep, p, float(grads[p]), exact, total, int(ok.sum())))
    return out


def verify(act: Activation, *, spec=None, backends=("c", "numpy"), dtypes=DTYPES, quick=False,
           orders: int = 1) -> list[Result]:
    """Build (or load) ``act`` with each backend and check every kernel and dtype; with
    ``orders`` = K > 1 also its derivative activations up to f^(K) (verified_orders)."""
    results = []
    for dtype in dtypes:
        sweep = make_sweep(act, dtype, quick=quick)
        for backend in backends:
            loaded = load(act.name, spec=spec, backend=backend)
            results.extend(_orders(check(loaded, sweep) + check_param_box(loaded, act, dtype, quick=quick),
                                   act.name, 0))
    if orders > 1:
        table, path = spec_table(act.name, spec)
        for k in verified_orders(act.kind, orders):
            derived = derived_activation(act, k)
            name, derived_spec = derived_table(act.name, table, k)
            _build_all(derived, name, derived_spec, backends)
            for dtype in dtypes:
                sweep = make_sweep(derived, dtype, quick=quick)
                for backend in backends:
                    results.extend(_orders(check(load_table(name, derived_spec, path, backend), sweep),
                                           act.name, k))
    return results


def _orders(results: list[Result], of: str, k: int) -> list[Result]:
    """Label the results of the order-k derivative activation of ``of`` (k = 0: ``of`` itself)
    with the derivative each kernel computes: its forward kernels f^(k), its backward ones
    f^(k+1) (of a gated or rowwise activation, the gate's or score's g^(k) and g^(k+1) from
    k = 1 on; its own kernels, k = 0, are f and f' as a whole)."""
    for r in results:
        r.of = of
        r.order = None if r.kind == "param_grad" else k + (r.kind == "backward")
    return results


def check_param_box(loaded, act: Activation, dtype: str, *, quick: bool = False) -> list[Result]:
    """The forward and backward kernels at the parameter values where selection certified a
    float32 kernel's float path for (meta "float_params"; ranges.box_points: the box's corners,
    its ends and points halfway to the defaults), against mpmath there; each result's kernel name
    says the values ("forward at beta=1.5"). [] for float64 and where no box was certified."""
    boxes = loaded.meta.get("float_params", {})
    if dtype != "float32" or not boxes:
        return []
    defaults = param_values(act, dtype)
    kernels = [k for k in derive(act) if k.kind in ("forward", "backward")]
    points = []
    for ranges in boxes.values():
        box = tuple((p, *ranges.get(p, (d, d))) for p, d in defaults.items())
        points += [point for point in box_points(box, defaults) if point not in points]
    results = []
    for point in points:
        moved = ", ".join(f"{p}={v:g}" for p, v in point.items() if v != defaults[p])
        for r in check(loaded, make_sweep(act, dtype, quick=quick, kernels=kernels, params=point)):
            r.kernel = f"{r.kernel} at {moved}"
            results.append(r)
    return results


def _build_all(act: Activation, name: str, table: dict, backends) -> None:
    """Build a derived order for every backend from one lowering (load_table would lower it once
    per backend), as ``actgen build`` does."""
    lowered = None
    for backend in backends:
        key = spec_key(name, table, backend)
        if indexed_artifact(key, name, warn=False) is None:
            lowered = lowered or lower_activation(act)
            write_index(key, build(act, backend, table_origin(name), lowered))


def verified_orders(kind: str, orders: int) -> range:
    """The derivative activations whose kernels cover f'' .. f^(orders): k = 1 .. orders - 1 of an
    elementwise one (forward f^(k), backward f^(k+1)); of a gated or rowwise one the gate's or
    score's g^(k), k = 0 .. orders - 2 (its own kernels cover the function and g')."""
    return range(1, orders) if kind == "elementwise" else range(0, orders - 1)


def format_table(results: list[Result]) -> str:
    """A terminal table: one row per activation, kernel, dtype and backend."""
    header = (f"{'activation':20s} {'kernel':12s} {'dtype':8s} {'backend':7s} {'max':>9s} {'p99':>7s} "
              f"{'error':>7s} {'budget':>6s} {'nonfinite':>9s}  {'worst x':>13s}  status")
    lines = [header, "-" * len(header)]
    for r in results:
        nonfinite = f"{r.nonfinite_extra}/{r.nonfinite_missing}"
        worst = "" if r.kind == "param_grad" else f"{r.worst_x:13.6g}"
        lines.append(f"{r.activation:20s} {r.kernel:12s} {r.dtype:8s} {r.backend:7s} {r.max_ulp:9.3g} "
                     f"{r.p99_ulp:7.3g} {r.error:7.3g} {r.budget:6g} {nonfinite:>9s}  {worst:>13s}  "
                     f"{'ok' if r.passed else 'OVER BUDGET'}")
    failed = sum(not r.passed for r in results)
    lines.append(f"\n{len(results)} kernel checks, {failed} over budget.\n"
                 "max, p99: ULPs of the correctly rounded mpmath reference. error: what the budget applies "
                 "to; the max ULPs for forward kernels, for backward kernels the ULPs of "
                 "max(|reference|, |dy| * sum of the magnitudes of the derivative's terms) (near a root "
                 "of f' no fixed precision keeps relative accuracy), for parameter gradients "
                 "|error| / (eps * sum|dy * df/dp|). nonfinite: kernel NaN/inf where the reference is "
                 "finite / the reverse.")
    return "\n".join(lines)
