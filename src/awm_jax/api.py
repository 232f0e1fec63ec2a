"""The notebook-facing API: load a run back, pick one seed, act, evaluate, and diagnose its gradients.

    import awm_jax
    run = awm_jax.load_run("runs/x")          # config, metrics {name: [seeds, periods]}, final state
    agent = run.agent(3)                      # seed 3's policy (an Agent: params, normaliser, horizon)
    awm_jax.act(agent, obs)                   # deterministic tanh(mean) action; pass key= to sample
    awm_jax.evaluate(agent, run.trainer.task, key, episodes=10)   # [10] undiscounted returns
    one = awm_jax.seed_slice(run.state, 3)    # seed 3's whole TrainState
    awm_jax.policy_gradient_cosine(run.trainer, one, key)         # model vs true policy gradient

Which leaves carry a leading seed axis: after `jax.vmap(trainer)(keys)` (or `run_training`, or
`load_run`) *every* leaf of the TrainState and of the metrics has one ([seeds, ...] and
[seeds, periods]). `seed_slice(tree, i)` removes it. `Agent`, `act`, `evaluate`, `imagine`,
`policy_gradient_cosine` and `jacobians` take one seed (no seed axis) and refuse a seed-batched state
with an error saying to call `seed_slice`; vmap them yourself to cover every seed at once.

`act`, `evaluate` and the diagnostics serve the BPO methods (awm_*, hwm_transformer, markov_*,
true_bptt); `load_run` and `seed_slice` also serve the model-free baselines (sac, ppo, td3,
online_dt), whose states have their own types.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

import awm_envs
from awm_jax.core.config import Config
from awm_jax.core.diagnostics import policy_gradient_comparison, state_jacobians
from awm_jax.core.methods import make_train
from awm_jax.core.methods.bpo import imagine as imagine_model
from awm_jax.core.methods.bpo_learner import BPOLearner
from awm_jax.core.models.policy import Policy
from awm_jax.core.models.true_task import TrueTask
from awm_jax.core.pieces import episode
from awm_jax.core.spaces import Normalizer
from awm_jax.runner.checkpoint import restore_members
from awm_jax.runner.results import read_run_files as read_files
from awm_jax.runner.run_folder import (
    CONFIG,
    FINAL_STATE,
    GROUPS,
    METRICS,
    SWEEP,
    check_complete,
    group_folder,
    is_complete,
    read_json,
)
from awm_jax.runner.sweep import SweepSpec


def seed_slice(tree, i: int):
    """The seed-i slice of a seed-batched pytree (a vmapped TrainState, metrics, an Agent): every leaf
    [seeds, ...] becomes [...]. Negative i counts from the end; an i out of range raises IndexError
    (plain jax indexing would silently clamp it)."""
    leaves = jax.tree.leaves(tree)
    if not leaves:
        return tree
    if any(np.ndim(x) == 0 for x in leaves):
        raise ValueError("seed_slice needs a seed-batched tree (every leaf with a leading seed axis); "
                         "this one has scalar leaves, so it is already one seed")
    n = np.shape(leaves[0])[0]
    if isinstance(i, (int, np.integer)) and not -n <= i < n:
        raise IndexError(f"seed {i} is out of range for {n} seeds")
    return jax.tree.map(lambda x: x[i], tree)


# -- loading runs -----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Run:
    """A run loaded back by `load_run`.

    path:    the folder it was read from
    config:  the Config it was trained with (a sweep member's config carries its grid values)
    metrics: {name: float64 array [seeds, periods]} (one row per seed, one column per evaluation
             period; `eval/env_steps` holds the env steps at each evaluation). Names: eval/return,
             eval/env_steps, skipped_updates and, by method, model/loss, policy/loss,
             policy/imagined_return, policy/entropy, policy/grad_norm, policy/true_grad_norm,
             policy/grad_cosine, policy/grad_sq_error, critic/loss, and (world models, `model_error`)
             model/error_eval, model/error_warmup, eval/max_abs_z (see `BPOLearner._evaluation`).
    state:   the final TrainState, every leaf with a leading seed axis [seeds, ...] (None when loaded
             with state=False); the baselines' own state types likewise.
    trainer: `make_train(config)` (built on first use), for `act`, `evaluate` and the diagnostics.
    """

    path: Path
    config: Config
    metrics: dict
    state: Any = None

    @functools.cached_property
    def trainer(self):
        return make_train(self.config)

    @property
    def seeds(self) -> int:
        """The number of seeds (the leading axis of every metric and state leaf)."""
        return int(self.metrics["eval/return"].shape[0])

    def seed_state(self, i: int):
        """Seed i's final TrainState (no seed axis)."""
        if self.state is None:
            raise ValueError(f"{self.path} was loaded without its state (load_run(..., state=True))")
        return seed_slice(self.state, i)

    def agent(self, i: int) -> Agent:
        """Seed i's trained policy as an `Agent` (BPO methods only)."""
        return Agent.from_state(self.trainer, self.seed_state(i))


def load_run(path, state: bool = True, require_complete: bool = True) -> Run:
    """Read a `train` output folder (or a sweep's member folder `OUT/{task}-{method}[-grid...]`, or
    its group folder `OUT/groups/{task}-{method}`) back into a `Run`: config, metrics as numpy arrays
    {name: [seeds, periods]}, and (state=True) the final TrainState with a leading seed axis on every
    leaf.

    The state's pytree structure is rebuilt from the config (make_train, then `jax.eval_shape` of the
    vmapped `trainer.init`) and filled from the orbax folder `final_state/` that `run_training`
    writes. A sweep member's state is its slice of the group's state; a group folder holds every
    member's seeds in sweep order (member j: rows j*seeds .. (j+1)*seeds - 1), metrics likewise.

    Only a finished run is read: the folder (and, for a member's state, its group folder) must hold
    the COMPLETE marker its run writes last, config.json and metrics.json must match the checksums it
    records, and the final state's files their own (`awm_sha256.json`). require_complete=False skips
    the marker (a folder written before awm_jax kept markers; a run that did not finish); checksums
    present are still checked. Errors name the file and say what to do: FileNotFoundError when the
    folder, its config or (state=True) its saved state is missing, `run_folder.RunFolderError` (a
    ValueError) when the run is unfinished, damaged or unreadable.
    """
    return _load(path, state, {}, require_complete)


def _load(path, state: bool, groups: dict, require_complete: bool = True) -> Run:
    """`load_run`, with the group states already restored in `groups` ({folder: state}) reused."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path} does not exist or is not a folder")
    if (path / SWEEP).exists() and not (path / CONFIG).exists():
        raise ValueError(f"{path} is a sweep's top folder: use awm_jax.load_sweep({str(path)!r}), or load_run on "
                         "one of its member folders")
    if not (path / CONFIG).exists():
        raise FileNotFoundError(f"{path} holds no config.json: not a run folder")
    if require_complete:
        check_complete(path)
    sweep, member = _sweep_of(path)
    if (path / METRICS).exists():
        config, metrics = read_files(path)
    elif member is None and sweep is not None:  # a group folder of an older sweep: its members' metrics
        config = Config.from_dict(read_json(path / CONFIG, "config"))
        parts = [read_files(sweep.folder(path.parent.parent, config, c))[1] for c in sweep.combos()]
        metrics = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    else:
        raise FileNotFoundError(f"{path} holds no metrics.json: the run has not finished")
    run = Run(path, config, metrics)
    if not state:
        return run
    if (path / FINAL_STATE).exists():
        return _with_state(run, restore_members(run.trainer, path / FINAL_STATE, run.seeds, require_complete))
    if sweep is not None and member is not None:
        group_dir = group_folder(path.parent, config.task, config.method)
        group = group_dir / FINAL_STATE
        if group.exists():
            if require_complete:
                check_complete(group_dir)
            S = config.seeds
            if group not in groups:
                groups[group] = restore_members(run.trainer, group, S * len(sweep.combos()), require_complete)
            full = groups[group]
            return _with_state(run, jax.tree.map(lambda x: x[member * S:(member + 1) * S], full))
    raise FileNotFoundError(f"no saved final state for {path} (run_training writes final_state/ at the end of a "
                            "run); load_run(path, state=False) reads the config and metrics only")


def _with_state(run: Run, state) -> Run:
    """`run` with its state, keeping the trainer it already built."""
    new = dataclasses.replace(run, state=state)
    new.__dict__["trainer"] = run.trainer  # the cached_property's slot
    return new


def load_sweep(path, state: bool = True, skip_unfinished: bool = False, require_complete: bool = True) -> dict:
    """Every member of the sweep in folder `path` (the sweep's --out): {member folder name: Run}, in
    sweep order (tasks, then methods, then grid combinations); see `load_run` (and its
    require_complete). skip_unfinished: leave out members not finished yet (a sweep still running)
    instead of raising; with require_complete=False, those without metrics.json."""
    path = Path(path)
    spec = _spec(path / SWEEP)
    folders = [spec.folder(path, g, c) for g in spec.groups() for c in spec.combos()]
    if skip_unfinished:
        done = is_complete if require_complete else (lambda f: (f / METRICS).exists())
        folders = [f for f in folders if done(f)]
    groups = {}  # each group's state is restored once and sliced for its members
    return {f.name: _load(f, state, groups, require_complete) for f in folders}


def _spec(file):
    d = read_json(file, "sweep specification")
    return SweepSpec(Config.from_dict(d["base"], run=False), tuple(d["tasks"]), tuple(d["methods"]),
                     tuple((n, tuple(v)) for n, v in d["grid"]))


def _sweep_of(path: Path):
    """(SweepSpec, member index) for a sweep member folder, (SweepSpec, None) for a group folder,
    (None, None) otherwise."""
    if path.parent.name == GROUPS and (path.parent.parent / SWEEP).exists():
        return _spec(path.parent.parent / SWEEP), None
    if (path.parent / SWEEP).exists():
        spec = _spec(path.parent / SWEEP)
        for g in spec.groups():
            for j, c in enumerate(spec.combos()):
                if spec.folder(path.parent, g, c).name == path.name:
                    return spec, j
    return None, None


# -- acting with one seed's policy ------------------------------------------------------------------
@struct.dataclass
class Agent:
    """One seed's trained policy: what `act` and `evaluate` need. A pytree (jit it, vmap over a
    seed-batched Agent yourself).

    params:  the policy's parameters, no seed axis
    norm:    the run's state normaliser (mean, std: [n], n = obs_size - 1)
    policy:  the Policy network description (static)
    horizon: the training horizon (static); the "normalized" policy sees t / horizon, the "paper" one t
    """

    params: Any
    norm: Normalizer
    policy: Policy = struct.field(pytree_node=False)
    horizon: int = struct.field(pytree_node=False)

    @classmethod
    def from_state(cls, trainer, state) -> Agent:
        """The Agent of one seed's TrainState (`seed_slice(vmapped_state, i)`) of a BPO `trainer`."""
        _check_one_seed(trainer, state, "Agent.from_state")
        return cls(state.policy_params, state.norm, trainer.policy, trainer.task.horizon)


def _require_bpo(trainer, what: str) -> None:
    if not isinstance(trainer, BPOLearner):
        method = getattr(getattr(trainer, "config", None), "method", type(trainer).__name__)
        raise TypeError(f"{what} supports the BPO methods only (awm_*, hwm_transformer, markov_*, true_bptt); "
                        f"{method!r} is a model-free baseline with its own state type (load_run restores it and "
                        "seed_slice slices it, but act, evaluate and the gradient diagnostics do not apply)")


def _check_one_seed(trainer, state, what: str) -> None:
    _require_bpo(trainer, what)
    if np.ndim(state.env_steps) != 0:
        raise ValueError(f"{what} needs one seed's state, got a seed-batched one (leading axis "
                         f"{np.shape(state.env_steps)[0]}): pick a seed with awm_jax.seed_slice(state, i) first")


def _check_agent(agent: Agent, what: str) -> None:
    if not isinstance(agent, Agent):
        raise TypeError(f"{what} takes an Agent (awm_jax.Agent.from_state(trainer, awm_jax.seed_slice(state, i)), "
                        f"or run.agent(i) of a loaded run), got {type(agent).__name__}")
    want = [x.shape for x in jax.tree.leaves(jax.eval_shape(agent.policy.init, jax.ShapeDtypeStruct((2,), jnp.uint32)))]
    got = [np.shape(x) for x in jax.tree.leaves(agent.params)]
    if got == want and np.ndim(agent.norm.mean) == 1:
        return
    if len(got) == len(want) and all(g[1:] == w for g, w in zip(got, want)):
        raise ValueError(f"{what} got seed-batched policy parameters (leading axis {got[0][0]}): pick one seed with "
                         "awm_jax.seed_slice(state, i) or run.agent(i) first; to use every seed, jax.vmap over the "
                         "Agent")
    raise ValueError(f"{what}: the policy parameters {got} do not match the policy's shapes {want}")


def act(agent: Agent, obs, key=None):
    """The agent's action for task observations obs [..., obs_size] (raw, as the task gives them: the
    state, then the step index t): [..., action_size] in [-1, 1]. key None: the deterministic
    evaluation action tanh(mean); a PRNG key: a sample of the tanh-Gaussian policy (independent noise
    per row of obs). Refuses a seed-batched Agent (see `seed_slice`)."""
    _check_agent(agent, "act")
    obs = jnp.asarray(obs)
    if obs.shape[-1:] != (agent.policy.input_size,):
        raise ValueError(f"obs has shape {obs.shape}; the policy expects [..., {agent.policy.input_size}]")
    x = agent.policy.features(agent.norm, obs)
    if key is None:
        return agent.policy.mode(agent.params, x)
    return agent.policy.sample(agent.params, x, key)[0]


def evaluate(agent: Agent, task, key, episodes: int = 1):
    """Undiscounted returns [episodes] of the deterministic policy tanh(mean) on `task` (an awm_envs
    Task, e.g. `run.trainer.task` for the exact training task, or a task name built with its default
    options). Episode i starts from `task.reset(jax.random.split(key, episodes)[i])`, so it equals
    the learner's own evaluation `learner.evaluate(state, that key)`. The policy sees t / the
    training horizon, whatever the task's horizon. Refuses a seed-batched Agent (see `seed_slice`)."""
    _check_agent(agent, "evaluate")
    if isinstance(task, str):
        task = awm_envs.make(task)
    if task.obs_size != agent.policy.input_size or task.action_size != agent.policy.action_size:
        raise ValueError(f"the task's observations/actions ({task.obs_size}, {task.action_size}) do not fit the "
                         f"policy's ({agent.policy.input_size}, {agent.policy.action_size})")
    return _evaluate(agent, task, jax.random.split(key, episodes))


@jax.jit
def _evaluate(agent, task, keys):
    act = lambda carry, env: (agent.policy.mode(agent.params, agent.policy.features(agent.norm, env.obs)), carry)
    return jax.vmap(lambda key: episode(task, key, act)[0])(keys)


# -- gradient diagnostics on one seed of a run ------------------------------------------------------
def _model(trainer, state, through: str, key):
    """(model, params) of the run's world model (through="model"; the task itself for true_bptt) or
    of the true task (through="true"); both map normalised model states as the trainer does."""
    if through not in ("model", "true"):
        raise ValueError(f"through must be 'model' or 'true', got {through!r}")
    if through == "true":
        true = TrueTask.of(trainer.task)
        return true, true.bind({}, trainer.model_norm(state), key)
    return trainer.model, trainer.model.bind(state.model_params, trainer.model_norm(state), key)


def _start(trainer, s0, key):
    return trainer.task.reset(key).obs[:-1] if s0 is None else jnp.asarray(s0)


def imagine(trainer, state, key, s0=None, through: str = "model"):
    """One imagined episode of seed `state`'s (sampling) policy through the run's world model
    (through="model") or through the true task (through="true"), from raw model state s0 [n]
    (default: the state of `trainer.task.reset(key)`). Returns a `bpo.Rollout`: obs [H, n + 1] (before
    each action), actions [H, m], logp [H], rewards [H] (the task's reward on imagined states),
    last_obs [n + 1]. `state`: one seed (see `seed_slice`). Low-level form: `awm_jax.core.methods.bpo.imagine`."""
    _check_one_seed(trainer, state, "imagine")
    k_s0, k_task, k_pi = jax.random.split(key, 3)
    model, params = _model(trainer, state, through, k_task)
    return imagine_model(model, params, trainer.policy, state.policy_params, trainer.task, trainer.model_norm(state),
                         _start(trainer, s0, k_s0), k_pi, trainer.task.horizon,
                         stop_state_grad=trainer.config.stop_state_grad, pnorm=state.norm)


def policy_gradient_cosine(trainer, state, key, rollouts: int | None = None) -> dict:
    """Cosine between the full-unroll BPO policy gradient through the run's world model and through
    the true task, as the trainer logs it (`policy/grad_cosine`): the same `rollouts` start states
    (default config.imagined_rollouts) drawn from the replay and the same policy noise. Returns
    {cosine, model_grad_norm, true_grad_norm, sq_error} (scalars). For markov_svg the model gradient
    is the full unroll through its Markov model; for true_bptt the cosine is 1. `state`: one seed."""
    _check_one_seed(trainer, state, "policy_gradient_cosine")
    k_idx, k_task, k_loss = jax.random.split(key, 3)
    idx = state.replay.sample_indices(k_idx, rollouts or trainer.config.imagined_rollouts)
    s0 = state.replay.obs[idx, 0, :-1]
    model, params = _model(trainer, state, "model", k_task)
    kw = dict(alpha=state.hparams["entropy"], gamma=state.hparams["gamma"],
              stop_state_grad=trainer.config.stop_state_grad, pnorm=state.norm)
    return policy_gradient_comparison(trainer.policy, state.policy_params, model, params, trainer.task,
                                      trainer.model_norm(state), s0, k_loss, **kw)[2]


def jacobians(trainer, state, actions, s0=None, through: str = "model", key=None):
    """d s^_t / d a_k of the open-loop rollout of actions [H, m] from raw model state s0 [n] (default:
    the state of `trainer.task.reset(key)`), through the run's world model or the true task
    (through="true"), in raw state units: [H, n, H, m] with entry [t - 1, :, k, :] = d s_t / d a_k
    (zero for k >= t). key (default PRNGKey(0)) also drives the task's own noise, if any. `state`: one
    seed. Low-level forms (normalised states): `awm_jax.core.diagnostics.jacobians`, `state_jacobians`."""
    _check_one_seed(trainer, state, "jacobians")
    key = jax.random.PRNGKey(0) if key is None else key
    k_s0, k_task = jax.random.split(key)
    model, params = _model(trainer, state, through, k_task)
    return state_jacobians(model, params, trainer.model_norm(state), _start(trainer, s0, k_s0), jnp.asarray(actions))
