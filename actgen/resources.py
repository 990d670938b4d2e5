"""Where the templates are: inside the installed package (actgen.templates, mapped from the
top-level templates/ folder by pyproject.toml), or, when actgen is imported from a source
checkout that was not installed, the checkout's templates/ folder. And where actgen's
hand-written C is: actgen/csrc, inside the package in both cases."""

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


def csrc_root() -> Path:
    """The folder of actgen's hand-written C (headers the generated kernels include, the fast-call
    extension): a directory on disk, which a compiler can be pointed at."""
    return Path(__file__).resolve().parent / "csrc"


def csrc_text(name: str) -> str:
    return (csrc_root() / name).read_text(encoding="utf-8")


def _load_template(name: str) -> str:
    return (template_root() / name).read_text(encoding="utf-8")


@functools.lru_cache(maxsize=1)
def environment():
    """The Jinja environment of every template (jinja2 is imported on first use)."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FunctionLoader(_load_template),
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        keep_trailing_newline=True, autoescape=False)


def render_template(template: str, **context) -> str:
    return environment().get_template(template).render(**context)
