"""The state-space AWM (awm_ssm): parallel scan == recurrent steps, one layer == a numpy loop,
causality, and stable eigenvalues, each checked against an independent computation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tolerances import assert_trees_close, f32_tol

import awm_envs
from awm_jax.core.methods.bpo import imagine, imagine_sequential
from awm_jax.core.models import make_world_model
from awm_jax.core.models.awm_ssm import DiagonalSSM
from awm_jax.core.models.policy import Policy
from awm_jax.core.spaces import Normalizer

H, N, M = 23, 3, 2  # an odd length: the associative scan's odd/even split is exercised


def _perturb(params, key, scale):
    """Every parameter plus scale * N(0, 1) noise (moves the eigenvalues, B, C, D and the MLPs)."""
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return tree.unflatten([x + scale * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys)])


# Reduction length (tests/tolerances.py) of one output of the default SSM AWM (width 48, P = 32 complex
# states, 2 layers, embeddings and decoder (64, 64), H = 9): embedding 3 + 64 + 64; per layer LayerNorm
# 2 x 48, B_bar u (complex: 2 x 48), the scan over 9 steps, C h (2 x 32), D u, the mix Dense 48; final
# LayerNorm 96; decoder 48 + 64 + 64.
SSM_DEPTH = (3 + 64 + 64) + 2 * (96 + 96 + 9 + 64 + 1 + 48) + 96 + (48 + 64 + 64)
LAYER_DEPTH = 96 + 9 + 64 + 1  # one layer alone
MLP_DEPTH = 3 + 64 + 64  # the policy


@pytest.fixture(scope="module")
def model():
    wm = make_world_model("awm_ssm", N, M, H)
    params = _perturb(jax.jit(wm.init)(jax.random.PRNGKey(0)), jax.random.PRNGKey(1), 0.1)  # off the symmetric init
    ks, ka = jax.random.split(jax.random.PRNGKey(2))
    states = jax.random.normal(ks, (H + 1, N))
    actions = jax.random.uniform(ka, (H, M), minval=-1, maxval=1)
    return wm, params, states, actions


def test_parallel_scan_equals_recurrent_steps(model):
    """predict (associative scan over time) == rollout (start + one step at a time with the carried
    per-layer states): values, and gradients w.r.t. the parameters and the actions, to float32 rounding."""
    wm, params, states, actions = model
    par, seq = wm.predict(params, states, actions), wm.rollout(params, states[0], actions)
    assert float(jnp.abs(par).max()) > 0.1  # not a trivially small output
    # rounding-level: the associative scan multiplies lam's powers in another order than the steps do
    # (a wrong carry or power moves outputs by > 1e-2)
    np.testing.assert_allclose(par, seq, **f32_tol(SSM_DEPTH, scale=float(jnp.abs(seq).max())))
    w = jax.random.normal(jax.random.PRNGKey(3), (H, N))
    f_par = lambda p, a: jnp.sum(w * jnp.sin(wm.predict(p, states, a)))
    f_seq = lambda p, a: jnp.sum(w * jnp.sin(wm.rollout(p, states[0], a)))
    g_par = jax.jit(jax.grad(f_par, argnums=(0, 1)))(params, actions)
    g_seq = jax.jit(jax.grad(f_seq, argnums=(0, 1)))(params, actions)
    flat_par, flat_seq = jax.tree.leaves(g_par), jax.tree.leaves(g_seq)
    assert len(flat_par) == len(flat_seq) and all(float(jnp.abs(g).max()) > 0 for g in flat_par)
    assert_trees_close(g_par, g_seq, 2 * SSM_DEPTH + H * N)  # the backward pass, and the weighted sum of sines


def test_float64_forms_agree_to_float64_rounding(x64):
    """With float64 parameters (as experiments/grad_norm_horizon.py evaluates) the two forms agree to 1e-12:
    the float32 differences above are rounding, not a different recurrence; parameters init as float32."""
    wm = make_world_model("awm_ssm", N, M, H)
    params = wm.init(jax.random.PRNGKey(0))
    assert {x.dtype for x in jax.tree.leaves(params)} == {jnp.dtype("float32")}
    params = _perturb(jax.tree.map(lambda x: x.astype(jnp.float64), params), jax.random.PRNGKey(1), 0.1)
    states = jax.random.normal(jax.random.PRNGKey(2), (H + 1, N), jnp.float64)
    actions = jax.random.uniform(jax.random.PRNGKey(3), (H, M), jnp.float64, -1, 1)
    par, seq = jax.jit(wm.predict)(params, states, actions), jax.jit(wm.rollout)(params, states[0], actions)
    assert par.dtype == jnp.float64
    np.testing.assert_allclose(par, seq, rtol=1e-12, atol=1e-12)


def _numpy_layer(p, u):
    """One SSM layer as a python loop in float64 from its parameters, written from the equations:
    Lambda = -exp(log_neg_re) + i im, lam = exp(Lambda dt), B_bar = (lam - 1) / Lambda B,
    h_t = lam h_{t-1} + B_bar u_t (h_{-1} = 0), y_t = Re(C h_t) + D u_t."""
    p = {k: np.asarray(v, np.float64) for k, v in p.items()}
    Lam = -np.exp(p["log_neg_re"]) + 1j * p["im"]
    lam = np.exp(Lam * np.exp(p["log_dt"]))
    B_bar = ((lam - 1) / Lam)[:, None] * (p["B"][0] + 1j * p["B"][1])
    C = p["C"][0] + 1j * p["C"][1]
    h = np.zeros(lam.shape, complex)
    ys = []
    for u_t in np.asarray(u, np.float64):
        h = lam * h + B_bar @ u_t
        ys.append((C @ h).real + p["D"] * u_t)
    return np.stack(ys), lam, B_bar, C


def test_one_layer_equals_a_numpy_loop(model):
    """The layer's parallel output and its step function both equal the numpy loop; and for a constant
    input the state is the geometric sum B_bar u (1 - lam^(t+1)) / (1 - lam)."""
    wm, params, _, _ = model
    p = params["params"]["ssm_1"]
    layer = DiagonalSSM(wm.hidden, wm.ssm_state)
    u = jax.random.normal(jax.random.PRNGKey(4), (H, wm.hidden))
    ref, lam, B_bar, C = _numpy_layer(p, u)
    out = layer.apply({"params": p}, u)
    assert np.abs(ref).max() > 0.5
    # float32 against float64: LAYER_DEPTH roundings, and lam^t carries lam's rounding t <= 9 times
    # (2 x 9 ulps); outputs cancel (atol from their magnitude). A lam off by 1e-4 moves them ~1e-4 x t.
    tol = f32_tol(LAYER_DEPTH, ulps=2 * H, scale=float(np.abs(ref).max()))
    np.testing.assert_allclose(out, ref, **tol)
    h = jnp.zeros(wm.ssm_state, jnp.complex64)
    for t in range(H):
        h, y = layer.apply({"params": p}, h, u[t], method=DiagonalSSM.step)
        # step t's terms are of its own output's size: atol from it
        np.testing.assert_allclose(y, ref[t], **f32_tol(LAYER_DEPTH, ulps=2 * H, scale=float(np.abs(ref[t]).max())))
    # constant input: y_t = Re(C B_bar u (1 - lam^(t+1)) / (1 - lam)) + D u
    u0 = np.asarray(u[0], np.float64)
    t = np.arange(H)[:, None]
    h_closed = (B_bar @ u0)[None] * (1 - lam[None] ** (t + 1)) / (1 - lam[None])
    y_closed = (h_closed @ C.T).real + np.asarray(p["D"], np.float64) * u0
    np.testing.assert_allclose(layer.apply({"params": p}, jnp.tile(u[0], (H, 1))), y_closed, **tol)


def test_causal_in_the_actions_and_blind_to_later_states(model):
    """s^_t (row t - 1 of predict) depends on a_0..a_{t-1} only: its Jacobian w.r.t. a_k is exactly zero
    for k >= t and non-zero for k = t - 1 and k = 0, in the parallel pass and in the recurrent one;
    changing the actions from step t on leaves s^_1..s^_t unchanged; s_1..s_H are never read."""
    wm, params, states, actions = model
    J_par = np.asarray(jax.jit(jax.jacrev(lambda a: wm.predict(params, states, a)))(actions))  # [H, n, H, m]
    J_seq = np.asarray(jax.jit(jax.jacfwd(lambda a: wm.rollout(params, states[0], a)))(actions))
    for J in (J_par, J_seq):
        for t in range(1, H + 1):
            assert np.all(J[t - 1, :, t:, :] == 0.0), f"s^_{t} depends on an action at or after step {t}"
            assert np.abs(J[t - 1, :, t - 1, :]).max() > 0 and np.abs(J[t - 1, :, 0, :]).max() > 0
    # reverse against forward mode through the two forms (rounding-level; a leak past the mask is > 1e-4)
    np.testing.assert_allclose(J_par, J_seq, **f32_tol(2 * SSM_DEPTH, scale=float(np.abs(J_seq).max())))
    base = wm.predict(params, states, actions)
    for t in (1, 7, H - 1):
        other = actions.at[t:].set(jax.random.uniform(jax.random.PRNGKey(t), (H - t, M), minval=-1, maxval=1))
        changed = wm.predict(params, states, other)
        np.testing.assert_array_equal(changed[:t], base[:t])  # s^_1..s^_t
        assert float(jnp.abs(changed[t:] - base[t:]).max()) > 1e-4
    J_s = np.asarray(jax.jit(jax.jacrev(lambda s: wm.predict(params, s, actions)))(states))  # [H, n, H+1, n]
    assert np.all(J_s[:, :, 1:, :] == 0.0) and np.abs(J_s[:, :, 0, :]).max() > 0
    np.testing.assert_array_equal(wm.predict(params, states.at[1:].set(99.0), actions), base)


def test_eigenvalues_inside_the_unit_circle(model):
    """|lam| < 1 for every eigenvalue at init and after random perturbations of every parameter, and
    |lam| equals exp(-exp(log_neg_re + log_dt)) computed from the parameters."""
    wm = model[0]
    init = wm.init(jax.random.PRNGKey(5))
    for i, params in enumerate([init] + [_perturb(init, jax.random.PRNGKey(10 + k), s)
                                         for k, s in enumerate((0.3, 1.0, 1.0, 1.0))]):
        lam = np.asarray(wm.eigenvalues(params))  # [layers, P]
        assert lam.shape == (wm.layers, wm.ssm_state)
        assert np.abs(lam).max() < 1.0, f"params set {i}: max |lam| = {np.abs(lam).max()}"
        for layer in range(wm.layers):
            p = {k: np.asarray(v, np.float64) for k, v in params["params"][f"ssm_{layer}"].items()}
            # float32 against float64: the modulus from a sum, two exps and a complex exp's sqrt (6 roundings);
            # the angle's argument im dt rounds to an ulp of its size (atol from max |im dt|)
            np.testing.assert_allclose(np.abs(lam[layer]), np.exp(-np.exp(p["log_neg_re"] + p["log_dt"])),
                                       **f32_tol(6))
            arg = p["im"] * np.exp(p["log_dt"])
            np.testing.assert_allclose(np.angle(lam[layer]), np.angle(np.exp(1j * arg)),
                                       atol=f32_tol(4, scale=max(float(np.abs(arg).max()), 1.0))["atol"])
    # at init the timescales span dt in [1e-3, 1e-1] with Re Lambda = -1/2: |lam| in [exp(-0.05), exp(-0.0005)]
    mag = np.abs(np.asarray(wm.eigenvalues(init)))
    assert mag.min() >= np.exp(-0.05) - 1e-6 and mag.max() <= np.exp(-0.0005) + 1e-6


def test_bpo_through_the_parallel_pass_equals_stepping():
    """BPO recomputes imagination through the parallel pass (parallel_predict): same rollout, same policy
    and model gradients as stepping through the carried states."""
    task = awm_envs.make("cancer_treatment", horizon=12)
    n = task.obs_size - 1
    policy = Policy(n + 1, 1)
    pparams = policy.init(jax.random.PRNGKey(0))
    norm = Normalizer(jnp.array([0.5]), jnp.array([0.2]))
    wm = make_world_model("awm_ssm", n, 1, task.horizon)
    mparams = _perturb(wm.init(jax.random.PRNGKey(1)), jax.random.PRNGKey(2), 0.1)
    s0 = task.reset(jax.random.PRNGKey(0)).obs[:-1]
    assert wm.parallel_predict and not wm.feeds_back_predictions

    def total(p, fn, mp):
        ro = fn(wm, mp, policy, p, task, norm, s0, jax.random.PRNGKey(3), task.horizon)
        return ro.rewards.sum() - 0.1 * ro.logp.sum(), ro

    (v1, ro1), g1 = jax.jit(jax.value_and_grad(lambda p: total(p, imagine, mparams), has_aux=True))(pparams)
    (v2, ro2), g2 = jax.jit(jax.value_and_grad(lambda p: total(p, imagine_sequential, mparams), has_aux=True))(pparams)
    # step t's state: t policy steps each feeding the model (rounding-level between the two forms)
    depth = task.horizon * (MLP_DEPTH + SSM_DEPTH)
    np.testing.assert_allclose(ro1.obs, ro2.obs, **f32_tol(depth, scale=float(jnp.abs(ro2.obs).max())))
    np.testing.assert_allclose(v1, v2, **f32_tol(depth, scale=float(jnp.abs(ro2.rewards).sum())))
    assert_trees_close(g1, g2, 2 * depth)
    gm1 = jax.jit(jax.grad(lambda m: total(pparams, imagine, m)[0]))(mparams)
    gm2 = jax.jit(jax.grad(lambda m: total(pparams, imagine_sequential, m)[0]))(mparams)
    assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(gm1)) > 0
    assert_trees_close(gm1, gm2, 2 * depth)
