"""Activation -> kernels: the exact per-element quantity each generated kernel computes.

Kernels (per activation): the per-element expressions every backend builds its loops from.
  forward          y  = f(x)
  backward         dx = dy * f'(x)           (the kernel expression is f'(x))
  backward_y       dx = dy * g(y)            (g(f(x)) = f'(x): the spec's output_derivative, if any)
  grad_<p>         dp = sum(dy * df/dp)      (for each learnable parameter p)
For a gated activation f is the gate, for a rowwise one the score; the loops differ, not these.

Kink conventions (what a derivative is at a point where it jumps) follow PyTorch:

* ``Max``/``Min``: at a tie, the derivative is that of the argument which does not depend on
  the variable of differentiation. So relu = Max(0, x) has relu'(0) = 0 (PyTorch, JAX), and
  relu6 = Min(Max(0, x), 6) has derivative 0 at 0 and at 6 (PyTorch's hardtanh_backward).
  If both arguments depend on it, the two derivatives are averaged (SymPy's convention).
  SymPy's own ``diff(Max(0, x), x)`` is ``Heaviside(x)`` with Heaviside(0) = 1/2, which no
  framework uses, so Max/Min become explicit Piecewise expressions before differentiating.
* ``Piecewise``: each branch is differentiated on its own; the branch that owns a boundary
  point (by its condition, e.g. ``x > 0`` vs ``x >= 0``) gives the derivative there. This lets
  a spec state its convention: ``Piecewise((x, x > 0), (a*x, True))`` has derivative ``a`` at 0
  (PyTorch's leaky_relu and prelu).
* ``Abs``: derivative sign(u) with sign(0) = 0 (PyTorch's abs backward).
* ``DiracDelta`` terms (from derivatives of sign and Heaviside) are 0.
"""

from __future__ import annotations

from itertools import combinations

import mpmath
import sympy as sp

from .activation import Activation
from .errors import DerivationError
from .ir import X, Y, Kernel, param_symbol
from .reference import Undefined, evaluate

#: Nodes of a derivative's SymPy tree (the built-ins' largest has 56). Every later stage (stable
#: rewrites, measured selection, the mpmath reference) costs time in proportion to it, so a
#: derivative that explodes is refused here, counted, rather than after minutes of SymPy.
MAX_DERIVATIVE_NODES = 2_000
#: The same limit, estimated from the expression before differentiating: sp.diff itself is
#: refused if the estimate exceeds this many nodes.
MAX_DERIVATIVE_ESTIMATE = 10 * MAX_DERIVATIVE_NODES


def _tie(a, b, var, is_max: bool):
    """Max(a, b) or Min(a, b) as a Piecewise whose derivative follows the tie convention."""
    wins = (lambda p, q: p > q) if is_max else (lambda p, q: p < q)
    a_dep, b_dep = a.has(var), b.has(var)
    if not a_dep and not b_dep:
        return (sp.Max if is_max else sp.Min)(a, b)
    if a_dep and not b_dep:
        return sp.Piecewise((a, wins(a, b)), (b, True))
    if b_dep and not a_dep:
        return sp.Piecewise((b, wins(b, a)), (a, True))
    return sp.Piecewise((a, wins(a, b)), (b, wins(b, a)), ((a + b) / 2, True))


def ties_to_piecewise(expr: sp.Expr, var: sp.Symbol) -> sp.Expr:
    """Replace every Max/Min by a Piecewise with the tie convention for d/d``var``."""
    if not expr.args:
        return expr
    args = [ties_to_piecewise(a, var) for a in expr.args]
    if isinstance(expr, (sp.Max, sp.Min)):
        result = args[0]
        for other in args[1:]:
            result = _tie(result, other, var, isinstance(expr, sp.Max))
        return result
    return expr.func(*args)


def _size(expr: sp.Basic, limit: int) -> int:
    """Nodes of a SymPy tree, counted without recursion, stopping once past ``limit``."""
    count, stack = 0, [expr]
    while stack and count <= limit:
        node = stack.pop()
        count += 1
        stack.extend(node.args)
    return count


