"""The paper's objective and procedure: the entropy bonus as a mean over steps, the two policy
parameterisations, the warm-up acted by the initial policy, the policy learning rate per parameterisation."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from configs import config
from tolerances import f32_tol

import awm_envs
from awm_jax import make_train
from awm_jax.core.config import POLICY_LR, TRUE_BPTT_POLICY_LR
from awm_jax.core.methods import AWM_TRANSFORMER_POLICY_LR
from awm_jax.core.methods.bpo import bpo_loss, imagine
from awm_jax.core.models.policy import MIN_STD, Policy
from awm_jax.core.models.true_task import TrueTask
from awm_jax.core.replay import Replay, running_normalizer
from awm_jax.core.spaces import Normalizer

KEY = jax.random.PRNGKey(0)


def _setup(parameterisation="normalized", horizon=12):
    task = awm_envs.make("cancer_treatment", horizon=horizon)
    policy = Policy(task.obs_size, task.action_size, horizon=horizon, parameterisation=parameterisation)
    params = policy.init(jax.random.PRNGKey(1))
    true = TrueTask.of(task)
    norm = Normalizer(jnp.array([0.5]), jnp.array([0.2]))
    s0 = jnp.array([[0.975], [0.6], [0.3]])
    return task, policy, params, true, true.params(norm, KEY), norm, s0


@pytest.mark.parametrize("parameterisation", ["normalized", "paper"])
def test_entropy_bonus_is_alpha_times_the_mean_over_steps(parameterisation):
    """loss = -mean_B [sum_t r_t + alpha * mean_t(-log pi_t)], checked on the rollouts `imagine` builds
    with the same keys, and d loss / d alpha = mean over rollouts and steps of log pi."""
    task, policy, params, true, tparams, norm, s0 = _setup(parameterisation)
    key = jax.random.PRNGKey(3)
    keys = jax.random.split(key, s0.shape[0])
    ros = [imagine(true, tparams, policy, params, task, norm, s, k, task.horizon) for s, k in zip(s0, keys)]
    rewards = np.stack([np.asarray(r.rewards, np.float64) for r in ros])  # [B, H]
    logp = np.stack([np.asarray(r.logp, np.float64) for r in ros])
    alpha = 0.37
    want = -np.mean(rewards.sum(1) + alpha * np.mean(-logp, axis=1))
    loss = lambda a: bpo_loss(params, policy, true, tparams, task, norm, s0, key, alpha=a)[0]
    # bpo_loss reruns the rollouts in a batched program: H steps of the policy (3 + 64 + 64) and the true
    # step (~10 operations) feed each reward, then sums over H and B; rewards and entropy terms may cancel
    # (atol from their magnitude). A missing 1/H on the entropy moves the loss by alpha x 11/12 x |logp|.
    depth = task.horizon * (3 + 64 + 64 + 10) + task.horizon + s0.shape[0]
    scale = float(np.abs(rewards).sum(1).mean() + alpha * np.abs(logp).mean())
    np.testing.assert_allclose(loss(alpha), want, **f32_tol(depth, scale=scale))
    np.testing.assert_allclose(jax.grad(loss)(alpha), logp.mean(), **f32_tol(depth, scale=float(np.abs(logp).mean())))


def test_paper_policy_feeds_the_raw_observation_with_brax_normal_tanh():
    task, policy, params, *_ = _setup("paper")
    obs = jnp.array([[0.8, 0.0], [0.31, 57.0]])  # [x, t] with the raw step index
    norm = Normalizer(jnp.array([0.5]), jnp.array([0.2]))
    np.testing.assert_array_equal(policy.features(norm, obs), obs)
    # the network, by hand in numpy: swish MLP on the raw obs, mean and softplus(raw) + 0.001
    layers = [params["params"][f"Dense_{i}"] for i in range(3)]
    h = np.asarray(obs, np.float64)
    for i, layer in enumerate(layers):
        terms = np.abs(h) @ np.abs(np.asarray(layer["kernel"], np.float64)) + np.abs(layer["bias"])
        h = h @ np.asarray(layer["kernel"], np.float64) + np.asarray(layer["bias"], np.float64)
        if i < 2:
            h = h / (1 + np.exp(-h))
    mu, raw = h[:, :1], h[:, 1:]
    got_mu, got_log_std = policy.dist(params, obs)
    # float32 against float64: dots of 2, 64 and 64 with two swishes (132 roundings); the last layer's
    # outputs may cancel, so the atol comes from its terms' magnitude sum |h| |W| + |b| (the earlier
    # layers' errors reach it through |W| too); softplus' slope is <= 1, so the std's rounding is no larger.
    tol = f32_tol(2 + 64 + 64 + 2, scale=float(terms.max()))
    np.testing.assert_allclose(got_mu, mu, **tol)
    np.testing.assert_allclose(np.exp(got_log_std), np.log1p(np.exp(raw)) + MIN_STD, **tol)
    # ordinary lecun-uniform last layer (not scaled down): bound sqrt(3 / fan_in), spread close to it
    kernel = np.asarray(layers[2]["kernel"])
    bound = np.sqrt(3 / kernel.shape[0])
    assert np.abs(kernel).max() <= bound and np.abs(kernel).max() > 0.8 * bound


def test_normalized_policy_feeds_zscores_and_t_over_h():
    task, policy, params, *_ = _setup("normalized", horizon=12)
    norm = Normalizer(jnp.array([0.5]), jnp.array([0.2]))
    # (0.8 - 0.5) / 0.2 and 6 / 12: two roundings, where 0.8 - 0.5 cancels and amplifies 0.8's rounding
    # 0.8 / 0.3 = 2.7 times: 4 ulps (a normaliser not applied, or t / (H - 1), moves them by 1e-2 or more)
    np.testing.assert_allclose(policy.features(norm, jnp.array([0.8, 6.0])), [1.5, 0.5], **f32_tol(2, ulps=4))


def test_running_normalizer_is_the_statistics_of_the_states_written_so_far():
    rng = np.random.default_rng(0)
    replay = Replay.empty(4, 5, 2, 1)  # obs_size 2: one model-state dimension and t
    for ep in range(2):
        for t in range(5):
            obs, nxt = rng.normal(size=2).astype(np.float32), rng.normal(size=2).astype(np.float32)
            replay = replay.add(t, jnp.asarray(obs), jnp.zeros(1), 0.0, jnp.asarray(nxt), t == 4)
            if ep == 1 and t == 2:
                partial = replay
    # after 2 completed episodes: every row of both
    states = np.asarray(replay.obs[:2, :, 0], np.float64).ravel()
    got = running_normalizer(replay, jnp.asarray(0))
    # float32 against float64: a masked mean of 10 standard normal rows (which may cancel: atol from max
    # |x|), and a two-pass std (squares and their sum: 2 x 10 + the root). A row too many moves them ~1e-2.
    def check(got, rows):
        np.testing.assert_allclose(got.mean[0], rows.mean(), **f32_tol(rows.size, scale=float(np.abs(rows).max())))
        np.testing.assert_allclose(got.std[0], rows.std(), **f32_tol(2 * rows.size + 1))

    check(got, states)
    # mid-episode (episode 1 at step t = 3: rows 0..3 written): the completed episode and those rows
    rows = np.concatenate([np.asarray(partial.obs[0, :, 0]), np.asarray(partial.obs[1, :4, 0])]).astype(np.float64)
    check(running_normalizer(partial, jnp.asarray(3)), rows)
    empty = running_normalizer(Replay.empty(4, 5, 2, 1), jnp.asarray(0))
    np.testing.assert_array_equal([empty.mean[0], empty.std[0]], [0.0, 1.0])


SMALL = dict(task="cancer_treatment", horizon=10, total_steps=200, warmup_steps=100, eval_every=32, model_batch=4,
             imagined_rollouts=2, width=12, heads=2, layers=1)


def test_warmup_acts_with_the_initial_policy():
    """The paper's warm-up: every warm-up action is a sample of the initial policy (the "paper" policy
    ignores the normaliser, so each sample is recomputed from the recorded observation and its key)."""
    cfg = config(method="true_bptt", parameterisation="paper", **SMALL)
    trainer = make_train(cfg)
    state = jax.jit(trainer.init)(KEY)
    k_warm = jax.random.split(KEY, 7)[4]
    k_act = jax.vmap(lambda k: jax.random.split(k)[0])(jax.random.split(k_warm, cfg.warmup_steps))
    H = trainer.task.horizon
    obs = state.replay.obs[:, :H].reshape(-1, trainer.task.obs_size)[: cfg.warmup_steps]
    want = jax.vmap(lambda o, k: trainer.policy.sample(state.policy_params, o, k)[0])(obs, k_act)
    got = state.replay.actions.reshape(-1, 1)[: cfg.warmup_steps]
    # the warm-up's samples in its scan against a vmapped recomputation (another program): the policy
    # (2 + 64 + 64, swishes), the noise and a tanh into [-1, 1] (scale 1). Another key moves them O(1).
    np.testing.assert_allclose(got, want, **f32_tol(2 + 64 + 64 + 4, scale=1.0))
    # the uniform option draws something else from the same keys
    uniform = jax.jit(make_train(dataclasses.replace(cfg, warmup_policy="uniform")).init)(KEY)
    assert not np.allclose(uniform.replay.actions, state.replay.actions)
    np.testing.assert_array_equal(uniform.policy_params["params"]["Dense_0"]["kernel"],
                                  state.policy_params["params"]["Dense_0"]["kernel"])


def test_policy_learning_rate_follows_the_parameterisation():
    assert config().policy_lr_value == AWM_TRANSFORMER_POLICY_LR["normalized"] == 3e-3  # its own paired-seed comparison
    assert config(method="awm_lstm").policy_lr_value == POLICY_LR["normalized"] == 1e-3
    assert config(method="true_bptt").policy_lr_value == TRUE_BPTT_POLICY_LR["normalized"] == 3e-3
    assert config(method="true_bptt", parameterisation="paper").policy_lr_value == 1e-4
    assert config(parameterisation="paper").policy_lr_value == POLICY_LR["paper"] == 1e-4
    assert config(parameterisation="paper", policy_lr=3e-4).policy_lr_value == 3e-4
    assert config(method="online_dt").dt_temperature_lr == 1e-4  # its temperature's rate, its own field
    state = jax.jit(make_train(config(method="true_bptt", parameterisation="paper", **SMALL)).init)(KEY)
    assert float(state.hparams["policy_lr"]) == pytest.approx(1e-4)
    for bad in (dict(parameterisation="raw"), dict(warmup_policy="random"), dict(model_scaling="log"),
                dict(policy_lr=0.0)):
        with pytest.raises(ValueError, match="valid|must be > 0"):
            make_train(config(method="markov_mlp", **SMALL, **bad))


def test_model_scaling_defaults_to_the_methods_own():
    """model_scaling None: the method's (symlog for the transformer AWM, z-scores for the other world
    models), which is what its learner uses and what a run saves; an explicit value wins."""
    from awm_jax.core.methods import AWM_TRANSFORMER_MODEL_SCALING
    from awm_jax.core.spaces import SymlogNormalizer

    assert config().model_scaling is None and config().model_scaling_value == AWM_TRANSFORMER_MODEL_SCALING == "symlog"
    assert config().resolved().model_scaling == "symlog"
    assert config(method="awm_lstm").model_scaling_value == "zscore"
    assert config(method="markov_mlp").resolved().model_scaling == "zscore"
    assert config(model_scaling="zscore").model_scaling_value == "zscore"
    symlog, zscore = (make_train(config(method="awm_transformer", model_scaling=s, **SMALL)) for s in (None, "zscore"))
    state = jax.jit(zscore.init)(KEY)  # the same warm-up either way
    assert isinstance(symlog.model_norm(state), SymlogNormalizer) and zscore.model_norm(state) is state.norm


def test_raw_model_scaling_trains_the_model_on_raw_states():
    """model_scaling="raw": the model loss is taken on raw states (identity normaliser), "zscore" on the
    run's normaliser; both trainers start from the same warm-up and parameters."""
    base = config(method="markov_mlp", **SMALL)
    raw, z = (make_train(dataclasses.replace(base, model_scaling=s)) for s in ("raw", "zscore"))
    state = jax.jit(z.init)(KEY)
    assert float(jnp.abs(state.norm.std - 1).max()) > 0.05  # a real normaliser
    ident = raw.model_norm(state)
    np.testing.assert_array_equal([ident.mean, ident.std], [[0.0], [1.0]])
    assert z.model_norm(state) is state.norm
    obs, acts, _ = state.replay.sample(jax.random.PRNGKey(5), 4)
    loss_raw = raw.model.loss(state.model_params, obs[..., :-1], acts, jnp.ones(acts.shape[:2]))
    _, got = jax.jit(raw._model_update)(state, jax.random.PRNGKey(5))
    # the update's loss against the same loss outside it: the Markov MLP (2 + 64 + 64), a square and the
    # mean over 4 x 10 steps, all terms positive (relative). Another normaliser moves it by O(1).
    np.testing.assert_allclose(got, loss_raw, **f32_tol(2 + 64 + 64 + 1 + 40))


