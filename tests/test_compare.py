"""``actgen compare``: the seed articles' experiment on the bundled digits (loose accuracy bound,
never a timing), the MNIST readers on small synthetic files, and its errors."""

from __future__ import annotations

import gzip
import importlib.util
import json

import numpy as np
import pytest

from actgen import compare
from actgen.cli import main as cli_main

HAVE_SKLEARN = importlib.util.find_spec("sklearn") is not None
HAVE_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
requires_sklearn = pytest.mark.skipif(not HAVE_SKLEARN, reason="scikit-learn is not installed")


@requires_sklearn
def test_compare_two_activations_on_the_digits(tmp_path, capsys):
    plot = tmp_path / "curves.png"
    args = ["compare", "--activations", "relu,tanh", "--epochs", "6", "--json", str(tmp_path / "r.json")]
    if HAVE_MATPLOTLIB:
        args += ["--plot", str(plot)]
    assert cli_main(args) == 0
    captured = capsys.readouterr()
    assert "MLP 64-32-10" in captured.out and "[2/2] tanh" in captured.err
    rows = {line.split()[0]: line.split() for line in captured.out.splitlines()
            if line.split() and line.split()[0] in ("relu", "tanh")}
    assert set(rows) == {"relu", "tanh"}
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["config"]["epochs"] == 6 and data["features"] == 64 and data["classes"] == 10
    for r in data["results"]:
        assert r["test_accuracy"] > 0.8, r
        assert float(rows[r["name"]][1]) == pytest.approx(r["test_accuracy"], abs=1e-4)
        assert len(r["curves"]["test_accuracy"]) == 6 and not r["diverged"]
        assert r["curves"]["train_loss"][-1] < r["curves"]["train_loss"][0]
        assert 0 < r["kernel_seconds"] < r["train_seconds"] and r["kernel_calls"] == 2 * 6 * 45
    if HAVE_MATPLOTLIB:
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


@requires_sklearn
def test_same_seed_same_run_and_learnable_parameters(tmp_path):
    import actgen

    data = compare.load_digits_dataset()
    config = compare.Config(hidden=16, epochs=2, batch_size=64, lr=0.05)
    act = actgen.load("swish")
    a, b = compare.train(act, data, config), compare.train(act, data, config)
    assert a.curves == b.curves and a.params == {"beta": 1.0}
    learned = compare.train(act, data, compare.Config(**{**config.__dict__, "learn_params": True}))
    assert learned.params["beta"] != 1.0 and np.isfinite(learned.params["beta"])


@requires_sklearn
def test_spec_activations_join_the_defaults(tmp_path, capsys):
    spec = tmp_path / "mine.toml"
    spec.write_text('[softsign2]\nexpr = "x / (1 + Abs(x))"\n')
    assert compare.resolve(None, [str(spec)])[-1] == ("softsign2", str(spec))
    assert [n for n, _ in compare.resolve(None, [])] == list(compare.DEFAULT_ACTIVATIONS)
    assert cli_main(["compare", "--spec", str(spec), "--activations", "softsign2", "--epochs", "2",
                     "--quiet"]) == 0
    out = capsys.readouterr()
    assert "softsign2" in out.out and out.err == ""


def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _fake_mnist(n):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 10, n)
    x = rng.integers(0, 40, (n, 28, 28))
    for i, label in enumerate(y):          # a learnable pattern: a bright row per class
        x[i, 2 + 2 * label, :] = 255
    return x, y


def test_mnist_readers_idx_gz_and_npz(tmp_path, capsys):
    xtr, ytr = _fake_mnist(300)
    xte, yte = _fake_mnist(100)
    folder = tmp_path / "idx"
    folder.mkdir()
    for name, array in (("train-images-idx3-ubyte", xtr), ("train-labels-idx1-ubyte", ytr),
                        ("t10k-images-idx3-ubyte", xte)):
        (folder / (name + ".gz")).write_bytes(gzip.compress(_idx(array)))
    (folder / "t10k-labels.idx1-ubyte").write_bytes(_idx(yte))      # not gzipped, other spelling
    data = compare.load_mnist(folder)
    assert data.x_train.shape == (300, 784) and data.x_test.shape == (100, 784) and data.classes == 10
    np.testing.assert_array_equal(data.y_test, yte)
    assert data.x_train.max() == 1.0 and data.x_train.min() >= 0.0

    npz = tmp_path / "mnist.npz"
    np.savez(npz, x_train=xtr.astype(np.uint8), y_train=ytr, x_test=xte.astype(np.uint8), y_test=yte)
    again = compare.load_mnist(npz)
    np.testing.assert_array_equal(again.x_train, data.x_train)

    assert cli_main(["compare", "--mnist", str(npz), "--activations", "relu", "--epochs", "3", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "MLP 784-16-10" in out
    accuracy = float(next(line for line in out.splitlines() if line.startswith("relu")).split()[1])
    assert accuracy > 0.5       # the pattern is easy; chance is 0.1

    (folder / "t10k-labels.idx1-ubyte").write_bytes(_idx(yte)[:-3])
    with pytest.raises(compare.CompareError, match="truncated"):
        compare.load_mnist(folder)
    (folder / "t10k-labels.idx1-ubyte").unlink()
    with pytest.raises(compare.CompareError, match="t10k-labels-idx1-ubyte"):
        compare.load_mnist(folder)
    np.savez(npz, x_train=xtr)
    with pytest.raises(compare.CompareError, match="y_train"):
        compare.load_mnist(npz)


@pytest.mark.parametrize("args, fragment", [
    (["--activations", "nope"], "no activation named 'nope'"),
    (["--activations", "glu"], "glu is a gated activation"),
    (["--mnist", "/nonexistent/mnist"], "no such file or folder"),
    (["--epochs", "0"], "--epochs must be positive"),
])
def test_errors_are_one_line(args, fragment, capsys):
    assert cli_main(["compare", "--quiet", *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith("actgen: error:") and fragment in err and "Traceback" not in err


def test_missing_optional_packages_are_named(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(compare, "_has_matplotlib", lambda: False)
    assert cli_main(["compare", "--plot", str(tmp_path / "c.png"), "--quiet"]) == 1
    assert "--plot needs matplotlib" in capsys.readouterr().err
    assert not (tmp_path / "c.png").exists()

    import builtins

    real_import = builtins.__import__

    def no_sklearn(name, *a, **k):
        if name.startswith("sklearn"):
            raise ImportError(name)
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_sklearn)
    with pytest.raises(compare.CompareError, match="scikit-learn.*--mnist"):
        compare.load_digits_dataset()
