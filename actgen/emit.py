"""``actgen emit SPEC [NAMES...] --c DIR``: standalone C sources to vendor.

For each activation it writes ``NAME.h`` (documented prototypes, parameter defaults, C++
guards), ``NAME.c`` (the same kernels the cffi build compiles: templates/c/activation.c.jinja
included by templates/c/standalone.c.jinja) and ``NAME_example.c`` (a ``main`` printing a few
values), and once for all of them ``actgen_math.h`` and ``actgen_dd.h`` (actgen's math helpers and
double-double math, actgen/csrc, which NAME.c includes). C99 and libm only; the OpenMP pragmas compile away without -fopenmp. Every
kind is covered: elementwise (with the per-channel ``_pc`` functions), gated and rowwise.

Files are rendered in memory first (a bad spec writes nothing), then written into a temporary
folder beside their destination and renamed into place; existing files are kept unless
``--force``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from .errors import ActgenError

HELP = "write standalone C sources (NAME.h, NAME.c, NAME_example.c, actgen_math.h, actgen_dd.h) to vendor"
DESCRIPTION = ("Write self-contained C99 sources for every activation of SPEC (a .toml file or a "
               "built-in name), or only the NAMES given: NAME.h and NAME.c with the forward, backward "
               "and parameter-gradient functions for float and double (OpenMP pragmas that compile "
               "away without -fopenmp; no Python, no cffi), NAME_example.c, a main printing a few "
               "values, and actgen_math.h and actgen_dd.h, the math helpers NAME.c includes. The build command is in "
               "each file's first comment.")

#: The example's inputs: both sides of 0, the kink, and a few magnitudes (8 values: a gated
#: activation sees them as one (2, 4) input, a rowwise one as one row).
EXAMPLE_X = (-4.0, -1.5, -0.5, 0.0, 0.25, 1.0, 2.0, 3.0)
EXAMPLE_DY = (1.0, -0.5, 2.0, 1.0, 0.75, -1.0, 0.5, 1.25)


def build_command(name: str) -> str:
    return f"gcc -O2 -fopenmp -std=c99 {name}.c {name}_example.c -lm -o {name}_example"


def c_literal(value: float) -> str:
    """A C double constant that reads back as exactly ``value`` (INFINITY and NAN from math.h)."""
    text = repr(float(value))
    special = {"inf": "INFINITY", "-inf": "(-INFINITY)", "nan": "NAN"}
    if text in special:
        return special[text]
    return text if any(c in text for c in ".e") else text + ".0"


def c_string(text: str) -> str:
    """A C string literal (for printf's format: % doubled)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return '"' + "".join(chr(b) if 32 <= b < 127 else f"\\{b:03o}" for b in escaped.encode("utf-8")) + '"'


def role_docs(kind: str, normalizer: str, roles) -> dict[str, str]:
    """One comment per exported role: what it computes, in the header."""
    docs = {}
    for r in roles:
        pc = " Per channel: one parameter value per channel, x seen as (outer, channels, inner)." \
            if r.channels else ""
        if kind == "gated":
            text = {"forward": "out[o, j] = a[o, j] * f(b[o, j]), in = (outer, 2, half), out = (outer, half)",
                    "backward": "grad_in = [da, db]: da = dy * f(b), db = dy * a * f'(b), grad_out = (outer, half)",
                    "grad": f"returns sum(dy * a * df(b)/d{r.param})"}[r.loop]
        elif kind == "rowwise":
            text = {"forward": f"out = {normalizer}(f(in)) along each row of n",
                    "backward": "grad_in = the vector-Jacobian product of the row function with grad_out",
                    "backward_y": "grad_in from the saved output (out of forward) instead of the input",
                    "grad": f"returns the gradient of sum(grad_out * out) with respect to {r.param}"}[r.loop]
        else:
            text = {"forward": "out[i] = f(in[i])",
                    "backward": "grad_in[i] = grad_out[i] * f'(in[i])",
                    "backward_y": "grad_in[i] = grad_out[i] * f'(x) written with the saved output out[i] = f(x)"
                                  " (valid where backward_y_valid(params) is 1)",
                    "valid": "1 if backward_y holds for these parameter values, else 0",
                    "forward_deriv": "out[i] = f(in[i]) and deriv[i] = f'(in[i]) in one pass",
                    "grad": (f"acc[c] = sum over channel c of grad_out * df/d{r.param}" if r.channels
                             else f"returns sum(grad_out[i] * df/d{r.param}(in[i])), accumulated in double")}[r.loop]
        docs[r.name] = text + pc
    return docs


def render_standalone(lowered, spec_display: str) -> dict[str, str]:
    """{file name: text} for one lowered activation, with the hand-written headers its .c includes."""
    from .backends import BACKENDS
    from .render import banner, included_files, render_template, view_model

    view = view_model(lowered, BACKENDS["c"], spec_display)
    name = view.name
    expr_line = " ".join(view.expr_text.split()).replace("*/", "* /")
    title = {"gated": f"{name}: gate f(b) = {expr_line}, y = a * f(b)",
             "rowwise": f"{name}: {view.normalizer} of s(x) = {expr_line} along the row"}.get(
        view.kind, f"{name}(x) = {expr_line}")
    title += "" + "".join(f"{'; ' if i == 0 else ', '}{p} = {v!r}"
                                         for i, (p, v) in enumerate(view.params))
    context = dict(act=view, build_command=build_command(name), expr_line=expr_line,
                   title=c_string(title + "\n"),
                   defaults=[(p, c_literal(v)) for p, v in view.params],
                   role_docs=role_docs(view.kind, view.normalizer, view.dtypes[0].roles),
                   xs=[c_literal(v) for v in EXAMPLE_X], dys=[c_literal(v) for v in EXAMPLE_DY])
    out = {}
    for template, path in (("c/standalone.h.jinja", f"{name}.h"), ("c/standalone.c.jinja", f"{name}.c"),
                           ("c/example.c.jinja", f"{name}_example.c")):
        # the .c includes activation.c.jinja, whose banner names that template
        shown = "c/activation.c.jinja" if path == f"{name}.c" else template
        out[path] = render_template(template, banner=banner(spec_display, shown), **context)
    out.update((Path(path).name, text) for path, text in included_files("c").items())
    return out


def write_tree(directory: Path, files: dict[str, str], force: bool) -> list[Path]:
    """Write ``files`` ({name: text}) into ``directory``, all or nothing as far as the file system
    allows: every file goes to a temporary folder beside ``directory`` first, then each is renamed
    into place. Raises EmitError, before writing anything, if a file exists with other content and
    not ``force`` (one with the same content, actgen_math.h of an earlier emit, is no conflict)."""
    existing = [directory / name for name in files
                if (directory / name).exists() and not _holds(directory / name, files[name])]
    if existing and not force:
        raise EmitError(f"{existing[0]} exists ({len(existing)} of the {len(files)} files do); "
                        "pass --force to overwrite, or choose another --c folder")
    if directory.exists() and not directory.is_dir():
        raise EmitError(f"{directory} exists and is not a folder")
    parent = directory.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".tmp", dir=parent))
    except OSError as exc:
        raise EmitError(f"cannot write under {parent}: {exc.strerror or exc}") from None
    try:
        for name, text in files.items():
            (tmp / name).write_text(text, encoding="utf-8")
        if not directory.exists():
            try:
                os.rename(tmp, directory)      # the whole folder appears at once
                return [directory / name for name in files]
            except OSError:
                directory.mkdir(parents=True, exist_ok=True)   # created meanwhile: move file by file
        for name in files:
            os.replace(tmp / name, directory / name)
        return [directory / name for name in files]
    except OSError as exc:
        raise EmitError(f"cannot write {directory}: {exc.strerror or exc}") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _holds(path: Path, text: str) -> bool:
    try:
        return path.is_file() and path.read_text(encoding="utf-8") == text
    except (OSError, UnicodeDecodeError):
        return False


