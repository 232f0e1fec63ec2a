"""Tolerances for float32 results compared against a reference, derived from float32 rounding.

Each float32 operation rounds to within half an ulp (EPS32 / 2 relative; EPS32 = 2**-23 = 1.19e-7 is
one ulp at 1.0). A result that n roundings feed (a sum or dot product of length n, or a chain of n
operations) is off by at most about n * EPS32 / 2 relative to the magnitude of its terms, and in practice
by about sqrt(n) * EPS32 / 2: the roundings' errors have either sign and add like a random walk (Higham,
Accuracy and Stability of Numerical Algorithms, sections 2.8 and 4.2). Two float32 programs that round
differently (vmapped against looped, blocked against whole, one jaxlib's CPU code against another's)
then differ by about sqrt(2n) half-ulps, and a float32 result differs from a float64 reference by
about sqrt(n).

`f32_tol(n, ulps, scale)` turns that into `assert_allclose` keywords:
- rtol = ulps * sqrt(n) * EPS32, with n the reduction length (the number of roundings along the longest
  chain into one output element) and `ulps` the slack: 2 covers two programs' independent roundings
  and the elementwise functions on the way (exp, tanh, log: 1-2 ulps each in XLA's CPU code); 4 or more
  where a chain amplifies its inputs' errors (a softmax's exp, a division by a small norm);
- atol = rtol * scale, with `scale` the magnitude of the terms that make the output (max |v| for a
  weighted mean of v, 1 for a sum of tanh's): a sum that cancels to near zero keeps its terms' absolute
  rounding, so its relative error can be large. scale=0 (the default): relative only, where nothing
  cancels.

The sqrt(n) estimate rather than the worst-case n keeps the tolerances tight enough to catch small bugs
(a LayerNorm epsilon of 1e-5 instead of 1e-6 moves unit-variance features by ~5e-6 relative); each test
that uses these says which bug its tolerance still catches.
"""

from __future__ import annotations

import math

import numpy as np

EPS32 = float(np.finfo(np.float32).eps)  # 1.1920929e-07


def f32_tol(reduction_length: int = 1, ulps: float = 2, scale: float = 0.0) -> dict:
    """`assert_allclose` keywords for a float32 result that `reduction_length` roundings feed:
    rtol = ulps * sqrt(reduction_length) * EPS32, atol = rtol * scale (scale: the terms' magnitude)."""
    if reduction_length < 1 or ulps <= 0 or scale < 0:
        raise ValueError(f"bad tolerance inputs: reduction_length={reduction_length}, ulps={ulps}, scale={scale}")
    rtol = ulps * math.sqrt(reduction_length) * EPS32
    return dict(rtol=rtol, atol=rtol * float(scale))


def assert_trees_close(got, want, reduction_length: int, ulps: float = 2, err_msg: str = "") -> None:
    """Leaf by leaf `assert_allclose(got, want, **f32_tol(reduction_length, ulps, scale=max |want leaf|))`:
    for gradients, whose entries are sums that may cancel, so each leaf's atol comes from its own magnitude."""
    import jax

    a, b = jax.tree.leaves(got), jax.tree.leaves(want)
    assert len(a) == len(b), f"{len(a)} leaves against {len(b)}"
    for i, (x, y) in enumerate(zip(a, b)):
        y = np.asarray(y)
        tol = f32_tol(reduction_length, ulps, scale=float(np.abs(y).max()) if y.size else 0.0)
        np.testing.assert_allclose(np.asarray(x), y, **tol, err_msg=f"{err_msg} leaf {i}")
