"""Seed-axis sharding on 4 forced host devices against the single-device run.

XLA_FLAGS must be set before JAX starts, so each case runs in a fresh subprocess. Measured here: the
sharded run is deterministic (bit for bit across repeats) and equals the unsharded one to float32
rounding, not bit for bit. XLA's CPU code is not batch-invariant (jaxlib 0.10.2): the first
difference is 1 ulp in the warm-up normaliser (a masked mean over ~1,700 replayed states) of 2 of 8
seeds between the 8-seed one-device program and the 2-seeds-per-device sharded one, while the same
mean computed in a program of its own agrees; even a 2-seed block of the sharded program differs from
a 2-seed one-device run. No XLA CPU flag of this jaxlib removed it (tried: YNNPACK and XNNPACK fusions
off, fusion emitters off, 128-bit vectors, max ISA SSE4.2, platform-dependent math off). Training
then carries such differences along (about 2e-6 on the eval return after two periods at policy lr
1e-4; the default normalized rate, 3e-3 when measured, amplified them to ~3e-4, so these runs pin 1e-4).
Single-seed and vmapped runs differ the same way.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from tolerances import f32_tol

SCRIPT = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    from awm_jax import Config
    from awm_jax.runner.run import run_training
    assert jax.device_count() == 4, jax.devices()
    cfg = Config(task="simple_case", horizon=10, seeds=int(sys.argv[2]), total_steps=328,
                 warmup_steps=200, eval_every=64, model_batch=16, imagined_rollouts=4, width=16, heads=2,
                 layers=1, rnn_hidden=16, policy_lr=1e-4).for_method(sys.argv[1])
    s1, m1 = run_training(cfg, shard=True, verbose=False)
    s2, m2 = run_training(cfg, shard=True, verbose=False)
    s0, m0 = run_training(cfg, shard=False, verbose=False)
    repeat = all(np.array_equal(m1[k], m2[k], equal_nan=True) for k in m0)
    devices = len(jax.tree.leaves(s1.policy_params)[0].sharding.device_set)
    params = [np.max(np.abs(np.asarray(a) - np.asarray(b)) / (np.abs(np.asarray(b)).max() + 1e-12))
              for a, b in zip(jax.tree.leaves(s1.policy_params), jax.tree.leaves(s0.policy_params))]
    print(json.dumps(dict(repeat=repeat, devices=devices, shape=list(m1["eval/return"].shape),
                          sharded=m1["eval/return"].tolist(), single=m0["eval/return"].tolist(),
                          loss_sharded=m1["model/loss"].tolist(), loss_single=m0["model/loss"].tolist(),
                          param_rel_diff=float(max(params)))))
""")


def _run(method, seeds):
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4"  # and the tests' flags
    env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", SCRIPT, method, str(seeds)], capture_output=True, text=True,
                         env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("method,seeds", [pytest.param("awm_lstm", 8, marks=pytest.mark.slow),
                                          pytest.param("awm_gru", 6, marks=pytest.mark.slow), ("markov_mlp", 6)])
def test_sharded_equals_unsharded(method, seeds):
    """8 seeds over 4 devices, and 6 seeds padded to 8 (padding dropped), equal one device up to
    float32 rounding, and repeat bit for bit."""
    r = _run(method, seeds)
    assert r["shape"] == [seeds, 2] and r["devices"] == 4 and r["repeat"]
    np.testing.assert_allclose(r["sharded"], r["single"], rtol=1e-5)
    # the model loss on simple_case is small (~1e-2): rounding moves it up to 2.7e-3 relative (measured);
    # another seed's data would move it by O(1)
    np.testing.assert_allclose(r["loss_sharded"], r["loss_single"], rtol=1e-2, atol=1e-7)
    assert r["param_rel_diff"] < 2e-3  # 3.3e-4 measured on an AMD EPYC host, < 1e-4 on others; a seed mix-up gives O(1)


TWO_PROCESS = textwrap.dedent("""
    import json, sys
    pid, port = int(sys.argv[1]), sys.argv[2]
    from awm_jax.runner.sharding import init_distributed
    init_distributed(f"127.0.0.1:{port}", 2, pid)
    import jax
    from awm_jax import Config
    from awm_jax.runner.run import run_training
    assert jax.device_count() == 4 and jax.local_device_count() == 2 and jax.process_count() == 2
    cfg = Config(task="cancer_treatment", method="awm_gru", seeds=6, total_steps=328, warmup_steps=200,
                 eval_every=64, model_batch=16, imagined_rollouts=4, rnn_hidden=16)
    _, m = run_training(cfg, verbose=False)
    if pid == 0:
        print(json.dumps({k: v.tolist() for k, v in m.items()}))
""")