def derivative_size_estimate(expr: sp.Basic, var: sp.Symbol) -> int:
    """An estimate (from above, up to small constants) of the node count of d expr / d var,
    computed from the tree alone, without recursion and without differentiating: a sum's
    derivative is the sum of its terms' derivatives, a product of k factors gives k products
    (the product rule), a power or function f(u) gives about f'(u) * u' (the chain rule)."""
    size: dict = {}
    deriv: dict = {}
    stack = [(expr, False)]
    while stack:
        node, ready = stack.pop()
        if node in size:
            continue
        if not ready:
            stack.append((node, True))
            stack.extend((arg, False) for arg in node.args if arg not in size)
            continue
        args = node.args
        size[node] = 1 + sum(size[a] for a in args)
        if not node.has(var):
            deriv[node] = 1
        elif not args:
            deriv[node] = 1
        elif isinstance(node, sp.Add):
            deriv[node] = 1 + sum(deriv[a] for a in args)
        elif isinstance(node, sp.Mul):
            dependent = [a for a in args if a.has(var)]
            deriv[node] = 1 + sum(deriv[a] + size[node] for a in dependent)
        else:   # Pow, functions, Piecewise, Max/Min: the node again (f'(u) is about as big) times u'
            deriv[node] = 4 + sum(deriv[a] + 2 * size[node] for a in args if a.has(var))
    return deriv[expr]


def _too_large(what: str, var, limit: int) -> DerivationError:
    return DerivationError(
        f"the derivative with respect to {var} {what} more than {limit:,} operations; simplify the expression "
        "(e.g. factor repeated subexpressions: a product of many factors or deeply nested functions "
        "makes the derivative explode)",
        fix="write a smaller expression (the built-in activations' derivatives have at most 60 nodes)")


def differentiate(expr: sp.Expr, var: sp.Symbol) -> sp.Expr:
    """d expr / d var with actgen's kink conventions (see the module docstring). Refuses (with a
    DerivationError) a derivative larger than MAX_DERIVATIVE_NODES, by an estimate before
    differentiating and by a count after: a limit on work, not on wall-clock time."""
    prepared = ties_to_piecewise(expr, var)
    if derivative_size_estimate(prepared, var) > MAX_DERIVATIVE_ESTIMATE:
        raise _too_large("would have", var, MAX_DERIVATIVE_NODES)
    result = sp.diff(prepared, var)
    if _size(result, MAX_DERIVATIVE_NODES) > MAX_DERIVATIVE_NODES:
        raise _too_large("has", var, MAX_DERIVATIVE_NODES)
    result = result.replace(sp.DiracDelta, lambda *args: sp.S.Zero)
    if result.has(sp.Derivative, sp.Subs):
        raise DerivationError(f"SymPy could not differentiate the expression with respect to {var}",
                              fix="use only the listed functions of x and the parameters")
    return result


def derive(act: Activation) -> list[Kernel]:
    """The kernels of an activation: forward, backward, and one gradient per learnable parameter."""
    try:
        return _derive(act)
    except DerivationError as exc:
        if exc.path or not act.source:
            raise
        raise DerivationError(exc.problem, path=act.source, activation=act.name, key="expr",
                              fix=exc.fix) from None


def _derive(act: Activation) -> list[Kernel]:
    kernels = [Kernel("forward", "forward", act.expr),
               Kernel("backward", "backward", differentiate(act.expr, X))]
    if act.output_derivative is not None:
        kernels.append(Kernel("backward_y", "backward_y", act.output_derivative))
    elif act.kind == "rowwise" and not kernels[1].exact.has(X):
        # the score's derivative is a constant (x, -x, x/T): the row's backward can start from
        # the saved output, as PyTorch's softmax backward does
        kernels.append(Kernel("backward_y", "backward_y", kernels[1].exact))
    for p in act.learnable:
        kernels.append(Kernel(f"grad_{p}", "param_grad", differentiate(act.expr, param_symbol(p)), p))
    return kernels


def _default_subs(act: Activation) -> dict:
    """The parameters at their defaults, as exact binary rationals (nsimplify cost 70 ms a value)."""
    return {param_symbol(p): sp.Rational(v) if abs(v) != float("inf") else sp.oo * (1 if v > 0 else -1)
            for p, v in act.params.items()}


