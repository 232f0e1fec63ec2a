"""sac, ppo and td3 (rejax) behind make_train: learning, determinism, chunking, the BPO evaluation grid,
validation, and a checkpointed run resumed through awm_jax.runner.run."""


import jax
import numpy as np
import pytest
from configs import config

from awm_jax import make_train
from awm_jax.analysis.references import best_constant_return, random_return
from awm_jax.runner.run import run_training

# simple_case over 10 steps: random actions return -0.32, the best constant action 1.25 (zero: 1.07);
# 200 random warm-up steps, then 16 evaluation periods of 64 env steps.
SCHEDULE = dict(task="simple_case", horizon=10, total_steps=200 + 64 * 16, warmup_steps=200, eval_every=64)
SMALL = dict(**SCHEDULE, rl_hidden=(64, 64))
KEYS = jax.random.split(jax.random.PRNGKey(0), 2)
SLOW = pytest.mark.slow


def _equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


_RUNS = {}


def _run(method):
    """One vmapped 2-seed run per method (cached for the module): (config, trainer, state, metrics)."""
    if method not in _RUNS:
        cfg = config(method=method, **SMALL)
        trainer = make_train(cfg)
        _RUNS[method] = (cfg, trainer, *jax.jit(jax.vmap(trainer))(KEYS))
    return _RUNS[method]


@pytest.fixture(scope="module")
def references():
    import awm_envs

    task = awm_envs.make("simple_case", horizon=10)
    return random_return(task, jax.random.PRNGKey(1)), best_constant_return(task, jax.random.PRNGKey(1), 41)[0]


@pytest.mark.parametrize("method", ["sac", pytest.param("td3", marks=SLOW), pytest.param("ppo", marks=SLOW)])
def test_learns_beyond_random_actions(method, references):
    """Each baseline closes most of the random -> best-constant gap within ~1,000 steps (seeds averaged)."""
    rand, best = references
    cfg, _, _, metrics = _run(method)
    final = float(np.mean(metrics["eval/return"][:, -4:]))
    assert np.isfinite(metrics["eval/return"]).all()
    assert final > rand + 0.8 * (best - rand), (method, final, rand, best)
    assert (np.asarray(metrics["skipped_updates"]) == 0).all()


def test_hparams_map_and_unknown_ones_raise():
    trainer = make_train(config(method="td3", **SMALL))
    with pytest.raises(ValueError, match="td3 cannot take hyperparameters.*entropy"):
        trainer.init(KEYS[0], {"entropy": 0.1})
    with pytest.raises(ValueError, match="model_lr"):
        make_train(config(method="sac", **SMALL)).init(KEYS[0], {"model_lr": 1e-3})
    auto = make_train(config(method="sac", **{**SMALL, "rl_entropy": None}))
    with pytest.raises(ValueError, match="tunes alpha itself"):
        auto.init(KEYS[0], {"entropy": 0.1})
    state = jax.eval_shape(lambda k: make_train(config(method="ppo", **SMALL)).init(
        k, {"policy_lr": 1e-3, "gamma": 0.9, "entropy": 0.0}), KEYS[0])
    assert set(state.hparams) == {"policy_lr", "gamma", "entropy"}


@pytest.mark.parametrize("change,match", [
    (dict(method="sac", warmup_steps=100, rl_batch=128), "rl_batch"),
    (dict(method="td3", policy_every=5, eval_every=5), "multiple of it"),
    (dict(method="ppo", rl_ppo_minibatches=5), "rl_ppo_minibatches"),
    (dict(method="ppo", rl_hidden=()), "rl_hidden"),
    (dict(method="sac", rl_lr=0.0), "rl_lr"),
    (dict(method="sac", rl_gamma=1.5), "rl_gamma"),
    (dict(method="sac", rl_entropy=-1.0), "rl_entropy"),
    (dict(method="td3", rl_batch=0), "rl_batch"),
])
def test_invalid_configs_name_the_problem(change, match):
    with pytest.raises(ValueError, match=match):
        make_train(config(**{**SMALL, **change}))


def test_state_has_one_structure():
    """States from separate traces share one tree structure (rejax makes a new state class per init),
    so checkpoints restore into `jax.eval_shape(trainer.init)` and compiled chunks accept them."""
    trainer = make_train(config(method="sac", **SMALL))
    a = jax.eval_shape(trainer.init, KEYS[0])
    b = jax.eval_shape(jax.vmap(trainer.init), KEYS)
    assert jax.tree.structure(a) == jax.tree.structure(b)
    assert all(not getattr(x, "weak_type", False) for x in jax.tree.leaves(b))


@SLOW  # ~2 min on a busy CPU: four compilations and a checkpointed run twice
def test_checkpointed_run_resumes_exactly(tmp_path):
    from awm_jax.runner.checkpoint import Checkpointer

    cfg = config(method="sac", seeds=2, **{**SMALL, "total_steps": 200 + 64 * 3})
    out = tmp_path / "sac"
    _, ref = run_training(cfg, out=out, chunk_periods=1, checkpoint_every=1, verbose=False)
    ck = Checkpointer(out / "checkpoints")
    assert ck.steps() == [2, 3]
    ck.delete(3)  # as if killed before the last checkpoint
    ck.close()
    (out / "COMPLETE").unlink()
    _, resumed = run_training(cfg, out=out, chunk_periods=1, checkpoint_every=1, resume=True, verbose=False)
    for k in ref:
        np.testing.assert_array_equal(resumed[k], ref[k], err_msg=k)
    from awm_jax import load_run

    run = load_run(out)  # the final state restores into the structure of eval_shape(vmap(trainer.init))
    np.testing.assert_array_equal(run.state.ts.global_step, [cfg.env_steps] * 2)
