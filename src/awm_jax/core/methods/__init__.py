"""Every training method by name: the one place that knows them.

A `Method` says which learner trains it (a factory `(config, task) -> Learner`, imported only when
the method is built, so rejax is imported only for sac, ppo and td3), which world model it learns,
its family, the config fields it reads (`reads`; any other is refused), its default policy learning
rate, its named presets and the checks of its own config fields. `make_train(config)` builds the
learner of `config.method`. Nothing outside this module branches on a method's name.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from collections.abc import Callable

import awm_envs

# The policy learning rate when `policy_lr` is None, per parameterisation: the paper's 1e-4 for its own
# raw-input policy; for ours the rates chosen by the sweeps over the 8 benchmark tasks (README;
# docs/results/learning.md). BPTT through the true task, whose gradient is exact: 3e-3
# (1e-2 ties). The transformer AWM, from the paper's GPT-2 init: 3e-3. The 2-seed sweep over 1e-3, 3e-3,
# 1e-2 (docs/data/lr_sweep_gpt2) favoured 1e-2 by mean score, but 4 paired seeds per task at 3e-3 and
# 1e-2 (docs/data/lr_stability) showed 1e-2 unstable: one seed in four collapses on invasive_plant and
# mould_fungicide (mean score 0.60 against 0.90 at 3e-3). The other world models keep 1e-3, the rate the
# first sweep chose for the transformer AWM from flax's init, whose poor action Jacobians lost at 3e-3
# and 1e-2 (harvest: 5.4 at 1e-3, 3.4 at 1e-2); no world model but the transformer AWM has a sweep of
# its own.
POLICY_LR = {"normalized": 1e-3, "paper": 1e-4}  # BPO through a world model
AWM_TRANSFORMER_POLICY_LR = {"normalized": 3e-3, "paper": 1e-4}
TRUE_BPTT_POLICY_LR = {"normalized": 3e-3, "paper": 1e-4}
PAPER_POLICY_LR = {"normalized": 1e-4, "paper": 1e-4}  # sac, ppo, td3 (which read rl_lr instead: `Method.reads`)

# The world model's state scaling when `model_scaling` is None: z-scores fitted on the warm-up for every
# world model but the transformer AWM, which sees log-scaled states (sign(s) log(1 + |s|) z-scored at the
# warm-up mean, `awm_jax.core.spaces.SymlogNormalizer`). Measured on the 8 benchmark tasks with 4 paired
# seeds each at policy lr 3e-3 (docs/data/symlog; docs/results/model_error.md): timber_harvest 4,141
# against 3,747 (every seed higher); mean score over the tasks 0.907 against 0.897 on the final evaluation
# and 0.917 against 0.856 on the mean of the last 10 (the lowest task 0.79 against 0.48). The other world
# models have not been measured over the 8 tasks with it and keep z-scores.
AWM_TRANSFORMER_MODEL_SCALING = "symlog"


@dataclasses.dataclass(frozen=True)
class Method:
    name: str
    # "module:factory" (imported when built) or the factory itself: factory(config, task) -> a Learner
    # (awm_jax.core.learner)
    learner: str | Callable
    model: str | None = None  # the world model it learns (awm_jax.core.models.KINDS); "true_task": the task itself
    family: str = "bpo"  # "bpo": policy gradients backpropagated through a model; "model-free"
    # the config fields it reads (`fields_of`), all of them; None: not declared (every field is accepted).
    # `Config.validate` refuses a field outside them that is set away from its default, naming these
    reads: tuple[str, ...] | None = None
    policy_lr: dict = dataclasses.field(default_factory=lambda: POLICY_LR)  # default, per parameterisation
    model_scaling: str = "zscore"  # default scaling of the world model's states (config.MODEL_SCALINGS)
    check: Callable | None = None  # check(config, task or None): ValueError for its own fields
    # seeds computed together on a single CPU device (awm_jax.runner.sharding.seed_map); None: all (vmapped)
    cpu_seed_batch: int | None = None
    # the method's declared hyperparameter search space for the tuning protocol (awm_jax.analysis.tuning):
    # ((config field, (values, ...)), ...), the product taken; every method declares the same number of points
    search_space: tuple = ()
    # named presets beside "default" (its fields' defaults): {name: {config field: value}} (`Config.preset`)
    presets: dict = dataclasses.field(default_factory=dict)

    @property
    def own_fields(self) -> tuple[str, ...]:
        """The fields it reads beyond the task and the run (`RUN_FIELDS`), in `reads`' order."""
        return tuple(f for f in (self.reads or ()) if f not in RUN_FIELDS)

    @property
    def learns_model(self) -> bool:
        return self.model not in (None, "true_task")

    def build(self, config, task):
        if callable(self.learner):
            return self.learner(config, task)
        module, factory = self.learner.split(":")
        return getattr(importlib.import_module(module), factory)(config, task)