def test_symlog_model_scaling_is_a_log_scale_that_matches_the_z_score_at_the_mean():
    """symlog(s) = sign(s) log(1 + |s|) centred and scaled by the delta method: the closed form, its
    inverse, dz/ds = 1 / std at the mean (as the z-score), log growth far above it; and the model trains
    on states scaled that way."""
    from awm_jax.core.spaces import Normalizer, SymlogNormalizer

    norm = Normalizer(jnp.array([440.0, -2.0, 0.0]), jnp.array([315.0, 0.5, 1.0]))
    sl = SymlogNormalizer.around(norm)
    s = jnp.array([[4700.0, -3.0, 0.5], [0.0, 2.0, -0.25]])
    mean, std = np.array([440.0, -2.0, 0.0]), np.array([315.0, 0.5, 1.0])
    f = lambda x: np.sign(x) * np.log1p(np.abs(x))
    want = (f(np.asarray(s)) - f(mean)) / (std / (1 + np.abs(mean)))
    # 4 roundings (log1p, difference, scale, division), the difference cancelling up to 4.8 times
    # (f(-3) - f(-2)): 2 x 5 ulps. The z-score in its place differs by 10% or more.
    np.testing.assert_allclose(sl.norm(s), want, **f32_tol(4, ulps=10))
    # there and back (8 roundings): exp amplifies the log scale's relative rounding by its value, up to
    # log(4701) = 8.5: 2 x 9 ulps, and s = 0 comes back as a rounding of an O(1) offset (scale 1)
    np.testing.assert_allclose(sl.denorm(sl.norm(s)), s, **f32_tol(8, ulps=18, scale=1.0))
    slope = jax.vmap(jax.grad(lambda x, i: sl.norm(norm.mean.at[i].set(x))[i]), (0, 0))(norm.mean, jnp.arange(3))
    np.testing.assert_allclose(slope, 1 / std, **f32_tol(4))  # d/ds: 1 / (1 + |s|), times a scale, one division
    from awm_jax.core.spaces import symexp, symlog
    for fn in (symlog, symexp):  # slope 1 at 0 (sign(s) log1p|s| written naively has slope 0 there)
        assert float(jax.grad(fn)(0.0)) == 1.0
    assert float(sl.norm(s)[0, 0]) < 0.3 * float(norm.norm(s)[0, 0])  # 4,700: z 13.5, symlog about 3.4
    trainer = make_train(config(method="markov_mlp", model_scaling="symlog", **SMALL))
    state = jax.jit(trainer.init)(KEY)
    obs, acts, _ = state.replay.sample(jax.random.PRNGKey(5), 4)
    want_loss = trainer.model.loss(state.model_params, SymlogNormalizer.around(state.norm).norm(obs[..., :-1]), acts,
                                   jnp.ones(acts.shape[:2]))
    _, got = jax.jit(trainer._model_update)(state, jax.random.PRNGKey(5))
    np.testing.assert_allclose(got, want_loss, **f32_tol(4 + 2 + 64 + 64 + 1 + 40))  # as above, the symlog first
    _, metrics = jax.jit(trainer.run_chunk, static_argnums=1)(state, 1)
    assert np.isfinite(metrics["eval/return"]).all() and np.isfinite(metrics["model/loss"]).all()


