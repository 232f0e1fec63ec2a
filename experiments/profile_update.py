"""A profile of one transformer-AWM world-model update, part by part: each part's FLOPs (XLA's cost
analysis), forward and forward+backward time, and share of the measured update.

    python experiments/profile_update.py --out runs/profile            # the paper's sizes (batch 64 x 101 tokens)
    python experiments/profile_update.py --out /tmp/profile --quick     # small sizes, seconds
    python experiments/profile_update.py --out runs/profile --ops 25   # and the 25 costliest XLA ops (CPU)

One model update (`BPOLearner._model_update`) = replay gather of `model_batch` episodes and their
normalisation, the model's loss over them (token embeddings, per layer: LayerNorm, attention with its
QKV and output projections, LayerNorm, MLP; final LayerNorm, decoder MLP, squared error), its
backward pass, and Adam. Each part runs alone at the shapes it has inside the update (the batch axis
vmapped as in `WorldModel.loss`), compiled as a loop of `--reps` repetitions inside one program (no
dispatch overhead; each repetition depends on the last, so XLA cannot hoist it), forward only and
forward + backward (gradient with respect to its parameters and its input, as in training). The whole
update is timed the same way, and `--trace` writes a jax.profiler trace of it (TensorBoard / Perfetto)
for the per-op view. Parts times counts do not add exactly to the whole: XLA fuses across part
boundaries inside the whole program. Writes profile.md to --out.
"""

import dataclasses
import time
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import tyro

from awm_jax.core.config import Config
from awm_jax.core.methods import make_train
from awm_jax.core.models.networks import MLP
from awm_jax.runner.results import format_table
from awm_jax.runner.run_folder import atomic_write


@dataclasses.dataclass(kw_only=True)
class Options:
    out: str
    """folder for profile.md (and trace/ with --trace)"""
    task: str = "cancer_treatment"
    """the task whose state and action sizes and horizon set the shapes"""
    reps: int = 20
    """repetitions of each part inside its timed program"""
    trace: bool = False
    """also write a jax.profiler trace of the whole update to OUT/trace"""
    ops: int = 0
    """also list the N costliest XLA ops of the whole update (CPU), unbatched and with a vmapped seed axis"""
    quick: bool = False
    """smoke test: width 16, batch 8, 5 repetitions"""


def _flops(fn, *args) -> float:
    cost = jax.jit(fn).lower(*args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get("flops", 0.0)) if cost else 0.0


def _timed(fn, args, reps: int) -> float:
    """Seconds per call of fn(*args) -> array(s), run `reps` times in one compiled loop, each call's input
    nudged by the previous output (so no repetition is hoisted or skipped)."""
    first, rest = args[0], args[1:]

    def loop(x, *rest):
        def body(x, _):
            out = fn(x, *rest)
            s = sum(jnp.sum(o) for o in jax.tree.leaves(out))
            return jax.tree.map(lambda a: a + (1e-30 * s).astype(a.dtype), x), None

        return jax.lax.scan(body, x, None, length=reps)[0]

    run = jax.jit(loop).lower(first, *rest).compile()
    jax.block_until_ready(run(first, *rest))
    t = time.perf_counter()
    jax.block_until_ready(run(first, *rest))
    return (time.perf_counter() - t) / reps


def op_table(update, state, keys, top: int) -> list[dict]:
    """The `top` costliest XLA ops of `update(state, key) -> state` run once per key of `keys` (their leading
    axis) in one compiled loop:
    ms per update (trace events of XLA's CPU threads, jax.profiler; an op's time includes the ops it
    contains, so loops count twice) and the op's result shape from the compiled HLO."""
    import collections
    import re
    import tempfile

    from jax.profiler import ProfileData

    reps = len(keys)
    run = jax.jit(lambda s, ks: jax.lax.scan(lambda s, k: (update(s, k), None), s, ks)[0])
    jax.block_until_ready(run(state, keys))
    with tempfile.TemporaryDirectory() as d:
        with jax.profiler.trace(d):
            jax.block_until_ready(run(state, keys))
        data = ProfileData.from_file(str(next(Path(d).rglob("*.xplane.pb"))))
    ns = collections.Counter()
    for plane in data.planes:
        for line in plane.lines:
            if line.name.startswith("tf_XLAEigen"):  # XLA CPU's worker threads
                for ev in line.events:
                    if ev.name not in ("ThunkExecutor::Execute", "SlinkyThreadPool::Await"):
                        ns[ev.name] += ev.duration_ns
    hlo = run.lower(state, keys).compile().as_text()
    shape = {m.group(1): m.group(2) for m in re.finditer(r"%(\S+) = (\S+) ", hlo)}
    return [dict(op=name, ms_per_update=round(v / 1e6 / reps, 3), shape=shape.get(name, "").split("{")[0])
            for name, v in ns.most_common(top)]


