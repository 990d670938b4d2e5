"""The functions a built module exports, by role: one list for the templates, the cffi
declarations, the metadata and the runtime, so that they cannot disagree.

Roles (per dtype), with the loops they run over the per-element kernels of ``derive``:

elementwise
  forward            y = f(x)
  backward           dx = dy * f'(x)
  backward_y         dx = dy * f'(x) from the saved output y (if the spec gives output_derivative)
  backward_y_valid   whether backward_y holds for given parameters (output_derivative_valid)
  forward_deriv      y = f(x) and d = f'(x) in one pass (a training loop keeps d, not x)
  grad_<p>           sum(dy * df/dp) for a learnable p
  forward_pc, backward_pc, grad_<p>_pc
                     the same with per-channel parameters: arrays of ``channels`` values, x
                     seen as (outer, channels, inner) (only for activations with parameters)
gated                x seen as (outer, 2, half): a = x[:, 0], b = x[:, 1]; y = a * f(b)
  forward, backward (da and db in one pass), grad_<p>
rowwise              x seen as (rows, n), a row contiguous; s = f(x) along the row
  forward, backward, backward_y (if f' does not depend on x), grad_<p>
"""

from __future__ import annotations

from dataclasses import dataclass, replace

#: The loops whose output may be one of their inputs, per kind: the runtime hands out= through when
#: it is x, dy or the saved y itself (actgen/runtime.py's in_place targets; any other overlap goes
#: through a temporary), and fastcall's entries do the same. Each of these loops reads element i
#: (for rowwise: every element of a row) of its inputs before it writes element i, and its C
#: pointers are not `restrict` (an alias through two restrict pointers is undefined behaviour, and
#: gcc's code for a float64 softmax row computed in place was wrong). The other loops' outputs
#: never share memory with their inputs: their pointers are `restrict`.
IN_PLACE = {"elementwise": frozenset({"forward", "backward", "backward_y"}),
            "gated": frozenset(),
            "rowwise": frozenset({"forward", "backward_y"})}


@dataclass(frozen=True)
class Role:
    name: str          # forward, grad_alpha_pc, ...
    loop: str          # which loop template: forward, backward, backward_y, forward_deriv, grad, valid
    kernel: str = ""   # the per-element kernel it evaluates (for grad: grad_<p>)
    param: str = ""    # grad: the parameter
    channels: bool = False
    in_place: bool = False   # its output may be one of its inputs (IN_PLACE)


def roles(kind: str, kernel_names: list[str], params: list[str], learnable: list[str]) -> list[Role]:
    """The exported functions of an activation of ``kind`` whose per-element kernels are
    ``kernel_names`` (forward, backward, [backward_y], grad_<p>...)."""
    out = [Role("forward", "forward", "forward"), Role("backward", "backward", "backward")]
    has_y = "backward_y" in kernel_names
    if kind == "elementwise":
        if has_y:
            out += [Role("backward_y", "backward_y", "backward_y"), Role("backward_y_valid", "valid")]
        out.append(Role("forward_deriv", "forward_deriv", "forward"))
    elif kind == "rowwise" and has_y:
        out.append(Role("backward_y", "backward_y", "backward_y"))
    out += [Role(f"grad_{p}", "grad", f"grad_{p}", p) for p in learnable]
    if kind == "elementwise" and params:
        out += [Role("forward_pc", "forward", "forward", channels=True),
                Role("backward_pc", "backward", "backward", channels=True)]
        out += [Role(f"grad_{p}_pc", "grad", f"grad_{p}", p, channels=True) for p in learnable]
    return [replace(r, in_place=r.loop in IN_PLACE[kind]) for r in out]
