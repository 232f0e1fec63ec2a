"""World models, policy and BPO: the paper's theory and the implementation's invariants, in numbers."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from tolerances import assert_trees_close, f32_tol

import awm_envs
from awm_jax.core.diagnostics import jacobians, policy_gradient_comparison, true_jacobians
from awm_jax.core.methods.bpo import bpo_loss, imagine, imagine_sequential
from awm_jax.core.methods.svg import Critic, critic_loss, polyak, svg_loss
from awm_jax.core.models import KINDS, WorldModel, make_world_model
from awm_jax.core.models.markov_mlp import MarkovMLP
from awm_jax.core.models.policy import Policy
from awm_jax.core.models.true_task import TrueTask
from awm_jax.core.spaces import Normalizer

H, N, M = 9, 3, 2
KEY = jax.random.PRNGKey(0)

# Reduction lengths (tests/tolerances.py) of one output of the default world models. The transformers (width
# 48, 3 heads of 16, 2 blocks, MLP embeddings and decoder of 64, <= 10 tokens): embedding 5 + 64 + 64; per
# block LayerNorm 2 * 48, qkv 48, logits 16, softmax 10 + 2, mix 10, proj 48, LayerNorm 96, fc 48, gelu 1,
# fc_out 192; final LayerNorm 96; decoder 48 + 64 + 64 (1,539). The HWM's two tokens a step double the
# keys (+ 2 * 20). The recurrent and SSM AWMs (9 steps of 48 + 64, embeddings and decoder) are shallower.
TF_DEPTH = (5 + 64 + 64) + 2 * (96 + 48 + 16 + 12 + 10 + 48 + 96 + 48 + 1 + 192) + 96 + (48 + 64 + 64)
HWM_DEPTH = TF_DEPTH + 2 * 20
# The policy (state + time -> 64 -> 64 -> actions) and a Markov MLP step (64, 64) each add ~131.
MLP_DEPTH = 3 + 64 + 64


def bpo_depth(horizon, model_depth):
    """An imagined return's reduction length: each step's policy and model feed the next, horizon deep."""
    return horizon * (MLP_DEPTH + model_depth)


def _data(key=KEY, h=H):
    ks, ka = jax.random.split(key)
    return jax.random.normal(ks, (h + 1, N)), jax.random.uniform(ka, (h, M), minval=-1, maxval=1)


@pytest.fixture(scope="module")
def models():
    return {kind: (wm := make_world_model(kind, N, M, H), jax.jit(wm.init)(jax.random.PRNGKey(7))) for kind in KINDS}


def test_awm_cached_imagination_equals_full_pass(models):
    """One token per step with the key/value cache == the full causal pass, values and gradients."""
    wm, params = models["awm_transformer"]
    states, actions = _data()
    # rounding-level: the cached steps and the full pass reduce in other orders (a position bug moves O(0.1))
    want = wm.predict(params, states, actions)
    np.testing.assert_allclose(wm.rollout(params, states[0], actions), want,
                               **f32_tol(TF_DEPTH, scale=float(jnp.abs(want).max())))
    f_full = lambda p, a: jnp.sum(jnp.sin(wm.predict(p, states, a)))
    f_cache = lambda p, a: jnp.sum(jnp.sin(wm.rollout(p, states[0], a)))
    g_full = jax.jit(jax.grad(f_full, argnums=(0, 1)))(params, actions)
    g_cache = jax.jit(jax.grad(f_cache, argnums=(0, 1)))(params, actions)
    assert_trees_close(g_cache, g_full, 2 * TF_DEPTH)  # the backward pass runs the chain back: twice as deep


def test_blocked_causal_attention_equals_numpy_and_the_one_block_pass():
    """CausalTransformer's full pass attends in query blocks (the causal mask's upper blocks skipped):
    attention against a plain numpy loop (each query's softmax over the keys up to it), and the whole
    network's outputs and parameter gradients equal for blocks of 1, 3 and 4 rows and one block."""
    from awm_jax.core.models.networks import CausalTransformer

    T, W, heads = 10, 12, 3
    x = jax.random.normal(jax.random.PRNGKey(1), (2, T, 5))
    q, k, v = (np.asarray(jax.random.normal(kk, (2, heads, T, W // heads))) for kk in jax.random.split(KEY, 3))
    want = np.zeros_like(q)
    for t in range(T):
        logits = np.einsum("bhd,bhkd->bhk", q[:, :, t], k[:, :, :t + 1]) / np.sqrt(W // heads)
        w = np.exp(logits - logits.max(-1, keepdims=True))
        want[:, :, t] = np.einsum("bhk,bhkd->bhd", w / w.sum(-1, keepdims=True), v[:, :, :t + 1])
    net = lambda block: CausalTransformer(W, 2, heads, T, query_block=block)
    params = net(T).init(KEY, x)
    for block in (1, 3, 4, T, 100):
        got = net(block).apply(params, q, k, v, method=CausalTransformer._attend)
        # both float32: a length-4 dot, exp, a sum over <= 10 keys, a division, a weighted mean over <= 10
        # values, which may cancel (atol from max |v|, 3.4). A key attended past the mask moves O(0.1).
        np.testing.assert_allclose(got, want, **f32_tol(4 + 1 + 10 + 1 + 10, scale=float(np.abs(v).max())),
                                   err_msg=f"query_block {block}")
    loss = lambda p, block: jnp.sum(jnp.sin(net(block).apply(p, x)))
    one = jax.jit(jax.value_and_grad(loss), static_argnums=1)(params, T)
    for block in (1, 3, 4):
        got = jax.jit(jax.value_and_grad(loss), static_argnums=1)(params, block)
        # width 12, 2 blocks: embedding 5; per block LayerNorm 24, qkv 12, attention 4 + 12 + 10, proj 12,
        # LayerNorm 24, fc 12, gelu 1, fc_out 48; LayerNorm 24; the loss sums 240 sines. Gradients: twice.
        assert_trees_close(got, one, 2 * (5 + 2 * (24 + 12 + 26 + 12 + 24 + 12 + 1 + 48) + 24 + 241))
    with pytest.raises(ValueError, match="query_block"):
        net(0).init(KEY, x)


def test_hwm_cached_steps_equal_full_pass(models):
    """Fed the true states one token at a time, the cached HWM reproduces its teacher-forced pass."""
    wm, params = models["hwm_transformer"]
    states, actions = _data()
    carry = wm.start(params, states[0])
    preds = []
    for t in range(H):
        (cache, _), s = wm.step(params, carry, actions[t], t)
        carry = (cache, states[t + 1])  # teacher forcing
        preds.append(s)
    want = wm.predict(params, states, actions)
    np.testing.assert_allclose(jnp.stack(preds), want, **f32_tol(HWM_DEPTH, scale=float(jnp.abs(want).max())))
    # closed loop (own predictions) differs from teacher forcing
    assert float(jnp.abs(wm.rollout(params, states[0], actions) - wm.predict(params, states, actions)).max()) > 1e-3


@pytest.mark.parametrize("kind", list(KINDS))
def test_causality(models, kind):
    """d s^_t / d a_k == 0 exactly for k >= t, and is non-zero for some k < t."""
    wm, params = models[kind]
    states, actions = _data()
    J = np.asarray(jacobians(wm, params, states[0], actions))  # [H, n, H, m], row t-1 is s^_t
    for t in range(1, H + 1):
        assert np.all(J[t - 1, :, t:, :] == 0.0), f"s^_{t} depends on an action taken at or after step {t}"
        assert np.abs(J[t - 1, :, t - 1, :]).max() > 0  # ... and on the action just before it
    assert np.abs(J[-1, :, 0, :]).max() > 0  # the last state depends on the first action


def test_true_task_causality():
    task = awm_envs.make("van_der_pol", horizon=8, fixed_dt=True)  # dt 0.1: no clipping
    J = np.asarray(true_jacobians(task, jnp.array([0.0, 1.0]), jnp.full((8, 1), 0.3)))
    for t in range(1, 9):
        assert np.all(J[t - 1, :, t:, :] == 0.0)
        assert np.abs(J[t - 1, :, t - 1, :]).max() > 0
    assert np.abs(J[-1, :, 0, :]).max() > 0


@pytest.mark.parametrize("kind", list(KINDS))
def test_actions_models_ignore_predicted_states(models, kind):
    """AWMs read s_0 and actions only: their predictions have zero derivative w.r.t. states s_1..s_H
    (so imagination has no path through predicted states); history and Markov models do depend on them."""
    wm, params = models[kind]
    states, actions = _data()
    J = np.asarray(jax.jacrev(lambda s: wm.predict(params, s, actions))(states))  # [H, n, H+1, n]
    later = np.abs(J[:, :, 1:, :]).max()
    if kind.startswith("awm_"):
        assert later == 0.0 and not wm.feeds_back_predictions
        # so the open-loop imagination equals the training-time pass, whatever the later states
        want = wm.predict(params, states.at[1:].set(99.0), actions)
        np.testing.assert_allclose(wm.rollout(params, states[0], actions), want,
                                   **f32_tol(TF_DEPTH, scale=float(jnp.abs(want).max())))
    else:
        assert later > 1e-3 and wm.feeds_back_predictions
    assert np.abs(J[:, :, 0, :]).max() > 0  # everyone reads s_0


@dataclasses.dataclass(frozen=True)
class MarkovAsRNNAWM(WorldModel):
    """Proposition 1's construction, written independently of MarkovMLP's step: an RNN AWM whose hidden
    state h is the predicted state, h_0 = s_0, h_{t+1} = cell(h_t, a_t) with the Markov MLP as the cell,
    and an identity decoder. Its carry is the hidden state; its output is a separate decoded copy."""

    cell_params: dict = None
    markov: MarkovMLP = None
    feeds_back_predictions = False

    def start(self, params, s0):
        return {"h": s0}

    def step(self, params, carry, action, t):
        h = carry["h"] + self.markov.net.apply(params, jnp.concatenate([carry["h"], action]))
        decoded = jnp.eye(h.shape[0]) @ h
        return {"h": h}, decoded


def _setup_bpo(task_name="cancer_treatment", horizon=12, seed=0):
    task = awm_envs.make(task_name, horizon=horizon)
    n = task.obs_size - 1
    policy = Policy(n + 1, task.action_size, horizon=task.horizon)
    pparams = policy.init(jax.random.PRNGKey(seed))
    norm = Normalizer.identity(n)
    s0 = jnp.tile(task.reset(KEY).obs[:-1], (4, 1))
    return task, n, policy, pparams, norm, s0


def test_proposition_1_markov_bpo_equals_rnn_awm_bpo():
    """BPO through a Markov model == BPO through the RNN AWM whose hidden state is the predicted state."""
    task, n, policy, pparams, norm, s0 = _setup_bpo("van_der_pol")
    markov = MarkovMLP(n, task.action_size, task.horizon)
    mparams = markov.init(jax.random.PRNGKey(3))
    rnn = MarkovAsRNNAWM(n, task.action_size, task.horizon, markov=markov)
    loss = lambda model: jax.value_and_grad(lambda p: bpo_loss(p, policy, model, mparams, task, norm, s0, KEY)[0])(
        pparams)
    (l_markov, g_markov), (l_rnn, g_rnn) = loss(markov), loss(rnn)
    # the same maths in two programs (a step function against the RNN's scan): rounding-level equality
    depth = bpo_depth(task.horizon, MLP_DEPTH)
    np.testing.assert_allclose(l_markov, l_rnn, **f32_tol(depth))
    assert_trees_close(g_rnn, g_markov, 2 * depth)
    assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(g_markov)) > 0


def test_stop_gradient_on_policy_state_input():
    """With the stop-gradient, the policy gradient only flows reward -> state -> earlier actions; without
    it, also through the policy's state input: the two gradients differ, the losses do not."""
    task, n, policy, pparams, norm, s0 = _setup_bpo("van_der_pol")
    true = TrueTask.of(task)
    tp = true.params(norm, KEY)
    f = lambda stop: jax.value_and_grad(lambda p: bpo_loss(p, policy, true, tp, task, norm, s0, KEY,
                                                           stop_state_grad=stop)[0])(pparams)
    (l1, g1), (l2, g2) = f(True), f(False)
    np.testing.assert_allclose(l1, l2, **f32_tol(bpo_depth(task.horizon, 10)))  # the true step: ~10 operations
    diff = max(float(jnp.abs(a - b).max()) for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)))
    assert diff > 1e-6


def test_true_bptt_gradient_matches_finite_differences(x64):
    """The true-BPTT policy gradient, projected on random directions, equals central differences (float64).

    Finite differences see the total derivative, so this uses stop_state_grad=False; with the paper's
    stop-gradient on the policy's state input the gradient is deliberately a different (partial) one."""
    task = awm_envs.make("cancer_treatment", horizon=15, dtype="float64")
    n = task.obs_size - 1
    policy = Policy(n + 1, task.action_size, horizon=task.horizon)
    pparams = policy.init(jax.random.PRNGKey(1))
    # a policy far enough from zero that the gradient is informative
    pparams = jax.tree.map(lambda p: p * 30.0 if p.ndim == 2 and p.shape[-1] == 2 else p, pparams)
    norm = Normalizer.identity(n, jnp.float64)
    s0 = jnp.tile(task.reset(KEY).obs[:-1], (3, 1))
    true = TrueTask.of(task)
    tp = true.params(norm, KEY)
    f = jax.jit(lambda p: bpo_loss(p, policy, true, tp, task, norm, s0, KEY, stop_state_grad=False)[0])
    g = jax.grad(f)(pparams)
    rng = np.random.default_rng(0)
    for _ in range(3):
        v = jax.tree.map(lambda p: jnp.asarray(rng.standard_normal(p.shape)), pparams)
        eps = 1e-6
        plus = f(jax.tree.map(lambda p, d, eps=eps: p + eps * d, pparams, v))
        minus = f(jax.tree.map(lambda p, d, eps=eps: p - eps * d, pparams, v))
        fd = (plus - minus) / (2 * eps)
        analytic = sum(jnp.vdot(a, b) for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(v)))
        np.testing.assert_allclose(analytic, fd, rtol=1e-5)
        assert abs(float(fd)) > 1e-6


def test_svg_with_full_unroll_equals_bpo():
    """With k = H from t = 0 there is nothing to bootstrap: the SVG loss is the BPO loss."""
    task, n, policy, pparams, norm, s0 = _setup_bpo("cancer_treatment")
    markov = MarkovMLP(n, task.action_size, task.horizon)
    mparams = markov.init(jax.random.PRNGKey(3))
    critic = Critic(n + 1)
    cparams = critic.init(KEY)
    t = jnp.zeros(s0.shape[0], jnp.int32)
    l_svg = svg_loss(pparams, policy, markov, mparams, critic, cparams, task, norm, s0, t, KEY, k=task.horizon)[0]
    l_bpo = bpo_loss(pparams, policy, markov, mparams, task, norm, s0, KEY)[0]
    np.testing.assert_allclose(l_svg, l_bpo, **f32_tol(bpo_depth(task.horizon, MLP_DEPTH)))
    # with a short unroll the critic's value enters the loss
    l2 = svg_loss(pparams, policy, markov, mparams, critic, cparams, task, norm, s0, t, KEY, k=2)[0]
    g = jax.grad(lambda c: svg_loss(pparams, policy, markov, mparams, critic, c, task, norm, s0, t, KEY, k=2)[0])(
        cparams)
    assert np.isfinite(l2) and max(float(jnp.abs(x).max()) for x in jax.tree.leaves(g)) > 0


def test_critic_learns_k_step_targets():
    """On a fixed policy, model and policy noise (one key), regression on n-step targets drives the
    critic's loss down (with fresh noise the loss would floor at the targets' variance)."""
    task, n, policy, pparams, norm, s0 = _setup_bpo("cancer_treatment")
    markov = MarkovMLP(n, task.action_size, task.horizon)
    mparams = markov.init(jax.random.PRNGKey(3))
    critic = Critic(n + 1)
    cparams = critic.init(KEY)
    target = cparams
    opt = optax.adam(1e-2)
    ostate = opt.init(cparams)
    t = jnp.arange(s0.shape[0]) * 3

    @jax.jit
    def update(c, tgt, o, k):
        loss, g = jax.value_and_grad(critic_loss)(c, critic, tgt, policy, pparams, markov, mparams, task, norm, s0,
                                                  t, k, k=2)
        upd, o = opt.update(g, o)
        c = optax.apply_updates(c, upd)
        return c, tgt, o, loss  # a frozen target network: the targets stay fixed

    losses = []
    for _ in range(300):
        cparams, target, ostate, loss = update(cparams, target, ostate, KEY)
        losses.append(float(loss))
    assert np.mean(losses[-10:]) < 0.1 * np.mean(losses[:5])
    # Polyak averaging moves the target a fraction tau of the way
    moved = polyak(target, cparams, 0.25)
    for a, b, m in zip(jax.tree.leaves(target), jax.tree.leaves(cparams), jax.tree.leaves(moved)):
        # two products and a sum of terms up to max(|a|, |b|), which may cancel
        np.testing.assert_allclose(m, 0.75 * a + 0.25 * b, **f32_tol(3, scale=float(np.maximum(abs(a), abs(b)).max())))


def test_parallel_imagination_equals_sequential():
    """The transformer AWM's BPO recomputes imagination with one full pass: same rollout, same gradient
    as stepping through the key/value cache."""
    task = awm_envs.make("cancer_treatment", horizon=12)
    n = task.obs_size - 1
    policy = Policy(n + 1, 1)
    pparams = policy.init(KEY)
    norm = Normalizer(jnp.array([0.5]), jnp.array([0.2]))
    wm = make_world_model("awm_transformer", n, 1, task.horizon)
    mparams = wm.init(jax.random.PRNGKey(1))
    s0 = task.reset(KEY).obs[:-1]
    assert wm.parallel_predict
    for stop in (True, False):
        def total(p, fn, mp):
            ro = fn(wm, mp, policy, p, task, norm, s0, KEY, task.horizon, 0, stop)  # noqa: B023 (called here)
            return ro.rewards.sum() - 0.1 * ro.logp.sum(), ro
        # jitted: eager differentiation through the key/value cache's steps takes ~20 s
        (v1, ro1), g1 = jax.jit(jax.value_and_grad(lambda p: total(p, imagine, mparams), has_aux=True))(pparams)
        (v2, ro2), g2 = jax.jit(jax.value_and_grad(lambda p: total(p, imagine_sequential, mparams),
                                                   has_aux=True))(pparams)
        # step t's state comes from t policy and model steps, each fed by the last: bpo_depth deep
        depth = bpo_depth(task.horizon, TF_DEPTH)
        for a, b in ((ro1.obs, ro2.obs), (ro1.rewards, ro2.rewards), (v1, v2)):
            np.testing.assert_allclose(a, b, **f32_tol(depth, scale=float(jnp.abs(b).max())))
        assert_trees_close(g1, g2, 2 * depth)
    # and the model-parameter gradient agrees too (both passes differentiate through the model)
    gm1 = jax.jit(jax.grad(lambda m: total(pparams, imagine, m)[0]))(mparams)
    gm2 = jax.jit(jax.grad(lambda m: total(pparams, imagine_sequential, m)[0]))(mparams)
    assert_trees_close(gm1, gm2, 2 * bpo_depth(task.horizon, TF_DEPTH))


def test_policy_log_prob_matches_density():
    """The tanh-Gaussian log-probability equals a numerically computed density of the squashed sample."""
    mu, log_std = jnp.array([0.3]), jnp.array([-0.5])
    eps = jnp.linspace(-2, 2, 9)[:, None]
    a, logp = jax.vmap(lambda e: Policy.squash(mu, log_std, e))(eps)
    # density of a = tanh(u), u ~ N(mu, sigma^2): p(a) = N(atanh a) / (1 - a^2)
    u = np.arctanh(np.asarray(a[:, 0], np.float64))
    sigma = np.exp(-0.5)
    ref = -0.5 * ((u - 0.3) / sigma) ** 2 - np.log(sigma) - 0.5 * np.log(2 * np.pi) - np.log(1 - np.tanh(u) ** 2)
    # ~10 float32 operations (tanh, log, squares, the log-det term log(1 - a^2)) against float64, where
    # 1 - a^2 >= 0.18 over these samples amplifies a's rounding up to 1 / 0.18 = 5.5 times: 2 x 6 ulps
    np.testing.assert_allclose(logp, ref, **f32_tol(10, ulps=12, scale=float(np.abs(ref).max())))


def test_vmapped_over_seeds_equals_single_runs():
    """Per-seed model and policy parameters, vmapped, give the single-seed results."""
    task, n, policy, _, norm, s0 = _setup_bpo("cancer_treatment")
    wm = make_world_model("awm_transformer", n, task.action_size, task.horizon)
    keys = jax.random.split(KEY, 3)

    def one(key):
        km, kp, kl = jax.random.split(key, 3)
        mp, pp = wm.init(km), policy.init(kp)
        loss, g = jax.value_and_grad(lambda p: bpo_loss(p, policy, wm, mp, task, norm, s0, kl)[0])(pp)
        return loss, g

    vl, vg = jax.jit(jax.vmap(one))(keys)
    for i in range(3):
        l, g = jax.jit(one)(keys[i])
        # vmapped and single-seed programs differ (batched dots): rounding-level equality
        depth = bpo_depth(task.horizon, TF_DEPTH)
        np.testing.assert_allclose(vl[i], l, **f32_tol(depth))
        assert_trees_close(jax.tree.map(lambda x: x[i], vg), g, 2 * depth)  # noqa: B023 (used here)
    assert not np.allclose(vl[0], vl[1])


def test_model_vs_true_gradient_cosine_is_one_for_the_true_task():
    """Diagnostics sanity: the true task compared with itself gives cosine 1 and zero error."""
    task, n, policy, pparams, norm, s0 = _setup_bpo("cancer_treatment")
    true = TrueTask.of(task)
    _, _, info = policy_gradient_comparison(policy, pparams, true, true.params(norm, jax.random.fold_in(KEY, 1)),
                                            task, norm, s0, KEY)
    # the same gradient computed twice: the cosine's dot products reduce over every policy parameter
    n_params = sum(x.size for x in jax.tree.leaves(pparams))
    assert float(info["cosine"]) == pytest.approx(1.0, abs=f32_tol(n_params)["rtol"])
    assert float(info["sq_error"]) <= 1e-8 * float(info["true_grad_norm"]) ** 2


def test_bad_world_model_options():
    with pytest.raises(ValueError, match="valid: awm_transformer"):
        make_world_model("gpt", 1, 1, 10)
    with pytest.raises(ValueError, match="width"):
        make_world_model("awm_transformer", 1, 1, 10, widht=8)
    wm = make_world_model("awm_transformer", 1, 1, 10)
    with pytest.raises(ValueError, match="position table"):
        wm.check_horizon(11)


@pytest.mark.slow  # ~12-19 s: out of the default run, which must stay under 15 minutes
def test_transformer_awm_learns_cancer_dynamics():
    """Trained on random-action episodes of cancer_treatment for 150 steps, the AWM's held-out error falls
    far (1,000x) below that of predicting s_0 for every step."""
    task = awm_envs.make("cancer_treatment")
    keys = jax.random.split(jax.random.PRNGKey(0), 2)

    def episodes(key, count):
        acts = jax.random.uniform(key, (count, task.horizon, 1), minval=-1, maxval=1)
        obs = jax.vmap(lambda a: jnp.concatenate([task.reset(key).obs[None], task.rollout(key, a)[1].obs]))(acts)
        return obs[..., :-1], acts

    train_s, train_a = episodes(keys[0], 256)
    test_s, test_a = episodes(keys[1], 64)
    norm = Normalizer.from_data(train_s)
    wm = make_world_model("awm_transformer", 1, 1, task.horizon)
    params = jax.jit(wm.init)(jax.random.PRNGKey(1))
    opt = optax.adam(1e-3)
    ostate = opt.init(params)
    mask = jnp.ones(train_a.shape[:2])

    @jax.jit
    def train(params, ostate, key):
        def step(carry, k):
            p, o = carry
            idx = jax.random.choice(k, train_s.shape[0], (32,), replace=False)
            loss, g = jax.value_and_grad(wm.loss)(p, norm.norm(train_s[idx]), train_a[idx], mask[idx])
            upd, o = opt.update(g, o)
            return (optax.apply_updates(p, upd), o), loss

        return jax.lax.scan(step, (params, ostate), jax.random.split(key, 150))

    (params, ostate), losses = train(params, ostate, jax.random.PRNGKey(2))
    pred = norm.denorm(jax.vmap(lambda s, a: wm.predict(params, norm.norm(s), a))(test_s, test_a))
    model_err = float(jnp.mean((pred - test_s[:, 1:]) ** 2))
    copy_err = float(jnp.mean((test_s[:, :1] - test_s[:, 1:]) ** 2))
    assert model_err < copy_err / 1000, (model_err, copy_err)  # 4,300x measured after 150 steps


@pytest.mark.parametrize("kind", ["awm_transformer", "hwm_transformer"])
def test_bfloat16_transformer_computes_in_bfloat16_near_the_float32_model(models, kind):
    """model_dtype="bfloat16": the same float32 parameters, float32 predictions and gradients, within
    bfloat16 rounding of the float32 model's (and not equal to them: the layers did run in bfloat16)."""
    wm, params = models[kind]
    low = dataclasses.replace(wm, dtype="bfloat16")
    assert jax.tree.structure(jax.eval_shape(low.init, KEY)) == jax.tree.structure(params)
    states, actions = _data()
    ref, got = wm.predict(params, states, actions), low.predict(params, states, actions)
    scale = float(jnp.max(jnp.abs(ref)))
    assert got.dtype == jnp.float32 and 0 < float(jnp.max(jnp.abs(got - ref))) < 3e-2 * scale
    np.testing.assert_allclose(jax.jit(low.rollout)(params, states[0], actions)[0], got[0], atol=3e-2 * scale)
    mask = jnp.ones((1, H))
    g_ref = jax.jit(jax.grad(wm.loss))(params, states[None], actions[None], mask)  # jitted: eager takes ~6 s
    g_low = jax.jit(jax.grad(low.loss))(params, states[None], actions[None], mask)
    flat = lambda g: jnp.concatenate([x.ravel() for x in jax.tree.leaves(g)])
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(g_low))
    assert float(jnp.dot(flat(g_ref), flat(g_low)) / jnp.linalg.norm(flat(g_ref)) / jnp.linalg.norm(flat(g_low))) > 0.99


@pytest.mark.parametrize("kind", ["awm_transformer", "hwm_transformer"])
def test_gpt2_init_draws_embeddings_and_blocks_from_n_0_002(kind):
    """transformer_init="gpt2" (the paper code's, the default): every kernel of the token embeddings and
    the blocks ~ N(0, 0.02); the decoder MLP and the position table are drawn as with flax's init."""
    wm = make_world_model(kind, N, M, 60)
    assert wm.weight_init == "gpt2"
    params = wm.init(KEY)["params"]
    lecun = make_world_model(kind, N, M, 60, weight_init="lecun").init(KEY)["params"]
    kernels = [v for path, v in jax.tree_util.tree_leaves_with_path(params)
               if path[-1].key == "kernel" and path[0].key != "head"]
    assert len(kernels) >= 9  # embeddings, and qkv, proj, fc, fc_out of both layers
    pooled = np.concatenate([np.ravel(k) for k in kernels])
    assert abs(pooled.mean()) < 1e-3 and pooled.std() == pytest.approx(0.02, rel=0.03)
    np.testing.assert_array_equal(params["head"]["Dense_0"]["kernel"], lecun["head"]["Dense_0"]["kernel"])
    np.testing.assert_array_equal(params["body"]["pos"], lecun["body"]["pos"])
    assert np.std(lecun["body"]["qkv_0"]["kernel"]) > 5 * np.std(params["body"]["qkv_0"]["kernel"])
