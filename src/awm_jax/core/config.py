"""The experiment configuration: one frozen dataclass, validated before anything is traced.

One flat dataclass composed of field groups: the task, the schedule every method shares, BPO's fields,
and each model-free family's own. Each method declares the fields it reads (`Method.reads`,
awm_jax.core.methods); `validate` refuses any other field set away from its default, naming the method's
own, so a run's config.json never records a setting that did not train. Static fields decide shapes and loop lengths (task,
method, sizes, schedule); `traced` fields (learning rates, entropy coefficient, gamma, clip) only
change numbers, so a sweep may vary them inside one compiled program. Defaults follow the paper's
reference implementation (shared PAPER.md, section 5).
"""

from __future__ import annotations

import dataclasses
import math

import awm_envs
from awm_jax.core.legacy import METHOD_DEFAULT_FIELDS, with_legacy_defaults
from awm_jax.core.methods import BASELINES, BPO_METHODS, METHODS, POLICY_LR, REGISTRY, TRUE_BPTT_POLICY_LR, method  # noqa: F401
from awm_jax.core.models.networks import TRANSFORMER_INITS

PARAMETERISATIONS = ("normalized", "paper")  # see awm_jax.core.models.policy
WARMUP_POLICIES = ("policy", "uniform")
MODEL_SCALINGS = ("zscore", "raw", "symlog", "running")
MODEL_DTYPES = ("float32", "bfloat16")


def traced(default):
    """A field that only changes numbers: a learner may trace it (`Learner.traced`), so one compiled
    program can vary it per vmapped member, like the seeds. Every other field is static: it decides
    shapes, loop lengths or code paths."""
    return dataclasses.field(default=default, metadata={"traced": True})


def unread_message(method_name: str, settings: dict[str, str]) -> str:
    """The refusal of `settings` ({field: value as text}) that method `method_name` does not read, naming its own
    fields (`Config.validate`; the command line refuses such flags with it before parsing them)."""
    given = ", ".join(f"{k}={v}" for k, v in settings.items())
    return (f"{method_name} does not use {given}; its own fields are {', '.join(method(method_name).own_fields)} "
            "(and the task and run fields)")


@dataclasses.dataclass(frozen=True)
class TaskConfig:
    """Which task, in which version."""

    task: str = "cancer_treatment"  # task name (`awm-jax tasks` lists them)
    horizon: int | None = None  # episode length in steps; None: the task's default
    fixed_dt: bool = False  # keep dt = T / 100 and run `horizon` steps (scales the horizon)
    distractor_dims: int = 0  # extra N(0, 1) observation dimensions
    state_noise: float = 0.0  # std of Gaussian noise added to the state each step
    task_variant: str = "paper"  # "paper": the paper's copies of the tasks; "myriad": Myriad's originals (glucose, predator_prey, invasive_plant differ)


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
    """Which method, how many seeds, and the schedule every method shares: warm-up, env steps per update
    and per evaluation, replayed episodes per update."""

    method: str = "awm_transformer"  # awm_transformer, awm_rnn, awm_gru, awm_lstm, awm_ssm, hwm_transformer, markov_mlp, markov_svg, true_bptt; model-free: sac, ppo, td3, online_dt
    seeds: int = 1  # seeds trained together as one vmapped program
    seed: int = 0  # the run's base seed: seed keys are split(PRNGKey(seed), seeds)
    total_steps: int = 5000  # real env steps (rounded up to whole evaluation periods)
    warmup_steps: int = 1500  # env steps before any update (acting as `warmup_policy` says)
    warmup_policy: str = "policy"  # "policy": the initial stochastic policy acts (the paper); "uniform": uniformly random actions
    model_every: int = 2  # env steps per world-model update
    policy_every: int = 16  # env steps per policy update
    eval_every: int = 64  # env steps per evaluation (rounded to whole policy periods)
    model_batch: int = 64  # episodes per world-model batch
    imagined_rollouts: int = 16  # imagined rollouts (start states) per policy update
    replay_episodes: int | None = None  # replay size in episodes; None: every episode of the run
    replay_half_life: float | None = None  # world-model batches favour recent episodes: one completed j episodes before the newest is drawn with weight 0.5^(j / replay_half_life); None: uniformly (the paper)