# -- the checks of each family's own config fields (called by Config.validate) ---------------------
def _positive_ints(config, names):
    for name in names:
        v = getattr(config, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")


def _check_svg(config, task):
    if task is not None and config.svg_k > task.horizon:
        raise ValueError(f"svg_k ({config.svg_k}) must not exceed the horizon ({task.horizon})")


def _check_online_dt(config, task):
    if not config.dt_lr > 0 or not config.dt_temperature_lr > 0 or not math.isfinite(config.dt_online_target) \
            or not math.isfinite(config.dt_eval_target):
        raise ValueError("online_dt needs dt_lr > 0, dt_temperature_lr > 0 and finite dt_online_target, dt_eval_target")
    if config.dt_learn_temperature and not config.entropy > 0:
        raise ValueError(f"a learned temperature starts at entropy > 0, got {config.entropy}")
    if config.dt_target_entropy is not None and not math.isfinite(config.dt_target_entropy):
        raise ValueError(f"dt_target_entropy must be finite or None, got {config.dt_target_entropy}")
    if task is not None and config.warmup_steps < task.horizon:
        raise ValueError(f"warmup_steps ({config.warmup_steps}) must cover at least one episode ({task.horizon} "
                         "steps) for online_dt: its return scale and targets come from the warm-up episodes")


def _check_rejax(config, task, replay: bool = False, env_steps_per_iteration: int = 1, minibatches: bool = False):
    """The rl_* fields of sac, ppo and td3, and how their updates fit the schedule."""
    rl_hidden = config.rl_hidden
    if not rl_hidden or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in rl_hidden):
        raise ValueError(f"rl_hidden must be one or more positive integers, got {rl_hidden!r}")
    _positive_ints(config, ("rl_batch", "rl_ppo_minibatches"))
    if not config.rl_lr > 0 or not 0 < config.rl_gamma <= 1:
        raise ValueError(f"need rl_lr > 0 and 0 < rl_gamma <= 1, got {config.rl_lr} and {config.rl_gamma}")
    if config.rl_entropy is not None and not (config.rl_entropy >= 0 and math.isfinite(config.rl_entropy)):
        raise ValueError(f"rl_entropy must be >= 0 (or None for automatic tuning), got {config.rl_entropy}")
    period = config.blocks_per_eval * config.policy_every  # env steps per evaluation period
    if replay and config.warmup_steps < config.rl_batch:
        raise ValueError(f"{config.method} needs warmup_steps ({config.warmup_steps}) >= rl_batch ({config.rl_batch}): "
                         "the replay must hold a batch before the first update")
    if period % env_steps_per_iteration:
        raise ValueError(f"{config.method} takes {env_steps_per_iteration} env steps per actor update, so the env "
                         f"steps of an evaluation period ({period}: eval_every rounded to whole policy_every) must "
                         "be a multiple of it")
    if minibatches and period % config.rl_ppo_minibatches:
        raise ValueError(f"rl_ppo_minibatches ({config.rl_ppo_minibatches}) must divide the {config.method} rollout, "
                         f"one evaluation period of {period} env steps")