def kink_points(act: Activation, exact: bool = False) -> list:
    """The x where the activation (at default parameters) has a kink or a branch boundary, as
    floats (or, with ``exact``, as SymPy numbers: whether a float is the kink or only near it).

    Found from Piecewise conditions, Max/Min ties and the arguments of Abs/sign/Heaviside,
    solved for x. Used for test points and for documenting the derivative there.
    """
    subs = _default_subs(act)
    candidates = set()
    for node in sp.preorder_traversal(act.expr):
        if isinstance(node, sp.core.relational.Relational):
            candidates.add(node.lhs - node.rhs)
        elif isinstance(node, (sp.Max, sp.Min)):
            candidates.update(a - b for a, b in combinations(node.args, 2))
        elif isinstance(node, (sp.Abs, sp.sign, sp.Heaviside)):
            candidates.add(node.args[0])
    points = set()
    for c in candidates:
        c = c.xreplace(subs)
        if X not in c.free_symbols or c.has(sp.oo, -sp.oo, sp.zoo, sp.nan):
            continue
        try:
            solutions = sp.solveset(c, X, domain=sp.S.Reals)
        except (NotImplementedError, ValueError, TypeError):
            continue
        if isinstance(solutions, sp.FiniteSet):
            points.update(s for s in solutions if s.is_real)
    return sorted(points, key=float) if exact else sorted({float(p) for p in points})


def _real_roots(expr: sp.Expr, subs: dict) -> set[float]:
    """The real x where ``expr`` (with the parameters at their defaults) is 0: all of them for a
    polynomial in x of degree up to 4 (solveset), else only whether x = 0 is one (solveset on
    transcendental equations can take minutes; the removable singularities of activations are
    at 0: sin(x)/x, (exp(x) - 1)/x, x/(1 - exp(-x)))."""
    c = expr.xreplace(subs)
    if X not in c.free_symbols or c.has(sp.oo, -sp.oo, sp.zoo, sp.nan):
        return set()
    if c.is_polynomial(X) and sp.degree(c, X) <= 4:
        try:
            solutions = sp.solveset(c, X, domain=sp.S.Reals)
        except (NotImplementedError, ValueError, TypeError, RecursionError):
            return set()
        if isinstance(solutions, sp.FiniteSet):
            return {float(s) for s in solutions if s.is_real and s.is_finite}
        return set()
    try:
        at_zero = evaluate(c, {X: 0.0}, 128)
    except (Undefined, ValueError, ZeroDivisionError, TypeError, OverflowError):
        return set()
    return {0.0} if at_zero == 0 else set()


def singular_points(act: Activation, expr: sp.Expr | None = None) -> list[float]:
    """The x (at the default parameters) where a denominator of the expression (or of ``expr``)
    vanishes: a pole, or a removable singularity (sin(x)/x at 0, where the value is the limit).
    Found from every negative power's base, solved for x."""
    subs = _default_subs(act)
    points = set()
    for node in sp.preorder_traversal(act.expr if expr is None else expr):
        if node.is_Pow and node.exp.is_negative and node.base.has(X):
            points |= _real_roots(node.base, subs)
    return sorted(points)


def check_output_derivative(act: Activation) -> str | None:
    """Check g(f(x)) == f'(x) for the spec's output_derivative g, at x on [-20, 20], at the
    kinks and next to them, for the default parameters and perturbed ones (those where
    output_derivative_valid holds), in 300-bit arithmetic. A description of the first
    mismatch, or None."""
    derivative = differentiate(act.expr, X)
    kinks = kink_points(act)
    xs = [k / 4 + 0.0371 for k in range(-80, 81)] + [v + d for v in kinks for d in (0.0, 1e-9, -1e-9, 0.25, -0.25)]
    param_sets = [dict(act.params)]
    for p, d in act.params.items():
        for v in ((d * 1.25, d * 0.8, -d) if d not in (0.0, float("inf"), float("-inf")) else (0.25, -0.25)):
            param_sets.append(dict(act.params, **{p: v}))
    checked = 0
    for values in param_sets:
        env = {param_symbol(p): v for p, v in values.items()}
        if act.output_derivative_valid.xreplace(env) is not sp.true:
            continue
        for x in xs:
            try:
                y = evaluate(act.expr, {**env, X: x}, 300)
                want = evaluate(derivative, {**env, X: x}, 300)
                with mpmath.workprec(300):
                    got = evaluate(act.output_derivative, {**env, Y: y}, 300)
            except (Undefined, ValueError, ZeroDivisionError):
                continue
            checked += 1
            scale = max(mpmath.mpf(1), abs(want))
            if not (mpmath.isfinite(got) and abs(got - want) <= mpmath.mpf(10) ** -30 * scale):
                shown = ", ".join(f"{p} = {v:g}" for p, v in values.items())
                return (f"at x = {x:g}{' (' + shown + ')' if shown else ''}: y = {mpmath.nstr(y, 8)}, "
                        f"f'(x) = {mpmath.nstr(want, 8)} but output_derivative(y) = {mpmath.nstr(got, 8)}")
    if not checked:
        return "it could not be evaluated at any point for the default parameters"
    return None