@dataclasses.dataclass(frozen=True)
class BPOConfig:
    """Backpropagation through world models (and the task itself): learning rates, the objective, the
    world models' and the policy's sizes, the logged diagnostics. online_dt reads the transformer sizes,
    entropy and grad_clip too."""

    model_lr: float = traced(1e-3)  # Adam learning rate of the world model
    model_lr_decay: float = 1.0  # the world model's learning rate at its last update as a fraction of model_lr, cosine in between; 1.0: constant (the paper)
    policy_lr: float | None = traced(None)  # Adam learning rate of the policy; None: the method's for the parameterisation (normalized: 3e-3 awm_transformer and true_bptt, 1e-3 the other world models; paper: 1e-4)
    critic_lr: float = traced(3e-4)  # Adam learning rate of the critic (markov_svg)
    entropy: float = traced(0.1)  # entropy bonus: alpha times the mean over steps of the per-step entropy (the paper's 0.1)
    parameterisation: str = "normalized"  # policy: "normalized" ([z-scored state, t/H], small last layer) or "paper" (raw [state, t], brax NormalTanh)
    model_scaling: str | None = None  # world-model states: None: the method's (symlog for awm_transformer, zscore for the other world models); "zscore" (warm-up mean and std), "raw" (the paper), "symlog" (log scale around the warm-up mean: sign(s) log(1 + |s|), z-scored by the delta method) or "running" (mean and std of every completed episode so far, refitted as episodes complete)
    model_pretrain_updates: int = 0  # world-model updates on the warm-up data before the first policy period
    gamma: float = traced(1.0)  # discount of the imagined return
    grad_clip: float = traced(100.0)  # global-norm clip of the policy gradient
    stop_state_grad: bool = True  # stop the gradient through the policy's state input (as the paper)
    svg_k: int = 2  # unroll length of markov_svg
    target_tau: float = traced(0.005)  # Polyak rate of the critic's target network
    width: int = 48  # transformer width
    layers: int = 2  # transformer blocks (awm_ssm: its SSM layers)
    heads: int = 3  # attention heads
    rnn_hidden: int = 48  # hidden size of the recurrent AWMs (awm_ssm: its width)
    ssm_state: int = 32  # awm_ssm: complex state size of each diagonal SSM layer
    max_positions: int | None = None  # transformer position table length; None: the horizon
    position_std: float = 0.1  # std of the transformer's position table init (the paper's lecun-uniform table: ~0.1; GPT-2: 0.02)
    token_mixer: bool = False  # transformer AWM: a shared Dense after the per-type token embeddings (the paper's has none)
    mlp_hidden: tuple[int, ...] = (64, 64)  # hidden sizes of model MLPs (embeddings, decoder, Markov, critic)
    transformer_init: str = "gpt2"  # transformer world models' token embeddings and blocks: "gpt2" (kernels N(0, 0.02), LayerNorm epsilon 1e-5: the paper code's) or "lecun" (flax's Dense init, epsilon 1e-6; the default before 30 November 2026)
    model_dtype: str = "float32"  # transformer world models' computation dtype: "bfloat16" runs their matmuls and activations in bfloat16 (parameters, Adam, softmax, predictions and loss stay float32), for accelerators; "float32" (default) everywhere else
    policy_hidden: tuple[int, ...] = (64, 64)  # hidden sizes of the policy MLP
    gradient_cosine: bool = True  # log model-vs-true policy gradient cosine at every policy update
    model_error: bool = True  # log the world model's open-loop error on each evaluation episode and on warm-up episodes


