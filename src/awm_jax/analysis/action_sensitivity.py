"""Does a world model know how the states respond to the actions?

A model can predict the states along a trajectory well (small open-loop error) and still get wrong how
they change when the actions change, i.e. its action Jacobians d s_t / d a_k; then the policy gradient
through it is wrong too. For one action sequence a_0..a_{H-1} [H, m] from a start state s_0, this
compares the model's open-loop rollout with the true task's:

- the action Jacobians d s_t / d a_k ([H, n, H, m], in the run's z-scores per state dimension):
  `jac_cosine` (cosine of the flattened Jacobians) and `jac_rel_error` ||J_model - J_true|| / ||J_true||
  (Frobenius); `jac_cosine_one_step`, the cosine over the immediate effects d s_{t+1} / d a_t alone;
- the gradient of the open-loop return R(a) = sum_t r(s_t, a_t) with respect to the actions, where
  s_0 is given, s_1..s_{H-1} are the rollout's predicted states and r is the task's own reward function
  (as in `awm_jax.core.methods.bpo.imagine`); this is what guides the policy: `return_grad_cosine` and
  `return_grad_norm_ratio` ||dR_model/da|| / ||dR_true/da||. The reward also depends on a_t directly
  (the same function for both); `return_grad_cosine_dynamics` compares only the part that goes through
  the predicted states (the reward's action input held fixed), the part the model alone decides;
- `state_error`: the model's open-loop error on the trajectory (`diagnostics.open_loop_error`: 0.5 x
  mean squared z-score error), when the trajectory's true states are given.

`sensitivity(...)` does one trajectory; `seed_sensitivity(trainer, state, ...)` one seed's trained
state on (i) its deterministic policy's evaluation episode and (ii) the first warm-up episodes of its
replay (the data the model was first fitted on). experiments/action_sensitivity.py runs it over
finished runs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from awm_jax.core.diagnostics import open_loop_error
from awm_jax.core.models.true_task import TrueTask
from awm_jax.core.spaces import Normalizer, to_obs

METRICS = ("jac_cosine", "jac_rel_error", "jac_cosine_one_step", "return_grad_cosine", "return_grad_norm_ratio",
           "return_grad_cosine_dynamics", "state_error")


def open_loop_states(model, model_params, norm: Normalizer, s0, actions):
    """The model's open-loop predictions s_1..s_H [H, n] (raw) of actions [H, m] from raw model state
    s0 [n], as training imagines them: an actions world model's parallel pass (`predict` reads only
    s_0), the step-by-step `rollout` of a model that feeds its predictions back (history and Markov
    models, `TrueTask`)."""
    z0 = norm.norm(s0)
    if model.feeds_back_predictions:
        return norm.denorm(model.rollout(model_params, z0, actions))
    states_in = jnp.concatenate([z0[None], jnp.zeros((actions.shape[0], z0.shape[-1]), z0.dtype)])
    return norm.denorm(model.predict(model_params, states_in, actions))


def action_jacobians(model, model_params, norm: Normalizer, s0, actions):
    """d s_t / d a_k [H, n, H, m] (raw units; entry [t - 1, :, k, :]) of `open_loop_states`."""
    return jax.jacfwd(lambda a: open_loop_states(model, model_params, norm, s0, a))(jnp.asarray(actions))


def open_loop_return(model, model_params, norm: Normalizer, task, s0, actions, reward_actions=None):
    """sum_t r(s_t, a_t) of the open-loop rollout of actions [H, m] from raw model state s0 [n]
    through `model` (which works on states normalised by `norm`): s_1..s_{H-1} are its predictions
    (s_H, after the last action, earns nothing), r the task's reward on the observation (s_t, t).
    reward_actions (default: actions) are the actions the reward reads directly, so the gradient with
    respect to `actions` alone can be taken through the predicted states only."""
    actions = jnp.asarray(actions)
    reward_actions = actions if reward_actions is None else reward_actions
    H = actions.shape[0]
    pred = open_loop_states(model, model_params, norm, s0, actions)  # [H, n]: s_1..s_H
    states = jnp.concatenate([s0[None], pred[:-1]])
    return jnp.sum(jax.vmap(task.reward)(to_obs(states, jnp.arange(H)), reward_actions))


def return_gradients(model, model_params, norm: Normalizer, task, s0, actions):
    """(dR/da [H, m], dR/da through the predicted states only [H, m]) of `open_loop_return`."""
    R = lambda a, ra: open_loop_return(model, model_params, norm, task, s0, a, ra)
    actions = jnp.asarray(actions)
    full = jax.grad(lambda a: R(a, a))(actions)
    dynamics = jax.grad(R)(actions, actions)  # the reward's own action input held fixed
    return full, dynamics


def _compare(model, model_params, model_norm: Normalizer, norm: Normalizer, task, s0, actions, key):
    """The raw arrays `sensitivity` reduces: Jacobians (z-scores of `norm`) and return gradients of
    the model and of the true task."""
    true = TrueTask.of(task)
    true_params = true.bind({}, model_norm, key)
    out = {}
    for name, (m, p) in (("model", (model, model_params)), ("true", (true, true_params))):
        J = action_jacobians(m, p, model_norm, s0, actions) / norm.std[None, :, None, None]
        g, g_dyn = return_gradients(m, p, model_norm, task, s0, actions)
        out[name] = (J, g, g_dyn)
    return out


def _cos(a, b) -> float:
    a, b = np.ravel(np.asarray(a, np.float64)), np.ravel(np.asarray(b, np.float64))
    den = np.linalg.norm(a) * np.linalg.norm(b)
    return float(np.dot(a, b) / den) if den > 0 else float("nan")


def _ratio(a, b) -> float:
    a, b = np.linalg.norm(np.asarray(a, np.float64)), np.linalg.norm(np.asarray(b, np.float64))
    return float(a / b) if b > 0 else float("nan")


def reduce(model_arrays, true_arrays) -> dict:
    """The metrics (float64, numpy) of one trajectory from the model's and the true task's
    (Jacobians, return gradient, its dynamics part), each with any leading batch axes already removed."""
    (Jm, gm, dm), (Jt, gt, dt) = model_arrays, true_arrays
    t = np.arange(np.shape(Jm)[0])
    return {"jac_cosine": _cos(Jm, Jt), "jac_rel_error": _ratio(np.asarray(Jm, np.float64) - np.asarray(Jt), Jt),
            "jac_cosine_one_step": _cos(np.asarray(Jm)[t, :, t], np.asarray(Jt)[t, :, t]),
            "return_grad_cosine": _cos(gm, gt), "return_grad_norm_ratio": _ratio(gm, gt),
            "return_grad_cosine_dynamics": _cos(dm, dt)}


def sensitivity(model, model_params, model_norm: Normalizer, norm: Normalizer, task, s0, actions,
                states=None, key=None) -> dict:
    """The model's action sensitivity against the true task's on one action sequence actions [H, m]
    from raw model state s0 [n] (see the module docstring): {jac_cosine, jac_rel_error,
    jac_cosine_one_step, return_grad_cosine, return_grad_norm_ratio, return_grad_cosine_dynamics,
    state_error} as floats.
    model_params: as imagination uses them (`model.bind(...)`); model_norm: how the model scales
    states (`trainer.model_norm(state)`); norm: the run's normaliser (the z-scores of the Jacobians
    and of state_error). states: the trajectory's true raw states [H + 1, n] for state_error (NaN
    without). key: the true task's own noise (default PRNGKey(0))."""
    key = jax.random.PRNGKey(0) if key is None else key
    s0, actions = jnp.asarray(s0), jnp.asarray(actions)
    compare = jax.jit(lambda *args: _compare(model, args[0], args[1], args[2], task, *args[3:]))
    arrays = compare(model_params, model_norm, norm, s0, actions, key)
    out = reduce(arrays["model"], arrays["true"])
    out["state_error"] = (float(open_loop_error(model, model_params, model_norm, norm, jnp.asarray(states), actions))
                          if states is not None else float("nan"))
    return out


