"""Loaded callables: ``actgen.load(...)`` and the activation object it returns.

Loading an unchanged spec does not import SymPy: the spec table's key (its content, actgen's
own code and templates, the toolchain) is looked up in the cache index, and the built module
is wrapped using the metadata stored beside it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import library
from .build import (ActgenWarning, import_module_file, lookup_artifact, read_index, spec_key, warn_once,
                    write_index)
from .errors import KernelArgumentError, ToolchainError
from .specfile import find_table, read_spec_text, read_tables

BACKENDS = ("c", "numpy")
_FLOAT_TAGS = {np.dtype(np.float32): "float32", np.dtype(np.float64): "float64"}
_LOADED: dict[str, "Activation"] = {}


class _CKernels:
    """Calls into a cffi module: arrays become pointers, parameters C scalars."""

    def __init__(self, module, meta):
        self.ffi, lib = module.ffi, module.lib
        self.fn = {(k["name"], dtype): getattr(lib, symbol)
                   for k in meta["kernels"] for dtype, symbol in k["symbols"].items()}
        self.ctype = {"float32": "float[]", "float64": "double[]"}

    def forward(self, dtype, x, y, params):
        buf = self.ffi.from_buffer
        ct = self.ctype[dtype]
        self.fn["forward", dtype](buf(ct, x), buf(ct, y, require_writable=True), x.size, *params)

    def backward(self, dtype, x, dy, dx, params):
        buf = self.ffi.from_buffer
        ct = self.ctype[dtype]
        self.fn["backward", dtype](buf(ct, x), buf(ct, dy), buf(ct, dx, require_writable=True),
                                   x.size, *params)

    def grad(self, dtype, name, x, dy, params) -> float:
        buf = self.ffi.from_buffer
        ct = self.ctype[dtype]
        return self.fn[name, dtype](buf(ct, x), buf(ct, dy), x.size, *params)


class _NumPyKernels:
    """Calls the generated NumPy module; IEEE results without warnings, like the C kernels."""

    def __init__(self, module, meta):
        self.fn = {(k["name"], dtype): getattr(module, symbol)
                   for k in meta["kernels"] for dtype, symbol in k["symbols"].items()}

    @staticmethod
    def _scalars(dtype, params):
        t = np.dtype(dtype).type
        return [t(p) for p in params]

    def forward(self, dtype, x, y, params):
        with np.errstate(all="ignore"):
            y[...] = self.fn["forward", dtype](x, *self._scalars(dtype, params))

    def backward(self, dtype, x, dy, dx, params):
        with np.errstate(all="ignore"):
            dx[...] = self.fn["backward", dtype](x, dy, *self._scalars(dtype, params))

    def grad(self, dtype, name, x, dy, params) -> float:
        with np.errstate(all="ignore"):
            return float(self.fn[name, dtype](x, dy, *self._scalars(dtype, params)))


def _exact_alias(a: np.ndarray, b: np.ndarray) -> bool:
    return (a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
            and a.shape == b.shape and a.strides == b.strides)


class Activation:
    """A compiled activation: ``act(x, **params)``, ``act.backward(x, dy, **params)``,
    ``act.param_grads(x, dy, **params)``.

    Inputs of any shape; float32 and float64 keep their dtype, float16 is computed in float32,
    integers and booleans are converted to float64 (as NumPy's ufuncs do); anything else is
    rejected. Non-contiguous inputs are copied. ``out=`` may be the input itself (in place).
    Parameters left out take their defaults.
    """

    def __init__(self, meta: dict, module, backend: str, table: dict, spec_path: str):
        self.name: str = meta["name"]
        self.params: dict[str, float] = {p: v for p, v in meta["params"]}
        self.learnable: tuple[str, ...] = tuple(meta["learnable"])
        self.description: str = meta["description"]
        self.expr_text: str = meta["expr_text"]
        self.backend = backend
        self.meta = meta
        self._table, self._spec_path = table, spec_path
        self._kernels = (_CKernels if backend == "c" else _NumPyKernels)(module, meta)
        self._activation = None

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"<actgen activation {self.name}({params}) = {self.expr_text} [{self.backend}]>"

    # symbolic view (imports SymPy on first use) -------------------------------------------
    @property
    def activation(self):
        """The parsed ``actgen.activation.Activation`` (SymPy expression, parameters)."""
        if self._activation is None:
            from .spec import parse_table

            self._activation = parse_table(self.name, self._table, path=self._spec_path)
        return self._activation

    @property
    def expr(self):
        """The activation as a SymPy expression in ``x`` and the parameter symbols."""
        return self.activation.expr

    # argument handling -------------------------------------------------------------------
    def _array(self, value, what: str):
        a = np.asarray(value)
        dt = a.dtype
        if dt in _FLOAT_TAGS:
            result = dt
        elif dt == np.float16:
            result = dt
            dt = np.dtype(np.float32)
        elif dt.kind in "iub":
            result = dt = np.dtype(np.float64)
        else:
            raise KernelArgumentError(
                f"{self.name}: {what} has dtype {a.dtype}, which has no kernel; pass float32 or "
                "float64 (float16, integers and booleans are converted)")
        return np.asarray(a, dtype=dt, order="C"), result  # (ascontiguousarray makes 0-d 1-d)

    def _param_values(self, given: dict) -> tuple[float, ...]:
        if given:
            unknown = [k for k in given if k not in self.params]
            if unknown:
                names = ", ".join(self.params) or "none"
                raise KernelArgumentError(f"{self.name}() got unknown parameter(s) {', '.join(unknown)}; "
                                          f"its parameters are: {names}")
        values = []
        for p, default in self.params.items():
            v = given.get(p, default)
            if np.ndim(v) != 0:
                raise KernelArgumentError(f"{self.name}: parameter {p} must be a scalar, got shape "
                                          f"{np.shape(v)}")
            try:
                values.append(float(v))
            except (TypeError, ValueError):
                raise KernelArgumentError(f"{self.name}: parameter {p} must be a real number, got {v!r}") from None
        return tuple(values)

    def _target(self, out, shape, compute, result, inputs):
        """(array the kernel writes, array to copy it into afterwards or None)."""
        if out is None:
            return np.empty(shape, compute), None
        if not isinstance(out, np.ndarray):
            raise KernelArgumentError(f"{self.name}: out= must be a numpy array, got {type(out).__name__}")
        if out.shape != shape:
            raise KernelArgumentError(f"{self.name}: out= has shape {out.shape}, expected {shape}")
        if out.dtype != result:
            raise KernelArgumentError(f"{self.name}: out= has dtype {out.dtype}, expected {result}")
        if not out.flags.writeable:
            raise KernelArgumentError(f"{self.name}: out= is read-only")
        direct = out.dtype == compute and out.flags.c_contiguous and not any(
            np.may_share_memory(out, a) and not _exact_alias(out, a) for a in inputs)
        return (out, None) if direct else (np.empty(shape, compute), out)

    @staticmethod
    def _finish(y, copy_to, result, scalar):
        if copy_to is not None:
            copy_to[...] = y
            return copy_to
        if y.dtype != result:
            y = y.astype(result)
        return y[()] if scalar else y

    # the kernels -------------------------------------------------------------------------
    def __call__(self, x, out=None, **params):
        """y = f(x) elementwise."""
        xa, result = self._array(x, "x")
        p = self._param_values(params)
        y, copy_to = self._target(out, xa.shape, xa.dtype, result, (xa,))
        self._kernels.forward(_FLOAT_TAGS[xa.dtype], xa, y, p)
        return self._finish(y, copy_to, result, out is None and np.ndim(x) == 0)

    def backward(self, x, dy, out=None, **params):
        """dL/dx = dy * f'(x) elementwise, given dL/dy = dy (same shape as x)."""
        xa, result = self._array(x, "x")
        dya = self._dy(dy, xa)
        p = self._param_values(params)
        dx, copy_to = self._target(out, xa.shape, xa.dtype, result, (xa, dya))
        self._kernels.backward(_FLOAT_TAGS[xa.dtype], xa, dya, dx, p)
        return self._finish(dx, copy_to, result, out is None and np.ndim(x) == 0)

    def param_grads(self, x, dy, **params) -> dict:
        """{p: dL/dp} for every learnable parameter: sum(dy * df/dp), accumulated in float64."""
        xa, result = self._array(x, "x")
        dya = self._dy(dy, xa)
        p = self._param_values(params)
        tag = _FLOAT_TAGS[xa.dtype]
        return {name: result.type(self._kernels.grad(tag, f"grad_{name}", xa, dya, p))
                for name in self.learnable}

    def _dy(self, dy, xa):
        dya = np.asarray(dy)
        if dya.shape != xa.shape:
            raise KernelArgumentError(f"{self.name}: dy has shape {dya.shape}, x has {xa.shape}; "
                                      "they must match")
        if dya.dtype.kind not in "fiub":
            raise KernelArgumentError(f"{self.name}: dy has dtype {dya.dtype}; pass a real array")
        return np.asarray(dya, dtype=xa.dtype, order="C")


def _find_table(name: str, spec) -> tuple[dict, str, str]:
    """(table, display path for generated files, path for messages)."""
    if spec is None:
        display = library.display_path(name)
        return find_table(read_tables(library.read(name), path=display), name, display), display, display
    path = str(spec)
    tables = read_tables(read_spec_text(path), path=path)
    return find_table(tables, name, path), Path(path).name, path


def load(name: str, spec=None, backend: str = "c") -> Activation:
    """Load an activation: a built-in (``load("swish")``) or a table of a spec file
    (``load("serf", spec="serf.toml")``), compiling it on first use.

    ``backend="c"`` (C with OpenMP through cffi) or ``"numpy"``. If no C compiler is found,
    the NumPy backend is used and a warning says so (once).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    table, display, path = _find_table(name, spec)
    key = spec_key(name, table, display, backend)
    if key in _LOADED:
        return _LOADED[key]
    artifact_key = read_index(key)
    artifact = lookup_artifact(artifact_key) if artifact_key else None
    if artifact is None:
        from .pipeline import build
        from .spec import parse_table

        act = parse_table(name, table, path=path)
        try:
            artifact = build(act, backend, display)
        except ToolchainError as exc:
            if backend != "c":
                raise
            warn_once(f"{exc}. Using the NumPy backend instead.")
            return load(name, spec, backend="numpy")
        write_index(key, artifact.key)
    module = import_module_file(artifact.meta["module"], artifact.module_file)
    loaded = Activation(artifact.meta, module, backend, table, path)
    _LOADED[key] = loaded
    return loaded


__all__ = ["Activation", "ActgenWarning", "load"]
