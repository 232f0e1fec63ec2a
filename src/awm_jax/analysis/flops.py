"""Matmul FLOPs of a function, counted from its jaxpr with every loop body counted as often as it runs.

XLA's cost analysis (`compiled.cost_analysis()["flops"]`, the count shared PEER.md's FLOP limit uses)
counts the body of a while loop once, whatever its trip count: for the recurrent world models, whose
model update steps an LSTM over 101 tokens in a `lax.scan`, it reports 0.018 GFLOP where the matmuls
alone are 1.27. This count walks the jaxpr instead: a `dot_general` costs 2 x (output elements) x
(contracted elements), a `scan` its body times its length, a `cond` its costliest branch, a `while`
its body once (its trip count is not known before it runs; none of the learners' updates has one), and
any other primitive holding jaxprs (jit, remat, custom derivatives) what they hold. Elementwise work is
not counted: the limit is taken at a matmul rate.
"""

from __future__ import annotations

import math

import jax
from jax.extend import core


def matmul_flops(fn, *args) -> float:
    """FLOPs of the matrix products `fn(*args)` performs (args may be arrays or ShapeDtypeStructs)."""
    return _count(jax.make_jaxpr(fn)(*args).jaxpr)


def _count(jaxpr) -> float:
    total = 0.0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "dot_general":
            (contract, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval.shape
            total += 2.0 * math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[d] for d in contract)
        elif name == "scan":
            total += eqn.params["length"] * _count(eqn.params["jaxpr"].jaxpr)
        elif name == "cond":
            total += max(_count(b.jaxpr) for b in eqn.params["branches"])
        else:
            total += sum(_count(getattr(j, "jaxpr", j)) for j in core.jaxprs_in_params(eqn.params))
    return total
