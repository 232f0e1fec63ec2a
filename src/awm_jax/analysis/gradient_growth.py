"""Gradients through world models: brief model fitting, Jacobian norms vs horizon, growth-rate fits.

The library side of experiments/grad_norm_horizon.py and experiments/gradient_quality.py.

- `random_action_episodes` / `fit_world_model`: data of uniformly random actions from a task and a short
  Adam fit of any world model on it (the model works on normalised states, as in the trainer).
- `raw_rollout`: a model's (or the true task's) open-loop rollout in raw state units.
- `final_state_jacobian_norms`: for a set of horizons H, the norms of d s_H / d a_{0:H-1} (Frobenius norm
  of the whole Jacobian of the state at step H with respect to every earlier action) and of
  d s_H / d a_0 (the longest path), from one rollout to the longest horizon (causality makes a prefix
  of the rollout the rollout of the shorter horizon).
- `fit_growth`: least-squares fits of log-norm vs H (exponential growth, rate per step) and of log-norm
  vs log H (polynomial growth, the exponent), each with its R^2.
- `episode_jacobians` / `jacobian_summary`: d s_t / d a_k per episode, their mean-norm heatmap and the
  relative error against the true Jacobians.

Why d s_H / d a: for a reward at the end of the episode the policy gradient is
dr/ds_H * sum_k (d s_H / d a_k) (d a_k / d theta) (plus the direct reward -> action terms), so the
model-dependent factor that Theorem 1 bounds (and Corollaries 1 and 2 bound by O(eta^H) for
Markov/RNN models and polynomially for self-attention AWMs) is exactly this Jacobian.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from awm_jax.core.models.true_task import TrueTask
from awm_jax.core.spaces import Normalizer


def random_action_episodes(task, key, count: int, length: int | None = None):
    """Raw model states [count, length + 1, n] (observations without the time index) and uniformly random
    actions [count, length, m] in [-1, 1]. `length` defaults to the task's horizon; it may exceed it (a
    task keeps stepping past its horizon: only its reward and done flag read the horizon)."""
    length = task.horizon if length is None else length
    k_act, k_env = jax.random.split(key)
    acts = jax.random.uniform(k_act, (count, length, task.action_size), task.dtype, -1.0, 1.0)

    def one(k, a):
        first = task.reset(k).obs[None]
        return jnp.concatenate([first, task.rollout(k, a)[1].obs])[:, :-1]

    return jax.jit(jax.vmap(one))(jax.random.split(k_env, count), acts), acts


def fit_world_model(model, states, actions, key, steps: int, batch: int = 32, lr: float = 1e-3):
    """Adam fit of `model` on raw states [E, T + 1, n] and actions [E, T, m] (normalised by their own
    mean and std). Returns (params, Normalizer, losses [steps])."""
    norm = Normalizer.from_data(states)
    z = norm.norm(states)
    k_init, k_batch = jax.random.split(key)
    params = model.init(k_init)
    opt = optax.adam(lr)
    mask = jnp.ones(actions.shape[:2], z.dtype)
    batch = min(batch, states.shape[0])

    @jax.jit
    def train(params, key):
        def step(carry, k):
            p, o = carry
            idx = jax.random.randint(k, (batch,), 0, z.shape[0])
            loss, g = jax.value_and_grad(model.loss)(p, z[idx], actions[idx], mask[idx])
            upd, o = opt.update(g, o, p)
            return (optax.apply_updates(p, upd), o), loss

        (p, _), losses = jax.lax.scan(step, (params, opt.init(params)), jax.random.split(key, steps))
        return p, losses

    params, losses = train(params, k_batch)
    return params, norm, losses


def raw_rollout(model, params, norm: Normalizer):
    """(s0 [n], actions [T, m]) -> predictions s^_1..s^_T [T, n], all in raw state units. Uses the
    parallel training pass where the model has one (same values as step-by-step imagination)."""
    if model.parallel_predict and not model.feeds_back_predictions:
        def run(s0, actions):
            z0 = norm.norm(s0)
            states = jnp.concatenate([z0[None], jnp.zeros((actions.shape[0], z0.shape[0]), z0.dtype)])
            return norm.denorm(model.predict(params, states, actions))
        return run
    return lambda s0, actions: norm.denorm(model.rollout(params, norm.norm(s0), actions))


def true_rollout(task, key=None):
    """The true task's rollout as `raw_rollout` gives it: (s0 [n], actions [T, m]) -> [T, n]."""
    true = TrueTask.of(task)
    key = jax.random.PRNGKey(0) if key is None else key
    return raw_rollout(true, true.params(Normalizer.identity(true.state_size, task.dtype), key),
                       Normalizer.identity(true.state_size, task.dtype))


