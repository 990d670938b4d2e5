"""The accuracy of actgen and of each generated peer against actgen's mpmath reference, on the
inputs ``actgen verify`` checks (``verify.make_sweep``): the forward's max ULPs, and dy * f'(x)
in verify's conditioned ULPs (ULPs of max(|reference|, |dy| * the sum of the magnitudes of the
derivative's terms): near a root of f' no fixed precision keeps relative accuracy).

The inputs are the finite points of the sweep (its +-inf and nan are left out: the peers' values
there are conventions, not accuracy); a result that is inf or nan where the reference is finite
counts as an infinite error. actgen's float32 C kernels compute in float only on blocks of
inputs inside an interval: each point is measured on a block of its own, as verify does, so that
it takes the path an array of such points takes.
"""

from __future__ import annotations

import numpy as np

from ..derive import derive
from ..render import FLOAT_BLOCK
from ..measure import conditioned_distance, term_scale, ulp_distance
from ..select import candidates
from ..sweep import make_sweep
from .symbolic import NumExprSource, PeerSource
from .user_peers import Libraries, Sources

ACCURACY_IMPLS = ("actgen", "torch_eager", "torch_compile", "jax", "numexpr")


def _each_point(fn, *arrays):
    """``fn`` of arrays with every point repeated to a block of its own (see the module doc)."""
    got = fn(*[np.repeat(a, FLOAT_BLOCK) for a in arrays])
    return np.asarray(got)[::FLOAT_BLOCK]


def _errors(xs, y, dx, ref_y, ref_dx, scale) -> dict:
    y, dx = np.asarray(y), np.asarray(dx)
    f = ulp_distance(y, ref_y)
    b = conditioned_distance(dx, ref_dx, scale)
    return {"forward_ulp": float(np.max(f)), "forward_worst_x": float(xs[np.argmax(f)]),
            "backward_ulp": float(np.max(b)), "backward_worst_x": float(xs[np.argmax(b)]),
            "nonfinite": int(np.sum(~np.isfinite(y) & np.isfinite(ref_y))
                             + np.sum(~np.isfinite(dx) & np.isfinite(ref_dx)))}


def _torch_values(torch, source: PeerSource, xs, dys, params, compiled):
    f = source.function({"torch": torch})
    if compiled:
        f = torch.compile(f, dynamic=False)
    tx = torch.from_numpy(xs).requires_grad_()
    tp = [torch.tensor(params[p], dtype=tx.dtype) for p in source.args]
    with torch.enable_grad():
        y = f(tx, *tp)
        (dx,) = torch.autograd.grad(y, tx, torch.from_numpy(dys))
    return y.detach().numpy(), dx.numpy()


def _jax_values(jax, source: PeerSource, xs, dys, params):
    f = source.function({"jax": jax, "jnp": jax.numpy})
    jp = [jax.numpy.asarray(params[p], dtype=xs.dtype) for p in source.args]
    fwd = jax.jit(lambda x: f(x, *jp))
    bwd = jax.jit(lambda x, dy: jax.vjp(lambda x: f(x, *jp), x)[1](dy)[0])
    jx = jax.device_put(xs)
    return np.asarray(fwd(jx)), np.asarray(bwd(jx, jax.device_put(dys)))


def _numexpr_values(ne, source: NumExprSource, xs, dys, params):
    names = {k: xs.dtype.type(v) for k, v in source.constants.items()}
    names.update({p: xs.dtype.type(params[p]) for p in source.args})
    with np.errstate(all="ignore"):
        y = ne.evaluate(source.forward, local_dict={"x": xs, **names})
        dx = ne.evaluate(source.backward, local_dict={"x": xs, "dy": dys, **names})
    return np.broadcast_to(y, xs.shape), np.broadcast_to(dx, xs.shape)


def accuracy(act, loaded, srcs: Sources, libs: Libraries, dtype: str = "float32", impls=ACCURACY_IMPLS):
    """[{"name", "dtype", "impl", "points", "forward_ulp", "backward_ulp" (and the x where each is
    worst), "nonfinite"}] for
    actgen's C kernels (``loaded``) and each generated peer of ``act`` (the parsed activation);
    {"impl", "reason"} for a peer that could not be measured."""
    kernels = [k for k in derive(act) if k.kind in ("forward", "backward")]
    sweep = make_sweep(act, dtype, kernels=kernels)
    finite = np.isfinite(sweep.xs)
    xs, dys, params = sweep.xs[finite], sweep.dys[finite], sweep.params
    ref_y, ref_dx = sweep.refs["forward"][finite], sweep.refs["backward"][finite]
    back = next(k for k in kernels if k.kind == "backward")
    scale = term_scale(candidates(act, back)[0][1].stable, xs, params) * np.abs(dys)
    each = _each_point if dtype == "float32" else (lambda fn, *a: fn(*a))
    runs = {
        "actgen": lambda: (each(lambda x: loaded(x, **params), xs),
                           each(lambda x, dy: loaded.backward(x, dy, **params), xs, dys)),
        "torch_eager": (lambda: _torch_values(libs.torch, srcs.torch, xs, dys, params, False))
        if libs.torch and srcs.torch else None,
        "torch_compile": (lambda: _torch_values(libs.torch, srcs.torch, xs, dys, params, True))
        if libs.torch and srcs.torch else None,
        "jax": (lambda: _jax_values(libs.jax, srcs.jax, xs, dys, params)) if libs.jax and srcs.jax else None,
        "numexpr": (lambda: _numexpr_values(libs.numexpr, srcs.numexpr, xs, dys, params))
        if libs.numexpr and srcs.numexpr else None,
    }
    rows = []
    for impl in impls:
        base = {"name": act.name, "dtype": dtype, "impl": impl, "points": int(xs.size)}
        run = runs.get(impl)
        if run is None:
            library = "torch" if impl.startswith("torch") else impl
            rows.append({**base, "reason": srcs.reasons.get(impl) or libs.missing.get(library, "not measured")})
            continue
        try:
            y, dx = run()
        except Exception as exc:                   # noqa: BLE001 - a peer's failure is reported, not fatal
            rows.append({**base, "reason": f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:80]}"})
            continue
        rows.append({**base, **_errors(xs, y, dx, ref_y, ref_dx, scale)})
    return rows
