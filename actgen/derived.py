"""Elementwise activations derived from a loaded one for the framework wrappers' higher
derivatives (actgen/torch_ops.py), beside the derivatives in x (``act.derivative_activation``,
actgen/orders.py): the partial derivative with respect to a parameter, and the output
derivative h (f'(x) = h(f(x))) as a function of its own.

Each is written as a spec table (the expression printed by SymPy, the parameters and learnable
names of the original) into ``<cache>/derived/<digest>.toml`` and loaded by ``actgen.load``: so
it goes through the same parsing, stable-form selection, rendering, verification of its build
and content-keyed cache as any spec, and a second process finds it built. SymPy is imported on
first use only (these are asked for by a double backward, never by a first-order one).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from .build import cache_root
from .loading import load


def _table(act, expr) -> dict:
    return {"expr": str(expr), "params": dict(act.params), "learnable": list(act.learnable),
            "description": f"derived from {act.name} for a higher derivative"}


def _toml(name: str, table: dict) -> str:
    # json.dumps writes valid TOML basic strings and floats (the parameters are finite)
    lines = [f"[{json.dumps(name)}]", f"expr = {json.dumps(table['expr'])}"]
    if table["params"]:
        lines.append("params = { " + ", ".join(f"{json.dumps(p)} = {float(v)!r}" for p, v in table["params"].items())
                     + " }")
    lines.append("learnable = [" + ", ".join(json.dumps(p) for p in table["learnable"]) + "]")
    lines.append(f"description = {json.dumps(table['description'])}")
    return "\n".join(lines) + "\n"


def load_expression(act, suffix: str, expr):
    """The elementwise activation ``expr`` (SymPy, in x and act's parameters), named
    ``<act.name>__<suffix>``, built with act's backend."""
    name = f"{act.name}__{suffix}"
    text = _toml(name, _table(act, expr))
    folder = Path(cache_root()) / "derived"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{hashlib.sha256(text.encode()).hexdigest()[:24]}.toml"
    if not path.exists():
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)                      # whole or absent, also with processes racing
    return load(name, spec=path, backend=act.backend)


def param_derivative_activation(act, param: str):
    """d act / d param as an elementwise activation of x (same parameters, same learnable)."""
    from .derive import differentiate
    from .ir import param_symbol

    return load_expression(act, f"d_{param}", differentiate(act.expr, param_symbol(param)))


def output_derivative_activation(act):
    """h with act'(x) = h(act(x)): the spec's ``output_derivative``, y renamed x."""
    from .ir import X, Y

    return load_expression(act, "dy", act.activation.output_derivative.xreplace({Y: X}))


def score_slope(act, params: dict) -> float:
    """s'(x) of a rowwise activation whose score is linear in x (where it saves its output):
    a number for these parameter values."""
    from .derive import differentiate
    from .ir import X, param_symbol

    slope = differentiate(act.expr, X).subs({param_symbol(p): v for p, v in {**act.params, **params}.items()})
    return float(slope)


__all__ = ["load_expression", "param_derivative_activation", "output_derivative_activation", "score_slope"]