def final_state_jacobian_norms(rollout, s0, actions, horizons, chunk: int = 4):
    """Norms of d s_H / d a for each H in `horizons` (ints in 1..T), from rollout(s0 [n], actions [T, m]).

    Returns (full [len(horizons)], first [len(horizons)], causal_leak []): full = ||d s_H / d a_{0:T}||_F,
    first = ||d s_H / d a_0||_2, causal_leak = largest |d s_H / d a_k| with k >= H (zero for a causal model).
    One reverse-mode pass per (horizon, state dimension), all from one rollout of length T; the passes
    run `chunk` at a time (lax.map), which bounds memory: a transformer's backward pass at T = 1000 holds
    its attention matrices, and all passes at once took 16 GB."""
    hs = np.asarray(horizons, int)
    if hs.min() < 1 or hs.max() > actions.shape[0]:
        raise ValueError(f"horizons must lie in 1..{actions.shape[0]}, got {hs.min()}..{hs.max()}")
    out, vjp = jax.vjp(lambda a: rollout(s0, a)[hs - 1], actions)  # [K, n]
    K, n = out.shape
    basis = jnp.eye(K * n, dtype=out.dtype).reshape(K * n, K, n)
    jac = jax.lax.map(lambda c: vjp(c)[0], basis, batch_size=chunk).reshape(K, n, *actions.shape)  # [K, n, T, m]
    full = jnp.sqrt(jnp.sum(jac**2, axis=(1, 2, 3)))
    first = jnp.sqrt(jnp.sum(jac[:, :, 0] ** 2, axis=(1, 2)))
    after = jnp.arange(actions.shape[0])[None, :] >= jnp.asarray(hs)[:, None]  # [K, T]: k >= H
    leak = jnp.max(jnp.where(after[:, None, :, None], jnp.abs(jac), 0.0))
    return full, first, leak


def _linfit(x, y):
    """Least squares y = a + b x: (slope b, intercept a, R^2)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    b, a = np.polyfit(x, y, 1)
    ss_res = float(np.sum((y - (a + b * x)) ** 2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return float(b), float(a), (1.0 - ss_res / ss_tot) if ss_tot > 0 else 1.0


def fit_growth(horizons, norms, bounded_factor: float = 3.0) -> dict:
    """Fit log(norm) = c + r H (exponential: rate r per step, factor e^r) and log(norm) = c + p log H
    (polynomial: exponent p), on the finite, positive norms.

    Returns both rates with their R^2, the growth factor each fit implies over the range of H, how many
    points were used and dropped, and `better`: "bounded" when neither fit grows by more than
    `bounded_factor` over the range (flat or decaying norms, where R^2 says nothing about a growth
    law), else the fit with the higher R^2 ("exponential" or "polynomial")."""
    h, g = np.asarray(horizons, np.float64), np.asarray(norms, np.float64)
    ok = np.isfinite(g) & (g > 0)
    h, g = h[ok], g[ok]
    res = dict(points=int(ok.sum()), dropped=int((~ok).sum()))
    if len(h) < 3:
        return res | dict(exp_rate=np.nan, exp_r2=np.nan, poly_exponent=np.nan, poly_r2=np.nan,
                          exp_growth=np.nan, poly_growth=np.nan, better="n/a")
    r, _, r2e = _linfit(h, np.log(g))
    p, _, r2p = _linfit(np.log(h), np.log(g))
    exp_growth = float(np.exp(r * (h.max() - h.min())))
    poly_growth = float((h.max() / h.min()) ** p)
    if max(exp_growth, poly_growth) < bounded_factor:
        better = "bounded"
    else:
        better = "exponential" if r2e > r2p else "polynomial"
    return res | dict(exp_rate=r, exp_r2=r2e, poly_exponent=p, poly_r2=r2p, exp_growth=exp_growth,
                      poly_growth=poly_growth, better=better)


def episode_jacobians(rollout, s0s, actions):
    """d s_t / d a_k of each episode: s0s [B, n], actions [B, H, m] -> [B, H, n, H, m], entry
    [b, t - 1, :, k, :] for d s_t / d a_k (rollout as from `raw_rollout`; forward mode, H tangents)."""
    return jax.jit(jax.vmap(jax.jacfwd(lambda s, a: rollout(s, a), argnums=1)))(s0s, actions)


def jacobian_summary(jac, jac_true) -> dict:
    """Compare model Jacobians [B, H, n, H, m] with the true ones: `heat` [H, H] = mean over episodes of
    ||d s_t / d a_k|| (rows t = 1..H, columns k = 0..H-1), `rel_error` = mean over episodes of
    ||J - J_true||_F / ||J_true||_F, and `causal_leak` = largest |d s_t / d a_k| with k >= t."""
    jac, jac_true = np.asarray(jac, np.float64), np.asarray(jac_true, np.float64)
    heat = np.sqrt(np.sum(jac**2, axis=(2, 4))).mean(0)
    err = np.sqrt(np.sum((jac - jac_true) ** 2, axis=(1, 2, 3, 4)))
    ref = np.sqrt(np.sum(jac_true**2, axis=(1, 2, 3, 4)))
    H = jac.shape[1]
    future = np.arange(H)[None, :] >= np.arange(1, H + 1)[:, None]  # [t - 1, k]: k >= t
    leak = np.abs(jac).max(axis=(0, 2, 4))[future]
    return dict(heat=heat, rel_error=float(np.mean(err / np.maximum(ref, 1e-12))),
                causal_leak=float(leak.max()) if leak.size else 0.0)
