"""The world model's action sensitivity against the true task's."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from configs import config

import awm_envs
from awm_jax import make_train
from awm_jax.analysis.action_sensitivity import (
    action_jacobians,
    open_loop_return,
    return_gradients,
    seed_sensitivity,
    sensitivity,
)
from awm_jax.core.models.true_task import TrueTask
from awm_jax.core.spaces import Normalizer

KEY = jax.random.PRNGKey(0)
SMALL = dict(task="cancer_treatment", horizon=20, total_steps=200, warmup_steps=100, eval_every=20,
             model_batch=4, imagined_rollouts=2, width=16, heads=2, layers=1, rnn_hidden=16)


def test_true_bptt_agrees_exactly_with_the_true_task():
    """true_bptt's model is the task: on its policy's evaluation episode and on the warm-up episodes
    the Jacobian and return-gradient cosines and the norm ratio are 1, the errors 0."""
    trainer = make_train(config(method="true_bptt", **{**SMALL, "warmup_steps": 40}))
    assert trainer.warmup_episodes() == 2
    res = seed_sensitivity(trainer, trainer.init(KEY), KEY)
    assert set(res) == {"policy", "warmup"} and res["warmup"]["episodes"] == 2
    for m in res.values():
        ones = ("jac_cosine", "jac_cosine_one_step", "return_grad_cosine", "return_grad_norm_ratio",
                "return_grad_cosine_dynamics")
        for k in ones:
            np.testing.assert_allclose(m[k], 1.0, atol=1e-12, err_msg=k)
        assert m["jac_rel_error"] == 0.0
        assert m["state_error"] < 1e-10


def test_the_true_task_return_is_the_episode_return_and_its_jacobian_the_chain_rule():
    """Independent of the model machinery: through the true task, the open-loop return is the
    episode's summed reward and d s_t / d a_k is the product of the one-step derivatives."""
    task = awm_envs.make("timber_harvest", horizon=15)
    actions = jax.random.uniform(KEY, (15, 1), minval=-0.9, maxval=0.9)
    env, rewards, xs = task.reset(KEY), [], []
    for a in actions:
        xs.append(env.obs[:-1])
        env = task.step(env, a)
        rewards.append(env.reward)
    true = TrueTask.of(task)
    norm = Normalizer(jnp.array([300.0]), jnp.array([200.0]))
    params = true.bind({}, norm, KEY)
    ret = open_loop_return(true, params, norm, task, xs[0], actions)
    np.testing.assert_allclose(ret, np.sum(rewards), rtol=1e-5)
    # timber: x_{t+1} = x_t (1 + dt k u_t), u = (a + 1) / 2 -> d x_t / d a_k = x_t dt / 2 / (1 + dt u_k)
    J = np.asarray(action_jacobians(true, params, norm, xs[0], actions))[:, 0, :, 0]
    x = np.asarray(jnp.stack(xs + [env.obs[:-1]]))[:, 0].astype(np.float64)
    u, dt = (np.asarray(actions)[:, 0] + 1) / 2, task.dt
    want = np.array([[x[t + 1] * dt / 2 / (1 + dt * u[k]) if k <= t else 0.0 for k in range(15)] for t in range(15)])
    np.testing.assert_allclose(J, want, rtol=1e-4)


@pytest.mark.parametrize("method", ["awm_transformer", "markov_mlp"])
def test_return_gradient_through_a_model_matches_central_differences(method, x64):
    """The return gradient through an initialised transformer AWM and an initialised Markov MLP equals
    central finite differences of the model's open-loop return (float64); the dynamics part equals the
    full gradient minus the reward's direct action derivative."""
    f64 = jnp.float64
    task = awm_envs.make("cancer_treatment", horizon=12, dtype=f64)
    norm = Normalizer(jnp.array([0.5], f64), jnp.array([0.2], f64))
    s0 = jnp.array([0.8], f64)
    actions = jax.random.uniform(KEY, (12, 1), f64, minval=-0.8, maxval=0.8)
    model = make_train(config(method=method, **{**SMALL, "horizon": 12})).model
    params = jax.tree.map(lambda x: x.astype(f64), model.init(jax.random.PRNGKey(1)))
    g, g_dyn = jax.jit(lambda a: return_gradients(model, params, norm, task, s0, a))(actions)
    assert g.dtype == f64
    R = jax.jit(lambda a: open_loop_return(model, params, norm, task, s0, a))
    eps = 1e-6
    fd = np.array([(float(R(actions.at[k, 0].add(eps))) - float(R(actions.at[k, 0].add(-eps)))) / (2 * eps)
                   for k in range(12)])
    np.testing.assert_allclose(np.asarray(g)[:, 0], fd, rtol=1e-5, atol=1e-7)
    pred = jnp.concatenate([s0[None], norm.denorm(model.rollout(params, norm.norm(s0), actions))[:-1]])
    obs = jnp.concatenate([pred, jnp.arange(12.0)[:, None]], axis=-1)
    direct = jax.vmap(jax.grad(task.reward, argnums=1))(obs, actions)
    np.testing.assert_allclose(g_dyn, g - direct, rtol=1e-10, atol=1e-12)
    if method == "markov_mlp":
        res = sensitivity(model, params, norm, norm, task, s0, actions)
        assert -1 <= res["return_grad_cosine"] <= 1 and res["jac_rel_error"] >= 0 and np.isnan(res["state_error"])
