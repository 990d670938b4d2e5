"""`actgen docs`: the generated documentation under docs/.

* docs/activations.md, the catalogue of built-in activations (``actgen.catalogue``), rendered
  from the specs; ``actgen docs --check`` (and tests/test_docs.py) compares it with a fresh
  rendering and prints a unified diff and the command that updates it.
* docs/verification.md, the measured error of every kernel of the library, rendered from the
  results of ``actgen verify`` (``actgen verify --all --orders 3 --markdown docs/verification.md`` runs the
  sweep and writes it; ``actgen docs --verification FILE.json`` renders it from a saved
  ``actgen verify --json`` file without measuring again).

Only the standard library is imported at the top (the CLI imports this module to list verbs).
"""

from __future__ import annotations

import argparse
import difflib
from pathlib import Path

HELP = "write docs/activations.md (the catalogue of built-ins), or check it is up to date"
DESCRIPTION = ("Render docs/activations.md from the built-in specs (actgen/library/*.toml): formula, "
               "derivatives, parameters, kinks and frameworks of every activation. With --check, "
               "compare instead of writing (exit 1 and print a diff if it is out of date). With "
               "--verification FILE.json (from `actgen verify --all --json FILE.json`), also render "
               "verification.md, the measured ULP error of every kernel.")

ACTIVATIONS = "activations.md"
VERIFICATION = "verification.md"
UPDATE_COMMAND = "actgen docs docs"
VERIFY_COMMAND = "actgen verify --all --orders 3 --markdown docs/verification.md"
VERIFICATION_TEMPLATE = "docs/verification.md.jinja"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", nargs="?", default="docs", help="output folder (default: docs)")
    parser.add_argument("--check", action="store_true",
                        help="compare instead of writing; exit 1 and print a diff if they differ")
    parser.add_argument("--verification", metavar="JSON",
                        help="also write verification.md from this `actgen verify --json` file")


def run(args) -> int:
    out = Path(args.dir)
    if args.check:
        problems = check(out)
        for line in problems:
            print(line)
        return 1 if problems else 0
    pages = {ACTIVATIONS: render_activations()}
    if args.verification:
        pages[VERIFICATION] = render_verification(read_verify_json(args.verification),
                                                  f"actgen docs {out} --verification {args.verification}")
    for name, text in pages.items():
        write_page(out / name, text)
        print(f"wrote {out / name}")
    return 0


def write_page(path: Path, text: str) -> None:
    """Write a page (through a temporary file and a rename), creating its folder; an error
    that names the file if that fails."""
    from .build import write_atomic
    from .errors import ActgenError

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, text)
    except OSError as exc:
        raise ActgenError(f"cannot write {path}: {exc.strerror or exc}") from None


# ---- docs/activations.md --------------------------------------------------------------------

def render_activations(names=None) -> str:
    """The text of docs/activations.md (for the built-ins named, default all)."""
    from . import catalogue

    return catalogue.render_markdown(catalogue.build(names))


def check(out: Path, text: str | None = None) -> list[str]:
    """Lines describing how ``out``/activations.md differs from a fresh rendering (empty if not)."""
    text = render_activations() if text is None else text
    path = out / ACTIVATIONS
    if not path.exists():
        problems = [f"missing: {path}"]
    else:
        current = path.read_text(encoding="utf-8")
        if current == text:
            return []
        problems = list(difflib.unified_diff(current.splitlines(), text.splitlines(),
                                             f"{path} (checked in)", f"{ACTIVATIONS} (generator)",
                                             lineterm=""))
    problems.append(f"{path} is out of date; update it with: {UPDATE_COMMAND}")
    return problems


# ---- docs/verification.md ---------------------------------------------------------------------

def read_verify_json(path: str | Path) -> list[dict]:
    """The records of an ``actgen verify --json`` file, with an error that names the file."""
    import json

    from .errors import ActgenError

    try:
        records = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ActgenError(f"{path}: cannot read: {exc.strerror}") from None
    except ValueError as exc:
        raise ActgenError(f"{path}: not a JSON file from `actgen verify --json` ({exc})") from None
    missing = [k for k in ("activation", "backend", "dtype", "kernel", "kind", "max_ulp", "p99_ulp",
                           "budget", "error", "nonfinite_extra", "nonfinite_missing")
               if not isinstance(records, list) or any(not isinstance(r, dict) or k not in r for r in records)]
    if missing or not records:
        raise ActgenError(f"{path}: not the output of `actgen verify --json FILE` "
                          + (f"(records lack {', '.join(missing)})" if missing else "(no records)"))
    return records


def _number(value) -> str:
    value = float(value)
    if value != value:
        return "nan"
    if value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    if value == int(value) and abs(value) < 1e6:
        return str(int(value))
    return f"{value:.3g}"


def _passed(r: dict) -> bool:
    return bool(r.get("passed", float(r["error"]) <= float(r["budget"])
                      and not r["nonfinite_extra"] and not r["nonfinite_missing"]))