def _grad_of(apply):
    """fn(x, params) -> forward + backward (gradient of the output's sum w.r.t. params and x)."""
    return lambda x, p: jax.grad(lambda x, p: jnp.sum(apply(p, x)), argnums=(0, 1))(x, p)


def parts(learner, state):
    """[(name, count per update, fn(x, params), x, params)] for the model update's parts."""
    cfg, model = learner.config, learner.model
    B, H, n, m = cfg.model_batch, learner.task.horizon, model.state_size, model.action_size
    W, L, heads = model.width, model.layers, model.heads
    T, key = H + 1, jax.random.PRNGKey(0)
    x = jax.random.normal(key, (B, T, W))

    def module(mod, x_shape):
        params = mod.init(key, jnp.zeros(x_shape))
        return lambda p, x: mod.apply(p, x), params

    class Attention(nn.Module):  # the CausalTransformer's attention sub-block (without its LayerNorm)
        @nn.compact
        def __call__(self, h):
            hd = W // heads
            q, k, v = (a.reshape(h.shape[:-1] + (heads, hd)).swapaxes(-3, -2)
                       for a in jnp.split(nn.Dense(3 * W)(h), 3, axis=-1))
            logits = q @ k.swapaxes(-1, -2) / jnp.sqrt(hd).astype(h.dtype)
            logits = jnp.where(jnp.tril(jnp.ones((T, T), bool)), logits, jnp.finfo(h.dtype).min)
            att = (jax.nn.softmax(logits, axis=-1) @ v).swapaxes(-3, -2)
            return h + nn.Dense(W)(att.reshape(h.shape))

    class Mlp(nn.Module):
        @nn.compact
        def __call__(self, h):
            return h + nn.Dense(W)(nn.gelu(nn.Dense(4 * W)(h)))

    class Embed(nn.Module):
        @nn.compact
        def __call__(self, z):  # z: [B, T, n + m]: s0 = z[:, 0, :n], the actions z[:, 1:, n:]
            tok = jnp.concatenate([nn.Dense(W)(z[:, :1, :n]), nn.Dense(W)(z[:, 1:, n:])], axis=1)
            return tok + self.param("pos", nn.initializers.normal(0.1), (T, W))

    attn, p_attn = module(Attention(), (B, T, W))
    mlp, p_mlp = module(Mlp(), (B, T, W))
    ln, p_ln = module(nn.LayerNorm(), (B, T, W))
    dec, p_dec = module(MLP(tuple(cfg.mlp_hidden), n, "relu"), (B, H, W))
    emb, p_emb = module(Embed(), (B, T, n + m))
    return [("embeddings + positions", 1, emb, jax.random.normal(key, (B, T, n + m)), p_emb),
           ("layer norm", 2 * L + 1, ln, x, p_ln),
           ("attention (QKV, softmax, proj)", L, attn, x, p_attn),
           ("MLP (4x width, gelu)", L, mlp, x, p_mlp),
           ("decoder MLP", 1, dec, x[:, 1:], p_dec)]


