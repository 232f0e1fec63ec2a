"""The task interface: shapes, jit/vmap/grad, reward consistency, options and errors.

Returns against an independent numpy reimplementation are in test_tasks_reference.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import awm_envs

BRAX = [n for n in awm_envs.names() if n.startswith("brax_")]  # tested in test_brax_tasks.py (slow to compile)
NAMES = [n for n in awm_envs.names() if n not in BRAX]


def test_names_and_defaults():
    assert len(NAMES) == 24 and len(set(NAMES)) == 24
    assert BRAX == ["brax_pendulum_swingup", "brax_double_pendulum", "brax_reacher"]
    assert awm_envs.make("cancer_treatment").horizon == 100
    assert awm_envs.make("invasive_plant").horizon == 100  # the paper's copy (Myriad's original: 10 steps)
    assert awm_envs.make("invasive_plant", variant="myriad").horizon == 10
    with pytest.raises(ValueError, match="valid variants: paper, myriad"):
        awm_envs.make("glucose", variant="original")
    assert awm_envs.make("credit_assignment").horizon == 20
    t = awm_envs.make("cancer_treatment", horizon=50)
    assert t.dt == pytest.approx(20 / 50)
    t = awm_envs.make("cancer_treatment", horizon=400, fixed_dt=True)
    assert t.dt == pytest.approx(20 / 100) and t.horizon == 400


@pytest.mark.parametrize("name", NAMES)
def test_interface(name):
    """reset/step shapes; step reward == reward(obs, a); jit, vmap over keys and actions, grad."""
    task = awm_envs.make(name, distractor_dims=2)
    H, A = task.horizon, task.action_size
    key = jax.random.PRNGKey(1)
    s0 = task.reset(key)
    assert s0.obs.shape == (task.obs_size,) == (2 + task.state_size + 1,)
    assert s0.obs.dtype == jnp.float32 and float(s0.reward) == 0.0 and not bool(s0.done)
    actions = jax.random.uniform(jax.random.PRNGKey(2), (4, H, A), minval=-1, maxval=1)

    @jax.jit
    def run(key, acts):
        def body(s, a):
            nxt = task.step(s, a)
            return nxt, (s.obs, nxt.reward, task.reward(s.obs, a), nxt.done, nxt.obs)

        return jax.lax.scan(body, task.reset(key), acts)[1]

    obs, rew, rew_fn, done, next_obs = jax.vmap(run)(jax.random.split(key, 4), actions)
    assert obs.shape == (4, H, task.obs_size) and rew.shape == (4, H)
    np.testing.assert_allclose(rew, rew_fn, rtol=1e-6, atol=1e-6)
    # time index and done flags
    np.testing.assert_array_equal(task.obs_time(obs[0]), np.arange(H))
    np.testing.assert_array_equal(task.obs_time(next_obs[0]), np.arange(1, H + 1))
    assert not done[:, :-1].any() and done[:, -1].all()
    # distractors are fresh N(0,1) draws, different per step and per key
    d = obs[..., :2]
    assert np.all(np.isfinite(d)) and np.std(np.asarray(d)) > 0.3
    assert not np.allclose(d[0], d[1])
    # the same key gives the same episode
    np.testing.assert_array_equal(run(key, actions[0])[0], run(key, actions[0])[0])

    # grad of the whole return w.r.t. the actions exists; a jit of a vmap of a grad compiles
    grad = jax.jit(jax.vmap(jax.grad(lambda a, k: task.episode_return(k, a))))(actions, jax.random.split(key, 4))
    assert grad.shape == actions.shape


def test_vmap_over_task_parameters():
    """A batch of parameter values is one vmapped program; each equals the task made with that value."""
    base = awm_envs.make("cancer_treatment")
    rs = jnp.array([0.2, 0.3, 0.4])
    acts = jnp.zeros((base.horizon, 1))
    key = jax.random.PRNGKey(0)
    batched = jax.jit(jax.vmap(lambda r: base.replace_params(r=r).episode_return(key, acts)))(rs)
    for r, got in zip(rs, batched):
        want = awm_envs.make("cancer_treatment", r=float(r)).episode_return(key, acts)
        np.testing.assert_allclose(got, want, rtol=1e-5)
    assert len(set(np.round(np.asarray(batched), 4))) == 3
    # whole tasks are pytrees too: vmap straight over a stacked Task
    tasks = jax.tree.map(lambda *xs: jnp.stack(xs), *[base.replace_params(r=r) for r in rs])
    again = jax.vmap(lambda t: t.episode_return(key, acts))(tasks)
    np.testing.assert_allclose(again, batched, rtol=1e-6)


def test_state_noise_and_bounds():
    task = awm_envs.make("cancer_treatment", state_noise=0.05)
    acts = jnp.zeros((task.horizon, 1))
    xs = task.rollout(jax.random.PRNGKey(0), acts)[1].x
    clean = awm_envs.make("cancer_treatment").rollout(jax.random.PRNGKey(0), acts)[1].x
    assert float(jnp.abs(xs - clean).max()) > 0.01
    assert float(xs.min()) >= 1e-3 and float(xs.max()) <= 1.0  # noise is clipped to the state bounds
    other = task.rollout(jax.random.PRNGKey(1), acts)[1].x
    assert not np.allclose(xs, other)


def _fd_check(task, actions, key, eps=1e-6, rtol=1e-5, atol=1e-7):
    f = jax.jit(lambda a: task.episode_return(key, a))
    g = np.asarray(jax.grad(lambda a: task.episode_return(key, a))(actions))
    a = np.asarray(actions)
    fd = np.zeros_like(a)
    for idx in np.ndindex(a.shape):
        e = np.zeros_like(a)
        e[idx] = eps
        fd[idx] = (float(f(a + e)) - float(f(a - e))) / (2 * eps)
    np.testing.assert_allclose(g, fd, rtol=rtol, atol=atol)
    return g


@pytest.mark.parametrize(
    "name,options",
    [
        ("cancer_treatment", dict(horizon=20)),
        ("van_der_pol", dict(horizon=20)),
        ("bear_populations", dict(horizon=10)),
        ("invasive_plant", dict(horizon=10)),
        ("double_pendulum", dict(horizon=4)),
        ("one_bounce", dict()),
        ("credit_assignment", dict(horizon=6)),
    ],
)
def test_grad_matches_finite_differences(x64, name, options):
    """d return / d actions through the task equals central finite differences in float64."""
    task = awm_envs.make(name, dtype="float64", **options)
    rng = np.random.default_rng(0)
    # interior actions, away from control-bound kinks; for one_bounce away from the no-bounce point
    actions = jnp.asarray(rng.uniform(-0.6, 0.6, (task.horizon, task.action_size)))
    if name == "double_pendulum":
        actions = actions / 180  # theta1 = 180 a: keep the FD step inside the smooth neighbourhood
    g = _fd_check(task, actions, jax.random.PRNGKey(3))
    assert np.abs(g).max() > 0  # a real signal, not a flat zero gradient


def test_credit_assignment_gradient_reaches_first_action():
    task = awm_envs.make("credit_assignment")
    acts = jnp.zeros((task.horizon, 1))
    g = jax.grad(lambda a: task.episode_return(jax.random.PRNGKey(0), a))(acts)
    # final reward clip(-20 (a0 - 0.5)^2 + 10): d/da0 = -40 (0 - 0.5) = 20, no distracting term at t = 0
    assert float(g[0, 0]) == pytest.approx(20.0, rel=1e-5)


def test_errors_before_compilation():
    with pytest.raises(ValueError, match="valid tasks: cancer_treatment"):
        awm_envs.make("cancer")
    with pytest.raises(ValueError, match="valid options: horizon, fixed_dt"):
        awm_envs.make("cancer_treatment", horizn=10)
    with pytest.raises(ValueError, match="delta"):  # its own parameters are listed too
        awm_envs.make("cancer_treatment", gamma=1.0)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="horizon"):
            awm_envs.make("cancer_treatment", horizon=bad)
    with pytest.raises(ValueError, match="distractor_dims"):
        awm_envs.make("cancer_treatment", distractor_dims=-1)
    with pytest.raises(ValueError, match="state_noise"):
        awm_envs.make("cancer_treatment", state_noise=-0.1)
    with pytest.raises(ValueError, match="dtype"):
        awm_envs.make("cancer_treatment", dtype="int8")
    if not jax.config.jax_enable_x64:
        with pytest.raises(ValueError, match="x64"):
            awm_envs.make("cancer_treatment", dtype="float64")
    with pytest.raises(ValueError, match="finite"):
        awm_envs.make("cancer_treatment", r=float("nan"))
    task = awm_envs.make("bear_populations")
    s = task.reset(jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        task.step(s, jnp.zeros(3))
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        jax.jit(task.step)(s, jnp.zeros((1, 2)))
    with pytest.raises(ValueError, match="unknown parameters"):
        task.replace_params(nope=1.0)


def test_constraint_penalty_is_a_parameter():
    acts = jnp.zeros((100, 1))
    key = jax.random.PRNGKey(0)
    r10 = awm_envs.make("pendulum").episode_return(key, acts)
    r0 = awm_envs.make("pendulum", terminal_weight=0.0).episode_return(key, acts)
    # at rest at (0, 0): penalty = 10 * ((0 - pi) / (2 pi))^2 = 2.5
    assert float(r0 - r10) == pytest.approx(2.5, rel=1e-5)
    with pytest.raises(ValueError, match="terminal_weight"):
        awm_envs.make("cancer_treatment", terminal_weight=1.0)
