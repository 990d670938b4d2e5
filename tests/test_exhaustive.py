"""actgen verify --exhaustive: float32 kernels against float64 ones at every float32 input."""

from __future__ import annotations

import functools

import numpy as np
import pytest

import actgen
from actgen import exhaustive, library
from actgen.spec import parse_spec_text

from conftest import requires_cc


def test_compare_counts_ulps_nans_and_infinities():
    x = np.arange(6, dtype=np.float32)
    ref = np.array([1.0, 0.0, np.nan, np.inf, 2.0, 3.0], np.float32)
    got = ref.copy()
    assert exhaustive.compare(x, got, ref)[0] == 0.0 and exhaustive.compare(x, got, ref)[2] == 0
    got[1] = -0.0                                       # -0 == +0
    got[4] = np.nextafter(np.nextafter(np.float32(2.0), np.float32(9)), np.float32(9))   # 2 ULP
    got[5] = np.nan                                     # a NaN where the reference is 3
    worst, worst_x, differing, nonfinite = exhaustive.compare(x, got, ref)
    assert (worst, worst_x, differing, nonfinite) == (2.0, 4.0, 3, 1)
    got = ref.copy()
    got[3] = np.float32(3e38)                           # finite where the reference is inf
    assert exhaustive.compare(x, got, ref)[3] == 1


def _load(name):
    (act,) = parse_spec_text(library.read(name), path=library.display_path(name))
    return actgen.load(name, backend="c"), act


@requires_cc
@pytest.mark.parametrize("name, codes", [
    ("sigmoid", (0x3F000000, 0x3F000000 + (1 << 20))),            # [0.5, 0.56)
    ("silu", (0xC2AE0000, 0xC2AE0000 + (1 << 20))),               # x ~ -87: exp(x) goes subnormal
    ("gelu", (0xC1500000, 0xC1500000 + (1 << 20))),               # x ~ -13: the erfc tail
    ("relu", (0x7F800000 - (1 << 19), 0x7F800000 + (1 << 19))),   # the largest floats, inf, NaNs
])
def test_float32_kernels_agree_with_float64_ones_on_every_input_of_a_range(name, codes):
    act, activation = _load(name)
    results = exhaustive.run(act, activation, codes=codes, chunk=1 << 18)
    assert [r.op for r in results] == ["forward", "derivative"]
    for r in results:
        assert r.inputs == codes[1] - codes[0] and r.passed, r
        # sigmoid's f' is computed in float, sigmoid(-x) sigmoid(x), each within 1 ULP: 2
        assert r.max_ulp <= (2 if (name, r.op) == ("sigmoid", "derivative") else 1), r
        assert r.nonfinite_mismatch == 0, r


@requires_cc
def test_a_float32_kernel_that_loses_precision_is_reported(monkeypatch):
    # the float32 kernel replaced by one computed in float from the float64 value cut to 16 bits
    act, activation = _load("tanh")

    class Coarse:
        name = "tanh"

        def __call__(self, x, out):
            y = act(x, out=out)
            if x.dtype == np.float32:
                y.view(np.uint32)[...] &= np.uint32(0xFFFFFF00)      # 8 bits lost
            return y

        def backward(self, x, dy, out):
            return act.backward(x, dy, out=out)

    (forward, derivative) = exhaustive.run(Coarse(), activation, codes=(0x3F000000, 0x3F000000 + (1 << 16)))
    assert not forward.passed and forward.max_ulp > 100 and forward.differing > 0
    assert derivative.passed


@requires_cc
def test_the_cli_prints_the_table_and_skips_what_is_not_elementwise(monkeypatch, capsys):
    from actgen import cli

    monkeypatch.setattr(exhaustive, "run", functools.partial(exhaustive.run, codes=(0x3F800000, 0x3F800000 + 4096)))
    status = cli.main(["verify", "relu", "softmax", "--exhaustive"])
    out, err = capsys.readouterr()
    assert status == 0
    assert "relu        forward" in out and "relu        derivative" in out and "4,096" in out
    assert "softmax: skipped" in err


def test_the_cli_refuses_options_that_do_not_apply(capsys):
    from actgen import cli

    for extra in (["--dtype", "float64"], ["--backend", "numpy"], ["--markdown", "x.md"], ["--quick"]):
        status = cli.main(["verify", "relu", "--exhaustive", *extra])
        _, err = capsys.readouterr()
        assert status == 2 and "does not apply" in err and extra[0] in err and "Traceback" not in err
