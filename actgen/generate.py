"""The checked-in generated sources of the built-in library (the top-level generated/ folder).

``actgen generate`` writes them; ``actgen generate --check`` (and a test) compares a fresh
rendering with the folder and prints a unified diff and the command that updates it.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from . import fastcall, library
from .backends import BACKENDS
from .pipeline import lower_activation
from .render import copied, render
from .spec import parse_spec_text

UPDATE_COMMAND = "actgen generate generated"


def render_library(names: list[str] | None = None) -> dict[str, str]:
    """{relative path: text} for every built-in activation (or those named) and every backend,
    and the C fast path of a call (actgen/fastcall.py)."""
    files = {f"{fastcall.GENERATED}/{fastcall.DISPATCH}": fastcall.render_dispatch(),
             f"{fastcall.GENERATED}/{fastcall.SOURCE}": copied(fastcall.SOURCE)}
    for name in library.names() if names is None else names:
        display = library.display_path(name)
        (act,) = parse_spec_text(library.read(name), path=display)
        lowered = lower_activation(act)
        for backend in BACKENDS:
            files.update(render(lowered, backend, display))
    return files


def write(out: Path, files: dict[str, str] | None = None) -> list[Path]:
    """Write the generated sources (``files``, else the library's) under ``out``, removing
    generated files no longer produced."""
    files = render_library() if files is None else files
    written = []
    for rel, text in files.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        written.append(path)
    for stale in _existing(out):
        if stale.relative_to(out).as_posix() not in files:
            stale.unlink()
    return written


def _existing(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.is_file() and p.suffix in (".c", ".h", ".py")]


def check(out: Path, files: dict[str, str] | None = None) -> list[str]:
    """Lines describing every difference between ``out`` and a fresh rendering (``files``, else
    the library's; empty if none)."""
    files = render_library() if files is None else files
    problems = []
    present = {p.relative_to(out).as_posix(): p for p in _existing(out)} if out.exists() else {}
    for rel, text in sorted(files.items()):
        if rel not in present:
            problems.append(f"missing: {out / rel}")
            continue
        current = present[rel].read_text(encoding="utf-8")
        if current != text:
            problems.extend(difflib.unified_diff(current.splitlines(), text.splitlines(),
                                                 f"{out}/{rel} (checked in)", f"{rel} (generator)",
                                                 lineterm=""))
    problems.extend(f"stale (no longer generated): {out / rel}" for rel in sorted(set(present) - set(files)))
    if problems:
        problems.append(f"generated sources are out of date; update them with: {UPDATE_COMMAND}")
    return problems
