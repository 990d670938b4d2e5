"""What ``actgen bench`` runs (the verb itself, its arguments, is ``actgen.bench``).

The modules, in the order data flows through them:

- ``names``          the implementations, ops and standard sizes (constants only);
- ``timing``         medians of interleaved repeats;
- ``machine``        a description of the machine and the libraries;
- ``builtin_peers``  hand-written peers of the built-ins: NumPy as users write it, PyTorch's own
                     kernels, numexpr formulas;
- ``symbolic``       any activation written from its SymPy expression in torch, JAX and numexpr;
- ``user_peers``     those peers timed: torch eager, torch.compile, jax.jit, numexpr, and actgen
                     through actgen.torch, forward, backward and a training step;
- ``accuracy``       actgen's and each peer's ULPs against mpmath on verify's inputs;
- ``measure``        the run: every activation, dtype, size and thread count, and the ratios;
- ``report``         the tables (text, markdown) and the atomic writer;
- ``plot``           Gelem/s against the size (matplotlib).

Nothing is imported here: ``actgen.cli`` imports ``actgen.bench`` (and so this package) to build
its parser on every command, and ``measure`` (with what it imports) is the heavy part.
"""