@pytest.mark.slow  # ~50 s: two JAX processes start and compile
def test_two_processes_equal_one(tmp_path):
    """Two processes on localhost (2 forced CPU devices each, 4 global), each feeding its block of 6
    seeds padded to 8, give the single-process results (to float32 rounding, as above)."""
    import socket

    from awm_jax import Config
    from awm_jax.runner.run import run_training

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=2"  # and the tests' flags
    env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
    procs = [subprocess.Popen([sys.executable, "-c", TWO_PROCESS, str(i), port], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for i in (0, 1)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, se) in zip(procs, outs):
        assert p.returncode == 0, se[-3000:]
    multi = json.loads(outs[0][0].strip().splitlines()[-1])
    cfg = Config(task="cancer_treatment", method="awm_gru", seeds=6, total_steps=328, warmup_steps=200,
                 eval_every=64, model_batch=16, imagined_rollouts=4, rnn_hidden=16)
    _, single = run_training(cfg, verbose=False)
    assert np.asarray(multi["eval/return"]).shape == (6, 2)
    np.testing.assert_allclose(multi["eval/return"], single["eval/return"], rtol=1e-5)
    np.testing.assert_allclose(multi["model/loss"], single["model/loss"], rtol=1e-3, atol=1e-7)


def test_seed_map_batches_equal_vmap_and_a_python_loop():
    """seed_map(fn, batch): vmapped (None), one seed at a time (1) or groups with a remainder (2 of 5 seeds)
    give every seed's own result, as a python loop over the seeds computes it."""
    import jax
    import jax.numpy as jnp

    from awm_jax.runner.sharding import seed_map

    x = jax.random.normal(jax.random.PRNGKey(0), (5, 6, 3))
    w = jax.random.normal(jax.random.PRNGKey(1), (5, 3, 4))
    fn = lambda x, w: {"y": jnp.tanh(x @ w).sum(0), "n": jnp.linalg.norm(x)}
    loop = {k: np.stack([np.asarray(fn(x[i], w[i])[k]) for i in range(5)]) for k in ("y", "n")}
    # The jitted seed_map program and the eager loop are different XLA programs (batched dots against
    # one-seed ones), so they agree to rounding, not bit for bit: "y" is a length-3 dot, a tanh and a sum
    # of 6 tanh's (|tanh| <= 1, and the sum may cancel: atol from the terms' magnitude 1), 10 roundings
    # deep; "n" a sum of 18 squares and a square root (no cancellation). 2 ulps each: 2.4e-6 and 4.5e-6.
    # A seed mix-up moves both by O(0.1).
    tol = {"y": f32_tol(3 + 1 + 6, ulps=2, scale=1.0), "n": f32_tol(18 + 1, ulps=2)}
    for batch in (None, 1, 2, 5):
        out = jax.jit(seed_map(fn, batch))(x, w)
        for k in loop:
            np.testing.assert_allclose(out[k], loop[k], **tol[k], err_msg=f"batch {batch}, {k}")
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="seed batch"):
            seed_map(fn, bad)
    from awm_jax.runner.sharding import parse_seed_batch

    assert [parse_seed_batch(t) for t in ("auto", "all", "1", "3")] == ["auto", None, 1, 3]
    for bad in ("0", "-1", "x", "1.5"):
        with pytest.raises(ValueError, match="--seed-batch"):
            parse_seed_batch(bad)


@pytest.mark.slow  # ~12-19 s: out of the default run, which must stay under 15 minutes
def test_a_run_with_a_seed_batch_equals_the_vmapped_run():
    """run_training's seed_batch changes how the seeds are computed, not what: one seed at a time (the
    transformers' default on one CPU device) equals the vmapped run to float32 rounding; a bad batch is
    refused before anything compiles. markov_mlp stands in for the transformers (seed_map does not look
    inside the learner; a transformer's run takes twice as long: 36 s)."""
    from awm_jax import Config
    from awm_jax.runner.run import run_training
    from awm_jax.runner.sharding import default_seed_batch

    assert default_seed_batch("awm_transformer", 1) == 1 and default_seed_batch("hwm_transformer", 1) == 1
    assert default_seed_batch("awm_lstm", 1) is None and default_seed_batch("awm_transformer", 4) is None
    cfg = Config(task="simple_case", horizon=10, method="markov_mlp", seeds=3, total_steps=328, warmup_steps=200,
                 eval_every=64, model_batch=16, imagined_rollouts=4, mlp_hidden=(32, 32), policy_lr=1e-4)
    with pytest.raises(ValueError, match="seed batch"):
        run_training(cfg, seed_batch=0, verbose=False)
    runs = {b: run_training(cfg, seed_batch=b, verbose=False)[1] for b in (1, None)}
    for k in ("eval/return", "model/loss"):
        np.testing.assert_allclose(runs[1][k], runs[None][k], rtol=1e-4, err_msg=k)
    assert np.ptp(runs[None]["eval/return"][:, -1]) > 0.01  # the seeds differ, so a mix-up would show
