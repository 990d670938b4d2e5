"""How far actgen's built-ins are from PyTorch 2.13, per activation and dtype, as a Markdown table.

    python benchmarks/torch_parity.py > benchmarks/torch_parity.md

Same inputs, PyTorch counterparts and metric as tests/test_torch_parity.py (which asserts the
rule: agreement at kinks, and where the two differ by more than 16 ULP actgen is at least as close
to mpmath): the dense range [-12, 12], log-spaced magnitudes 1e-30..1e3 of both signs, the kinks,
0, -0, +-1e-30, +-100. Forward: ULPs of the larger magnitude; f': ULPs of the magnitude it is
computed from (the sum of its terms' magnitudes), as in actgen verify. `> 16 ULP` counts the points
where they differ by more, and `actgen closer` how many of those actgen is the closer one to the
correctly rounded mpmath value (the test requires all, or actgen within 16 ULP of mpmath).
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import torch

import actgen
from actgen.ir import X
from actgen.derive import kink_points
from actgen.reference import reference

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))        # the test modules below import tests/conftest.py
spec = importlib.util.spec_from_file_location("parity", ROOT / "tests" / "test_torch_parity.py")
parity = importlib.util.module_from_spec(spec)
spec.loader.exec_module(parity)
spec = importlib.util.spec_from_file_location("kinds", ROOT / "tests" / "test_kinds.py")
kinds = importlib.util.module_from_spec(spec)
spec.loader.exec_module(kinds)


def measure(name: str, dtype) -> dict:
    forward, _ = parity.TORCH[name]
    sym, expr, dexpr, _ = parity._symbolic(name)
    kinks = [k for k in kink_points(sym) if math.isfinite(k)]
    xs = parity._inputs(kinks).astype(dtype)
    xs = xs[np.isfinite(xs)]
    act = actgen.load(name)
    tx = torch.tensor(xs, requires_grad=True)
    ty = forward(tx)
    ty.backward(torch.ones_like(ty))
    row = {}
    floor_d = parity._derivative_floor(name, xs, dtype)
    for what, got, want, e, floor in (("forward", act(xs), ty.detach().numpy(), expr, 0.0),
                                      ("f'", act.backward(xs, np.ones_like(xs)), tx.grad.numpy(), dexpr, floor_d)):
        d = parity._ulps(got, want, dtype, floor)
        over = np.flatnonzero(d > parity.TOL)
        closer = 0
        for i in over:
            ref = reference(e, {X: float(xs[i])}, dtype.__name__)
            closer += parity._ulps(got[i], ref, dtype, np.broadcast_to(floor, xs.shape)[i]) <= \
                parity._ulps(want[i], ref, dtype, np.broadcast_to(floor, xs.shape)[i])
        row[what] = (float(np.median(d)), float(d.max()), len(over), int(closer))
    return row


def _sparsemax(v):
    """Sparsemax by sorting in PyTorch ops (PyTorch has none; tests/test_kinds.py's copy)."""
    return kinds._torch_sparsemax(torch, v)


def _half(fn):
    return lambda v: v[..., : v.shape[-1] // 2] * fn(v[..., v.shape[-1] // 2:])


#: the row-wise and gated built-ins (along the last axis) and their PyTorch counterparts
KINDS = {"softmax": lambda v: torch.softmax(v, -1), "log_softmax": lambda v: torch.log_softmax(v, -1),
         "softmin": lambda v: torch.nn.functional.softmin(v, -1), "sparsemax": _sparsemax,
         "glu": lambda v: torch.nn.functional.glu(v, -1), "reglu": _half(torch.relu),
         "geglu": _half(torch.nn.functional.gelu), "swiglu": _half(torch.nn.functional.silu)}


def _rowmax(a):
    a = np.asarray(a, np.float64)
    return np.max(np.abs(np.where(np.isfinite(a), a, 0.0)), axis=-1, keepdims=True)


def _rowwise_ulps(got, want, dtype, scale=None) -> float:
    """max |got - want| over a row, in ULPs of the row's largest |want| or of ``scale`` if larger
    (row-normwise: softmax's and sparsemax's small entries have no relative accuracy of their
    own in either library)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    scale = np.maximum(_rowmax(want), 0.0 if scale is None else scale)
    eps = np.finfo(dtype).eps * np.maximum(scale, np.finfo(dtype).tiny)
    same = (got == want) | (np.isnan(got) & np.isnan(want))
    return float(np.max(np.where(same, 0.0, np.abs(got - want) / eps)))


def measure_kinds(dtype) -> list[tuple[str, float, float]]:
    """(name, forward, backward) max row-normwise ULPs against PyTorch, on 512 rows of 64: normal
    draws of scale 3 with the edge values (0, -0, +-1e-30, +-100) spread over the rows."""
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((512, 64)) * 3).astype(dtype)
    edges = np.array([0.0, -0.0, 1e-30, -1e-30, 100.0, -100.0], dtype)
    x[np.arange(0, 512, 2), rng.integers(0, 64, 256)] = np.resize(edges, 256)
    dy_full = rng.standard_normal(x.shape).astype(dtype)
    out = []
    for name, fn in KINDS.items():
        act = actgen.load(name)
        tx = torch.tensor(x, requires_grad=True)
        ty = fn(tx)
        dy = dy_full[:, : ty.shape[-1]]
        ty.backward(torch.tensor(dy))
        # the backward in ULPs of (largest |dy|) * (largest |y|) of the row at least: a dx that
        # cancels (the row's largest element when its probability is ~1) has no accuracy of its own
        out.append((name, _rowwise_ulps(act(x), ty.detach().numpy(), dtype),
                    _rowwise_ulps(act.backward(x, dy), tx.grad.numpy(), dtype,
                                  _rowmax(dy) * _rowmax(ty.detach().numpy()))))
    # PReLU with one slope per channel (torch.nn.PReLU(num_parameters=3), axis 1), its weight gradient
    xs = (rng.standard_normal((64, 3, 8, 8)) * 3).astype(dtype)
    dys = rng.standard_normal(xs.shape).astype(dtype)
    w = np.array([0.25, 0.1, -0.3], dtype)
    m = torch.nn.PReLU(num_parameters=3).to(torch.float32 if dtype == np.float32 else torch.float64)
    with torch.no_grad():
        m.weight.copy_(torch.tensor(w))
    tx = torch.tensor(xs, requires_grad=True)
    ty = m(tx)
    ty.backward(torch.tensor(dys))
    prelu = actgen.load("prelu")
    g = prelu.param_grads(xs, dys, alpha=w, param_axis=1)["alpha"]
    out.append(("prelu (per channel)", _rowwise_ulps(prelu(xs, alpha=w, param_axis=1).reshape(64, -1),
                                                     ty.detach().numpy().reshape(64, -1), dtype),
                _rowwise_ulps(prelu.backward(xs, dys, alpha=w, param_axis=1).reshape(64, -1),
                              tx.grad.numpy().reshape(64, -1), dtype)))
    gsum = np.sum(np.abs(dys * np.minimum(xs, 0)), axis=(0, 2, 3))
    out.append(("prelu weight gradient", math.nan,
                float(np.max(np.abs(g - m.weight.grad.numpy()) / (np.finfo(dtype).eps * gsum)))))
    return out


def main() -> int:
    print(f"<!-- generated by `python benchmarks/torch_parity.py > benchmarks/torch_parity.md` "
          f"(torch {torch.__version__}, actgen {actgen.__version__}); do not edit -->")
    print("# actgen against PyTorch, per built-in\n")
    print(__doc__.split("\n\n", 2)[2].strip() + "\n")
    print("| activation | dtype | forward median / max ULP | > 16 ULP (actgen closer) "
          "| f' median / max ULP | > 16 ULP (actgen closer) |")
    print("|---|---|---|---|---|---|")
    for name in sorted(parity.TORCH):
        for dtype in (np.float32, np.float64):
            r = measure(name, dtype)
            cells = []
            for what in ("forward", "f'"):
                med, mx, over, closer = r[what]
                cells += [f"{med:.3g} / {mx:.3g}", f"{over} ({closer})" if over else "0"]
            print(f"| {name} | {dtype.__name__} | " + " | ".join(cells) + " |")
            sys.stdout.flush()
    print("\n## Row-wise, gated and per-channel built-ins\n")
    print("Along the last axis, 512 rows of 64 (normal draws of scale 3, with 0, -0, +-1e-30, +-100 "
          "among them), dy normal: max |actgen - PyTorch| in ULPs of the row's largest |PyTorch value| "
          "(forward), and for the backward dx (through autograd) in ULPs of the larger of that and the "
          "row's largest |dy| times its largest |y| (a dx that cancels has no accuracy of its own "
          "in either library). sparsemax against a sort-based "
          "composition (PyTorch has none); reglu/geglu/swiglu as a * relu/gelu/silu(b). The prelu "
          "weight gradient: |difference| / (eps * sum |dy * min(x, 0)|) per channel.\n")
    print("| activation | float32 forward | float32 backward | float64 forward | float64 backward |")
    print("|---|---|---|---|---|")
    rows = {dtype: measure_kinds(dtype) for dtype in (np.float32, np.float64)}
    for i, (name, _, _) in enumerate(rows[np.float32]):
        cells = [f"{v:.3g}" if not math.isnan(v) else "-" for dtype in (np.float32, np.float64)
                 for v in rows[dtype][i][1:]]
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
