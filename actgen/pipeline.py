"""Activation -> built artifact: lower, render, compile (or write) into the cache."""

from __future__ import annotations

import sysconfig
from pathlib import Path

from .activation import Activation
from .build import FORMAT, Artifact, build_artifact, compile_c, digest, toolchain
from .render import Lowered, cdef, exported_roles, included_files, lower_activation, render, render_units


def artifact_meta(lowered: Lowered, backend: str, spec_display: str, module: str) -> dict:
    """What the runtime needs to wrap a built module, without SymPy."""
    from .backends import BACKENDS, DTYPES

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