def _check_sac(config, task):
    _check_rejax(config, task, replay=True)


def _check_td3(config, task):
    _check_rejax(config, task, replay=True, env_steps_per_iteration=2)


def _check_ppo(config, task):
    _check_rejax(config, task, minibatches=True)


# The search spaces of the tuning protocol (awm_jax.analysis.tuning): 6 configurations for every method, the
# policy's learning rate (3 values around its default) times one other main knob of the method. The world
# models: their state scaling (z-scores or log scale), the knob the symlog runs showed to matter. true_bptt
# fits no model: the discount of its exact return gradient, the usual knob of BPTT through long rollouts.
# The rejax baselines: their Adam rate times their critic's discount; online_dt: its transformer's rate
# times its exploration target.
LR_GRID = (1e-3, 3e-3, 1e-2)
WORLD_MODEL_SPACE = (("policy_lr", LR_GRID), ("model_scaling", ("zscore", "symlog")))
TRUE_BPTT_SPACE = (("policy_lr", LR_GRID), ("gamma", (1.0, 0.99)))
REJAX_SPACE = (("rl_lr", (1e-4, 3e-4, 1e-3)), ("rl_gamma", (0.95, 0.99)))
ONLINE_DT_SPACE = (("dt_lr", (3e-4, 1e-3, 3e-3)), ("dt_online_target", (0.2, 1.0)))

# The config fields each method reads, in groups (tests/test_method_fields.py traces every method and checks
# that it reads exactly these). Every method reads the task and the run's schedule:
RUN_FIELDS = ("task", "horizon", "fixed_dt", "distractor_dims", "state_noise", "task_variant", "method", "seeds",
              "seed", "total_steps", "warmup_steps", "eval_every", "policy_every")
# BPO's policy, its imagined rollouts and the replay they start from (true_bptt and every world model)
POLICY_FIELDS = ("policy_lr", "entropy", "gamma", "grad_clip", "parameterisation", "policy_hidden", "stop_state_grad",
                 "warmup_policy", "imagined_rollouts", "replay_episodes", "model_batch", "gradient_cosine")
# a learned world model: its optimiser, schedule, state scaling, replay weighting, MLPs and diagnostics
MODEL_FIELDS = ("model_lr", "model_lr_decay", "model_every", "model_scaling", "model_pretrain_updates",
                "replay_half_life", "mlp_hidden", "max_positions", "model_error")
TRANSFORMER_FIELDS = ("width", "layers", "heads", "position_std", "transformer_init", "model_dtype")
REJAX_FIELDS = ("rl_hidden", "rl_lr", "rl_gamma", "rl_normalize_obs")  # with rl_batch (sac, td3), rl_entropy (sac),
# rl_ppo_minibatches (ppo)
ODT_FIELDS = ("dt_lr", "dt_online_target", "dt_eval_target", "dt_target_entropy", "dt_learn_temperature",
              "dt_temperature_lr", "entropy", "grad_clip", "width", "layers", "heads", "max_positions", "model_batch",
              "model_every", "replay_episodes")


def fields_of(*groups) -> tuple[str, ...]:
    """`RUN_FIELDS` and the fields of `groups` (tuples of names), each once, in order."""
    return tuple(dict.fromkeys([*RUN_FIELDS, *(f for g in groups for f in g)]))