def seed_sensitivity(trainer, state, key=None, warmup: int = 4) -> dict:
    """One seed's trained BPO state (no seed axis; `awm_jax.seed_slice`): {"policy": metrics of the
    deterministic policy's evaluation episode from `trainer.task.reset(key)`, "warmup": the metrics
    averaged over the first `warmup` warm-up episodes of the replay (at most
    `trainer.warmup_episodes()`; absent when there are none)}. Each metrics dict as `sensitivity`'s,
    plus "episodes". For `true_bptt` (the model is the task) every agreement is exactly 1 and every
    error 0."""
    key = jax.random.PRNGKey(0) if key is None else key
    W = min(warmup, trainer.warmup_episodes())
    arrays = jax.device_get(_seed_arrays_jit(trainer, state, key, W))
    out = {}
    for data, arr in arrays.items():
        E = arr["error"].shape[0]
        rows = [reduce(_take(arr["model"], e), _take(arr["true"], e)) for e in range(E)]
        m = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
        m["state_error"] = float(np.mean(arr["error"]))
        m["episodes"] = E
        out[data] = m
    return out


def _take(tree, e: int):
    return jax.tree.map(lambda x: x[e], tree)


def _seed_arrays(trainer, state, key, W: int) -> dict:
    """{data: {"model": arrays, "true": arrays, "error": [E]}} for the evaluation episode and the first
    W warm-up episodes (every array with a leading episode axis)."""
    k_eval, k_task = jax.random.split(key)
    mnorm = trainer.model_norm(state)
    params = trainer.model.bind(state.model_params, mnorm, k_task)

    def one(obs, actions):
        states = obs[:, :-1]
        arrays = _compare(trainer.model, params, mnorm, state.norm, trainer.task, states[0], actions, k_task)
        err = open_loop_error(trainer.model, params, mnorm, state.norm, states, actions)
        return {**arrays, "error": err}

    _, obs, actions = trainer.eval_episode(state.policy_params, state.norm, k_eval)
    out = {"policy": jax.vmap(one)(obs[None], actions[None])}
    if W:
        out["warmup"] = jax.vmap(one)(state.replay.obs[:W], state.replay.actions[:W])
    return out


_seed_arrays_jit = jax.jit(_seed_arrays, static_argnums=(0, 3))
