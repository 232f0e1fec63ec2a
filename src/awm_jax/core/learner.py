"""The interface every training method answers, so one driver runs, chunks, checkpoints and sweeps
them all (`awm_jax.runner.run`, `awm_jax.runner.sweep`, `awm_jax.runner.sharding`).

A learner is built by `make_train(config)` (the method's factory in `awm_jax.core.methods`) and holds only
static things (config, task, networks, optimisers); everything that changes lives in its state, a
pytree of fixed shapes with `key`, `env_steps`, `skipped_updates` and `hparams` fields:

    learner(key, hparams=None) -> (state, metrics)   train one seed: init, then run_chunk(config.periods)
    learner.init(key, hparams=None) -> state          parameters, optimisers, the warm-up
    learner.run_chunk(state, periods) -> (state, metrics {name: [periods]})
    learner.evaluate(state, key) -> []                 the return of one deterministic evaluation episode
    learner.traced                                     the hyperparameters `hparams` may set (traced values:
                                                       vmap them like keys to sweep them in one program)

Metrics per period always include `eval/return`, `eval/env_steps` and `skipped_updates`, on the same
evaluation grid for every method. A chunked run equals one call: every random draw comes from the key
carried in the state.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True, eq=False)
class Learner:
    """Base class: `__call__` and `run_chunk` from `init` and `_period`; hyperparameters resolved from
    the config and checked against `traced`. Subclasses set `traced` and implement `init`, `_period`
    and `evaluate`."""

    config: object  # awm_jax.Config
    task: object  # awm_envs.Task

    traced: ClassVar[tuple[str, ...]] = ()  # set by subclasses (a property where it depends on the config)
    # the config field behind each traced hyperparameter whose name is not itself a config field
    hparam_fields: ClassVar[dict[str, str]] = {}

    def __call__(self, key, hparams: dict | None = None):
        """Train one seed from `key`: (final state, metrics dict of [periods] arrays)."""
        return self.run_chunk(self.init(key, hparams), self.config.periods)

    def init(self, key, hparams: dict | None = None):
        raise NotImplementedError

    def run_chunk(self, state, periods: int):
        """Advance `periods` evaluation periods: (state, metrics dict of [periods] arrays)."""
        return jax.lax.scan(lambda s, _: self._period(s), state, None, length=periods)

    def evaluate(self, state, key) -> jax.Array:
        raise NotImplementedError

    def _period(self, state):
        raise NotImplementedError

    def default_hparam(self, name: str) -> float:
        """The config's value of traced hyperparameter `name` (the policy's learning rate resolved)."""
        return self.config.policy_lr_value if name == "policy_lr" else float(getattr(self.config, name))

    def traced_fields(self) -> dict[str, str]:
        """{config field: traced hyperparameter} of the fields one compiled program of this learner can vary
        per vmapped member (the others decide shapes or code paths)."""
        return {self.hparam_fields.get(h, h): h for h in self.traced}

    def hparams(self, overrides: dict | None = None) -> dict:
        """{name: [] float32} for every traced hyperparameter: the config's values, then `overrides`.
        A name this learner does not trace raises ValueError naming the ones it does."""
        unknown = sorted(set(overrides or {}) - set(self.traced))
        if unknown:
            raise ValueError(f"{self.config.method} cannot take hyperparameters {unknown}; it traces "
                             f"{list(self.traced)} (the other config fields are static: set them in the Config)")
        values = {k: self.default_hparam(k) for k in self.traced}
        values.update(overrides or {})
        return {k: jnp.asarray(v, jnp.float32) for k, v in values.items()}
