"""The built-in activations: spec files in this folder, in the format users write."""

from __future__ import annotations

import difflib
from importlib import resources

from ..errors import UnknownActivationError


def names() -> list[str]:
    """Names of the built-in activations, sorted."""
    return sorted(p.name[:-5] for p in resources.files(__name__).iterdir() if p.name.endswith(".toml"))


def display_path(name: str) -> str:
    """How a built-in's spec is named in generated files and messages."""
    return f"actgen/library/{name}.toml"


def read(name: str) -> str:
    """The spec text of a built-in activation."""
    path = resources.files(__name__) / f"{name}.toml"
    if not name.replace("_", "").isalnum() or not path.is_file():
        close = difflib.get_close_matches(name, names(), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownActivationError(
            f"no built-in activation named {name!r}{hint} (`actgen list` shows them; "
            "for your own, pass spec=\"file.toml\")")
    return path.read_text(encoding="utf-8")
