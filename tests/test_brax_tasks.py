"""The Brax tasks: interface, rewards against brax's own kinematics, gradients, trainer runs.

Brax programs are large (thousands of ops per physics step), so each compile here costs seconds:
the default run compiles a handful of short-horizon programs; full episodes and trainer runs are slow.
"""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from configs import config

import awm_envs

pytest.importorskip("brax")


BRAX = ["brax_pendulum_swingup", "brax_double_pendulum", "brax_reacher"]


def test_registered_without_importing_brax():
    """Where brax is absent, awm_envs imports, lists the Brax tasks and makes the others; make() of a
    Brax task says brax is missing."""
    code = """
import sys
sys.modules["brax"] = None  # any import of brax now fails
import awm_envs
print(awm_envs.names())
awm_envs.make("cancer_treatment")
try:
    awm_envs.make("brax_reacher")
except ImportError as e:
    print("ImportError:", e)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert all(name in out for name in BRAX) and "ImportError: the brax_* tasks need brax" in out
    task = awm_envs.make("brax_double_pendulum", horizon=7, distractor_dims=2, init_angle=np.pi)
    assert (task.state_size, task.action_size, task.obs_size, task.horizon) == (6, 1, 9, 7)
    assert task.dt == pytest.approx(0.05) and float(task.params["init_angle"]) == pytest.approx(np.pi)
    assert hash(task.system) == hash(awm_envs.get_system("brax_double_pendulum"))
    with pytest.raises(ValueError, match="init_noise"):
        awm_envs.make("brax_reacher", init_angle=1.0)


def _brax_reward(task, x, a):
    """The reward recomputed from brax's link positions and rotations (not the task's kinematics)."""
    from brax import kinematics, math

    sysm = task.system
    p = {k: float(v) for k, v in task.params.items()}
    q, qd, extra = sysm.split(x)
    links = jax.jit(lambda q, qd: kinematics.forward(sysm.model(jnp.float32), q, qd)[0])(q, qd)
    pos, rot = links.pos, links.rot
    cost = p["action_cost"] * float(jnp.sum(a**2))
    if sysm.name == "brax_reacher":
        tip = pos[1] + math.rotate(jnp.array([sysm.links[1], 0.0, 0.0]), rot[1])
        d2 = float(jnp.sum((tip[:2] - extra) ** 2))
        return -np.sqrt(d2 + p["distance_eps"] ** 2) - cost
    last = len(sysm.pole_lengths)
    tip = pos[last] + math.rotate(jnp.array([0.0, 0.0, sysm.pole_lengths[-1]]), rot[last])
    height = float(tip[2] - pos[1][2]) / sum(sysm.pole_lengths)
    return height - p["cart_cost"] * float(pos[0][0]) ** 2 - p["velocity_cost"] * float(jnp.sum(qd**2)) - cost


@pytest.mark.parametrize("name", BRAX)
def test_reward_matches_brax_kinematics(name):
    """reward(obs, a) equals the reward computed from brax's link positions, at random states."""
    task = awm_envs.make(name, distractor_dims=1)
    rng = np.random.default_rng(0)
    reward = jax.jit(task.reward)
    for _ in range(4):
        x = jnp.asarray(rng.uniform(-3, 3, task.state_size), jnp.float32)
        if name == "brax_reacher":
            x = x.at[4:].multiply(0.07)
        a = jnp.asarray(rng.uniform(-1, 1, task.action_size), jnp.float32)
        obs = task.make_obs(x, 3.0, jnp.ones(1))
        np.testing.assert_allclose(float(reward(obs, a)), _brax_reward(task, x, a), rtol=1e-5, atol=1e-5)


def test_smoke_short_episode(x64):
    """One compiled program (float64, 5 steps) checks: vmap over keys and actions; step reward ==
    reward(obs, a); d return / d actions == central finite differences; steps rebuilt from (q, qd)
    == one uninterrupted brax simulation."""
    from brax.generalized import pipeline

    task = awm_envs.make("brax_pendulum_swingup", horizon=5, dtype="float64")
    H, n = task.horizon, task.system.n_frames

    def episode(key, acts):
        def body(s, a):
            nxt = task.step(s, a)
            return nxt, (nxt.x, nxt.reward, task.reward(s.obs, a))

        s0 = task.reset(key)
        xs, rewards, rewards_fn = jax.lax.scan(body, s0, acts)[1]
        return rewards.sum(), (s0.x, xs, rewards, rewards_fn)

    k0, k1 = jax.random.split(jax.random.PRNGKey(3))
    acts = jnp.asarray(np.random.default_rng(0).uniform(-0.6, 0.6, (H, 1)))
    eps = 1e-6
    bumps = eps * np.eye(H).reshape(H, H, 1)
    batch = jnp.concatenate([acts + bumps, acts - bumps, acts[None], acts[None]])
    keys = jnp.stack([k0] * (2 * H + 1) + [k1])
    (ret, (x0, xs, rewards, rewards_fn)), grad = jax.jit(
        jax.vmap(jax.value_and_grad(episode, argnums=1, has_aux=True))
    )(keys, batch)

    assert xs.shape == (2 * H + 2, H, 4) and xs.dtype == jnp.float64
    np.testing.assert_allclose(rewards, rewards_fn, rtol=1e-12, atol=1e-12)
    assert not np.allclose(x0[-1], x0[-2])  # another key, another start state
    assert abs(float(x0[-2, 1]) - np.pi) < 0.06  # the pole starts hanging
    fd = ((ret[:H] - ret[H : 2 * H]) / (2 * eps)).reshape(H, 1)
    g = grad[-2]
    assert np.all(np.isfinite(grad)) and np.abs(g).max() > 1e-3
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-7)

    @jax.jit
    def uninterrupted(x0, actions):
        model = task.system.model(jnp.float64)

        def body(state, a):
            state = pipeline.step(model, state, a)
            return state, jnp.concatenate([state.q, state.qd])

        frames = jnp.repeat(actions, n, axis=0)  # the control range is [-1, 1]: actions are controls
        return jax.lax.scan(body, pipeline.init(model, x0[:2], x0[2:]), frames)[1][n - 1 :: n]

    np.testing.assert_allclose(xs[-2], uninterrupted(x0[-2], acts), rtol=1e-10, atol=1e-12)
    assert float(jnp.abs(xs[-2, -1] - x0[-2]).max()) > 1e-2  # it moved


@pytest.mark.slow
@pytest.mark.parametrize("name", BRAX)
def test_full_episode_gradient_is_finite(name):
    task = awm_envs.make(name)
    key = jax.random.PRNGKey(0)
    acts = 0.5 * jax.random.uniform(jax.random.PRNGKey(1), (task.horizon, task.action_size), minval=-1, maxval=1)
    ret, grad = jax.jit(jax.value_and_grad(lambda a: task.episode_return(key, a)))(acts)
    assert np.isfinite(float(ret)) and np.all(np.isfinite(grad)) and float(jnp.abs(grad).max()) > 0


@pytest.mark.slow
@pytest.mark.parametrize("method", ["true_bptt", "awm_transformer"])
def test_trainer_runs_on_a_brax_task(method):
    from awm_jax import make_train

    cfg = config(task="brax_pendulum_swingup", method=method, horizon=20, total_steps=120, warmup_steps=40,
                 eval_every=32, policy_every=16, model_batch=4, imagined_rollouts=2, width=16, heads=2,
                 layers=1, mlp_hidden=(16,), policy_hidden=(16,))
    state, metrics = jax.jit(make_train(cfg))(jax.random.PRNGKey(0))
    assert np.all(np.isfinite(np.asarray(metrics["eval/return"])))
