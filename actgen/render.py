"""Kernels -> rendered sources {relative path: text}, through Jinja templates and a small view model.

Templates see only plain data (the dataclasses below): names, C types and printed code
strings. They never receive SymPy objects, modules or functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from .activation import Activation
from .backends import BACKENDS, Backend
from .ir import DTYPES, Form, Lowered
from .printers.dd import KernelDDPrinter
from .ranges import within
from .resources import csrc_text, render_template
from .roles import Role, roles

#: Elements per range check where a float32 kernel is computed in float on an interval only
#: (select.Choice.float_range): a block with any input outside is computed in double.
FLOAT_BLOCK = 1024


@dataclass(frozen=True)
class KernelView:
    """One per-element kernel (derive.Kernel) for one dtype, printed."""

    name: str                 # forward, backward, backward_y, grad_<p>
    kind: str                 # forward, backward, backward_y, param_grad
    elem: str                 # C: the name of its static inline element function
    variable: str             # x, or y for backward_y
    description: str
    temps: tuple[tuple[str, str, str], ...]   # (name, code, "dd" for a double-double temporary or "")
    result: str
    #: the statements to run before each temporary, then before the result (len(temps) + 1 of them;
    #: the C printer's selects compute their calls first)
    hoisted: tuple[tuple[str, ...], ...]
    nan_guard: bool
    rules: tuple[str, ...]
    compute: str              # C: the type arithmetic is done in; NumPy: "dtype" or "double"
    note: str                 # how the form was chosen (shown in a comment)
    #: C, a float32 kernel computed in float on an interval only (select.Choice.float_range):
    #: the float element function (the loops' RoleView.bounds hold the interval); this kernel is
    #: then the one computed in double, which every loop may call
    fast: KernelView | None = None
    #: computed in double-double (actgen_dd.h): its element function is not inlined into the loops
    wide: bool = False


@dataclass(frozen=True)
class RoleView:
    """One exported function (roles.Role) for one dtype."""

    name: str                 # forward, grad_alpha_pc, ...
    loop: str                 # forward, backward, backward_y, forward_deriv, grad, valid
    symbol: str               # its name in the built module
    kernel: str               # the element kernel it evaluates
    param: str
    channels: bool
    #: (lo, hi) as C literals if every kernel the role evaluates has a float variant on an
    #: interval (the flat loops then check blocks of elements against the common interval)
    bounds: tuple[str, str] = ()
    #: C: true where the parameters lie outside the box the interval is certified for
    #: (select.Choice.param_box: learnable ones in a range, the others at their defaults): the
    #: loop then computes every block in double. Tested once per call.
    params_outside: str = "0"
    #: its output may be one of its inputs (roles.IN_PLACE): no `restrict` on its pointers
    in_place: bool = False


@dataclass(frozen=True)
class DtypeView:
    dtype: str                # float32
    tag: str                  # f32
    ctype: str                # float: the element type in memory
    kernels: dict             # kernel name -> KernelView
    roles: tuple[RoleView, ...]
    valid: str                # backward_y_valid's condition, printed ("1" if none)
    valid_before: tuple[str, ...] = ()   # the statements it needs first


@dataclass(frozen=True)
class ActivationView:
    name: str
    kind: str                 # elementwise, gated, rowwise
    normalizer: str           # rowwise: softmax, log_softmax, sparsemax
    description: str
    spec: str                 # the spec file, as shown in the banner
    expr_text: str
    params: tuple[tuple[str, float], ...]
    learnable: tuple[str, ...]
    dtypes: tuple[DtypeView, ...]
    float_block: int = 0      # FLOAT_BLOCK if some flat loop checks blocks against a float interval


def _note(choice, compute: str, ranged: bool = False) -> str:
    # the double fallback (outside the interval; the NumPy backend's) has its own measurement,
    # and where the float form is compensated (float-float), it is the plain rewrite
    fallback = choice.fallback is not None and not ranged and compute == "double"
    parts = ["rewritten" if fallback and choice.form.compensated else choice.label]
    if ranged:
        parts.append(choice.range_text())
    elif compute == "wide":
        parts.append("computed in double-double")
    elif choice.dtype == "float32" and compute == "double":
        parts.append("computed in double")
    if choice.form.guards:
        parts.append("limits at infinity")
    if choice.kernel.kind == "backward_y":      # its input is y: actgen verify measures it, selection does not
        return ", ".join([*parts, "measured by actgen verify at y = f(x)"])
    unit = "ULP" if choice.kernel.kind == "forward" else "ULP (conditioned)"
    error = choice.fallback_error if fallback else choice.error
    parts.append(f"measured {error:.3g} {unit}")
    if not fallback and choice.bound > choice.error:      # (NaN compares false: no bound)
        parts.append(f"{choice.bound:.3g} with libm's documented errors")
    if choice.naive is not None and choice.naive.label == "naive":
        naive = "NaN/inf" if choice.naive.nonfinite else f"{choice.naive.error:.3g} {unit}"
        parts.append(f"naive {naive}")
    return ", ".join(parts)


def _print_kernel(printer, form: Form, compute: str) -> tuple[tuple[tuple[str, str, str], ...], str, tuple[tuple[str, ...], ...]]:
    """(temporaries (name, code, kind), result, the statements before each temporary and then
    before the result). Computed "wide", every temporary is a double-double ("dd") and the result
    is rounded once."""
    wide = compute == "wide"
    take = getattr(printer, "take_statements", tuple)
    temps, hoisted = [], []
    for sym, value in form.temps:
        dd = wide or sym in form.dd_temps
        code = printer.doprint(value) if wide or not dd else printer._dd(value)
        temps.append((str(sym), code, "dd" if dd else ""))
        hoisted.append(take())
    result = printer.doprint(form.result)
    if wide and isinstance(printer, KernelDDPrinter):
        result = f"actgen_dd_to_double({result})"
    return tuple(temps), result, (*hoisted, take())


def exported_roles(lowered: Lowered) -> list[Role]:
    act = lowered.act
    return roles(act.kind, [k.name for k in lowered.kernels], list(act.params), list(act.learnable))


def view_model(lowered: Lowered, backend: Backend, spec_display: str) -> ActivationView:
    act = lowered.act
    dtypes = []
    role_list = exported_roles(lowered)
    for dtype, (tag, ctype) in DTYPES.items():
        kernels = {}
        for k in lowered.kernels:
            choice = lowered.choices[k.name, dtype]
            elem = f"actgen_{act.name}_{k.name}_elem_{tag}"

            def kernel_view(form, compute, elem, ranged=False, nan_guard=None, **extra):
                wide = compute == "wide"
                printer = backend.printer(compute, frozenset(s for s, _ in form.temps) if wide else form.dd_temps,
                                          form.compensated, narrow=dtype == "float32" and compute == "double")
                temps, result, hoisted = _print_kernel(printer, form, compute)
                return KernelView(k.name, k.kind, elem, str(k.variable), k.description, temps, result, hoisted,
                                  form.needs_nan_guard if nan_guard is None else nan_guard, form.rules,
                                  "double" if wide and backend.name == "c" else compute,
                                  _note(choice, compute, ranged), **extra, wide=wide)

            if choice.float_range is not None:
                # the double form for every loop; the float one for the flat loops' in-range blocks
                # (where the backend has them; the gated kind has no flat loops: the double form only)
                blocks = backend.float_blocks and act.kind == "elementwise"
                # (its blocks hold no NaN and no x outside the interval: no guards for those)
                fast = (kernel_view(within(choice.form, choice.float_range), "float", f"{elem}_in_float", True,
                                    nan_guard=False) if blocks else None)
                kernels[k.name] = kernel_view(choice.fallback, "double", elem, blocks, fast=fast)
            elif choice.fallback is not None and not backend.float_float:
                # float-float in float is C's (and selection's model); elsewhere the form in double
                kernels[k.name] = kernel_view(choice.fallback, "double", elem)
            else:
                kernels[k.name] = kernel_view(choice.form, backend.kernel_compute(choice), elem)
        printer = backend.printer(backend.compute(dtype))
        valid = printer.doprint(act.output_derivative_valid)
        valid_before = printer.take_statements()
        views = tuple(RoleView(r.name, r.loop, backend.symbol(act.name, r.name, dtype), r.kernel, r.param,
                               r.channels, _role_bounds(act, r, kernels, lowered.choices, dtype),
                               _params_outside(act, r, lowered.choices, dtype), r.in_place)
                      for r in role_list)
        dtypes.append(DtypeView(dtype, tag, ctype, kernels, views, valid, valid_before))
    return ActivationView(
        name=act.name, kind=act.kind, normalizer=act.normalizer, description=act.description,
        spec=spec_display, expr_text=act.expr_text,
        params=tuple(act.params.items()), learnable=act.learnable, dtypes=tuple(dtypes),
        float_block=FLOAT_BLOCK if any(r.bounds for d in dtypes for r in d.roles) else 0)


def _float_literal(value: float) -> str:
    import numpy as np

    if math.isinf(value):
        return "INFINITY" if value > 0 else "-INFINITY"
    return f"{np.float32(value)!r}".removeprefix("np.float32(").removesuffix(")") + "F"


def _float_kernels(act: Activation, role: Role) -> list[str]:
    """The kernels a flat loop of ``role`` may compute in float; [] where it has no float blocks."""
    if act.kind != "elementwise" or role.channels or role.loop not in ("forward", "backward", "forward_deriv"):
        return []
    return ["forward", "backward"] if role.loop == "forward_deriv" else [role.kernel]


def _params_outside(act: Activation, role: Role, choices: dict, dtype: str) -> str:
    """The C test that the parameters lie outside the box where the float blocks of ``role``
    hold (the intersection of its kernels' boxes): "p_a != 0.5F" for a parameter certified at its
    default only, "!(p_b >= 0.5F && p_b <= 1.5F)" for a range (NaN fails it); "0" without
    parameters."""
    boxes = [choices[name, dtype].param_box for name in _float_kernels(act, role)
             if choices[name, dtype].float_range is not None]
    tests = []
    for i, p in enumerate(act.params):
        lo = max(box[i][1] for box in boxes) if boxes else act.params[p]
        hi = min(box[i][2] for box in boxes) if boxes else act.params[p]
        tests.append(f"p_{p} != {_float_literal(lo)}" if lo >= hi else
                     f"!(p_{p} >= {_float_literal(lo)} && p_{p} <= {_float_literal(hi)})")
    return " || ".join(tests) or "0"


def _role_bounds(act: Activation, role: Role, kernels: dict, choices: dict, dtype: str) -> tuple[str, str]:
    """The interval a flat loop of ``role`` may compute in float: that of its kernel(s) (for
    forward_deriv, the intersection of the forward's and the derivative's); () where it does not
    apply."""
    used = _float_kernels(act, role)
    if not used or not all(kernels[name].fast for name in used):
        return ()
    ranges = [choices[name, dtype].float_range for name in used]
    return _float_literal(max(r[0] for r in ranges)), _float_literal(min(r[1] for r in ranges))


def banner(spec_display: str, template: str) -> str:
    return f"generated by actgen from {spec_display} and templates/{template}; do not edit"


def render(lowered: Lowered, backend: str | Backend, spec_display: str) -> dict[str, str]:
    """Render every template of ``backend`` for one activation, with the hand-written files its
    sources include: {relative path: text}."""
    backend = BACKENDS[backend] if isinstance(backend, str) else backend
    view = view_model(lowered, backend, spec_display)
    rendered = {path: render_template(template, act=view, banner=banner(spec_display, template))
                for template, path in backend.outputs(lowered.act.name)}
    return rendered | included_files(backend)


def included_files(backend: str | Backend) -> dict[str, str]:
    """{relative path: text} of the hand-written files (actgen/csrc) that ``backend``'s sources include."""
    backend = BACKENDS[backend] if isinstance(backend, str) else backend
    return {path: copied(name) for name, path in backend.included}


def copied(name: str) -> str:
    """A hand-written file of actgen/csrc as written beside generated sources: one line first says
    where it comes from."""
    return f"/* generated by actgen from actgen/csrc/{name} (a copy); do not edit */\n" + csrc_text(name)


def render_units(lowered: Lowered, backend: str | Backend, spec_display: str) -> list[str]:
    """The backend's source as translation units to compile at the same time (``Backend.units``:
    its template rendered once per dtype, each with the prelude); [] where it has none."""
    backend = BACKENDS[backend] if isinstance(backend, str) else backend
    if backend.units is None:
        return []
    view = view_model(lowered, backend, spec_display)
    return [render_template(backend.units, act=replace(view, dtypes=(d,)), banner=banner(spec_display, backend.units))
            for d in view.dtypes]


def cdef(lowered: Lowered, spec_display: str) -> str:
    """The C declarations cffi needs (the prototypes of the header, without preprocessor lines)."""
    view = view_model(lowered, BACKENDS["c"], spec_display)
    return render_template("c/cdef.jinja", act=view)
