"""experiments/bench_scaling.py's bookkeeping: the seed doubling, memory exhaustion, the program's memory
and the full-benchmark estimate (the timings themselves are benchmarks, never tested)."""

import importlib.util
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_scaling", ROOT / "experiments" / "bench_scaling.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_seed_counts_double_up_to_the_maximum(bench):
    assert bench.seed_counts("1,4", None) == [1, 4]
    assert bench.seed_counts("1,4", 1024) == [2 ** i for i in range(11)]
    assert bench.seed_counts("1", 100) == [1, 2, 4, 8, 16, 32, 64]


def test_only_memory_errors_stop_the_doubling(bench):
    assert bench.out_of_memory(RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 8.0GiB"))
    assert bench.out_of_memory(RuntimeError("XlaRuntimeError: out of memory"))
    assert not bench.out_of_memory(ValueError("INVALID_ARGUMENT: shapes do not match"))


def test_program_bytes_counts_inputs_outputs_and_temporaries(bench):
    n = 1000
    x = jnp.ones((n,), jnp.float32)
    compiled = jax.jit(lambda a: jnp.outer(a, a).sum(0)).lower(x).compile()
    got = bench.program_bytes(compiled)
    if got is None:
        pytest.skip("this backend gives no memory analysis")
    m = compiled.memory_analysis()
    assert got == m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes
    assert got >= 2 * 4 * n  # at least the input and the output


def test_benchmark_estimate_counts_unmeasured_methods_at_the_mean(bench):
    rows = [dict(method="a", seeds=1, schedule_s=10.0, compile_s=2.0),
            dict(method="b", seeds=1, schedule_s=20.0, compile_s=4.0),
            dict(method="a", seeds=2, schedule_s=18.0, compile_s=2.0)]  # b did not fit at 2 seeds
    (est,) = bench.benchmark_estimates(rows)
    per = [12.0, 24.0]
    expected = bench.BENCHMARK_TASKS * (sum(per) + (bench.BENCHMARK_METHODS - 2) * sum(per) / 2)
    assert est["seeds"] == 1 and est["measured_methods"] == 2
    assert est["benchmark_s"] == pytest.approx(expected, abs=0.05)


def test_matmul_flops_count_loops_as_often_as_they_run():
    """awm_jax.analysis.flops against closed forms: a scan of 10 matmuls counts 10 of them (XLA's cost
    analysis counts the body once), an MLP's parameter gradient 2N(2dh + 3ho), a cond its costlier branch."""
    from awm_jax.analysis.flops import matmul_flops

    a, b = jnp.ones((8, 5)), jnp.ones((5, 5))
    scanned = lambda a, b: jax.lax.scan(lambda x, _: (jnp.tanh(x @ b), None), a, None, length=10)[0]
    assert matmul_flops(scanned, a, b) == 10 * 2 * 8 * 5 * 5
    N, d, h, o = 16, 3, 7, 2
    params = {"w1": jnp.ones((d, h)), "w2": jnp.ones((h, o))}
    x = jnp.ones((N, d))
    loss = lambda p, x: jnp.sum(jnp.tanh(x @ p["w1"]) @ p["w2"])
    assert matmul_flops(jax.jit(jax.grad(loss)), params, x) == 2 * N * (2 * d * h + 3 * h * o)
    branches = lambda p, x: jax.lax.cond(x.sum() > 0, lambda x: x @ p["w1"] @ jnp.ones((h, 1)), lambda x: x[:, :1], x)
    assert matmul_flops(branches, params, x) == 2 * N * d * h + 2 * N * h
