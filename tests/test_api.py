"""The public API: load_run round trips, seed slices, act/evaluate, diagnostics on a loaded run."""

import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from configs import config

import awm_jax
from awm_jax import Agent, act, evaluate, load_run, make_train, seed_slice
from awm_jax.core.diagnostics import policy_gradient_comparison, true_jacobians
from awm_jax.core.spaces import policy_input
from awm_jax.runner.run import run_training, seed_keys
from awm_jax.runner.sweep import SweepSpec, run_sweep

# Tiny: horizon 20, 200 warm-up steps, 2 evaluation periods of 2 policy updates each.
TINY = dict(task="cancer_treatment", horizon=20, total_steps=264, warmup_steps=200, eval_every=32, model_batch=8,
            imagined_rollouts=4, mlp_hidden=(16,), policy_hidden=(16,), policy_lr=1e-3)


def _assert_trees_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    cfg = config(method="markov_mlp", seeds=2, **TINY)
    state, metrics = run_training(cfg, out=out, verbose=False)
    return cfg, out, state, metrics


def test_load_run_round_trips(written):
    cfg, out, state, metrics = written
    run = load_run(out)
    assert run.config == cfg.resolved() and run.seeds == 2  # saved with the method defaults written out
    assert set(run.metrics) == set(metrics)
    for k in metrics:
        assert run.metrics[k].shape == (2, cfg.periods)
        np.testing.assert_array_equal(run.metrics[k], metrics[k], err_msg=k)
    _assert_trees_equal(run.state, state)
    assert load_run(out, state=False).state is None


def test_load_run_without_a_saved_state(written, tmp_path):
    _, out, _, _ = written
    for name in ("config.json", "metrics.json", "COMPLETE"):
        shutil.copy(out / name, tmp_path / name)
    with pytest.raises(FileNotFoundError, match="state=False"):
        load_run(tmp_path)
    assert load_run(tmp_path, state=False).metrics["eval/return"].shape == (2, 2)


def test_seed_slice_equals_a_single_run(written):
    cfg, out, _, metrics = written
    run = load_run(out)
    single_state, single_metrics = jax.jit(make_train(cfg))(seed_keys(cfg)[1])
    for k in single_metrics:
        np.testing.assert_allclose(run.metrics[k][1], single_metrics[k], rtol=2e-5, atol=1e-6, err_msg=k)
    for x, y in zip(jax.tree.leaves(seed_slice(run.state, 1)), jax.tree.leaves(single_state)):
        np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64), rtol=1e-4, atol=1e-5)
    _assert_trees_equal(seed_slice(run.state, -1), seed_slice(run.state, 1))
    with pytest.raises(IndexError, match="out of range"):
        seed_slice(run.state, 2)
    with pytest.raises(ValueError, match="already one seed"):
        seed_slice(single_state, 0)


def test_act_and_evaluate_match_direct_computation(written):
    _, out, _, _ = written
    run = load_run(out)
    trainer, one = run.trainer, run.seed_state(1)
    agent = run.agent(1)
    obs = jnp.stack([trainer.task.reset(k).obs for k in jax.random.split(jax.random.PRNGKey(0), 5)])  # [5, 2]
    x = policy_input(one.norm, obs, trainer.task.horizon)
    np.testing.assert_array_equal(act(agent, obs), trainer.policy.mode(one.policy_params, x))
    x0 = policy_input(one.norm, obs[0], trainer.task.horizon)
    np.testing.assert_array_equal(act(agent, obs[0]), trainer.policy.mode(one.policy_params, x0))
    key = jax.random.PRNGKey(7)
    np.testing.assert_array_equal(act(agent, obs, key), trainer.policy.sample(one.policy_params, x, key)[0])
    assert act(agent, obs).shape == (5, 1) and np.all(np.abs(act(agent, obs, key)) <= 1)

    returns = evaluate(agent, trainer.task, key, episodes=4)
    direct = [trainer.evaluate(one, k) for k in jax.random.split(key, 4)]
    np.testing.assert_allclose(returns, direct, rtol=1e-6)
    assert evaluate(agent, "cancer_treatment", key, episodes=2).shape == (2,)  # default horizon 100
    # the vmapped form the error message suggests: every seed at once
    every_seed = Agent(run.state.policy_params, run.state.norm, agent.policy, agent.horizon)
    both = jax.vmap(act, in_axes=(0, None))(every_seed, obs)  # [seeds, 5, 1]
    np.testing.assert_allclose(both[1], act(agent, obs), rtol=1e-6)


def test_seed_batched_inputs_are_refused(written):
    _, out, _, _ = written
    run = load_run(out)
    agent = run.agent(0)
    obs = run.trainer.task.reset(jax.random.PRNGKey(0)).obs
    batched = Agent(run.state.policy_params, run.state.norm, agent.policy, agent.horizon)
    for fn in (lambda: act(batched, obs), lambda: evaluate(batched, run.trainer.task, jax.random.PRNGKey(0)),
               lambda: Agent.from_state(run.trainer, run.state),
               lambda: awm_jax.imagine(run.trainer, run.state, jax.random.PRNGKey(0)),
               lambda: awm_jax.policy_gradient_cosine(run.trainer, run.state, jax.random.PRNGKey(0))):
        with pytest.raises(ValueError, match="seed_slice"):
            fn()
    with pytest.raises(TypeError, match="Agent"):
        act(run.seed_state(0).policy_params, obs)
    with pytest.raises(TypeError, match="BPO methods only"):
        Agent.from_state(object(), run.seed_state(0))