def main(argv=None) -> None:
    args = tyro.cli(Options, args=argv, description=__doc__)
    sizes = dict(width=16, heads=2, model_batch=8) if args.quick else {}
    reps = 5 if args.quick else args.reps
    cfg = Config(task=args.task, method="awm_transformer", total_steps=2000 if not args.quick else 400,
                 warmup_steps=1500 if not args.quick else 200, **sizes)
    learner = make_train(cfg)
    state = jax.jit(learner.init)(jax.random.PRNGKey(0))
    key = jax.random.PRNGKey(1)
    rows = []
    for name, count, fn, x, p in parts(learner, state):
        fwd = lambda x, p, fn=fn: fn(p, x)
        fb = _grad_of(fn)
        rows.append(dict(part=name, count=count, gflop_fwd=_flops(fwd, x, p) * count / 1e9,
                         gflop_fwd_bwd=_flops(fb, x, p) * count / 1e9, ms_fwd=_timed(fwd, (x, p), reps) * count * 1e3,
                         ms_fwd_bwd=_timed(fb, (x, p), reps) * count * 1e3))
    # the whole loss, its gradient, the gather and Adam, at the update's own shapes
    obs, acts, _ = state.replay.sample(key, cfg.model_batch)
    s = learner.model_norm(state).norm(obs[..., :-1])
    mask = jnp.ones(acts.shape[:2], s.dtype)
    loss = lambda s, p: learner.model.loss(p, s, acts, mask)
    grad = lambda s, p: jax.grad(loss, argnums=1)(s, p)
    gather = lambda k, r: r.norm(state.replay.sample(jax.random.fold_in(k[0], 0), cfg.model_batch)[0][..., :-1])
    g = grad(s, state.model_params)
    adam = lambda g, o: learner.model_tx.update(g, o, state.model_params)[0]
    whole = lambda st, k: learner._model_update(st, k)[0].model_params
    for name, fn, args_ in (("replay gather + normalise", gather, (jnp.zeros((1, 2), jnp.uint32) + key, state.norm)),
                            ("Adam", adam, (g, state.model_opt))):
        rows.append(dict(part=name, count=1, gflop_fwd=_flops(fn, *args_) / 1e9, gflop_fwd_bwd=float("nan"),
                         ms_fwd=_timed(fn, args_, reps) * 1e3, ms_fwd_bwd=float("nan")))
    total = dict(part="the model's loss (whole program)", count=1, gflop_fwd=_flops(loss, s, state.model_params) / 1e9,
                 gflop_fwd_bwd=_flops(grad, s, state.model_params) / 1e9,
                 ms_fwd=_timed(loss, (s, state.model_params), reps) * 1e3,
                 ms_fwd_bwd=_timed(grad, (s, state.model_params), reps) * 1e3)
    rows.append(total)
    upd_ms = _timed(lambda st, k: learner._model_update(st, k)[0], (state, key), reps) * 1e3
    upd_gflop = _flops(whole, state, key) / 1e9
    for r in rows:
        r["share_of_update"] = (r["ms_fwd_bwd"] if r["ms_fwd_bwd"] == r["ms_fwd_bwd"] else r["ms_fwd"]) / upd_ms
    rows += [dict(part="one whole model update", count=1, gflop_fwd=float("nan"), gflop_fwd_bwd=upd_gflop,
                         ms_fwd=float("nan"), ms_fwd_bwd=upd_ms, share_of_update=1.0)]
    table = format_table([{k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows])
    tokens = learner.task.horizon + 1
    wm = learner.model
    head = (f"transformer AWM model update on {args.task}: batch {cfg.model_batch} episodes x {tokens} tokens, "
            f"width {wm.width}, {wm.layers} layers, {wm.heads} heads; "
            f"{jax.devices()[0].platform}, {reps} repetitions per timing; time and GFLOP per update "
            "(count x one part); share: forward+backward time / the whole update's")
    print(head + "\n\n" + table)
    out = Path(args.out)
    atomic_write(out / "profile.md", f"{head}\n\n```\n{table}\n```\n")
    if args.ops and jax.default_backend() == "cpu":
        update = lambda st, k: learner._model_update(st, k)[0]
        one, keys = jax.tree.map(lambda a: a[None], state), jax.random.split(key, reps)
        for label, fn, st, ks in (("unbatched", update, state, keys),
                                  ("one seed vmapped (a leading axis of 1)", jax.vmap(update), one, keys[:, None])):
            ops = format_table(op_table(fn, st, ks, args.ops))
            print(f"\ncostliest ops, {label}:\n{ops}")
            text = (out / "profile.md").read_text() + f"\ncostliest ops, {label}:\n\n```\n{ops}\n```\n"
            atomic_write(out / "profile.md", text)
    if args.trace:
        with jax.profiler.trace(str(out / "trace")):
            jax.block_until_ready(jax.jit(lambda st, k: learner._model_update(st, k)[0])(state, key))


if __name__ == "__main__":
    main()
