"""Code printers: SymPy's own printers, subclassed where a kernel needs something else."""

from __future__ import annotations

import mpmath
import sympy as sp


def decimal_literal(value: sp.Expr, digits: int = 21) -> str:
    """A decimal literal of ``value`` with ``digits`` significant digits (always has . or e).

    21 digits are enough for the compiler (or NumPy) to round it correctly to float or double.
    """
    with mpmath.workdps(digits + 10):
        text = mpmath.nstr(mpmath.mpf(sp.Float(value, digits + 10)._mpf_), digits,
                           min_fixed=-5, max_fixed=22, strip_zeros=True)
    if "." not in text and "e" not in text:
        text += ".0"
    return text
