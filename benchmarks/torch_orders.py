"""actgen's torch.library ops against PyTorch's built-ins (issue 27 item 5), in one run:

(a) an MLP forward + backward, float32, batch 4096, both models under torch.compile: actgen's
    activation vs the torch built-in (relu, gelu, silu, mish and a spec activation, serf);
(b) a double backward (grad of the sum of a gradient, create_graph=True) of the activation
    alone, float32, through actgen's kernels vs PyTorch's built-in (gelu, silu, tanh, softplus,
    elu), eager.

Medians of repeats; the ratio is actgen's time over PyTorch's (below 1: actgen is faster).
Writes the table to benchmarks/torch_orders.md:

    PYTHONPATH=. python benchmarks/torch_orders.py > benchmarks/torch_orders.md
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# one thread each (actgen's OpenMP and PyTorch's intra-op pool): on a shared, loaded machine
# threads that wait for each other at barriers measure the load, not the code
THREADS = int(os.environ.setdefault("ACTGEN_NUM_THREADS", "1"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import actgen.torch as at  # noqa: E402

torch.set_num_threads(THREADS)

SERF = '[serf]\nexpr = "x * erf(log(1 + exp(x)))"\n'
TORCH = {"relu": F.relu, "gelu": F.gelu, "silu": F.silu, "mish": F.mish,
         "serf": lambda x: x * torch.erf(F.softplus(x)), "tanh": torch.tanh, "softplus": F.softplus, "elu": F.elu}


class Fn(torch.nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def mlp(act_factory, width=256, depth=3):
    torch.manual_seed(0)
    layers = [torch.nn.Linear(64, width)]
    for _ in range(depth - 1):
        layers += [act_factory(), torch.nn.Linear(width, width)]
    return torch.nn.Sequential(*layers, act_factory(), torch.nn.Linear(width, 10))


def median_time(step, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def train_step(model, x):
    def step():
        model.zero_grad(set_to_none=True)
        x.grad = None
        model(x).square().mean().backward()
    return step


def double_backward(fn, x):
    def step():
        xr = x.detach().requires_grad_()
        (g,) = torch.autograd.grad(fn(xr).sum(), xr, create_graph=True)
        (h,) = torch.autograd.grad(g.sum(), xr)
        return h
    return step


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main(repeats: int = 9) -> None:
    spec = Path(tempfile.mkdtemp()) / "serf.toml"
    spec.write_text(SERF)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print("# actgen's torch.library ops vs PyTorch's built-ins\n")
    load = os.getloadavg()[0]
    print(f"CPU: {cpu_name()}, {os.cpu_count()} CPUs, {THREADS} thread(s) for PyTorch and for actgen "
          f"(ACTGEN_NUM_THREADS), load average {load:.1f} at the start; PyTorch {torch.__version__}; actgen commit "
          f"{commit}. A shared 2-core machine: the numbers are noisy, compare the ratios of one run. "
          f"Medians of {repeats} repeats. Ratio = actgen / PyTorch (below 1: actgen faster).\n")
    print(f"Regenerate: `PYTHONPATH=. {Path(sys.executable).name} benchmarks/torch_orders.py > "
          "benchmarks/torch_orders.md`\n")
    x = torch.randn(4096, 64)
    xa = torch.randn(4096, 256, requires_grad=True)
    print("## (a) MLP 64-256-256-256-10 forward + backward, float32, batch 4096, both under torch.compile\n")
    print("And the activation alone (4096 x 256, forward + backward, torch.compile), where the matrix "
          "products do not hide it.\n")
    print("| activation | MLP actgen ms | MLP torch ms | ratio | alone actgen ms | alone torch ms | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in ("relu", "gelu", "silu", "mish", "serf"):
        kw = {"spec": spec} if name == "serf" else {}
        row = []
        for build in (lambda: mlp(lambda: at.Activation(name, **kw)), lambda: mlp(lambda: Fn(TORCH[name])),
                      lambda: at.Activation(name, **kw), lambda: Fn(TORCH[name])):
            torch._dynamo.reset()           # each model its own compile (Sequential.forward is one code object)
            model = torch.compile(build(), fullgraph=True)
            row.append(median_time(train_step(model, x if len(row) < 2 else xa), repeats))
        print(f"| {name} | {row[0] * 1e3:.2f} | {row[1] * 1e3:.2f} | {row[0] / row[1]:.2f} | "
              f"{row[2] * 1e3:.3f} | {row[3] * 1e3:.3f} | {row[2] / row[3]:.2f} |", flush=True)
    print("\n## (b) double backward of the activation alone (grad of grad), float32, 2^20 elements, eager\n")
    print("| activation | actgen ms | torch ms | ratio |\n|---|---:|---:|---:|")
    xd = torch.randn(1 << 20)
    for name in ("gelu", "silu", "tanh", "softplus", "elu"):
        f = at.function(name)
        f(xd[:8].clone().requires_grad_())                  # load and build the derived orders first
        double_backward(f, xd[:8])()
        t_ours = median_time(double_backward(f, xd), repeats)
        t_ref = median_time(double_backward(TORCH[name], xd), repeats)
        print(f"| {name} | {t_ours * 1e3:.2f} | {t_ref * 1e3:.2f} | {t_ours / t_ref:.2f} |", flush=True)


if __name__ == "__main__":
    main()
