"""Backends. A backend is three things: this small config, a printer, and a folder of templates.

To add one: write a printer (``actgen/printers``), templates (``templates/<backend>/``) and a
``Backend`` here naming them; ``render`` and ``build`` know only this protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..ir import DTYPES
from ..printers.c import KernelCPrinter
from ..printers.numpy import KernelNumPyPrinter


@dataclass(frozen=True)
class Backend:
    name: str
    #: (template, output path) pairs; the output path may use {name}
    templates: tuple[tuple[str, str], ...]
    #: printer for a compute type (and the double-double temporaries of a compensated form;
    #: narrow: double arithmetic for a float32 result, which the C printer uses)
    printer: Callable[..., object]
    #: the compute type used for a dtype's arithmetic
    compute: Callable[[str], str]
    #: Python identifier of a kernel in the built module
    symbol: Callable[[str, str, str], str]

    def outputs(self, name: str) -> list[tuple[str, str]]:
        return [(template, path.format(name=name)) for template, path in self.templates]


C = Backend(
    name="c",
    templates=(("c/activation.c.jinja", "c/{name}.c"), ("c/activation.h.jinja", "c/{name}.h")),
    printer=lambda compute, dd_temps=frozenset(), compensate=False, narrow=False:
        KernelCPrinter(compute, dd_temps, compensate, narrow),
    compute=lambda dtype: DTYPES[dtype][1],
    symbol=lambda act, kernel, dtype: f"actgen_{act}_{kernel}_{DTYPES[dtype][0]}",
)

NUMPY = Backend(
    name="numpy",
    templates=(("numpy/activation.py.jinja", "numpy/{name}.py"),),
    printer=lambda compute, dd_temps=frozenset(), compensate=False, narrow=False:
        KernelNumPyPrinter(dd_temps, compensate),
    compute=lambda dtype: dtype,
    symbol=lambda act, kernel, dtype: f"{kernel}_{DTYPES[dtype][0]}",
)

BACKENDS = {b.name: b for b in (C, NUMPY)}
