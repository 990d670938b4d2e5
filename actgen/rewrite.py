"""Stability rewrites and common-subexpression sharing: exact kernel expression -> Form.

Rewrite rules are data: named, ordered ``Rule`` objects, each an exact identity that moves an
expression to a form without overflow or cancellation. They are applied bottom-up until
nothing changes. Then numeric subexpressions are folded to high-precision constants and
``sympy.cse`` shares the common subexpressions of the kernel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import sympy as sp
from sympy.codegen.cfunctions import expm1, log1p

from .derive import differentiate
from .errors import DerivationError
from .functions import confine, erfc, sigmoid, softplus
from .ir import X, Form, Kernel, dyadic
from .measure import evaluate_form
from .recognize import standard_function

Boolean = sp.logic.boolalg.Boolean


@dataclass(frozen=True)
class Rule:
    name: str
    doc: str
    apply: Callable[[sp.Basic], sp.Basic | None]   # the rewritten node, or None if it does not match
    #: final rules produce forms SymPy cannot differentiate (UnevaluatedExpr); they run only
    #: when a kernel expression is lowered, after differentiation
    final: bool = False


def _const_and_terms(add):
    const, rest = add.as_coeff_Add()
    return const, sp.Add.make_args(rest)


def _add_pair_rule(match_term):
    """A rule for Adds ``c + k*F(...)`` where ``match_term(c, coeff, factor)`` returns a replacement."""

    def apply(e):
        if not e.is_Add:
            return None
        const, terms = _const_and_terms(e)
        if const == 0:
            return None
        for term in terms:
            coeff, factor = term.as_coeff_Mul()
            replacement = match_term(const, coeff, factor)
            if replacement is not None:
                others = [t for t in terms if t is not term]
                return sp.Add(replacement, *others)
        return None

    return apply


def _softplus(e):
    # log(1 + exp(u)) and log1p(exp(u)) -> softplus(u)
    if isinstance(e, sp.log) and e.args[0].is_Add:
        const, terms = _const_and_terms(e.args[0])
        if const == 1 and len(terms) == 1 and isinstance(terms[0], sp.exp):
            return softplus(terms[0].args[0])
    if isinstance(e, log1p) and isinstance(e.args[0], sp.exp):
        return softplus(e.args[0].args[0])
    return None


def _log_sigmoid(e):
    if isinstance(e, sp.log) and isinstance(e.args[0], sigmoid):
        return -softplus(-e.args[0].args[0])
    return None


def _sigmoid(e):
    # 1 / (1 + exp(-u)) -> sigmoid(u)
    if e.is_Pow and e.exp == -1 and e.base.is_Add:
        const, terms = _const_and_terms(e.base)
        if const == 1 and len(terms) == 1 and isinstance(terms[0], sp.exp):
            return sigmoid(-terms[0].args[0])
    return None


def _exp_sigmoid(e):
    # exp(u) * sigmoid(-u) = exp(u) / (1 + exp(u)) -> sigmoid(u) (exp(u) overflows first)
    if not e.is_Mul:
        return None
    factors = e.args
    for f in factors:
        if isinstance(f, sp.exp):
            for g in factors:
                if isinstance(g, sigmoid) and g.args[0] == -f.args[0]:
                    rest = [h for h in factors if h is not f and h is not g]
                    return sp.Mul(sigmoid(f.args[0]), *rest)
    return None


def _log1p(e):
    if isinstance(e, sp.log) and e.args[0].is_Add:
        const, terms = _const_and_terms(e.args[0])
        if const == 1:
            return log1p(sp.Add(*terms))
    return None


def _expm1(c, k, f):
    # c + k*exp(u) with k == -c  ->  k*expm1(u)
    if isinstance(f, sp.exp) and k == -c:
        return k * expm1(f.args[0])
    return None


def _erfc(c, k, f):
    # c + c*erf(u) -> c*erfc(-u);  c - c*erf(u) -> c*erfc(u)
    if isinstance(f, sp.erf):
        if k == c:
            return c * erfc(-f.args[0])
        if k == -c:
            return c * erfc(f.args[0])
    return None


def _sech2(c, k, f):
    # c - c*tanh(u)**2 -> c / cosh(u)**2 (1 - tanh^2 cancels to 0 once tanh rounds to 1)
    if f.is_Pow and f.exp == 2 and isinstance(f.base, sp.tanh) and k == -c:
        return c / sp.cosh(f.base.args[0]) ** 2
    return None


def _tanh_sigmoid(c, k, f):
    # c + c*tanh(u) -> 2c*sigmoid(2u);  c - c*tanh(u) -> 2c*sigmoid(-2u)  (1 + tanh cancels at -inf)
    if isinstance(f, sp.tanh):
        if k == c:
            return 2 * c * sigmoid(2 * f.args[0])
        if k == -c:
            return 2 * c * sigmoid(-2 * f.args[0])
    return None


def _half_angle(c, k, f):
    # c - c*cos(u) -> 2c*sin(u/2)**2;  c + c*cos(u) -> 2c*cos(u/2)**2 (no cancellation near the
    # roots, u = 2k pi and (2k + 1) pi; sin and cos of an exact argument are accurate there)
    if isinstance(f, sp.cos):
        if k == -c:
            return 2 * c * sp.sin(f.args[0] / 2) ** 2
        if k == c:
            return 2 * c * sp.cos(f.args[0] / 2) ** 2
    return None


def _sinh_cosh(e):
    """sinh(u) * cosh(u)**n (n < -1) -> tanh(u) * cosh(u)**(n + 1): the derivatives of
    1/cosh(u)**2 (tanh's) are inf/inf = NaN where cosh overflows, the tanh form is finite there."""
    if not e.is_Mul:
        return None
    for f in e.args:
        if isinstance(f, sp.sinh):
            u = f.args[0]
            for g in e.args:
                if g.is_Pow and isinstance(g.base, sp.cosh) and g.base.args[0] == u and g.exp.is_number \
                        and g.exp < -1:
                    rest = [a for a in e.args if a is not f and a is not g]
                    return sp.Mul(*rest, sp.tanh(u), g.base ** (g.exp + 1))
    return None


def _sign_abs(e):
    # u * sign(u) * rest -> Abs(u) * rest (lets 1 + |x| - x*sign(x) cancel symbolically)
    if not e.is_Mul:
        return None
    factors = list(e.args)
    for f in factors:
        if isinstance(f, sp.sign) and f.args[0] in factors:
            u = f.args[0]
            rest = list(factors)
            rest.remove(f)
            rest.remove(u)
            return sp.Mul(sp.Abs(u), *rest)
    return None


def _together(e):
    # a/b + c/d -> (ad + bc)/bd, kept only when it is smaller (the terms cancelled)
    def has_denominator(term):
        factors = term.args if term.is_Mul else (term,)
        return any(f.is_Pow and f.exp.is_negative and f.base.free_symbols for f in factors)

    if not e.is_Add or not any(has_denominator(t) for t in e.args):
        return None
    combined = sp.together(e)
    if _overflowing(combined) - _overflowing(e):
        return None     # cosh(u)**2 * tanh(u)**2 / cosh(u)**4: inf/inf where each term was finite
    return combined if sp.count_ops(combined) < sp.count_ops(e) else None


_GROWING = (sp.cosh, sp.sinh, sp.exp)


def _overflowing(expr) -> set:
    """The cosh, sinh and exp nodes of ``expr`` that occur other than as a denominator (where they
    can overflow to inf in a numerator)."""
    stripped = expr.replace(lambda n: n.is_Pow and n.exp.is_negative and isinstance(n.base, _GROWING),
                            lambda n: sp.Dummy())
    return {n for n in sp.preorder_traversal(stripped) if isinstance(n, _GROWING)}


def _root_shift(e):
    # k*u + b -> k*(u + b/k) when b/k is exact in binary: the sum is then exact near its root
    # (0.2*x + 0.5 cancels at x = -2.5 with 0.2's rounding error; (x + 2.5)/5 does not)
    if not e.is_Add or len(e.args) != 2:
        return None
    const, terms = _const_and_terms(e)
    if not const.is_Rational or const == 0 or len(terms) != 1:
        return None
    k, u = terms[0].as_coeff_Mul()
    if not k.is_Rational or k in (1, -1) or u.is_number:
        return None
    shift = const / k
    if not (shift.is_Rational and dyadic(shift)):
        return None
    # UnevaluatedExpr: SymPy would distribute k over the sum again
    return k * sp.UnevaluatedExpr(u + shift)


#: The rules, in the order they are tried at each node.
RULES: tuple[Rule, ...] = (
    Rule("softplus", "log(1 + exp(u)) -> softplus(u), computed as max(u, 0) + log1p(exp(-|u|))", _softplus),
    Rule("log_sigmoid", "log(sigmoid(u)) -> -softplus(-u)", _log_sigmoid),
    Rule("sigmoid", "1 / (1 + exp(-u)) -> sigmoid(u)", _sigmoid),
    Rule("exp_sigmoid", "exp(u) * sigmoid(-u) -> sigmoid(u)", _exp_sigmoid),
    Rule("log1p", "log(1 + u) -> log1p(u)", _log1p),
    Rule("expm1", "c*exp(u) - c -> c*expm1(u)", _add_pair_rule(_expm1)),
    Rule("erfc", "c + c*erf(u) -> c*erfc(-u) (GELU's lower tail)", _add_pair_rule(_erfc)),
    Rule("sech2", "c - c*tanh(u)**2 -> c/cosh(u)**2", _add_pair_rule(_sech2)),
    Rule("tanh_sigmoid", "c + c*tanh(u) -> 2c*sigmoid(2u) (GELU-tanh's lower tail)",
         _add_pair_rule(_tanh_sigmoid)),
    Rule("half_angle", "c - c*cos(u) -> 2c*sin(u/2)**2, c + c*cos(u) -> 2c*cos(u/2)**2", _add_pair_rule(_half_angle)),
    Rule("standard_function", "a standard function spelled out (tanh, sinh, cosh, asinh, atanh... with "
         "exp, log and sqrt) -> the function (recognize.py)", lambda e: _standard(e)),
    Rule("sinh_cosh", "sinh(u)*cosh(u)**n -> tanh(u)*cosh(u)**(n+1), n < -1 (tanh's higher derivatives)",
         _sinh_cosh),
    Rule("sign_abs", "u*sign(u) -> Abs(u)", _sign_abs),
    Rule("root_shift", "k*u + b -> k*(u + b/k) when b/k is exact in binary", _root_shift, final=True),
    Rule("together", "a/b + c/d -> (ad + bc)/bd when that is smaller (the terms cancel)", _together),
)


def _standard(e):
    """recognize.standard_function, unless another rule would rewrite its result (1 + tanh(u) is
    what tanh_sigmoid turns into 2 sigmoid(2u): recognising that back would never end)."""
    found = standard_function(e)
    if found is None:
        return None
    for rule in RULES:
        if rule.name != "standard_function" and not rule.final and rule.apply(found) is not None:
            return None
    return found


def _rewrite_node(e, applied, final):
    for rule in RULES:
        if rule.final and not final:
            continue
        new = rule.apply(e)
        if new is not None and new != e:
            applied.append(rule.name)
            return new
    return e


def stabilize(expr: sp.Expr, max_passes: int = 8, final: bool = False) -> tuple[sp.Expr, list[str]]:
    """Apply RULES bottom-up until a fixpoint; return the new expression and the rules used.

    ``final`` also applies the final rules (the result may then not be differentiable)."""
    applied: list[str] = []

    def walk(e):
        if not e.args or isinstance(e, Boolean) and not e.args:
            return e
        new_args = [walk(a) for a in e.args]
        if any(n is not o for n, o in zip(new_args, e.args)):
            e = e.func(*new_args)
        return _rewrite_node(e, applied, final)

    for _ in range(max_passes):
        new = walk(expr)
        if new == expr:
            break
        expr = new
    return expr, applied


def fold_constants(e: sp.Basic, digits: int = 40) -> sp.Basic:
    """Replace numeric subexpressions (sqrt(2)/2, pi, ...) by Floats of ``digits`` digits.

    Numbers that are already plain Integers or Rationals are kept (the printers print them
    as literals of the kernel's type).
    """
    if not e.args or isinstance(e, sp.Number):
        if e.is_NumberSymbol:
            return sp.Float(e.evalf(digits), digits)
        return e
    if not isinstance(e, Boolean) and not isinstance(e, sp.Tuple) and e.is_number:
        value = e.evalf(digits)
        if value.is_real is not False and value.is_finite:
            return sp.Float(value, digits)
    if e.is_Add or e.is_Mul:
        numeric = [a for a in e.args if a.is_number]
        rest = [fold_constants(a, digits) for a in e.args if not a.is_number]
        if len(numeric) > 1 or (numeric and not numeric[0].is_Rational):
            value = e.func(*numeric).evalf(digits)
            if value.is_real and value.is_finite:     # (not zoo, nan or oo: those stay symbolic)
                return e.func(sp.Float(value, digits), *rest)
        return e.func(*numeric, *rest)
    return e.func(*[fold_constants(a, digits) for a in e.args])


def _inline_boolean_temps(temps, result):
    """CSE may name a condition (t0 = x > 0); put conditions back where they are used."""
    kept, subs = [], {}
    for sym, value in temps:
        value = value.xreplace(subs)
        if _is_condition(value):
            subs[sym] = value
        else:
            kept.append((sym, value))
    return kept, result.xreplace(subs)


def _is_condition(value) -> bool:
    return isinstance(value, (sp.core.relational.Relational, sp.logic.boolalg.BooleanFunction))


def tidy_piecewise(expr: sp.Expr) -> sp.Expr:
    """Flatten nested Piecewise and turn ITE conditions into plain and/or."""
    if not expr.has(sp.Piecewise):
        return expr
    expr = sp.piecewise_fold(expr)
    expr = expr.replace(sp.ITE, lambda c, a, b: sp.Or(sp.And(c, a), sp.And(sp.Not(c), b)))

    def simplify_conditions(pw):
        return sp.Piecewise(*[(value, sp.simplify_logic(cond) if isinstance(cond, sp.logic.boolalg.BooleanFunction)
                               else cond) for value, cond in pw.args])

    return expr.replace(lambda e: isinstance(e, sp.Piecewise), simplify_conditions)


def stable_source(kernel: Kernel, forward: sp.Expr) -> tuple[sp.Expr, list[str]]:
    """The expression a kernel is generated from: the stabilised forward, or its derivative.

    Differentiating the stable forward (softplus, sigmoid, ...) gives stable derivatives
    (softplus' = sigmoid) where differentiating the user's form would not (exp(x)/(1 + exp(x))).
    """
    if kernel.kind == "backward_y":          # written by the spec with y: rewrite it as it is
        return stabilize(kernel.exact)
    stable_forward, rules = stabilize(forward)
    if kernel.kind == "forward":
        return stable_forward, rules
    var = sp.Symbol(kernel.param, real=True) if kernel.param else sp.Symbol("x", real=True)
    try:
        return differentiate(stable_forward, var), rules
    except DerivationError:
        # the stable forward's derivative is over the size limit where the exact one is not
        # (the rewrite put a sum of fractions over one denominator: tanhshrink's f'' is 320
        # operations as rewritten, its derivative over 2,000; the exact third derivative has
        # 850): the exact derivative, rewritten
        return stabilize(kernel.exact)


#: inputs at which a select branch is tried outside its own interval (confine_branches): where
#: activations are used. Not +-1000: a NaN that only overflow makes (inf/inf in log1mexp's f')
#: is rare in use, and confining that branch costs more (gcc threads the jumps of the confined
#: input through the select, the loop gets control flow and stays scalar: 0.72 -> 0.09 Gelem/s).
_PROBES = (-30.0, -3.0, -0.5, 0.5, 3.0, 30.0)


def _undefined_somewhere(value: sp.Expr, x: sp.Symbol, region: sp.Set) -> bool:
    """True if ``value`` is NaN at some probe input outside ``region`` (evaluated in double by
    the NumPy printer's code: SymPy's evalf can overflow or take long on exp(exp(x)))."""
    probes = np.array([p for p in _PROBES if region.contains(p) is not sp.true])
    if not probes.size:
        return False
    try:
        values = evaluate_form(Form((), value.xreplace({x: X})), probes, {}, "float64", "dtype")
    except Exception:                           # cannot tell: leave the branch as it is
        return False
    return bool(np.isnan(values).any())


def confine_branches(expr: sp.Expr) -> sp.Expr:
    """Wrap the input of each select branch that is undefined outside its own interval in
    ``confine`` (x inside the interval, a point of it elsewhere).

    A select is compiled as every branch computed on every element, then a blend: that is what
    vectorises. log1mexp's log(-expm1(-x)) then gets x < 0 and makes NaN, which is discarded,
    but glibc's vector log takes its scalar special-value path for the whole vector (log1mexp ran
    at 0.06 Gelem/s). Only branches of a single input variable, under conditions on it alone,
    that are NaN at some probe outside their interval are confined: confining
    separates a branch's subexpressions from the others' (no more shared CSE temporaries), which
    costs where nothing was gained (squareplus ran 0.55x when every branch was confined)."""
    def rebuild(pw):
        conds = [c for _, c in pw.args]
        syms = set().union(*(c.free_symbols for c in conds[:-1])) if len(conds) > 1 else set()
        if len(syms) != 1:
            return pw
        (x,) = syms
        pieces, earlier, changed = [], [], False
        for value, cond in pw.args:
            region_cond = sp.And(cond, *[sp.Not(c) for c in earlier])
            earlier.append(cond)
            if value.free_symbols != {x} or not value.atoms(sp.Function):
                pieces.append((value, cond))
                continue
            try:
                region = sp.S.Reals if region_cond is sp.true else region_cond.as_set()
                lo, hi = region.inf, region.sup
            except Exception:                   # not a set of reals SymPy can describe
                pieces.append((value, cond))
                continue
            if (region is sp.S.EmptySet or (lo.is_infinite and hi.is_infinite)
                    or not _undefined_somewhere(value, x, region)):
                pieces.append((value, cond))
                continue
            inside = (lo + hi) / 2 if lo.is_finite and hi.is_finite else (lo + 1 if lo.is_finite else hi - 1)
            pieces.append((value.xreplace({x: confine(x, lo, hi, fold_constants(inside))}), cond))
            changed = True
        return sp.Piecewise(*pieces, evaluate=False) if changed else pw

    return expr.replace(lambda e: isinstance(e, sp.Piecewise), rebuild)


def stable_form(kernel: Kernel, forward: sp.Expr) -> Form:
    """The kernel's stable rewrite, lowered: selection's first candidate. Its ``stable``
    expression's terms are what a derivative's rounding errors are measured against
    (measure.term_scale)."""
    return lower(*stable_source(kernel, forward))


def lower(expr: sp.Expr, rules_before: list[str] | tuple = ()) -> Form:
    """kernel expression -> Form (stable rewrite, constant folding, CSE)."""
    stable, rules = stabilize(tidy_piecewise(expr), final=True)
    rules = list(dict.fromkeys([*rules_before, *rules]))
    folded = confine_branches(fold_constants(stable))
    temps, (result,) = sp.cse([folded], symbols=sp.numbered_symbols("t", real=True), order="none")
    temps, result = _inline_boolean_temps(temps, result)
    return Form(tuple(temps), result, tuple(rules), stable)