# The presets. "paper": the paper code's way, raw policy inputs (`parameterisation="paper"`) at its policy
# learning rate 1e-4 and, through a world model, raw model states; true_bptt at this preset reproduces the
# paper code's cancer_treatment return (docs/results/learning.md; tests/test_presets.py reads the committed
# run). The model-free baselines have no paper preset: the paper gives them no settings of their own.
PAPER_PRESET = {"parameterisation": "paper", "policy_lr": 1e-4}
PAPER_WORLD_MODEL_PRESET = {**PAPER_PRESET, "model_scaling": "raw"}
# "tuned": the configuration the fair benchmark's tuning protocol selected for the method (the same 6-point
# budget for every method, on tuning seeds the evaluation never uses; docs/guide/tuning.md), copied from
# docs/data/fair_benchmark/selected.json, which tests/test_presets.py compares it with. A method whose
# tuning has not finished has none yet.
TUNED = {
    "true_bptt": {"policy_lr": 0.01, "gamma": 1.0},
    "awm_rnn": {"policy_lr": 0.01, "model_scaling": "symlog"},
    "markov_mlp": {"policy_lr": 0.003, "model_scaling": "zscore"},
    "markov_svg": {"policy_lr": 0.001, "model_scaling": "symlog"},
    "sac": {"rl_lr": 0.001, "rl_gamma": 0.99},
    "ppo": {"rl_lr": 0.0001, "rl_gamma": 0.99},
    "td3": {"rl_lr": 0.001, "rl_gamma": 0.95},
    "awm_gru": {"policy_lr": 0.01, "model_scaling": "symlog"},
    "awm_lstm": {"policy_lr": 0.01, "model_scaling": "zscore"},
    "awm_ssm": {"policy_lr": 0.01, "model_scaling": "symlog"},
    "awm_transformer": {"policy_lr": 0.01, "model_scaling": "symlog"},
}


def presets_of(name: str, paper: dict | None = None) -> dict:
    """The presets of built-in method `name`: "paper" (where given) and "tuned" (where selected)."""
    return {**({"paper": paper} if paper else {}), **({"tuned": TUNED[name]} if name in TUNED else {})}


_BPO = "awm_jax.core.methods.bpo_learner:make_bpo"
_WM = dict(search_space=WORLD_MODEL_SPACE)
_REJAX = dict(family="model-free", policy_lr=PAPER_POLICY_LR, search_space=REJAX_SPACE)
_WORLD_MODEL = (POLICY_FIELDS, MODEL_FIELDS)
REGISTRY = {m.name: m for m in (
    # the transformers run their seeds one after another on a CPU: paper schedule, 4 seeds, 57 s per seed
    # against 78 s vmapped (awm_transformer), 76 against 94 (hwm_transformer); the others gain nothing or lose
    Method("awm_transformer", _BPO, model="awm_transformer", policy_lr=AWM_TRANSFORMER_POLICY_LR,
           model_scaling=AWM_TRANSFORMER_MODEL_SCALING, cpu_seed_batch=1,
           reads=fields_of(*_WORLD_MODEL, TRANSFORMER_FIELDS, ("token_mixer",)),
           presets=presets_of("awm_transformer", PAPER_WORLD_MODEL_PRESET), **_WM),
    Method("awm_rnn", _BPO, model="awm_rnn", reads=fields_of(*_WORLD_MODEL, ("rnn_hidden",)),
           presets=presets_of("awm_rnn", PAPER_WORLD_MODEL_PRESET), **_WM),
    Method("awm_gru", _BPO, model="awm_gru", reads=fields_of(*_WORLD_MODEL, ("rnn_hidden",)),
           presets=presets_of("awm_gru", PAPER_WORLD_MODEL_PRESET), **_WM),
    Method("awm_lstm", _BPO, model="awm_lstm", reads=fields_of(*_WORLD_MODEL, ("rnn_hidden",)),
           presets=presets_of("awm_lstm", PAPER_WORLD_MODEL_PRESET), **_WM),
    Method("awm_ssm", _BPO, model="awm_ssm", reads=fields_of(*_WORLD_MODEL, ("rnn_hidden", "layers", "ssm_state")),
           presets=presets_of("awm_ssm", PAPER_WORLD_MODEL_PRESET), **_WM),
    Method("hwm_transformer", _BPO, model="hwm_transformer", cpu_seed_batch=1,
           reads=fields_of(*_WORLD_MODEL, TRANSFORMER_FIELDS),
           presets=presets_of("hwm_transformer", PAPER_WORLD_MODEL_PRESET), **_WM),
    Method("markov_mlp", _BPO, model="markov_mlp", reads=fields_of(*_WORLD_MODEL),
           presets=presets_of("markov_mlp", PAPER_WORLD_MODEL_PRESET), **_WM),
    Method("markov_svg", "awm_jax.core.methods.svg:make_svg", model="markov_mlp", check=_check_svg,
           reads=fields_of(*_WORLD_MODEL, ("svg_k", "critic_lr", "target_tau")),
           presets=presets_of("markov_svg", PAPER_WORLD_MODEL_PRESET), **_WM),
    Method("true_bptt", _BPO, model="true_task", policy_lr=TRUE_BPTT_POLICY_LR, search_space=TRUE_BPTT_SPACE,
           reads=fields_of(POLICY_FIELDS), presets=presets_of("true_bptt", PAPER_PRESET)),
    Method("sac", "awm_jax.core.methods.rejax_adapter:make_sac", check=_check_sac,
           reads=fields_of(REJAX_FIELDS, ("rl_batch", "rl_entropy")), presets=presets_of("sac"), **_REJAX),
    Method("ppo", "awm_jax.core.methods.rejax_adapter:make_ppo", check=_check_ppo,
           reads=fields_of(REJAX_FIELDS, ("rl_ppo_minibatches",)), presets=presets_of("ppo"), **_REJAX),
    Method("td3", "awm_jax.core.methods.rejax_adapter:make_td3", check=_check_td3,
           reads=fields_of(REJAX_FIELDS, ("rl_batch",)), presets=presets_of("td3"), **_REJAX),
    Method("online_dt", "awm_jax.core.methods.online_dt:make_online_dt", family="model-free", check=_check_online_dt,
           search_space=ONLINE_DT_SPACE,
           reads=fields_of(ODT_FIELDS), presets=presets_of("online_dt")),
)}
METHODS = tuple(REGISTRY)
BPO_METHODS = tuple(m for m in METHODS if REGISTRY[m].family == "bpo")
BASELINES = tuple(m for m in METHODS if REGISTRY[m].family == "model-free")


