"""``actgen.load``: a spec table -> its built module (from the cache, or built now) -> a
loaded activation object.

Loading an unchanged spec does not import SymPy: the spec table's key (its content, actgen's
own code and templates, the toolchain) is looked up in the cache index, and the built module
is wrapped using the metadata stored beside it.
"""

from __future__ import annotations

import os
import threading

from . import library
from . import threads
from .build import cache_root, import_module_file, indexed_artifact, locked, spec_key, table_origin, write_index
from .errors import ActgenError, ToolchainError, stage, warn_once
from .kinds import GatedActivation, RowwiseActivation
from .runtime import LoadedActivation
from .specfile import find_table, read_spec_text, read_tables, resolve_table

#: the backends ``load`` takes (actgen/backends has their code generators)
BACKEND_NAMES = ("c", "numpy")
_LOADED: dict[str, LoadedActivation] = {}
_LOCK = threading.RLock()


def _after_fork_in_child() -> None:
    global _LOCK
    _LOCK = threading.RLock()       # a load running in another thread of the parent never ends here


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


_CLASSES = {"elementwise": LoadedActivation, "gated": GatedActivation, "rowwise": RowwiseActivation}


def spec_table(name: str, spec) -> tuple[dict, str]:
    """(the table, self-contained (a gate named by a gated table resolved), the spec's path
    for messages)."""
    path = library.display_path(name) if spec is None else str(spec)
    tables = read_tables(library.read(name) if spec is None else read_spec_text(path), path=path)
    find_table(tables, name, path)
    return resolve_table(tables, name, path), path


def load(name: str, spec=None, backend: str = "c") -> LoadedActivation:
    """Load an activation: a built-in (``load("swish")``) or a table of a spec file
    (``load("serf", spec="serf.toml")``), compiling it on first use.

    ``backend="c"`` (C with OpenMP through cffi) or ``"numpy"``. If no C compiler is found,
    the NumPy backend is used and a warning says so (once).
    """
    if backend not in BACKEND_NAMES:
        raise ValueError(f"backend must be one of {', '.join(BACKEND_NAMES)}, not {backend!r}")
    threads.resolve()                       # a bad ACTGEN_NUM_THREADS is said before anything is built
    table, path = spec_table(name, spec)
    return load_table(name, table, path, backend)


def load_table(name: str, table: dict, path: str, backend: str) -> LoadedActivation:
    """The loaded activation of one self-contained table (a spec's, or a derived order's:
    actgen/orders.py), built now if the cache does not have it; ``path`` names its spec in
    messages."""
    key = spec_key(name, table, backend)
    if key in _LOADED:
        return _LOADED[key]
    with _LOCK:
        if key in _LOADED:
            return _LOADED[key]
        artifact = indexed_artifact(key, name)
        if artifact is None:
            # SymPy and the code generators: imported only when the cache does not have it
            from .higher import parse_any
            from .pipeline import build, lower_activation

            with stage("parsing", path=path, activation=name):
                act = parse_any(name, table, path=path)     # an invalid spec fails here, before any lock
            # processes loading the same spec at once take turns: one lowers and builds it, the
            # others then find it in the index (no SymPy), instead of all lowering it in parallel
            with locked(cache_root(), key):
                artifact = indexed_artifact(key, name, warn=False)
                if artifact is None:
                    try:
                        with stage("lowering (derivatives and the choice of stable forms)", path=path,
                                   activation=name):
                            lowered = lower_activation(act)
                        with stage(f"building the {backend} module", path=path, activation=name):
                            artifact = build(act, backend, table_origin(name), lowered)
                    except ToolchainError as exc:
                        if backend != "c":
                            raise
                        warn_once(f"{exc}. Using the NumPy backend instead.")
                        artifact = None
                    else:
                        write_index(key, artifact)
            if artifact is None:
                return load_table(name, table, path, backend="numpy")
        try:
            module = import_module_file(artifact.meta["module"], artifact.module_file)
        except (ImportError, OSError) as exc:
            raise ActgenError(f"the built module {artifact.module_file} cannot be imported ({exc}); remove "
                              f"{artifact.path} and load again to rebuild it") from exc
        with stage("loading the built module", path=path, activation=name):
            loaded = _CLASSES[artifact.meta.get("kind", "elementwise")](artifact.meta, module, backend, table, path,
                                                                         loader=load_table)
        _LOADED[key] = loaded
    return loaded

__all__ = ["load", "load_table", "spec_table", "BACKEND_NAMES"]