def _ratio(r: dict) -> float:
    """error / budget (a budget of 0 means: identical to another kernel's output)."""
    error, budget = float(r["error"]), float(r["budget"])
    return error / budget if budget else (0.0 if error == 0 else float("inf"))


def _row(r: dict) -> dict:
    unit = r.get("unit", "ulp")
    return {"activation": r["activation"], "kernel": r["kernel"], "kind": r["kind"], "dtype": r["dtype"],
            "backend": r["backend"], "points": str(r.get("points", "")), "max": _number(r["max_ulp"]),
            "p99": _number(r["p99_ulp"]),
            "error": _number(r["error"]) + ("" if unit == "ulp" else f" ({unit})"),
            "budget": _number(r["budget"]),
            "nonfinite": f"{r['nonfinite_extra']}/{r['nonfinite_missing']}",
            "worst_x": ("" if r["kind"] == "param_grad" or "worst_x" not in r or not float(r["error"])
                        else f"{float(r['worst_x']):.6g}"),
            "status": "ok" if _passed(r) else "OVER BUDGET"}


def _summary(records: list[dict]) -> list[dict]:
    """Per kernel kind, dtype and backend: the largest error (the budgeted quantity), the
    largest error relative to its budget, and where."""
    groups: dict = {}
    for r in records:
        groups.setdefault((r["kind"], r["dtype"], r["backend"]), []).append(r)
    rows = []
    for (kind, dtype, backend), rs in sorted(groups.items()):
        worst = max(rs, key=lambda r: float(r["error"]))
        tight = max(rs, key=_ratio)
        rows.append({"kind": kind, "dtype": dtype, "backend": backend, "checks": str(len(rs)),
                     "error": _number(worst["error"]), "error_where": f"{worst['activation']} {worst['kernel']}",
                     "ratio": f"{_ratio(tight):.2f}", "ratio_where": f"{tight['activation']} {tight['kernel']}",
                     "nonfinite": str(sum(r["nonfinite_extra"] + r["nonfinite_missing"] for r in rs)),
                     "over": str(sum(not _passed(r) for r in rs))})
    return rows


def _order_rows(records: list[dict]) -> list[dict]:
    """Per activation, dtype, backend and derivative order >= 2 (``actgen verify --orders K``):
    the kernels computing that derivative (the forward kernel of f^(k) and the backward of
    f^(k-1), fused and per-channel variants), their largest plain ULPs and largest error (what
    the budget applies to: conditioned ULPs), the budget and whether every one is within it."""
    groups: dict = {}
    for r in records:
        if (r.get("order") or 0) >= 2:
            groups.setdefault((r.get("of") or r["activation"], r["dtype"], r["backend"], r["order"]), []).append(r)
    rows = []
    for (name, dtype, backend, order), rs in sorted(groups.items()):
        worst = max(rs, key=_ratio)
        rows.append({"activation": name, "dtype": dtype, "backend": backend, "order": str(order),
                     "checks": str(len(rs)), "max": _number(max(float(r["max_ulp"]) for r in rs)),
                     "error": _number(worst["error"]), "budget": _number(worst["budget"]),
                     "where": f"{worst['activation']} {worst['kernel']}",
                     "nonfinite": str(sum(r["nonfinite_extra"] + r["nonfinite_missing"] for r in rs)),
                     "status": "ok" if all(_passed(r) for r in rs) else "OVER BUDGET"})
    return rows


def verify_command(args) -> str:
    """The ``actgen verify`` command line that measures what ``args`` asks for (for the page's
    header: what to run to reproduce it; output options other than --markdown left out)."""
    words = ["actgen verify", *args.spec] + (["--all"] if args.all else [])
    words += [f"--{key} {getattr(args, key)}" for key in ("dtype", "backend") if getattr(args, key) != "both"]
    words += [f"--orders {args.orders}"] * (getattr(args, "orders", 1) > 1)
    words += (["--quick"] if args.quick else []) + [f"--markdown {args.markdown}"]
    return " ".join(words)


def render_verification(records: list[dict], command: str = VERIFY_COMMAND) -> str:
    """docs/verification.md from the records of ``actgen verify --json`` (``Result.as_dict``)."""
    from .catalogue import template_environment

    activations: dict = {}
    for r in records:
        activations.setdefault(r["activation"], []).append(_row(r))
    over = [_row(r) for r in records if not _passed(r)]
    return template_environment().get_template(VERIFICATION_TEMPLATE).render(
        banner=f"generated by `{command}` from templates/{VERIFICATION_TEMPLATE}; do not edit",
        command=command, checks=len(records), dtypes=sorted({r["dtype"] for r in records}),
        backends=sorted({r["backend"] for r in records}), over=over, summary=_summary(records),
        orders=_order_rows(records),
        activations=sorted(activations.items()))

