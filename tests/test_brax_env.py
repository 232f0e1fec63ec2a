"""A task as a brax Env: brax's own training wrappers and agents see exactly the task's dynamics and rewards."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import awm_envs

pytest.importorskip("brax")


def test_an_episode_through_brax_wrappers_is_the_tasks_episode():
    """Through brax's training wrapper (episode length H, automatic reset), H steps of an action sequence
    give the task's own rewards step by step and its return; the next step restarts from the first state."""
    from brax.envs.wrappers.training import wrap

    from awm_envs.brax_env import as_brax_env

    task = awm_envs.make("cancer_treatment", horizon=12, distractor_dims=2)
    env = wrap(as_brax_env(task), episode_length=task.horizon, action_repeat=1)
    key = jax.random.PRNGKey(3)
    keys = jax.random.split(key, 2)  # the wrapper vmaps: two environments
    acts = jax.random.uniform(jax.random.PRNGKey(4), (task.horizon + 1, 2, task.action_size), minval=-1, maxval=1)

    def run(keys, acts):
        def f(s, a):
            s2 = env.step(s, a)
            return s2, (s2.reward, s2.done, s2.obs)

        s0 = env.reset(keys)
        return s0, jax.lax.scan(f, s0, acts)[1]

    s0, (rewards, done, obs) = jax.jit(run)(keys, acts)
    for i in range(2):
        ours = task.rollout(keys[i], acts[: task.horizon, i])[1]
        np.testing.assert_allclose(rewards[: task.horizon, i], ours.reward, rtol=1e-6)
        ret = task.episode_return(keys[i], acts[: task.horizon, i])
        np.testing.assert_allclose(rewards[: task.horizon, i].sum(), ret, rtol=1e-6)
        np.testing.assert_array_equal(done[:, i], [0.0] * (task.horizon - 1) + [1.0, 0.0])
    np.testing.assert_array_equal(obs[task.horizon - 1], s0.obs)  # reset at the last step: the first observation


def test_the_adapter_is_differentiable_like_the_task():
    """The gradient of the return through the adapter in the actions equals the task's, and finite differences."""
    from awm_envs.brax_env import as_brax_env

    task = awm_envs.make("cancer_treatment", horizon=10)
    env = as_brax_env(task)
    key = jax.random.PRNGKey(0)
    acts = jnp.full((task.horizon, task.action_size), 0.2)

    def ret(acts):
        def f(s, a):
            s2 = env.step(s, a)
            return s2, s2.reward

        return jax.lax.scan(f, env.reset(key), acts)[1].sum()

    g = jax.grad(ret)(acts)
    np.testing.assert_allclose(g, jax.grad(lambda a: task.episode_return(key, a))(acts), rtol=1e-5)
    eps, i = 1e-2, 3
    e = jnp.zeros_like(acts).at[i, 0].set(eps)
    fd = (task.episode_return(key, acts + e) - task.episode_return(key, acts - e)) / (2 * eps)
    np.testing.assert_allclose(g[i, 0], fd, rtol=2e-2)


@pytest.mark.slow  # ~40 s: two APG trainings
def test_brax_apg_trains_on_a_task_through_the_adapter():
    """brax's own APG agent runs on our task (with the jax shim it needs, removed afterwards) and improves it:
    on cancer_treatment its mean-action return after 10 updates of 4 x 100 steps is above its first."""
    from awm_jax.runner.brax_apg import APGSettings, train_apg

    settings = APGSettings(learning_rate=1e-3, horizon_length=100, num_envs=4, evals=3, num_eval_envs=8)
    m = train_apg("cancer_treatment", seeds=2, total_steps=4000, settings=settings, verbose=False)
    assert m["eval/return"].shape == (2, 3) and m["training/grad_norm"].shape == (2, 2)
    np.testing.assert_array_equal(m["eval/env_steps"], [0, 2000, 4000])
    assert np.all(m["eval/return"][:, -1] > m["eval/return"][:, 0] + 1.0), m["eval/return"]
    assert "device_put_replicated" not in vars(jax)
    with pytest.raises(ValueError, match="buy 1 APG updates"):
        train_apg("cancer_treatment", total_steps=400, settings=settings)
