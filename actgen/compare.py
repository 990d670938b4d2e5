"""``actgen compare``: the seed articles' experiment. The same small MLP (one hidden layer) is
trained once per activation, with NumPy matrix products and actgen's forward/backward kernels for
the hidden layer, from the same initial weights, on the same minibatches, with the same schedule
(SGD with momentum, softmax cross-entropy); a table gives test accuracy, final losses and time
(the whole training, and the part spent in the activation kernels).

Data: MNIST from local files (``--mnist``: a folder of the four IDX files, gzipped or not, or an
.npz with x_train, y_train, x_test, y_test) with 784-16-10 as in the articles, or else
scikit-learn's bundled 8x8 digits (no download) with 64-32-10.

    actgen compare                                   # the default activations on the digits
    actgen compare --activations relu swish --spec serf.toml --activations serf
    actgen compare --mnist ~/data/mnist --plot curves.png --json results.json
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ActgenError

HELP = "train the same small MLP once per activation; compare accuracy, loss and time"
DESCRIPTION = ("Train one small MLP (NumPy matrix products, actgen's C kernels for the hidden "
               "activation) once per activation, from the same initial weights on the same minibatches "
               "(SGD with momentum, softmax cross-entropy), and print test accuracy, final losses and "
               "time per activation. Data: --mnist PATH (IDX folder or .npz; 784-16-10 as in the seed "
               "articles) or scikit-learn's bundled 8x8 digits (64-32-10, no download).")

DEFAULT_ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "lisht", "swish", "gelu", "mish")

#: Per dataset: hidden units, epochs, batch size, learning rate (the seeds' MNIST net is 784-16-10).
DEFAULTS = {"digits": dict(hidden=32, epochs=30, batch_size=32, lr=0.05),
            "mnist": dict(hidden=16, epochs=10, batch_size=100, lr=0.1)}

MNIST_FILES = {"x_train": "train-images", "y_train": "train-labels",
               "x_test": "t10k-images", "y_test": "t10k-labels"}


class CompareError(ActgenError):
    """``actgen compare`` cannot run: the data, an activation, an option."""


# ---- data ------------------------------------------------------------------------------------------

@dataclass
class Dataset:
    name: str                 # digits, mnist
    description: str
    x_train: object           # (n, features) float64 in [0, 1]
    y_train: object           # (n,) int64
    x_test: object
    y_test: object
    classes: int


def load_digits_dataset(test_fraction: float = 0.2):
    """scikit-learn's bundled 8x8 digits (1797 images, no download), a stratified split fixed
    by random_state=0 (the --seed changes initial weights and minibatch order, not the split)."""
    import numpy as np
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise CompareError("the bundled 8x8 digits need scikit-learn (pip install 'actgen[compare]'), "
                           "or pass --mnist PATH (a folder of MNIST IDX files, or an .npz)") from None
    digits = load_digits()
    x = digits.data.astype(np.float64) / 16.0
    y = digits.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=test_fraction, random_state=0, stratify=y)
    return Dataset("digits", f"scikit-learn 8x8 digits: {len(xtr)} train / {len(xte)} test images",
                   xtr, ytr, xte, yte, 10)


def _read_idx(path: Path):
    """An IDX array (the MNIST format: magic 0 0 type ndim, big-endian dims, data)."""
    import gzip

    import numpy as np

    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise CompareError(f"{path}: cannot read it: {exc}") from None
    types = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in types:
        raise CompareError(f"{path}: not an IDX file (bad magic number)")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    dtype = np.dtype(types[data[2]])
    count = int(np.prod(dims)) if dims else 1
    offset = 4 + 4 * ndim
    if len(data) - offset != count * dtype.itemsize:
        raise CompareError(f"{path}: truncated IDX file ({len(data) - offset} bytes of data for shape "
                           f"{tuple(dims)})")
    return np.frombuffer(data, dtype, count, offset).reshape(dims)


def _find_idx(folder: Path, stem: str) -> Path:
    kind = "idx3" if "images" in stem else "idx1"
    names = [f"{stem}-{kind}-ubyte", f"{stem}.{kind}-ubyte", f"{stem}-{kind}.ubyte"]
    for name in names:
        for candidate in (folder / name, folder / (name + ".gz")):
            if candidate.is_file():
                return candidate
    raise CompareError(f"--mnist {folder}: no {names[0]}[.gz] in it; expected the four MNIST IDX files "
                       f"{', '.join(s + '-idx?-ubyte' for s in MNIST_FILES.values())} (gzipped or not), "
                       "or pass an .npz with x_train, y_train, x_test, y_test")


def load_mnist(path) -> Dataset:
    import numpy as np

    p = Path(path).expanduser()
    if not p.exists():
        raise CompareError(f"--mnist {path}: no such file or folder")
    if p.is_dir():
        arrays = {key: _read_idx(_find_idx(p, stem)) for key, stem in MNIST_FILES.items()}
    elif p.suffix == ".npz":
        try:
            with np.load(p) as npz:
                missing = [k for k in MNIST_FILES if k not in npz.files]
                if missing:
                    raise CompareError(f"--mnist {path}: the .npz has no {', '.join(missing)} (it has "
                                       f"{', '.join(npz.files) or 'nothing'}); expected x_train, y_train, "
                                       "x_test, y_test")
                arrays = {k: npz[k] for k in MNIST_FILES}
        except (OSError, ValueError) as exc:
            raise CompareError(f"--mnist {path}: cannot read the .npz: {exc}") from None
    else:
        raise CompareError(f"--mnist {path}: expected a folder of MNIST IDX files or an .npz file")
    out = {}
    for part in ("train", "test"):
        x, y = arrays[f"x_{part}"], arrays[f"y_{part}"]
        if len(x) != len(y) or len(x) == 0:
            raise CompareError(f"--mnist {path}: {len(x)} {part} images but {len(y)} labels")
        x = x.reshape(len(x), -1).astype(np.float64)
        out[f"x_{part}"] = x / 255.0 if x.max() > 1.0 else x
        out[f"y_{part}"] = y.reshape(-1).astype(np.int64)
    if out["x_train"].shape[1] != out["x_test"].shape[1]:
        raise CompareError(f"--mnist {path}: train and test images have different sizes")
    classes = int(max(out["y_train"].max(), out["y_test"].max())) + 1
    side = int(round(out["x_train"].shape[1] ** 0.5))
    return Dataset("mnist", f"MNIST ({side}x{side}) from {path}: {len(out['x_train'])} train / "
                   f"{len(out['x_test'])} test images", out["x_train"], out["y_train"], out["x_test"],
                   out["y_test"], classes)


# ---- training --------------------------------------------------------------------------------------

@dataclass
class Config:
    hidden: int
    epochs: int
    batch_size: int
    lr: float
    momentum: float = 0.9
    seed: int = 0
    dtype: str = "float32"
    learn_params: bool = False


@dataclass
class Result:
    name: str
    source: str                       # built-in, or the spec file
    test_accuracy: float = float("nan")
    test_loss: float = float("nan")
    train_loss: float = float("nan")  # mean over the last epoch's minibatches
    train_seconds: float = 0.0        # the training loops (evaluation excluded)
    kernel_seconds: float = 0.0       # of which in actgen's forward/backward (and param-grad) kernels
    kernel_calls: int = 0
    diverged: bool = False
    params: dict = field(default_factory=dict)   # final values (learned with --learn-params)
    curves: dict = field(default_factory=dict)   # epoch -> lists: train_loss, test_loss, test_accuracy

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _softmax_xent(logits, labels):
    """(mean cross-entropy, softmax probabilities), stable."""
    import numpy as np

    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    s = e.sum(axis=1, keepdims=True)
    p = e / s
    loss = float(np.mean(np.log(s[:, 0]) - z[np.arange(len(labels)), labels]))
    return loss, p


def initial_weights(features: int, hidden: int, classes: int, seed: int, dtype):
    """Glorot-uniform weights (Keras' default, as in the articles), zero biases: the same for every
    activation."""
    import numpy as np

    rng = np.random.default_rng(seed)
    a1 = np.sqrt(6.0 / (features + hidden))
    a2 = np.sqrt(6.0 / (hidden + classes))
    return {"w1": rng.uniform(-a1, a1, (features, hidden)).astype(dtype), "b1": np.zeros(hidden, dtype),
            "w2": rng.uniform(-a2, a2, (hidden, classes)).astype(dtype), "b2": np.zeros(classes, dtype)}


def _evaluate(act, weights, params, x, y):
    import numpy as np

    h = act(x @ weights["w1"] + weights["b1"], **params)
    loss, p = _softmax_xent((h @ weights["w2"] + weights["b2"]).astype(np.float64), y)
    return loss, float(np.mean(p.argmax(axis=1) == y))


def train(act, data: Dataset, config: Config, source: str = "built-in", progress=None) -> Result:
    """Train the MLP with ``act`` in the hidden layer; the initial weights and the minibatch
    order depend only on ``config.seed``."""
    import numpy as np

    dtype = np.dtype(config.dtype)
    xtr, ytr = data.x_train.astype(dtype), data.y_train
    xte, yte = data.x_test.astype(dtype), data.y_test
    weights = initial_weights(xtr.shape[1], config.hidden, data.classes, config.seed, dtype)
    velocity = {k: np.zeros_like(v) for k, v in weights.items()}
    params = {p: float(v) for p, v in act.params.items()}
    learn = [p for p in act.learnable] if config.learn_params else []
    pvel = {p: 0.0 for p in learn}
    result = Result(act.name, source)
    curves = {"train_loss": [], "test_loss": [], "test_accuracy": []}
    onehot = np.eye(data.classes, dtype=dtype)
    order_rng = np.random.default_rng(config.seed + 1)
    perms = [order_rng.permutation(len(xtr)) for _ in range(config.epochs)]
    kernel = 0.0
    calls = 0
    started_all = time.perf_counter()
    last_report = started_all
    for epoch in range(config.epochs):
        started = time.perf_counter()
        losses = []
        for start in range(0, len(xtr), config.batch_size):
            idx = perms[epoch][start:start + config.batch_size]
            xb, yb = xtr[idx], ytr[idx]
            z = xb @ weights["w1"] + weights["b1"]
            kw = {p: params[p] for p in learn}      # the others keep their defaults
            t0 = time.perf_counter()
            h = act(z, **kw)
            kernel += time.perf_counter() - t0
            logits = h @ weights["w2"] + weights["b2"]
            loss, p = _softmax_xent(logits.astype(np.float64), yb)
            losses.append(loss)
            g = ((p - onehot[yb]) / len(idx)).astype(dtype)
            grads = {"w2": h.T @ g, "b2": g.sum(axis=0)}
            dh = g @ weights["w2"].T
            t0 = time.perf_counter()
            dz = act.backward(z, dh, **kw)
            pgrads = act.param_grads(z, dh, **kw) if learn else {}
            kernel += time.perf_counter() - t0
            calls += 2 + (1 if learn else 0)
            grads["w1"] = xb.T @ dz
            grads["b1"] = dz.sum(axis=0)
            for k, w in weights.items():
                velocity[k] *= config.momentum
                velocity[k] -= dtype.type(config.lr) * grads[k]
                w += velocity[k]
            for name in learn:
                pvel[name] = config.momentum * pvel[name] - config.lr * float(pgrads[name])
                params[name] += pvel[name]
        result.train_seconds += time.perf_counter() - started
        train_loss = float(np.mean(losses))
        test_loss, test_acc = _evaluate(act, weights, params, xte, yte)
        curves["train_loss"].append(train_loss)
        curves["test_loss"].append(test_loss)
        curves["test_accuracy"].append(test_acc)
        if not np.isfinite(train_loss) or not all(np.isfinite(w).all() for w in weights.values()):
            result.diverged = True
            break
        now = time.perf_counter()
        if progress and now - last_report > 2.0:
            progress(f"  {act.name}: epoch {epoch + 1}/{config.epochs}, loss {train_loss:.4f}, "
                     f"test accuracy {test_acc:.4f}")
            last_report = now
    result.train_loss, result.test_loss, result.test_accuracy = (
        curves["train_loss"][-1], curves["test_loss"][-1], curves["test_accuracy"][-1])
    result.kernel_seconds, result.kernel_calls = kernel, calls
    result.params, result.curves = params, curves
    return result


# ---- activations -----------------------------------------------------------------------------------

def resolve(names: list[str] | None, specs: list[str]) -> list[tuple[str, str | None]]:
    """[(name, spec file or None)]: each name from the first --spec file that has it, else a
    built-in; without names, the defaults and then every activation of the spec files."""
    from . import library
    from .errors import UnknownActivationError
    from .specfile import read_spec_text, read_tables, resolve_table

    tables = {spec: read_tables(read_spec_text(spec), path=spec) for spec in specs}
    if not names:
        names = list(DEFAULT_ACTIVATIONS) + [n for spec in specs for n in tables[spec]]
    chosen, seen = [], set()
    for name in names:
        if name in seen:
            continue
        seen.add(name)
        spec = next((s for s in specs if name in tables[s]), None)
        if spec is None and name not in library.names():
            where = f" or in {', '.join(specs)}" if specs else " (add --spec FILE for your own)"
            raise UnknownActivationError(f"no activation named {name!r} among the built-ins{where}; "
                                         "`actgen list` shows the built-ins")
        if spec is None:
            kind_of = resolve_table(read_tables(library.read(name), path=library.display_path(name)), name,
                                    library.display_path(name))
        else:
            kind_of = resolve_table(tables[spec], name, spec)
        kind = kind_of.get("kind", "elementwise") if isinstance(kind_of, dict) else "elementwise"
        if kind != "elementwise":
            raise CompareError(f"{name} is a {kind} activation; compare puts one elementwise activation in "
                               "the hidden layer")
        chosen.append((name, spec))
    return chosen


def load_all(chosen, backend: str):
    import actgen

    loaded = []
    for name, spec in chosen:
        act = actgen.load(name, spec=spec, backend=backend)
        if act.kind != "elementwise":
            raise CompareError(f"{name} is a {act.kind} activation; compare puts one elementwise activation "
                               "in the hidden layer")
        loaded.append((act, spec or "built-in"))
    return loaded


def format_table(results: list[Result], show_params: bool = False) -> str:
    """The comparison table; times in milliseconds."""
    header = (f"{'activation':14s} {'test acc':>8s} {'test loss':>9s} {'train loss':>10s} {'train ms':>9s} "
              f"{'kernel ms':>9s} {'share':>6s} {'us/call':>7s}")
    if show_params:
        header += "  parameters"
    lines = [header, "-" * len(header)]
    for r in results:
        share = 100.0 * r.kernel_seconds / r.train_seconds if r.train_seconds else 0.0
        per_call = 1e6 * r.kernel_seconds / r.kernel_calls if r.kernel_calls else 0.0
        line = (f"{r.name:14s} {r.test_accuracy:8.4f} {r.test_loss:9.4f} {r.train_loss:10.4f} "
                f"{1e3 * r.train_seconds:9.1f} {1e3 * r.kernel_seconds:9.1f} {share:5.1f}% {per_call:7.2f}")
        if show_params:
            line += "  " + ", ".join(f"{p}={v:.4g}" for p, v in r.params.items())
        if r.diverged:
            line += "  (diverged: loss not finite)"
        lines.append(line)
    return "\n".join(lines)


def plot(results: list[Result], path: Path, title: str) -> None:
    """Learning curves (training loss, test accuracy) to a PNG, written atomically."""
    import os

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4.2))
    for r in results:
        epochs = range(1, len(r.curves["train_loss"]) + 1)
        ax_loss.plot(epochs, r.curves["train_loss"], label=r.name)
        ax_acc.plot(epochs, r.curves["test_accuracy"], label=r.name)
    ax_loss.set(xlabel="epoch", ylabel="training loss (cross-entropy)", yscale="log")
    ax_acc.set(xlabel="epoch", ylabel="test accuracy")
    ax_acc.legend(fontsize=8, loc="lower right")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.png")
    try:
        fig.savefig(tmp, dpi=110)
        os.replace(tmp, path)
    except OSError as exc:
        raise CompareError(f"cannot write the plot {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
        if tmp.exists():
            tmp.unlink()


def _has_matplotlib() -> bool:
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


# ---- command line ----------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--activations", nargs="+", metavar="NAME",
                        help="activations to compare (space or comma separated; default: "
                        f"{', '.join(DEFAULT_ACTIVATIONS)} and every activation of the --spec files)")
    parser.add_argument("--spec", action="append", default=[], metavar="FILE",
                        help="a spec file whose activations are compared too (repeatable)")
    parser.add_argument("--mnist", metavar="PATH",
                        help="MNIST: a folder of the IDX files (gzipped or not) or an .npz with x_train, "
                        "y_train, x_test, y_test (default: scikit-learn's bundled 8x8 digits)")
    parser.add_argument("--hidden", type=int, help="hidden units (default: 32 for digits, 16 for MNIST)")
    parser.add_argument("--epochs", type=int, help="epochs (default: 30 for digits, 10 for MNIST)")
    parser.add_argument("--batch-size", type=int, help="minibatch size (default: 32 for digits, 100 for MNIST)")
    parser.add_argument("--lr", type=float, help="learning rate (default: 0.05 for digits, 0.1 for MNIST)")
    parser.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default 0.9; 0: plain SGD)")
    parser.add_argument("--seed", type=int, default=0, help="initial weights and minibatch order (default 0)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--backend", choices=["c", "numpy"], default="c", help="actgen kernels (default c)")
    parser.add_argument("--learn-params", action="store_true",
                        help="also train learnable parameters (e.g. swish's beta) with their param_grads")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="train each activation N times and report the fastest (the results are "
                        "identical: same seed); steadier times on a busy machine (default 1)")
    parser.add_argument("--plot", metavar="FILE.png", help="learning curves (needs matplotlib)")
    parser.add_argument("--json", metavar="FILE", help="also write the results, with curves, as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def _positive(value, option):
    if value is not None and value <= 0:
        raise CompareError(f"{option} must be positive, not {value}")


def run(args) -> int:
    import json

    import numpy as np

    from . import __version__, get_num_threads

    names = [n for item in (args.activations or []) for n in item.split(",") if n.strip()] or None
    for value, option in ((args.hidden, "--hidden"), (args.epochs, "--epochs"), (args.batch_size, "--batch-size"),
                          (args.lr, "--lr"), (args.repeat, "--repeat")):
        _positive(value, option)
    if not 0.0 <= args.momentum < 1.0:
        raise CompareError(f"--momentum must be in [0, 1), not {args.momentum}")
    if args.plot and not _has_matplotlib():
        raise CompareError("--plot needs matplotlib, which is not installed: pip install matplotlib "
                           "(or 'actgen[compare]'), or leave out --plot")
    progress = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))

    chosen = resolve([n.strip() for n in names] if names else None, args.spec)
    data = load_mnist(args.mnist) if args.mnist else load_digits_dataset()
    defaults = DEFAULTS[data.name]
    config = Config(hidden=args.hidden or defaults["hidden"], epochs=args.epochs or defaults["epochs"],
                    batch_size=args.batch_size or defaults["batch_size"], lr=args.lr or defaults["lr"],
                    momentum=args.momentum, seed=args.seed, dtype=args.dtype, learn_params=args.learn_params)
    if progress:
        progress(f"loading {len(chosen)} activations (compiled on first use)...")
    loaded = load_all(chosen, args.backend)

    features = data.x_train.shape[1]
    setup = (f"{data.description}; MLP {features}-{config.hidden}-{data.classes}, SGD momentum "
             f"{config.momentum:g}, lr {config.lr:g}, batch {config.batch_size}, {config.epochs} epochs, "
             f"seed {config.seed}, {config.dtype}, actgen {'/'.join(sorted({a.backend for a, _ in loaded}))} kernels"
             + (", learnable parameters trained" if config.learn_params else ""))
    results = []
    for i, (act, source) in enumerate(loaded, 1):
        result = train(act, data, config, source, progress)
        for _ in range(args.repeat - 1):
            again = train(act, data, config, source)
            if again.train_seconds < result.train_seconds:
                result.train_seconds, result.kernel_seconds = again.train_seconds, again.kernel_seconds
        results.append(result)
        if progress:
            progress(f"[{i}/{len(loaded)}] {act.name}: test accuracy {result.test_accuracy:.4f}, "
                     f"train {result.train_seconds:.2f} s")
    print(setup)
    print(format_table(results, show_params=config.learn_params))
    best = f" (the fastest of {args.repeat} runs)" if args.repeat > 1 else ""
    calls = "forward, backward" + (", param_grads" if config.learn_params else "")
    print(f"train ms: the training loops{best}; kernel ms: in actgen's activation calls ({calls}) during "
          "them; share: of the training time; us/call: per kernel call")
    if args.plot:
        plot(results, Path(args.plot), setup)
        print(f"learning curves: {args.plot}")
    if args.json:
        from .build import write_atomic

        payload = {"setup": setup, "dataset": data.name, "config": config.__dict__,
                   "features": features, "classes": data.classes, "backend": args.backend,
                   "actgen": __version__, "numpy": np.__version__, "threads": get_num_threads(),
                   "results": [r.as_dict() for r in results]}
        try:
            write_atomic(Path(args.json), json.dumps(payload, indent=1) + "\n")
        except OSError as exc:
            raise CompareError(f"cannot write {args.json}: {exc.strerror or exc}") from None
    return 0
