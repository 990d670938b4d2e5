"""Activation -> built artifact: lower, render, compile (or write) into the cache."""

from __future__ import annotations

import sysconfig
from pathlib import Path

from .activation import Activation
from .backends import BACKENDS
from .build import FORMAT, Artifact, build_artifact, compile_c, digest, toolchain
from .derive import derive
from .errors import AccuracyError
from .ir import DTYPES, Lowered
from .render import cdef, exported_roles, included_files, render, render_units
from .select import choose_all


def artifact_meta(lowered: Lowered, backend: str, spec_display: str, module: str) -> dict:
    """What the runtime needs to wrap a built module, without SymPy."""
    act = lowered.act
    symbol = BACKENDS[backend].symbol
    return {
        "module": module, "name": act.name,
        "params": [[p, v] for p, v in act.params.items()],  # a list: meta.json sorts dict keys
        "learnable": list(act.learnable),
        "expr_text": act.expr_text, "description": act.description, "spec": spec_display,
        "kind": act.kind, "normalizer": act.normalizer,
        # role -> {dtype: symbol}; the NumPy backend has no _pc functions (its kernels broadcast)
        "functions": {r.name: {dtype: symbol(act.name, r.name, dtype) for dtype in DTYPES}
                      for r in exported_roles(lowered) if backend == "c" or not r.channels},
    }


def _write_sources(tmp: Path, sources: dict[str, str]) -> None:
    for rel, text in sources.items():
        target = tmp / "sources" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")


def build(act: Activation, backend: str, spec_display: str, lowered: Lowered | None = None) -> Artifact:
    """Build (or find in the cache) the module of ``act`` for ``backend`` ("c" or "numpy")."""
    lowered = lowered or lower_activation(act)
    sources = render(lowered, backend, spec_display)
    # the key covers the metadata too: it is what the runtime reads to call the module
    meta = artifact_meta(lowered, backend, spec_display, module="")
    if backend == "c":
        import cffi

        tc = toolchain()
        c_text = sources[f"c/{act.name}.c"]
        included = included_files(backend)         # actgen_math.h: its text is part of the key
        declarations = cdef(lowered, spec_display)
        key = digest({"format": FORMAT, "backend": "c", "source": c_text, "included": included,
                      "cdef": declarations, "meta": meta, "toolchain": tc.identity, "cffi": cffi.__version__,
                      "abi": sysconfig.get_config_var("EXT_SUFFIX")})
        module = f"_actgen_{act.name}_{key[:16]}"

        def make(tmp: Path) -> str:
            _write_sources(tmp, sources)
            for path, text in included.items():     # beside the units, which #include them
                (tmp / Path(path).name).write_text(text, encoding="utf-8")
            return compile_c(module, c_text, declarations, tmp, tc, header=sources[f"c/{act.name}.h"],
                             units=render_units(lowered, backend, spec_display))
    else:
        py_text = sources[f"numpy/{act.name}.py"]
        key = digest({"format": FORMAT, "backend": "numpy", "source": py_text, "meta": meta})
        module = f"_actgen_np_{act.name}_{key[:16]}"

        def make(tmp: Path) -> str:
            _write_sources(tmp, sources)
            (tmp / f"{module}.py").write_text(py_text, encoding="utf-8")
            return f"{module}.py"

    return build_artifact(key, backend, dict(meta, module=module), make)


def lower_activation(act: Activation) -> Lowered:
    """The activation's kernels (derive) and the form chosen for each and each dtype (select);
    AccuracyError if one is over its budget (check_budgets)."""
    kernels = tuple(derive(act))
    choices = choose_all(act, list(kernels))
    check_budgets(act, choices)
    return Lowered(act, kernels, choices)


def check_budgets(act: Activation, choices: dict) -> None:
    """Refuse to generate a kernel that is over its ULP budget: an AccuracyError naming the
    kernel, the dtype, its error (the kernel model's, on the sweep) and the input where it is
    worst, with the fix. Parameter gradients are sums (actgen verify measures their budget on the
    sum, not per element) and a derivative written with the output is measured by actgen verify
    at y = f(x): neither is judged here."""
    over = [c for c in choices.values() if not c.within and c.kernel.kind in ("forward", "backward")]
    if not over:
        return
    worst = max(over, key=lambda c: (c.nonfinite > 0, c.error))
    kind, dtype = worst.kernel.kind, worst.dtype
    budget = act.budget(kind, dtype)
    what = (f"gives NaN or inf where the function is finite (at x = {worst.worst_x:.6g})" if worst.nonfinite
            else f"is {worst.error:.3g} ULP{' (conditioned)' if kind != 'forward' else ''} off at x = "
                 f"{worst.worst_x:.6g}, over its budget of {budget:g}")
    others = "" if len(over) == 1 else f" (and {len(over) - 1} other kernel{'s' * (len(over) > 2)})"
    looser = f"{max(worst.error * 2, budget * 2):.2g}" if not worst.nonfinite else "inf"
    if act.order:       # a derived order's kernels are f^(k) and f^(k+1): budgeted in the spec as such
        k = act.order + (kind == "backward")
        kind = {0: "forward", 1: "backward"}.get(k, f"order{k}")
    raise AccuracyError(
        f"the {dtype} {worst.kernel.name} kernel {what}: no form actgen knows computes it within "
        f"budget there{others}", path=act.source, activation=act.name, key="expr",
        fix=f'rewrite the expression (a stable form of the part that cancels or overflows), or accept it: '
            f'budgets = {{ "{kind}.{dtype}" = {{ ulp = {looser}, reason = "why it cannot be closer" }} }}')