class EmitError(ActgenError):
    """``actgen emit`` cannot write its output (an existing file, the folder)."""


def emit(spec: str, names: list[str] | None, directory, force: bool = False) -> list[Path]:
    """Render and write the standalone sources of ``spec``'s activations (or ``names`` of them)
    into ``directory``. Returns the files written."""
    from . import library
    from .errors import UnknownActivationError
    from .pipeline import lower_activation
    from .spec import parse_table
    from .specfile import read_spec_text, read_tables, resolve_table

    if spec.endswith(".toml") or Path(spec).exists():
        display, path, text = Path(spec).name, spec, read_spec_text(spec)
    else:
        display = path = library.display_path(spec)
        text = library.read(spec)
    tables = read_tables(text, path=path)
    wanted = list(names or tables)
    for name in wanted:
        if name not in tables:
            raise UnknownActivationError(f"{path}: no activation [{name}]; it has: {', '.join(tables)}")
    # every table parsed before anything is written: an invalid one stops the emit with nothing half-done
    activations = [parse_table(name, resolve_table(tables, name, path), path=path) for name in tables]
    files: dict[str, str] = {}
    for act in activations:
        if act.name in wanted:
            files.update(render_standalone(lower_activation(act), display))
    return write_tree(Path(directory), files, force)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", help="a spec file (.toml) or a built-in name")
    parser.add_argument("names", nargs="*", help="activations of the spec file to emit (default: all)")
    parser.add_argument("--c", dest="c_dir", metavar="DIR", required=True,
                        help="folder for NAME.h, NAME.c, NAME_example.c, actgen_math.h and actgen_dd.h (created if missing)")
    parser.add_argument("--force", action="store_true", help="overwrite existing files")


def run(args) -> int:
    written = emit(args.spec, args.names, args.c_dir, force=args.force)
    for path in written:
        print(path)
    for path in written:
        if path.name.endswith("_example.c"):
            name = path.name[:-len("_example.c")]
            print(f"build the example: cd {path.parent} && {build_command(name)} && ./{name}_example",
                  file=sys.stderr)
    return 0
