"""brax's own analytic policy gradient agent (`brax.training.agents.apg`) on our tasks: the peer of the BPO
methods on Brax physics.

brax's APG backpropagates the mean reward of `horizon_length` steps of `num_envs` parallel environments through
the task, clips and Adam-steps the policy (a NormalTanh MLP), and evaluates `num_eval_envs` episodes between
epochs. It is a host loop over jitted epochs, not one pure program like `make_train`'s learners, so it runs
here, one seed after another, through the adapter `awm_envs.brax_env.as_brax_env` (the task's own dynamics,
reward and horizon). Its budget is counted as ours: every simulated step is an env step, so `total_steps`
env steps buy total_steps // (num_envs * horizon_length) policy updates.

brax 0.14.2 calls `jax.device_put_replicated`, which jax 0.10 removed (google/brax issue 671, open); while
APG trains, `jax.device_put_replicated` is the drop-in replacement jax's migration guide gives.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io

import jax
import jax.numpy as jnp
import numpy as np

import awm_envs
from awm_envs.brax_env import as_brax_env

# brax APG's search space in the tuning protocol (`awm_jax.analysis.tuning`), of the same size as every
# method's: the BPO methods' policy learning rates x the truncation of its backpropagated rollouts (32 steps,
# brax's default, or the whole 100-step episode of the Brax tasks)
SEARCH_SPACE = (("learning_rate", (1e-3, 3e-3, 1e-2)), ("horizon_length", (32, 100)))


@dataclasses.dataclass(frozen=True)
class APGSettings:
    """brax APG's knobs (its `train` arguments), brax's defaults except where said."""

    learning_rate: float = 1e-4  # Adam rate (brax's default), decayed by schedule_decay per update
    horizon_length: int = 32  # steps backpropagated per update (brax's default: truncated rollouts)
    num_envs: int = 1  # parallel environments per update
    schedule_decay: float = 0.997  # exponential decay of the rate per update (brax's)
    num_eval_envs: int = 16  # evaluation episodes per evaluation (brax's default: 128)
    deterministic_eval: bool = True  # evaluate the policy's mean action, as our evaluations do
    evals: int = 20  # evaluations, the first before any update

    def updates(self, total_steps: int) -> int:
        """Policy updates that `total_steps` env steps buy."""
        return total_steps // (self.num_envs * self.horizon_length)

    def validate(self, total_steps: int) -> None:
        for name in ("horizon_length", "num_envs", "num_eval_envs", "evals"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not self.learning_rate > 0 or not 0 < self.schedule_decay <= 1:
            raise ValueError(f"need learning_rate > 0 and 0 < schedule_decay <= 1, got {self.learning_rate} and "
                             f"{self.schedule_decay}")
        if self.updates(total_steps) < max(self.evals - 1, 1):
            raise ValueError(f"{total_steps} env steps buy {self.updates(total_steps)} APG updates of "
                             f"{self.num_envs} x {self.horizon_length} steps: fewer than the {self.evals - 1} "
                             "evaluation periods")


@contextlib.contextmanager
def _replicate_shim():
    """`jax.device_put_replicated` (removed in jax 0.10, still called by brax 0.14.2's APG) while inside, where
    jax lacks it."""
    if "device_put_replicated" in vars(jax):  # a jax that still has it
        yield
        return

    def device_put_replicated(x, devices):
        from jax.sharding import Mesh, NamedSharding, PartitionSpec

        sharding = NamedSharding(Mesh(np.array(devices), ("d",)), PartitionSpec("d"))
        return jax.tree.map(lambda y: jax.device_put(jnp.stack([y] * len(devices)), sharding), x)

    jax.device_put_replicated = device_put_replicated
    try:
        yield
    finally:
        del jax.device_put_replicated


def stream_seeds(seed: int, seeds: int) -> list[int]:
    """brax's integer seeds for the random streams "seed:i" of our runs: each drawn from the key i of
    split(PRNGKey(seed), seeds), as a `make_train` run's seed i is that key (brax takes an int, not a key)."""
    keys = jax.random.split(jax.random.PRNGKey(seed), seeds)
    return [int(jax.random.randint(k, (), 0, 2**31 - 1)) for k in keys]


def train_apg(task: str, seeds: int = 1, seed: int = 0, total_steps: int = 5000,
              settings: APGSettings = APGSettings(), verbose: bool = True, brax_seeds=None, **task_options) -> dict:
    """Train brax's APG on `task` for `seeds` seeds (brax seeds seed, seed + 1, ...; or the integers
    `brax_seeds`, as `stream_seeds` gives them), each `total_steps` env steps.

    Returns metrics shaped like `make_train`'s: {"eval/return": [seeds, evals] mean evaluation return,
    "eval/return_std": [seeds, evals], "eval/env_steps": [evals] env steps taken before each evaluation,
    "training/grad_norm": [seeds, evals - 1] mean clipped gradient norm of each epoch}.
    """
    settings.validate(total_steps)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # brax's mjx import prints warp notices
            from brax.training.agents.apg import train as apg
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("brax_apg needs brax (pip install brax)") from e
    env_task = awm_envs.make(task, **task_options)
    updates = settings.updates(total_steps)
    per_eval = round(updates / max(settings.evals - 1, 1)) * settings.num_envs * settings.horizon_length
    returns, stds, grads = [], [], []
    for s in (list(brax_seeds) if brax_seeds is not None else [seed + i for i in range(seeds)]):
        rows = []
        with _replicate_shim():
            apg.train(as_brax_env(env_task), episode_length=env_task.horizon, policy_updates=updates,
                      horizon_length=settings.horizon_length, num_envs=settings.num_envs, num_evals=settings.evals,
                      num_eval_envs=settings.num_eval_envs, learning_rate=settings.learning_rate,
                      schedule_decay=settings.schedule_decay, deterministic_eval=settings.deterministic_eval,
                      seed=s, progress_fn=lambda step, m, rows=rows: rows.append(dict(m)))
        returns.append([float(r["eval/episode_reward"]) for r in rows])
        stds.append([float(r["eval/episode_reward_std"]) for r in rows])
        grads.append([float(r["training/grad_norm"]) for r in rows[1:]])
        if verbose:
            print(f"[brax_apg] {task} seed {s}: eval return {returns[-1][0]:.4g} -> {returns[-1][-1]:.4g} "
                  f"({updates} updates of {settings.num_envs} x {settings.horizon_length} steps)", flush=True)
    return {"eval/return": np.asarray(returns), "eval/return_std": np.asarray(stds),
            "eval/env_steps": np.arange(settings.evals) * per_eval, "training/grad_norm": np.asarray(grads)}
