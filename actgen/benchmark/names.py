"""The vocabulary of a benchmark report: implementations, ops, bytes moved, the standard sizes."""

from __future__ import annotations

OPS = ("forward", "backward", "backward_from_output", "forward_with_derivative")
#: arrays read + written per element, for GB/s and the % of the copy bandwidth
STREAMS = {"forward": 2, "backward": 3, "backward_from_output": 3, "forward_with_derivative": 3, "copy": 2}
IMPLS = ("actgen", "actgen_numpy", "numpy", "torch_out", "torch", "numexpr")
PEERS = ("numpy", "torch_out", "torch", "numexpr")
SHORT = {"forward": "fwd", "backward": "bwd", "backward_from_output": "bwd(y)",
         "forward_with_derivative": "fwd+d"}
STANDARD = ((1 << 24, None), (1 << 16, 1), (1 << 12, 1))   # (size, threads); None: all CPUs
