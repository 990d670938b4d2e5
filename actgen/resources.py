"""Where the templates are: inside the installed package (actgen.templates, mapped from the
top-level templates/ folder by pyproject.toml), or, when actgen is imported from a source
checkout that was not installed, the checkout's templates/ folder. And where actgen's
hand-written C is: actgen/csrc, inside the package in both cases."""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

from .cache import cache_root


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
    """The Jinja environment of every template (jinja2 is imported on first use).

    Compiled templates are kept in the cache's jinja/ folder: compiling them is a noticeable part
    of every fresh process's first build, loading them is not. Jinja checks each entry against
    its template's source; an entry that cannot be written (a full disk, a read-only cache) only
    costs the next process the compile."""
    import jinja2

    class CompiledTemplates(jinja2.FileSystemBytecodeCache):
        def _get_cache_filename(self, bucket) -> str:
            folder = cache_root() / "jinja"
            folder.mkdir(exist_ok=True)
            return str(folder / (self.pattern % bucket.key))

        def load_bytecode(self, bucket) -> None:
            try:
                super().load_bytecode(bucket)
            except Exception:       # unreadable or damaged (jinja only catches some damage): compile
                bucket.reset()

        def dump_bytecode(self, bucket) -> None:
            try:
                super().dump_bytecode(bucket)
            except OSError:         # the partial file is removed by jinja; the template is compiled
                pass

    return jinja2.Environment(
        loader=jinja2.FunctionLoader(_load_template), bytecode_cache=CompiledTemplates(directory="", pattern="%s.jinja"),
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        keep_trailing_newline=True, autoescape=False)


def render_template(template: str, **context) -> str:
    return environment().get_template(template).render(**context)
