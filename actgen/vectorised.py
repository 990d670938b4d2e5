"""``actgen vectorised [NAMES] [--march T ...] [--from DIR]``: which SIMD loops of the generated C
gcc vectorises, per loop and target.

Every loop of a kernel source that carries ``#pragma omp simd`` is a kernel loop (the thread
dispatch loops carry ``omp parallel for``). Each source is compiled as a build compiles it, with
``-march=TARGET`` for each target and ``-fopt-info-vec-all``, and gcc's reports are mapped to the
loops by line: a loop is vectorised where gcc says so for it (the width it used), scalar where it
reports the loop could not be (and why). A loop in a row helper is inlined into several functions:
each copy is reported, and a loop some of whose copies stay scalar is "partly". Compiling for
x86-64-v4 (AVX-512) works on any x86-64 host; running it does not, and nothing here runs.

The sources: the built-ins rendered now (what ``actgen build`` compiles on this machine), or the
``NAME.c`` files of a folder (``--from generated/c``: the checked-in library). Output: Markdown
(docs/vectorisation.md is ``actgen vectorised --from generated/c``).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from . import library
from .build import toolchain
from .errors import ActgenError
from .pipeline import lower_activation
from .render import included_files, render
from .spec import parse_spec_text

HELP = "report which SIMD loops of the generated C gcc vectorises, per target"
DESCRIPTION = ("Compile the C kernels of the built-in activations NAMES (default: all) for each -march "
               "target with gcc's -fopt-info-vec-all and print, as Markdown, every SIMD loop "
               "(#pragma omp simd) and whether gcc vectorised it for that target, with the vector width "
               "or the reason it stayed scalar.")
TARGETS = ("x86-64", "x86-64-v3", "x86-64-v4")

_REPORT = re.compile(r"^<stdin>:(\d+):(\d+): (optimized|missed): (.*)$")


class VectorisedError(ActgenError):
    """The vectorisation report cannot be made (no gcc, a missing source)."""


@dataclass
class Loop:
    """A SIMD loop of a source: lines [first, last] (1-based, the pragma to the end of its body)."""

    function: str
    first: int
    last: int
    text: str                                   # its body's first statement
    #: target -> (the vector widths gcc reported vectorising it with, in bytes; how many copies it
    #: gave up on; the reasons it gave)
    outcome: dict = field(default_factory=dict)

    def cell(self, target: str) -> str:
        widths, failed, reasons = self.outcome[target]
        if widths and not failed:
            return f"{max(widths)} B"
        reason = max(set(reasons), key=reasons.count) if reasons else "no reason given"
        if not widths and not failed:
            return "no report"
        return f"partly scalar: {reason}" if widths else f"**scalar**: {reason}"

    def scalar(self, target: str) -> bool:
        widths, failed, _ = self.outcome[target]
        return bool(failed) or not widths


def simd_loops(source: str) -> list[Loop]:
    """The SIMD loops of a C source, with the function each is in."""
    lines = source.splitlines()
    loops, function = [], "?"
    for i, line in enumerate(lines):
        head = re.match(r"^(?:static |inline |ACTGEN_INLINE )*[a-z_0-9]+ \*?(\w+)\(", line)
        if head:
            function = head.group(1)
        if line.strip().startswith("#pragma omp simd"):
            start = i + 1                      # the for line (0-based)
            depth, end = 0, start
            if lines[start].rstrip().endswith("{"):
                for end in range(start, len(lines)):
                    depth += lines[end].count("{") - lines[end].count("}")
                    if depth == 0:
                        break
                body = lines[start + 1]
            else:                              # one statement
                end = start + 1
                while not lines[end].rstrip().endswith(";"):
                    end += 1
                body = lines[start + 1]
            loops.append(Loop(function, i + 1, end + 1, " ".join(body.split())))
    return loops


def _flags(march: str, include: Path) -> list[str]:
    tc = toolchain()
    if "clang" in tc.version.lower():
        raise VectorisedError(f"the vectorisation report reads gcc's -fopt-info-vec; the compiler is {tc.version} "
                              "(set CC=gcc)")
    kept = [f for f in tc.flags if f != "-shared" and not f.startswith(("-march=", "-mprefer-vector-width="))]
    return [*tc.cc, *kept, f"-march={march}", "-fopt-info-vec-all", f"-I{include}", "-x", "c", "-c", "-",
            "-o", "/dev/null"]


def analyse(source: str, include: Path, targets=TARGETS) -> list[Loop]:
    """The SIMD loops of ``source`` (which includes headers from ``include``), each with its outcome
    per target."""
    loops = simd_loops(source)
    for target in targets:
        proc = subprocess.run(_flags(target, include), input=source, capture_output=True, text=True)
        if proc.returncode != 0:
            raise VectorisedError(f"gcc -march={target} failed: {proc.stderr.strip()[-500:]}")
        found = {id(lp): ({}, {}, []) for lp in loops}     # vectorised and given-up anchors, reasons
        for line in proc.stderr.splitlines():
            m = _REPORT.match(line)
            inner = [lp for lp in loops if m and lp.first <= int(m.group(1)) <= lp.last]
            if not inner:
                continue
            vectorised, failed, reasons = found[id(inner[-1])]
            anchor, kind, text = (m.group(1), m.group(2)), m.group(3), m.group(4)
            width = re.match(r"loop vectorized using (\d+) byte vectors", text)
            if kind == "optimized" and width:           # (an epilogue is reported too: a second width)
                vectorised.setdefault(anchor, []).append(int(width.group(1)))
            elif kind == "missed" and text.startswith("couldn't vectorize loop"):
                failed[anchor] = failed.get(anchor, 0) + 1
            elif kind == "missed" and text.startswith("not vectorized: "):
                reasons.append(text.removeprefix("not vectorized: ").rstrip("."))
        for lp in loops:
            # gcc reports each loop at an anchor (line, column): a copy of the SIMD loop (inlined
            # twice, an epilogue) at the same anchor as where it vectorised it; a loop that encloses
            # it (the outlined thread loop) or an OpenMP reduction's own lane loop at another one
            vectorised, failed, reasons = found[id(lp)]
            widths = [w for ws in vectorised.values() for w in ws]
            scalar_copies = sum(failed.get(a, 0) for a in vectorised) if vectorised else sum(failed.values())
            lp.outcome[target] = (widths, scalar_copies, reasons)
    return loops


def _sources(names: list[str], folder: Path | None, tmp: Path) -> tuple[dict[str, str], Path]:
    """({name: C source}, the folder its headers are in)."""
    if folder is not None:
        missing = [n for n in names if not (folder / f"{n}.c").is_file()]
        if missing:
            raise VectorisedError(f"{folder}: no {missing[0]}.c; give a folder of generated C (generated/c) or "
                                  "leave out --from")
        return {n: (folder / f"{n}.c").read_text(encoding="utf-8") for n in names}, folder
    for path, text in included_files("c").items():
        (tmp / Path(path).name).write_text(text, encoding="utf-8")
    sources = {}
    for name in names:
        (act,) = parse_spec_text(library.read(name), path=library.display_path(name))
        sources[name] = render(lower_activation(act), "c", library.display_path(name))[f"c/{name}.c"]
    return sources, tmp


def report(names: list[str], targets=TARGETS, folder: Path | None = None) -> str:
    """The Markdown report of ``names``' SIMD loops for ``targets``."""
    with tempfile.TemporaryDirectory(prefix="actgen-vectorised-") as tmp:
        sources, include = _sources(names, folder, Path(tmp))
        with ThreadPoolExecutor(2) as pool:
            results = dict(zip(sources, pool.map(lambda s: analyse(s, include, targets), sources.values())))
    tc = toolchain()
    origin = (f"the sources in {folder}" if folder is not None else "the built-ins as this machine renders them")
    out = ["# Which kernel loops vectorise", "",
           f"`actgen vectorised{' --from ' + str(folder) if folder is not None else ''}` ({origin}; "
           f"{tc.version}): every SIMD loop (`#pragma omp simd`) of the C kernels, compiled as `actgen build` "
           "compiles them but with `-march=TARGET` and gcc's `-fopt-info-vec-all`. A cell gives the vector "
           "width gcc used, or why the loop stayed scalar; a row helper's loop is inlined into several "
           "functions and counted once, \"partly\" where some of its copies stayed scalar. Nothing is run: "
           "x86-64-v4 (AVX-512) compiles on any host.", "",
           "| target | SIMD loops | vectorised | partly or scalar |", "|---|---:|---:|---:|"]
    every = [(n, lp) for n, loops in results.items() for lp in loops]
    for t in targets:
        bad = sum(lp.scalar(t) for _, lp in every)
        out.append(f"| {t} | {len(every)} | {len(every) - bad} | {bad} |")
    header = "| activation | function | loop | " + " | ".join(targets) + " |"
    rule = "|---|---|---|" + "---|" * len(targets)
    scalar = [(n, lp) for n, lp in every if any(lp.scalar(t) for t in targets)]
    out += ["", "## Loops that stay scalar somewhere", ""]
    out += ([header, rule] + [_row(n, lp, targets) for n, lp in scalar]) if scalar else ["None."]
    out += ["", "## Every loop", "", header, rule] + [_row(n, lp, targets) for n, lp in every]
    return "\n".join(out) + "\n"


def _row(name: str, loop: Loop, targets) -> str:
    text = (loop.text if len(loop.text) <= 70 else loop.text[:67] + "...").replace("|", "\\|")
    return (f"| {name} | `{loop.function}` | line {loop.first}: `{text}` | "
            + " | ".join(loop.cell(t) for t in targets) + " |")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="*", help="built-in activations (default: all)")
    parser.add_argument("--march", action="append", metavar="TARGET",
                        help=f"a gcc -march target, repeatable (default: {', '.join(TARGETS)})")
    parser.add_argument("--from", dest="folder", metavar="DIR", type=Path,
                        help="read NAME.c from DIR (e.g. generated/c) instead of rendering the built-ins")


def run(args) -> int:
    names = args.names or library.names()
    unknown = [n for n in names if n not in library.names()]
    if unknown:
        raise VectorisedError(f"no built-in activation {unknown[0]!r}; actgen list shows them")
    print(report(names, tuple(args.march or TARGETS), args.folder), end="")
    return 0
