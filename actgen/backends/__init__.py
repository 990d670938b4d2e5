"""Backends. A backend is three things: this small config, a printer, and a folder of templates.

To add one: write a printer (``actgen/printers``), templates (``templates/<backend>/``) and a
``Backend`` here naming them; ``render`` and ``build`` know only this protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..ir import DTYPES
from ..printers.c import KernelCPrinter
from ..printers.dd import KernelDDPrinter
from ..printers.numpy import KernelMpmathPrinter, KernelNumPyPrinter


@dataclass(frozen=True)
class Backend:
    name: str
    #: (template, output path) pairs; the output path may use {name}
    templates: tuple[tuple[str, str], ...]
    #: printer for a compute type (and the double-double temporaries of a compensated form;
    #: narrow: double arithmetic for a float32 result)
    printer: Callable[..., object]
    #: the compute type of a dtype's arithmetic (the printer of conditions on the parameters)
    compute: Callable[[str], str]
    #: the compute type of a kernel's chosen form (a select.Choice)
    kernel_compute: Callable[[object], str]
    #: Python identifier of a kernel in the built module
    symbol: Callable[[str, str, str], str]
    #: the flat loops compute the blocks of inputs inside a float32 kernel's float interval in
    #: float (select.Choice.float_range), the others with its double form
    float_blocks: bool = False
    #: compensated float32 forms computed in float, with float-float arguments (else the form's
    #: double fallback)
    float_float: bool = False
    #: hand-written files (actgen/csrc) the sources include: (file name, output path), written
    #: beside them (generated/, the build, `actgen emit`)
    included: tuple[tuple[str, str], ...] = ()
    #: a template rendered once per dtype as the translation units compiled at the same time
    units: str | None = None

    def outputs(self, name: str) -> list[tuple[str, str]]:
        return [(template, path.format(name=name)) for template, path in self.templates]


C = Backend(
    name="c",
    templates=(("c/activation.c.jinja", "c/{name}.c"), ("c/activation.h.jinja", "c/{name}.h")),
    # "wide": the form in double-double (actgen_dd.h), every temporary an actgen_dd
    printer=lambda compute, dd_temps=frozenset(), compensate=False, narrow=False:
        KernelDDPrinter(dd_temps) if compute == "wide" else KernelCPrinter(compute, dd_temps, compensate, narrow),
    compute=lambda dtype: DTYPES[dtype][1],
    # float32 in float where selection measured it so, with actgen's own float helpers
    kernel_compute=lambda choice: choice.c_compute,
    symbol=lambda act, kernel, dtype: f"actgen_{act}_{kernel}_{DTYPES[dtype][0]}",
    float_blocks=True,
    float_float=True,
    included=(("actgen_math.h", "c/actgen_math.h"), ("actgen_dd.h", "c/actgen_dd.h")),
    units="c/activation.c.jinja",
)

NUMPY = Backend(
    name="numpy",
    templates=(("numpy/activation.py.jinja", "numpy/{name}.py"),),
    # NumPy computes float32 in double where a C kernel would use float32-result helpers
    printer=lambda compute, dd_temps=frozenset(), compensate=False, narrow=False:
        KernelMpmathPrinter() if compute == "wide" else KernelNumPyPrinter(dd_temps, compensate),
    compute=lambda dtype: dtype,
    kernel_compute=lambda choice: choice.compute,
    symbol=lambda act, kernel, dtype: f"{kernel}_{DTYPES[dtype][0]}",
)

BACKENDS = {b.name: b for b in (C, NUMPY)}
