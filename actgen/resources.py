"""Where the templates are: inside the installed package (actgen.templates, mapped from the
top-level templates/ folder by pyproject.toml), or, when actgen is imported from a source
checkout that was not installed, the checkout's templates/ folder."""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path


@functools.lru_cache(maxsize=1)
def template_root():
    """A Traversable for the templates folder."""
    try:
        return resources.files("actgen.templates")
    except ModuleNotFoundError:
        checkout = Path(__file__).resolve().parent.parent / "templates"
        if (checkout / "c").is_dir():
            return checkout
        raise
