"""Online Decision Transformer baseline: its loss against numpy, causality, determinism contract,
the evaluation grid shared with the BPO trainer, learning, validation and the CLI."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from configs import config

from awm_jax import make_train
from awm_jax.analysis.references import random_return
from awm_jax.core.methods.online_dt import (
    DTNet,
    OnlineDT,
    dt_loss,
    make_tokens,
    returns_to_go,
    tanh_gaussian_log_prob,
    temperature_grad,
)
from awm_jax.core.spaces import Normalizer
from awm_jax.runner.run import run_training

# Horizon 20: 200 warm-up steps (10 episodes), then 10 eval periods of 4 blocks of 16 env steps and 8 DT
# updates of 16 episodes each (30 online episodes, 320 updates).
SMALL = dict(task="cancer_treatment", method="online_dt", horizon=20, total_steps=800, warmup_steps=200,
             eval_every=64, model_batch=16, width=16, heads=2, layers=1)
# Horizon 20, warm-up not a whole number of episodes, 3 blocks per evaluation: for the schedule checks.
TINY = dict(task="cancer_treatment", horizon=20, total_steps=200, warmup_steps=50, eval_every=48, model_batch=4,
            width=8, heads=1, layers=1, policy_hidden=(8,), gradient_cosine=False)


def _np_tanh_gauss_logp(mu, log_std, a):
    bound = np.float64(np.float32(1 - 1e-6))  # the float32 clip bound
    a = np.clip(a, -bound, bound).astype(np.float64)
    u = np.arctanh(a)
    sd = np.exp(log_std)
    logn = -0.5 * ((u - mu) / sd) ** 2 - np.log(sd) - 0.5 * np.log(2 * np.pi)
    return (logn - np.log(1 - a**2)).sum(-1)


def test_log_likelihood_entropy_and_loss_match_numpy():
    rng = np.random.default_rng(0)
    mu, log_std = rng.normal(size=(3, 5, 2)), rng.uniform(-2, 1, size=(3, 5, 2))
    a = rng.uniform(-1, 1, size=(3, 5, 2))
    a[0, 0, 0] = 1.0  # an action at the bound is clipped, not infinite
    f32 = lambda x: jnp.asarray(x, jnp.float32)
    got = tanh_gaussian_log_prob(f32(mu), f32(log_std), f32(a))
    np.testing.assert_allclose(got, _np_tanh_gauss_logp(mu, log_std, a), rtol=2e-4, atol=2e-3)

    # the whole loss of a tiny network: nll and the one-sample entropy estimate, recomputed in numpy
    net = DTNet(action_size=2, width=8, layers=1, heads=2, max_len=5)
    tokens = jnp.asarray(rng.normal(size=(3, 5, 4)), jnp.float32)
    params = net.init(jax.random.PRNGKey(1), tokens[0])
    key = jax.random.PRNGKey(2)
    loss, info = jax.jit(lambda p: dt_loss(p, 0.3, net, tokens, jnp.asarray(a, jnp.float32), key))(params)
    m, ls = (np.asarray(x, np.float64) for x in jax.jit(net.apply)(params, tokens))
    nll = -_np_tanh_gauss_logp(m, ls, a).mean()
    eps = np.asarray(jax.random.normal(key, m.shape), np.float64)
    entropy = -_np_tanh_gauss_logp(m, ls, np.tanh(m + np.exp(ls) * eps)).mean()
    np.testing.assert_allclose(info["dt/nll"], nll, rtol=1e-4)
    np.testing.assert_allclose(info["dt/entropy"], entropy, rtol=1e-4)
    np.testing.assert_allclose(loss, nll - 0.3 * entropy, rtol=1e-4)
    # the temperature gradient is that of exp(log_temp) * (entropy - target) with the entropy fixed
    g = jax.grad(lambda lt: jnp.exp(lt) * (info["dt/entropy"] - (-2.0)))(jnp.log(0.3))
    np.testing.assert_allclose(temperature_grad(jnp.log(0.3), info["dt/entropy"], -2.0), g, rtol=1e-6)


def test_returns_to_go_and_tokens():
    r = np.arange(1.0, 6.0)[None].repeat(2, 0)
    np.testing.assert_allclose(returns_to_go(jnp.asarray(r)), np.cumsum(r[:, ::-1], 1)[:, ::-1])
    norm = Normalizer(jnp.array([1.0]), jnp.array([2.0]))
    obs = jnp.array([[3.0, 0.0], [5.0, 1.0]])  # [state, t]
    acts = jnp.array([[0.5], [-0.5]])
    tok = make_tokens(norm, 4.0, jnp.array([8.0, 4.0]), obs, acts)
    np.testing.assert_allclose(tok, [[2.0, 1.0, 0.0], [1.0, 2.0, 0.5]])  # [g / c, (s - 1) / 2, a_{t-1}]


def test_output_at_t_does_not_depend_on_later_steps():
    """Causality, exactly: d(mean, log_std at step t) / d(inputs at steps t' > t) = 0, and the action
    a_t itself is not an input of step t (the token carries a_{t-1})."""
    T, n, m = 6, 2, 2
    net = DTNet(action_size=m, width=12, layers=2, heads=3, max_len=T)
    rng = np.random.default_rng(1)
    rtg, obs = jnp.asarray(rng.normal(size=T), jnp.float32), jnp.asarray(rng.normal(size=(T, n + 1)), jnp.float32)
    acts = jnp.asarray(rng.uniform(-1, 1, size=(T, m)), jnp.float32)
    norm = Normalizer.identity(n)
    params = net.init(jax.random.PRNGKey(0), jnp.zeros((T, n + 1 + m)))
    # a non-trivial head, so that mean and log_std depend on every visible input
    params = jax.tree.map(lambda x: x + 0.3 * jax.random.normal(jax.random.PRNGKey(3), x.shape), params)
    f = lambda g, o, a: jnp.concatenate(net.apply(params, make_tokens(norm, 2.0, g, o, a)), -1)  # [T, 2m]
    jg, jo, ja = jax.jit(jax.jacrev(f, argnums=(0, 1, 2)))(rtg, obs, acts)  # [T, 2m, T, ...]
    for t in range(T):
        assert np.all(np.asarray(jg[t, :, t + 1:]) == 0) and np.all(np.asarray(jo[t, :, t + 1:]) == 0)
        assert np.all(np.asarray(ja[t, :, t:]) == 0)
        assert np.abs(np.asarray(jg[t, :, : t + 1])).min(axis=0).max() > 0  # sees its own return-to-go
        assert np.abs(np.asarray(jo[t, :, t])).sum() > 0
        if t:
            assert np.abs(np.asarray(ja[t, :, t - 1])).sum() > 0


@pytest.fixture(scope="module")
def small_runs():
    cfg = config(**SMALL)
    trainer = make_train(cfg)
    keys = jax.random.split(jax.random.PRNGKey(0), 3)[:2]
    vstate, vmetrics = jax.jit(jax.vmap(trainer))(keys)
    return cfg, trainer, keys, vstate, vmetrics


def test_make_train_builds_online_dt(small_runs):
    cfg, trainer, *_ = small_runs
    assert isinstance(trainer, OnlineDT) and trainer.config is cfg and trainer.task.horizon == 20


def test_training_beats_random_and_untrained_policy(small_runs):
    """A short run improves on uniformly random actions (about -34) and on the action 0, about the
    untrained DT's tanh(mean) (-27.2), on cancer_treatment (best constant action: about -21.9)."""
    cfg, trainer, keys, vstate, vmetrics = small_runs
    ret = np.asarray(vmetrics["eval/return"])
    assert np.all(np.isfinite(ret)) and np.all(np.asarray(vmetrics["skipped_updates"]) == 0)
    random = random_return(trainer.task, jax.random.PRNGKey(5))
    task = trainer.task
    zero = float(task.episode_return(jax.random.PRNGKey(0), jnp.zeros((task.horizon, task.action_size))))
    assert np.all(ret[:, -1] > random + 8), (ret, random)
    assert np.all(ret[:, -1] > zero + 2), (ret, zero)
    nll = np.asarray(vmetrics["dt/nll"])
    assert np.all(nll[:, -1] < nll[:, 0] - 0.2), nll  # the likelihood fit improves
    temp = np.asarray(vmetrics["dt/temperature"])
    assert np.all(temp[:, -1] != cfg.entropy) and np.all(temp > 0)  # the temperature is tuned


@pytest.mark.slow  # ~12-19 s: out of the default run, which must stay under 15 minutes
def test_eval_grid_equals_bpo_trainer_and_cli_outputs(tmp_path):
    """Same schedule as the BPO trainer (here: horizon 20, a warm-up of 2.5 episodes, 3 blocks per
    evaluation): `eval/env_steps` is equal at every period; run_training writes the usual outputs."""
    cfg = config(method="online_dt", seeds=2, **TINY)
    _, metrics = run_training(cfg, out=tmp_path, chunk_periods=2, verbose=False)
    bpo = make_train(config(method="true_bptt", **TINY))
    _, m_bpo = jax.jit(bpo)(jax.random.PRNGKey(0))
    np.testing.assert_array_equal(metrics["eval/env_steps"][0], m_bpo["eval/env_steps"])
    np.testing.assert_array_equal(metrics["eval/env_steps"][1], m_bpo["eval/env_steps"])
    assert metrics["eval/env_steps"].shape == (2, cfg.periods) and metrics["eval/env_steps"][0, -1] == cfg.env_steps
    assert np.all(np.isfinite(metrics["eval/return"]))
    for name in ("config.json", "metrics.csv", "metrics.json", "returns.png", "summary.txt"):
        assert (tmp_path / name).stat().st_size > 0


def test_bad_configs_fail_before_compilation():
    with pytest.raises(ValueError, match="cover at least one episode"):
        make_train(config(method="online_dt", warmup_steps=50))
    with pytest.raises(ValueError, match="learned temperature"):
        make_train(config(method="online_dt", entropy=0.0))
    with pytest.raises(ValueError, match="dt_lr"):
        make_train(config(method="online_dt", dt_lr=0.0))
    make_train(config(method="online_dt", entropy=0.0, dt_learn_temperature=False))  # a fixed zero temperature is fine