def register(m: Method) -> Method:
    """Make method `m` available by its name to `Config`, `make_train` and everything built on them in this
    process (docs/guide/extending.md); `METHODS` keeps the built-in names. A built-in name is refused;
    registering a name again replaces the earlier method. Returns `m`."""
    if not isinstance(m, Method):
        raise TypeError(f"register takes a Method, got {m!r}")
    if m.name in METHODS:
        raise ValueError(f"method {m.name!r} is built in; give the new one another name")
    REGISTRY[m.name] = m
    return m


def method(name: str) -> Method:
    """The registered method `name`; ValueError naming the valid ones otherwise."""
    if name not in REGISTRY:
        raise ValueError(f"unknown method {name!r}; valid methods: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def make_train(config):
    """Validate `config` and build its method's learner (no tracing happens here).

    Returns a Learner (`awm_jax.core.learner`): `learner(key) -> (state, metrics)` with `key` one PRNG
    key ([2] uint32, `jax.random.PRNGKey(s)`) is pure and safe under `jax.jit(jax.vmap(...))` over keys
    [seeds, 2]; metrics is {name: [periods]} per seed ([seeds, periods] vmapped: `eval/return`,
    `eval/env_steps`, `skipped_updates`, and the method's own, e.g. `model/loss`, `policy/...`) and every
    state leaf gains a leading seed axis. `learner.init(key, hparams=None)` and
    `learner.run_chunk(state, periods)` split it into chunks with identical results; `hparams`
    {name: scalar} overrides the hyperparameters in `learner.traced` (vmap them like keys to sweep them
    in one program). Raises ValueError for unknown tasks or methods and for shapes or schedules that do
    not fit, naming the valid choices.
    """
    config.validate()
    task = awm_envs.make(config.task, **config.task_options())
    config.validate(task)
    return method(config.method).build(config, task)
