"""Diagnostics: model vs true policy gradients, state-action Jacobians d s^_t / d a_k, and the world
model's open-loop error on given trajectories."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from awm_jax.core.methods.bpo import bpo_loss
from awm_jax.core.models.true_task import TrueTask
from awm_jax.core.spaces import Normalizer


def cosine(a, b, eps=1e-12):
    """Cosine similarity of two pytrees flattened to vectors."""
    va, vb = ravel_pytree(a)[0], ravel_pytree(b)[0]
    return jnp.dot(va, vb) / (jnp.linalg.norm(va) * jnp.linalg.norm(vb) + eps)


def gradient_agreement(g_model, g_true) -> dict:
    """How a policy gradient through a model agrees with the true one (pytrees of the same structure):
    {cosine, model_grad_norm, true_grad_norm, sq_error} (scalars)."""
    vm, vt = ravel_pytree(g_model)[0], ravel_pytree(g_true)[0]
    return {
        "cosine": cosine(g_model, g_true),
        "model_grad_norm": jnp.linalg.norm(vm),
        "true_grad_norm": jnp.linalg.norm(vt),
        "sq_error": jnp.sum((vm - vt) ** 2),
    }


def policy_gradient_comparison(policy, policy_params, model, model_params, task, norm: Normalizer, s0, key, **loss_kw):
    """BPO policy gradients through `model` and through the true task on the same start states s0 [B, n]
    and the same policy noise (same key). Returns (model_grad, true_grad, info: cosine, norms, sq_error)."""
    g_model = jax.grad(lambda p: bpo_loss(p, policy, model, model_params, task, norm, s0, key, **loss_kw)[0])(
        policy_params)
    true = TrueTask.of(task)
    k_task = jax.random.fold_in(key, 1)
    true_params = true.bind({}, norm, k_task)
    true_loss = lambda p: bpo_loss(p, policy, true, true_params, task, norm, s0, key, **loss_kw)[0]
    g_true = jax.grad(true_loss)(policy_params)
    return g_model, g_true, gradient_agreement(g_model, g_true)


def jacobians(model, model_params, s0, actions):
    """d s^_t / d a_k of the model's open-loop rollout: s0 [n] (model space), actions [H, m] ->
    [H, n, H, m] with entry [t - 1, :, k, :] = d s^_t / d a_k (zero for k >= t by causality)."""
    return jax.jacfwd(lambda a: model.rollout(model_params, s0, a))(actions)


def state_jacobians(model, model_params, norm: Normalizer, s0, actions):
    """d s_t / d a_k in raw state units: the model's open-loop rollout of actions [H, m] from raw model
    state s0 [n], with the model working on normalised states (`norm`) as in training ->
    [H, n, H, m], entry [t - 1, :, k, :] = d s_t / d a_k."""
    return jax.jacfwd(lambda a: norm.denorm(model.rollout(model_params, norm.norm(s0), a)))(actions)


def true_jacobians(task, s0, actions, key=None):
    """The same Jacobians [H, n, H, m] through the task itself from raw model state s0 [n]."""
    true = TrueTask.of(task)
    key = jax.random.PRNGKey(0) if key is None else key
    return jacobians(true, true.params(Normalizer.identity(true.state_size, s0.dtype), key), s0, actions)


def open_loop_error(model, model_params, model_norm: Normalizer, norm: Normalizer, states, actions):
    """The world model's open-loop prediction error on one episode: 0.5 x mean over steps and state
    dimensions of the squared error of s^_1..s^_H predicted from s_0 and the actions alone, in the
    z-scores of `norm` (the run's normaliser, whatever the model's own scaling `model_norm`).
    states: raw model states [H + 1, n]; actions [H, m]. Actions world models predict in one parallel
    pass (`predict` reads only s_0); history and Markov models roll out on their own predictions."""
    s0 = model_norm.norm(states[0])
    if model.feeds_back_predictions:
        pred = model.rollout(model_params, s0, actions)
    else:
        pred = model.predict(model_params, model_norm.norm(states), actions)
    err = norm.norm(model_norm.denorm(pred)) - norm.norm(states[1:])
    return 0.5 * jnp.mean(err ** 2)