@dataclasses.dataclass(frozen=True)
class ODTConfig:
    """The online decision transformer's own fields (awm_jax.core.methods.online_dt)."""

    dt_lr: float = traced(1e-3)  # online_dt: Adam learning rate of the decision transformer
    dt_online_target: float = traced(0.2)  # online_dt: exploring episodes target R* + k (R* - R0) (R*: best return seen, R0: mean warm-up return)
    dt_eval_target: float = traced(0.0)  # online_dt: evaluation episodes target R* + k (R* - R0)
    dt_target_entropy: float | None = None  # online_dt: target entropy of the learned temperature; None: -action size (ODT)
    dt_learn_temperature: bool = True  # online_dt: tune the entropy temperature (starting at `entropy`, Adam dt_temperature_lr) as ODT; False: fixed
    dt_temperature_lr: float = traced(1e-4)  # online_dt: Adam learning rate of the learned entropy temperature


@dataclasses.dataclass(frozen=True)
class RejaxConfig:
    """sac, ppo and td3's own fields (awm_jax.core.methods.rejax_adapter)."""

    rl_hidden: tuple[int, ...] = (256, 256)  # sac/ppo/td3: hidden sizes of the actor and critic MLPs
    rl_lr: float = 3e-4  # sac/ppo/td3: Adam learning rate of actor and critic
    rl_batch: int = 128  # sac/td3: transitions per update, sampled from the replay of every transition
    rl_gamma: float = 0.99  # sac/ppo/td3: discount of the critic's targets
    rl_entropy: float | None = 0.1  # sac: fixed entropy coefficient alpha; None: rejax's automatic tuning
    rl_normalize_obs: bool = True  # sac/ppo/td3: running mean/std observation normalisation (rejax's)
    rl_ppo_minibatches: int = 4  # ppo: minibatches per epoch (divides the env steps of an evaluation period)


