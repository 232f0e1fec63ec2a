"""tests/tolerances.py: the float32 tolerances hold for real float32 reductions and are tight enough to fail."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tolerances import EPS32, assert_trees_close, f32_tol


def test_values_and_bad_inputs():
    assert EPS32 == 2.0 ** -23
    assert f32_tol(16, ulps=3) == dict(rtol=3 * 4 * 2.0 ** -23, atol=0.0)
    assert f32_tol(4, ulps=2, scale=5.0) == dict(rtol=4 * 2.0 ** -23, atol=20 * 2.0 ** -23)
    for bad in (dict(reduction_length=0), dict(ulps=0), dict(scale=-1.0)):
        with pytest.raises(ValueError, match="bad tolerance"):
            f32_tol(**bad)


@pytest.mark.parametrize("n", [10, 1000, 100_000])
def test_float32_sums_and_dots_lie_within_and_a_perturbation_does_not(n):
    """XLA's float32 sums and dot products of n terms against float64: within f32_tol(n) (atol from the
    terms' magnitude, as the sums cancel to near 0); 10 times the tolerance more is caught."""
    rng = np.random.default_rng(n)
    x, y = rng.standard_normal((2, 64, n)).astype(np.float32)
    sums = np.asarray(jax.jit(lambda a: a.sum(-1))(x))
    dots = np.asarray(jax.jit(lambda a, b: jnp.einsum("bn,bn->b", a, b))(x, y))
    want_sums = x.astype(np.float64).sum(-1)
    want_dots = np.einsum("bn,bn->b", x.astype(np.float64), y.astype(np.float64))
    for got, want, scale in ((sums, want_sums, np.abs(x).max()), (dots, want_dots, np.abs(x * y).max())):
        tol = f32_tol(n, scale=float(scale))
        np.testing.assert_allclose(got, want, **tol)
        with pytest.raises(AssertionError):
            np.testing.assert_allclose(got + 10 * (tol["atol"] + tol["rtol"] * np.abs(want)), want, **tol)


def test_trees_close_scales_each_leaf():
    want = {"a": np.array([1e3, -2e3]), "b": np.array([1e-3, 0.0])}
    assert_trees_close({"a": want["a"] * (1 + 1e-7), "b": want["b"] + 1e-10}, want, 4)
    with pytest.raises(AssertionError, match="leaf 1"):
        assert_trees_close({"a": want["a"], "b": want["b"] + 1e-8}, want, 4)
