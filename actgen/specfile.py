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
MAX_TABLES = 256                  # activations in one spec file
_BOM = "\ufeff"


def read_spec_text(path: str | Path) -> str:
    """The text of a spec file, with errors that name it (missing, not a regular file, too large,
    not UTF-8). Never reads more than MAX_SPEC_BYTES + 1 bytes, never opens a FIFO or device
    (which could block or never end). A leading UTF-8 byte order mark is dropped."""
    import stat

    path = Path(path)
    shown = str(path)
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            what = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise SpecError(f"cannot read spec file: it is {what}", path=shown,
                            fix="name a .toml file")
        if st.st_size > MAX_SPEC_BYTES:
            raise SpecError(_too_large(st.st_size), path=shown, fix=_SPLIT)
        with open(path, "rb") as handle:
            raw = handle.read(MAX_SPEC_BYTES + 1)
    except OSError as exc:
        raise SpecError(f"cannot read spec file: {exc.strerror}", path=shown,
                        fix="check the path and its permissions") from None
    if len(raw) > MAX_SPEC_BYTES:       # it grew after stat()
        raise SpecError(_too_large(len(raw)), path=shown, fix=_SPLIT)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"not valid UTF-8 (byte {exc.start})", path=shown,
                        fix="save the file as UTF-8") from None


_SPLIT = "a spec file holds a few activation tables; split a large one into several files"


def _too_large(size: int) -> str:
    return f"the file is {size:,} bytes; a spec file may be at most {MAX_SPEC_BYTES:,}"


def read_tables(text: str, *, path: str) -> dict:
    """The TOML tables of a spec text, unvalidated (cheap: no SymPy)."""
    if text.startswith(_BOM):             # written by some Windows editors; TOML forbids it
        text = text[1:]
    if len(text) > MAX_SPEC_BYTES:
        raise SpecError(_too_large(len(text.encode("utf-8", "surrogatepass"))), path=path, fix=_SPLIT)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"invalid TOML: {exc}", path=path,
                        fix="check the TOML syntax (each activation is a [name] table, given once)") from None
    except (RecursionError, MemoryError):
        raise SpecError("invalid TOML: arrays or tables nested too deeply", path=path,
                        fix="a spec needs no nesting beyond params = { name = value }") from None
    if not data:
        raise SpecError("no activation tables", path=path,
                        fix='add a table such as [myact] with expr = "x * sigmoid(x)"; '
                            "`actgen new myact` prints a template")
    if len(data) > MAX_TABLES:
        raise SpecError(f"{len(data):,} activation tables; a spec file may have at most {MAX_TABLES}",
                        path=path, fix=_SPLIT)
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


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else f"{text[:limit - 12]}...({len(text):,} chars)"


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
    shown = _short(name)
    if "expr" in table:
        raise SpecError("a gated table gives either `gate` (an activation's name) or `expr`, not both",
                        path=path, activation=shown, key="gate", fix="remove `expr` or `gate`")
    if gate == name:
        raise SpecError("a gated activation cannot be its own gate", path=path, activation=shown, key="gate",
                        fix='name an elementwise activation, e.g. gate = "sigmoid"')
    if gate in tables:
        base, where = tables[gate], path
    else:
        from . import library

        if gate not in library.names():
            raise SpecError(f"gate {_short(repr(gate))} is neither a table of this file nor a built-in activation",
                            path=path, activation=shown, key="gate",
                            fix="name a built-in (`actgen list`) or another table of this file")
        where = library.display_path(gate)
        base = read_tables(library.read(gate), path=where)[gate]
    if not isinstance(base, dict) or base.get("kind", "elementwise") != "elementwise" or "gate" in base:
        raise SpecError(f"gate {gate!r} ({where}) is not an elementwise activation", path=path,
                        activation=shown, key="gate", fix='name an elementwise activation, e.g. gate = "sigmoid"')
    merged = {k: v for k, v in base.items() if k in GATE_KEYS and k not in ("output_derivative",
                                                                         "output_derivative_valid")}
    merged.update({k: v for k, v in table.items()})
    merged["kind"] = "gated"
    return merged
