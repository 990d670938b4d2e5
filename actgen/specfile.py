"""Spec files as TOML tables, without SymPy: reading, decoding, finding a table.

This is all ``actgen.load`` needs when the table was built before (the cache index is keyed
by the table's content), so loading from the cache never imports SymPy. Validation and the
expression parser are in ``spec``.
"""

from __future__ import annotations

import difflib
import tomllib
from pathlib import Path

from .errors import SpecError, UnknownActivationError

MAX_SPEC_BYTES = 1 << 20          # a spec file larger than this is refused unread


def read_spec_text(path: str | Path) -> str:
    """The text of a spec file, with errors that name it (missing, too large, not UTF-8)."""
    path = Path(path)
    shown = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_SPEC_BYTES:
            raise SpecError(f"the file is {size:,} bytes; a spec file may be at most {MAX_SPEC_BYTES:,}",
                            path=shown)
        raw = path.read_bytes()
    except OSError as exc:
        raise SpecError(f"cannot read spec file: {exc.strerror}", path=shown) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"not valid UTF-8 (byte {exc.start})", path=shown,
                        fix="save the file as UTF-8") from None


def read_tables(text: str, *, path: str) -> dict:
    """The TOML tables of a spec text, unvalidated (cheap: no SymPy)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"invalid TOML: {exc}", path=path,
                        fix="check the TOML syntax (each activation is a [name] table)") from None
    if not data:
        raise SpecError("no activation tables", path=path,
                        fix='add a table such as [myact] with expr = "x * sigmoid(x)"; '
                            "`actgen new myact` prints a template")
    return data


def find_table(tables: dict, name: str, path: str) -> dict:
    """The table ``name`` of a spec, or an error listing the names it has."""
    if name in tables:
        return tables[name]
    close = difflib.get_close_matches(name, list(tables), n=1, cutoff=0.6)
    hint = close[0] if close else None
    raise UnknownActivationError(f"{path}: no activation named {name!r}"
                                 + (f"; did you mean {hint!r}?" if hint else "")
                                 + f" (it has: {', '.join(tables)})")


#: Keys a gated table takes from the activation it names as its gate.
GATE_KEYS = ("expr", "params", "learnable", "budgets", "output_derivative", "output_derivative_valid")


def resolve_table(tables: dict, name: str, path: str) -> dict:
    """The table ``name``, self-contained: a gated table that names its gate (gate = "gelu")
    gets the gate's expression, parameters, learnable list and budgets (its own keys win),
    from a table of the same file or else a built-in. The result is what the cache keys on,
    so a change to the gate's table rebuilds the gated activation."""
    table = tables[name]
    if not isinstance(table, dict) or not isinstance(table.get("gate"), str):
        return table
    gate = table["gate"]
    if "expr" in table:
        raise SpecError("a gated table gives either `gate` (an activation's name) or `expr`, not both",
                        path=path, activation=name, key="gate")
    if gate == name:
        raise SpecError("a gated activation cannot be its own gate", path=path, activation=name, key="gate")
    if gate in tables:
        base, where = tables[gate], path
    else:
        from . import library

        if gate not in library.names():
            raise SpecError(f"gate {gate!r} is neither a table of this file nor a built-in activation",
                            path=path, activation=name, key="gate",
                            fix="name a built-in (`actgen list`) or another table of this file")
        where = library.display_path(gate)
        base = read_tables(library.read(gate), path=where)[gate]
    if not isinstance(base, dict) or base.get("kind", "elementwise") != "elementwise" or "gate" in base:
        raise SpecError(f"gate {gate!r} ({where}) is not an elementwise activation", path=path,
                        activation=name, key="gate")
    merged = {k: v for k, v in base.items() if k in GATE_KEYS and k not in ("output_derivative",
                                                                         "output_derivative_valid")}
    merged.update({k: v for k, v in table.items()})
    merged["kind"] = "gated"
    return merged
