"""The vocabulary of a benchmark report: implementations, ops, bytes moved, the standard sizes."""

from __future__ import annotations

#: actgen's kernels, timed against the peers of both tables
OPS = ("forward", "backward", "backward_from_output", "forward_with_derivative")
#: what the peers written from the SymPy expression are timed on: a training step is the forward,
#: then the backward with dy (and the gradients of the learnable parameters)
USER_OPS = ("forward", "backward", "train")
#: arrays read + written per element, for GB/s and the % of the copy bandwidth
STREAMS = {"forward": 2, "backward": 3, "backward_from_output": 3, "forward_with_derivative": 3, "copy": 2,
           "train": 5}
IMPLS = ("actgen", "actgen_numpy", "numpy", "torch_out", "torch", "numexpr",
         "actgen_torch", "torch_eager", "torch_compile", "jax")
#: the hand-written peers of the built-ins (and numexpr, written from SymPy for other specs)
PEERS = ("numpy", "torch_out", "torch", "numexpr")
#: the peers written from the SymPy expression, as a user would write the activation
USER_PEERS = ("torch_eager", "torch_compile", "jax", "numexpr")
SHORT = {"forward": "fwd", "backward": "bwd", "backward_from_output": "bwd(y)",
         "forward_with_derivative": "fwd+d", "train": "train"}
LABELS = {"actgen": "actgen", "actgen_numpy": "actgen numpy", "numpy": "numpy", "torch_out": "torch out=",
          "torch": "torch", "numexpr": "numexpr", "actgen_torch": "actgen.torch", "torch_eager": "torch eager",
          "torch_compile": "torch.compile", "jax": "jax.jit"}
#: the library each implementation needs
LIBRARY = {"torch_out": "torch", "torch": "torch", "actgen_torch": "torch", "torch_eager": "torch",
           "torch_compile": "torch", "jax": "jax", "numexpr": "numexpr"}
STANDARD = ((1 << 24, None), (1 << 16, 1), (1 << 12, 1))   # (size, threads); None: all CPUs