def test_running_model_scaling_follows_every_completed_episode():
    """model_scaling="running": the model's z-scores are refitted to every completed episode in the
    replay (numpy mean and std of their states), not frozen at the warm-up's like "zscore"."""
    cfg = config(method="markov_mlp", model_scaling="running", **SMALL)
    trainer = make_train(cfg)
    state = jax.jit(trainer.init)(KEY)
    later, _ = jax.jit(trainer.run_chunk, static_argnums=1)(state, 2)
    H, r = trainer.task.horizon, later.replay
    done = [(int(r.ep) - 1 - j) % r.capacity for j in range(int(r.count))]
    states = np.asarray(r.obs[np.array(done), :H + 1, :-1], np.float64).reshape(-1, trainer.task.obs_size - 1)
    got = trainer.model_norm(later)
    # float32 against float64 over every completed episode's states (n rows): a mean of positive states,
    # a two-pass std (2n + 1). A missed or extra episode moves them by ~1e-2.
    n = states.shape[0]
    np.testing.assert_allclose(got.mean, states.mean(0), **f32_tol(n))
    np.testing.assert_allclose(got.std, states.std(0), **f32_tol(2 * n + 1))
    assert int(r.count) > cfg.warmup_steps // H  # episodes after the warm-up are in it
    assert float(jnp.abs(got.mean - later.norm.mean).max()) > 1e-3  # and moved it off the warm-up's fit