def test_diagnostics_on_a_loaded_run(written):
    _, out, _, _ = written
    run = load_run(out)
    trainer, one, key = run.trainer, run.seed_state(0), jax.random.PRNGKey(3)
    H = trainer.task.horizon
    ro = awm_jax.imagine(trainer, one, key)
    assert ro.obs.shape == (H, 2) and ro.actions.shape == (H, 1) and ro.rewards.shape == (H,)
    true_ro = awm_jax.imagine(trainer, one, key, through="true")
    np.testing.assert_array_equal(true_ro.obs[0], ro.obs[0])  # same start state, different dynamics

    info = awm_jax.policy_gradient_cosine(trainer, one, key)
    assert -1 <= float(info["cosine"]) <= 1 and float(info["true_grad_norm"]) > 0
    k_idx, k_task, k_loss = jax.random.split(key, 3)
    s0 = one.replay.obs[one.replay.sample_indices(k_idx, 4), 0, :-1]
    direct = policy_gradient_comparison(trainer.policy, one.policy_params, trainer.model, one.model_params,
                                        trainer.task, one.norm, s0, k_loss, alpha=one.hparams["entropy"],
                                        gamma=one.hparams["gamma"])[2]
    np.testing.assert_allclose(info["cosine"], direct["cosine"], rtol=1e-5)

    s0 = trainer.task.reset(key).obs[:-1]
    J_model = np.asarray(awm_jax.jacobians(trainer, one, ro.actions, s0=s0))
    J_true = np.asarray(awm_jax.jacobians(trainer, one, ro.actions, s0=s0, through="true"))
    assert J_model.shape == J_true.shape == (H, 1, H, 1)
    future = np.triu(np.ones((H, H), bool), k=1)  # entry [t - 1, k] with k >= t
    assert np.all(J_model[:, 0, :, 0][future] == 0) and np.all(J_true[:, 0, :, 0][future] == 0)
    np.testing.assert_allclose(J_true, true_jacobians(trainer.task, s0, ro.actions), rtol=1e-4, atol=1e-6)


def test_load_run_reads_sweep_members_and_groups(tmp_path):
    base = config(method="true_bptt", seeds=2, **TINY)
    spec = SweepSpec(base, ("cancer_treatment",), ("true_bptt",), (("policy_lr", (1e-3, 3e-3)),))
    run_sweep(spec, tmp_path, verbose=False)
    group = load_run(tmp_path / "groups" / "cancer_treatment-true_bptt")
    assert group.seeds == 4 and group.config == base.resolved()
    members = awm_jax.load_sweep(tmp_path)
    assert list(members) == ["cancer_treatment-true_bptt-policy_lr=0.001", "cancer_treatment-true_bptt-policy_lr=0.003"]
    for j, member in enumerate(members.values()):
        assert member.config.policy_lr == (1e-3, 3e-3)[j] and member.seeds == 2
        _assert_trees_equal(member.state, jax.tree.map(lambda x, j=j: x[2 * j:2 * j + 2], group.state))
        for k, v in member.metrics.items():
            np.testing.assert_array_equal(v, group.metrics[k][2 * j:2 * j + 2])
        np.testing.assert_allclose(member.state.hparams["policy_lr"], member.config.policy_lr)
    with pytest.raises(ValueError, match="load_sweep"):
        load_run(tmp_path)


@pytest.mark.slow
def test_load_run_restores_a_baseline_state(tmp_path):
    """Model-free baselines (here ppo via rejax) keep their own state type; load_run rebuilds it the same
    way, and the BPO-only functions say so."""
    pytest.importorskip("awm_jax.core.methods.rejax_adapter")
    cfg = config(task="cancer_treatment", method="ppo", seeds=2, horizon=20, total_steps=264, warmup_steps=200)
    state, metrics = run_training(cfg, out=tmp_path, verbose=False)
    run = load_run(tmp_path)
    # same state class and leaves (treedefs of rejax states are not comparable: their static parts hold
    # functions made anew by every init)
    assert type(run.state) is type(state) and len(jax.tree.leaves(run.state)) == len(jax.tree.leaves(state))
    for x, y in zip(jax.tree.leaves(run.state), jax.tree.leaves(state)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    jax.block_until_ready(jax.jit(jax.vmap(lambda s: run.trainer.run_chunk(s, 1)))(run.state))  # it runs on
    np.testing.assert_array_equal(run.metrics["eval/return"], metrics["eval/return"])
    seed_slice(run.state, 1)
    with pytest.raises(TypeError, match="BPO methods only"):
        run.agent(0)
