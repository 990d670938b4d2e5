"""Derivatives of any order as activations of their own: the k-th derivative f^(k) of an
elementwise activation f is an elementwise activation with the same parameters, whose forward
is f^(k), whose backward is dy * f^(k+1) and whose parameter gradients are the mixed
derivatives sum(dy * d f^(k) / dp). It is described by a *derived table* (this module: plain
data, no SymPy), which goes through the same pipeline as a spec's table: its key in the cache
index is its content (the parent's table and k, never a file), so a derived order loads from
the cache without SymPy, like a spec does, and is built once.

For a gated (y = a * g(b)) or rowwise (softmax(g(x)) along an axis) activation, which is not
a scalar function, order k means the k-th derivative of its elementwise part g (the gate, the
score), k >= 0: framework wrappers differentiate the gating or the normalisation with their own
operations around these (actgen/jax.py).
"""

from __future__ import annotations

#: the key of a derived table that holds the parent's table
DERIVED = "derivative_of"


def is_derived(table: dict) -> bool:
    return isinstance(table, dict) and DERIVED in table


def root(name: str, table: dict) -> tuple[str, dict, int]:
    """(the spec table's name, the table, the order) of a table, derived or not."""
    if is_derived(table):
        return table["name"], table[DERIVED], table["order"]
    return name, table, 0


def derived_table(name: str, table: dict, order: int) -> tuple[str, dict]:
    """(name, table) of the order-``order`` derivative of the table ``name`` (a spec's table or a
    derived one: orders add up). The name is the parent's with ``_d<k>``: it names the kernels'
    C symbols and shows in messages."""
    base_name, base, base_order = root(name, table)
    total = base_order + order
    return f"{base_name}_d{total}", {DERIVED: base, "name": base_name, "order": total}


def order_label(k: int) -> str:
    """f, f', f'', f''' and f^(k) beyond."""
    return "f" + ("'" * k if k <= 3 else f"^({k})")