@dataclasses.dataclass(frozen=True)
class Config(RejaxConfig, ODTConfig, BPOConfig, ScheduleConfig, TaskConfig):
    """The experiment configuration: the task, the schedule and every method family's fields, flat (one
    CLI flag each). Fields made with `traced` only change numbers; the others are static."""

    # -- derived, static ------------------------------------------------------------------------
    @property
    def model_kind(self):
        """The world model the method learns (`awm_jax.core.models.KINDS`), "true_task" (true_bptt: the task
        itself) or None (model-free)."""
        return method(self.method).model

    @property
    def policy_lr_value(self) -> float:
        """The policy learning rate in force: `policy_lr`, or when it is None the method's default for the
        parameterisation (awm_jax.core.methods: AWM_TRANSFORMER_POLICY_LR, POLICY_LR through the other world
        models, TRUE_BPTT_POLICY_LR for true_bptt, the paper's 1e-4 for the model-free baselines)."""
        if self.policy_lr is not None:
            return self.policy_lr
        return method(self.method).policy_lr[self.parameterisation]

    @property
    def model_scaling_value(self) -> str:
        """The world model's state scaling in force: `model_scaling`, or when it is None the method's
        default (awm_jax.core.methods: AWM_TRANSFORMER_MODEL_SCALING, "zscore" for the other world models)."""
        return self.model_scaling if self.model_scaling is not None else method(self.method).model_scaling

    def task_options(self) -> dict:
        opts = dict(fixed_dt=self.fixed_dt, distractor_dims=self.distractor_dims, state_noise=self.state_noise,
                    variant=self.task_variant)
        if self.horizon is not None:
            opts["horizon"] = self.horizon
        return opts

    @property
    def blocks(self) -> int:
        """Policy periods after warm-up: ceil((total - warmup) / policy_every), whole eval periods."""
        per = self.blocks_per_eval
        return per * math.ceil((self.total_steps - self.warmup_steps) / (self.policy_every * per))

    @property
    def model_updates(self) -> int:
        """World-model updates in a whole run: the pre-training ones, then policy_every / model_every per block."""
        return self.model_pretrain_updates + self.blocks * (self.policy_every // self.model_every)

    @property
    def blocks_per_eval(self) -> int:
        return max(1, round(self.eval_every / self.policy_every))

    @property
    def periods(self) -> int:
        """Evaluation periods: the outer scan length."""
        return self.blocks // self.blocks_per_eval

    @property
    def env_steps(self) -> int:
        """Env steps actually taken (the schedule rounds up to whole policy/eval periods)."""
        return self.warmup_steps + self.blocks * self.policy_every

    def validate(self, task=None) -> None:
        """Raise ValueError naming the valid choices; called by make_train before any tracing."""
        for f in dataclasses.fields(self):  # NaN or inf in any numeric option (inf > 0 and nan < 0 pass below)
            v = getattr(self, f.name)
            if isinstance(v, float) and not math.isfinite(v):
                raise ValueError(f"{f.name} must be a finite number, got {v}")
        if self.task not in awm_envs.names():
            raise ValueError(f"unknown task {self.task!r}; valid tasks: {', '.join(awm_envs.names())}")
        if self.method not in REGISTRY:  # the built-in METHODS and any registered since
            raise ValueError(f"unknown method {self.method!r}; valid methods: {', '.join(REGISTRY)}")
        stray = self.unused_settings()
        if stray:
            raise ValueError(unread_message(self.method, {k: repr(v) for k, v in stray.items()}))
        for name, value, valid in (("parameterisation", self.parameterisation, PARAMETERISATIONS),
                                   ("warmup_policy", self.warmup_policy, WARMUP_POLICIES),
                                   ("model_scaling", self.model_scaling_value, MODEL_SCALINGS),
                                   ("model_dtype", self.model_dtype, MODEL_DTYPES),
                                   ("transformer_init", self.transformer_init, TRANSFORMER_INITS)):
            if value not in valid:
                raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(valid)}")
        for name in ("seeds", "total_steps", "model_every", "policy_every", "eval_every", "model_batch",
                     "imagined_rollouts", "width", "layers", "heads", "rnn_hidden", "ssm_state", "svg_k"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.warmup_steps < 0 or self.warmup_steps >= self.total_steps:
            raise ValueError(f"warmup_steps must be in [0, total_steps), got {self.warmup_steps}")
        if self.policy_every % self.model_every and self.reads("model_every"):
            raise ValueError(f"policy_every ({self.policy_every}) must be a multiple of model_every ({self.model_every})")
        if self.width % self.heads and self.reads("heads"):
            raise ValueError(f"width ({self.width}) must be divisible by heads ({self.heads})")
        if isinstance(self.model_pretrain_updates, bool) or not isinstance(self.model_pretrain_updates, int) \
                or self.model_pretrain_updates < 0:
            raise ValueError(f"model_pretrain_updates must be a non-negative integer, got {self.model_pretrain_updates!r}")
        if self.replay_half_life is not None and not self.replay_half_life > 0:
            raise ValueError(f"replay_half_life must be > 0 episodes (or None: uniform), got {self.replay_half_life}")
        if not 0 <= self.model_lr_decay <= 1:
            raise ValueError(f"model_lr_decay must be in [0, 1], got {self.model_lr_decay}")
        for name in ("model_lr", "policy_lr_value", "critic_lr", "grad_clip", "position_std"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name.removesuffix('_value')} must be > 0, got {getattr(self, name)}")
        if self.entropy < 0 or not 0 < self.gamma <= 1 or not 0 < self.target_tau <= 1:
            raise ValueError("need entropy >= 0, 0 < gamma <= 1 and 0 < target_tau <= 1")
        if task is not None:
            H = task.horizon
            if self.warmup_steps < H and method(self.method).learns_model:
                raise ValueError(f"warmup_steps ({self.warmup_steps}) must cover at least one episode ({H} steps) "
                                 "so the model has data before its first update")
            usable = self.replay_capacity(H) - 1  # one slot is always being written
            if self.model_batch > usable:
                raise ValueError(f"model_batch ({self.model_batch}) is larger than the replay ({usable} episodes); "
                                 "raise replay_episodes or lower model_batch")
            if self.max_positions is not None and H > self.max_positions:
                raise ValueError(f"horizon {H} is longer than the model's position table (max_positions="
                                 f"{self.max_positions}); raise max_positions or shorten the horizon")
        if self.replay_half_life is not None and not method(self.method).learns_model:
            raise ValueError(f"replay_half_life weights the world-model batches; {self.method} fits no world model")
        check = method(self.method).check  # the method family's own fields (awm_jax.core.methods)
        if check is not None:
            check(self, task)

    def replay_capacity(self, horizon: int) -> int:
        """Episode slots: by default every episode of the run, and at least one model batch."""
        if self.replay_episodes is not None:
            return self.replay_episodes
        return max(math.ceil(self.env_steps / horizon) + 2, self.model_batch + 1)

    def reads(self, name: str) -> bool:
        """Whether this config's method reads field `name` (`Method.reads`; every field where undeclared)."""
        declared = method(self.method).reads
        return declared is None or name in declared

    def ignored_fields(self) -> set[str]:
        """The fields this method never reads: every field outside its declared `Method.reads` (none
        where the method declares none). `validate` refuses them away from their defaults, and resuming
        compares only the other fields."""
        reads = method(self.method).reads
        return set() if reads is None else {f.name for f in dataclasses.fields(self)} - set(reads)

    def unused_settings(self) -> dict:
        """{field: value} of the fields this method never reads that are set away from their defaults."""
        ignored = self.ignored_fields()
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name in ignored and getattr(self, f.name) != f.default}

    def for_method(self, name: str, **changes) -> Config:
        """This config for method `name` (and `changes`), with this config's fields that `name` does not read
        back at their defaults: how a sweep applies one base config to methods of several families. A field
        in `changes` that `name` does not read is kept, so that `validate` refuses it."""
        cfg = dataclasses.replace(self, method=name, **changes)
        defaults = {f.name: f.default for f in dataclasses.fields(cfg)}
        return dataclasses.replace(cfg, **{k: defaults[k] for k in cfg.unused_settings() if k not in changes})

    @classmethod
    def preset(cls, method_name: str, name: str = "default", **changes) -> Config:
        """Method `method_name`'s named preset, then `changes`: "default" (every field at its default),
        "paper" (the paper code's settings, for the BPO methods) or "tuned" (the fair benchmark's selection,
        for the methods whose tuning finished); `Method.presets` lists a method's. ValueError names them."""
        presets = {"default": {}, **method(method_name).presets}
        if name not in presets:
            raise ValueError(f"{method_name} has no preset {name!r}; its presets: {', '.join(presets)}")
        return cls(method=method_name, **{**presets[name], **changes})

    @classmethod
    def traced_fields(cls) -> tuple[str, ...]:
        """The fields made with `traced` (only change numbers)."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("traced"))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def resolved(self) -> Config:
        """This config with the defaults that depend on the method written out (the policy learning
        rate and the model scaling in force, where the method reads them): what a run saves, so that its
        config.json still says what ran after a default changes."""
        ignored = self.ignored_fields()
        return dataclasses.replace(self, **{k: getattr(self, f"{k}_value") for k in METHOD_DEFAULT_FIELDS
                                            if k not in ignored})

    @classmethod
    def from_dict(cls, d: dict, run: bool = True) -> Config:
        """The config a saved dict describes; a field the dict lacks takes the value runs saved before it
        existed had (`LEGACY_DEFAULTS`), else today's default. run: `d` is a run's config, whose
        policy_lr None means the rate in force when it was saved, and whose fields that its method does not
        read are set back to their defaults (runs saved before methods declared their fields wrote out a
        policy_lr for every method, sac's included, that did not train); False for a sweep's base config."""
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - fields)
        if unknown:
            raise ValueError(f"unknown config fields {unknown}; valid: {sorted(fields)}")
        d = {k: tuple(v) if isinstance(v, list) else v for k, v in with_legacy_defaults(d, run=run).items()}
        cfg = cls(**d)
        return cfg.for_method(cfg.method) if run and cfg.method in REGISTRY else cfg