def test_transformer_awm_has_the_papers_embedding_and_position_init():
    """By default the token embeddings go straight into the stream (no shared Dense) and the position
    table starts with std 0.1, like the paper's; token_mixer=True adds the shared Dense back."""
    cfg = config(method="awm_transformer", **{**SMALL, "width": 48, "heads": 3})
    body = make_train(cfg).model.init(KEY)["params"]["body"]
    assert "embed" not in body
    assert 0.08 < float(np.std(body["pos"])) < 0.12  # 11 x 48 draws of N(0, 0.1)
    mixed = make_train(dataclasses.replace(cfg, token_mixer=True, position_std=0.02)).model.init(KEY)["params"]["body"]
    assert "embed" in mixed and 0.015 < float(np.std(mixed["pos"])) < 0.025


@pytest.mark.slow  # ~12 s on the 2-core machine: the default run stays under 15 minutes
def test_model_learning_rate_decays_on_a_cosine_to_its_final_fraction():
    """model_lr_decay=0.1: update k of N uses model_lr x (0.1 + 0.9 x (1 + cos(pi k / (N - 1))) / 2), so the
    last update uses 0.1 x model_lr; an update moves the parameters exactly as plain Adam at that rate."""
    import optax

    cfg = config(method="markov_mlp", model_lr_decay=0.1, model_pretrain_updates=3, **SMALL)
    trainer = make_train(cfg)
    N, lr0 = cfg.model_updates, cfg.model_lr
    assert N == 3 + cfg.blocks * cfg.policy_every // cfg.model_every
    expect = lambda k: lr0 * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * k / (N - 1))))
    state = jax.jit(trainer.init)(KEY)
    assert int(state.model_opt.count) == 3
    # float32 schedule against float64: cos(pi k / (N - 1)) rounds its argument (up to pi) to an ulp, and
    # the rate is >= 0.1 lr0, so 0.45 pi / 0.1 = 14 ulps reach it: 16 ulps. An off-by-one k moves it ~1e-2.
    lr_tol = f32_tol(1, ulps=16)
    np.testing.assert_allclose(state.model_opt.hyperparams["learning_rate"], expect(2), **lr_tol)
    run = jax.jit(trainer.run_chunk, static_argnums=1)
    mid, _ = run(state, cfg.periods // 2)
    k = int(mid.model_opt.count)
    assert 0.3 < expect(k) / lr0 < 0.8  # well inside the decay
    # one more update, against optax.adam at the expected rate from the same moments
    obs, acts, _ = mid.replay.sample(jax.random.PRNGKey(7), cfg.model_batch)
    s = trainer.model_norm(mid).norm(obs[..., :-1])
    g = jax.grad(trainer.model.loss)(mid.model_params, s, acts, jnp.ones(acts.shape[:2]))
    upd, _ = optax.adam(expect(k)).update(g, mid.model_opt.inner_state, mid.model_params)
    after, _ = jax.jit(trainer._model_update)(mid, jax.random.PRNGKey(7))
    for p1, p0, u in zip(*(jax.tree.leaves(t) for t in (after.model_params, mid.model_params, upd))):
        np.testing.assert_allclose(p1 - p0, u, rtol=2e-3, atol=2e-8)
    final, _ = run(mid, cfg.periods - cfg.periods // 2)
    assert int(final.model_opt.count) == N
    np.testing.assert_allclose(final.model_opt.hyperparams["learning_rate"], 0.1 * lr0, **lr_tol)
    # the default keeps the paper's constant rate
    const = jax.jit(make_train(dataclasses.replace(cfg, model_lr_decay=1.0)).init)(KEY)
    np.testing.assert_allclose(const.model_opt.hyperparams["learning_rate"], lr0, **f32_tol(1, ulps=1))  # in float32
