"""The world model's open-loop error logged at every evaluation (a diagnostic of where a model can guide the policy)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from configs import config

import awm_envs
from awm_jax import make_train
from awm_jax.core.diagnostics import open_loop_error
from awm_jax.core.models.true_task import TrueTask
from awm_jax.core.spaces import Normalizer

SMALL = dict(task="cancer_treatment", total_steps=392, warmup_steps=200, eval_every=64, model_batch=16,
             imagined_rollouts=4, width=16, heads=2, layers=1, rnn_hidden=16)
KEY = jax.random.PRNGKey(0)


def test_the_true_dynamics_have_no_open_loop_error_and_a_shifted_model_has_the_closed_form_one():
    task = awm_envs.make("timber_harvest", horizon=20)
    actions = jax.random.uniform(KEY, (20, 1), minval=-1, maxval=1)
    env, xs = task.reset(KEY), []
    for a in actions:
        xs.append(env.obs[:-1])
        env = task.step(env, a)
    states = jnp.stack(xs + [env.obs[:-1]])
    model_norm, norm = Normalizer(states.mean(0), 2 * states.std(0)), Normalizer(states.mean(0) + 1.0, states.std(0))
    true = TrueTask.of(task)
    err = open_loop_error(true, true.params(model_norm, KEY), model_norm, norm, states, actions)
    assert float(err) < 1e-8

    class Shifted:  # predicts every state 0.5 (model units) too high: error 0.5 x (0.5 x 2 std / std)^2
        feeds_back_predictions = False

        @staticmethod
        def predict(params, s, a):
            return s[1:] + 0.5

    err = open_loop_error(Shifted, None, model_norm, norm, states, actions)
    np.testing.assert_allclose(err, 0.5 * 1.0 ** 2, rtol=1e-5)


@pytest.mark.parametrize("method", ["markov_mlp", pytest.param("awm_transformer", marks=pytest.mark.slow)])
def test_evaluation_logs_model_errors_without_changing_the_run(method):
    """The logged errors equal the model's own error on the evaluation episode and on the warm-up episodes
    recomputed from the final state in numpy; every other metric is bit-identical with the log off."""
    cfg = config(method=method, **SMALL)
    trainer = make_train(cfg)
    state, metrics = jax.jit(trainer)(KEY)
    _, plain = jax.jit(make_train(dataclasses.replace(cfg, model_error=False)))(KEY)
    assert set(metrics) - set(plain) == {"model/error_eval", "model/error_warmup", "eval/max_abs_z"}
    for k in plain:
        np.testing.assert_array_equal(metrics[k], plain[k], err_msg=k)
    # an evaluation of the final state, recomputed
    ret, obs, actions = trainer.eval_episode(state.policy_params, state.norm, jax.random.PRNGKey(3))
    mean, std = np.asarray(state.norm.mean), np.asarray(state.norm.std)

    def numpy_error(o, a):
        x = np.asarray(o)[:, :-1]
        if trainer.model.feeds_back_predictions:
            pred = trainer.model.rollout(state.model_params, jnp.asarray((x[0] - mean) / std), a)
        else:
            pred = trainer.model.predict(state.model_params, jnp.asarray((x - mean) / std), a)
        return 0.5 * np.mean((np.asarray(pred) - (x[1:] - mean) / std) ** 2)

    got = jax.jit(trainer._evaluation)(state, jax.random.PRNGKey(3))
    assert float(got["eval/return"]) == float(ret)
    np.testing.assert_allclose(got["model/error_eval"], numpy_error(obs, actions), rtol=1e-4)
    W = cfg.warmup_steps // 100
    assert trainer.warmup_episodes() == W == 2
    warm = np.mean([numpy_error(state.replay.obs[i], state.replay.actions[i]) for i in range(W)])
    np.testing.assert_allclose(got["model/error_warmup"], warm, rtol=1e-4)
    np.testing.assert_allclose(got["eval/max_abs_z"], np.abs((np.asarray(obs)[:, :-1] - mean) / std).max(), rtol=1e-6)
    assert metrics["model/error_eval"].shape == (cfg.periods,) and np.all(np.isfinite(metrics["model/error_eval"]))


def test_no_model_error_for_true_bptt_or_an_overwriting_replay():
    assert "model/error_eval" not in jax.eval_shape(make_train(config(method="true_bptt", **SMALL)), KEY)[1]
    cfg = config(method="markov_mlp", **{**SMALL, "replay_episodes": 4, "model_batch": 2})
    assert -(-cfg.env_steps // 100) >= 4  # the run writes 4 or more episodes into 4 slots: it wraps
    assert make_train(cfg).warmup_episodes() == 0
    assert make_train(dataclasses.replace(cfg, replay_episodes=6)).warmup_episodes() == 2


def test_model_error_report_windows_match_numpy(tmp_path):
    """experiments/model_error.py: first/last-window geometric means of the errors and their ratio, mean
    cosine (NaN-aware) and max |z|, recomputed here from fabricated metrics."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "experiments" / "model_error.py"
    spec = importlib.util.spec_from_file_location("model_error", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rng = np.random.default_rng(0)
    m = {"eval/return": rng.normal(size=(3, 8)), "model/error_eval": rng.uniform(1e-4, 1, (3, 8)),
         "model/error_warmup": rng.uniform(1e-4, 1, (3, 8)), "policy/grad_cosine": rng.uniform(-1, 1, (3, 8)),
         "eval/max_abs_z": rng.uniform(0, 9, (3, 8))}
    m["policy/grad_cosine"][0, 6] = np.nan
    (row,) = mod.window_rows({("cancer_treatment", "awm_lstm"): m}, window=3)
    last = slice(5, 8)
    e, w = m["model/error_eval"][:, last], m["model/error_warmup"][:, last]
    np.testing.assert_allclose(row["error_eval_last"], np.prod(e) ** (1 / e.size), rtol=1e-10)
    np.testing.assert_allclose(row["ratio_last"], np.prod(e / w) ** (1 / e.size), rtol=1e-10)
    cos = [c for c in m["policy/grad_cosine"][:, last].ravel() if c == c]
    np.testing.assert_allclose(row["cosine_last"], sum(cos) / len(cos), rtol=1e-10)
    np.testing.assert_allclose(row["max_abs_z_first"], m["eval/max_abs_z"][:, :3].mean(), rtol=1e-10)
    assert row["final_return"] == m["eval/return"][:, -1].mean() and row["seeds"] == 3
