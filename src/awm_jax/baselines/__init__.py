"""Model-free baselines behind the trainer's interface: `make_baseline(config, task)` returns an object
with `init(key, hparams=None) -> state`, `run_chunk(state, periods) -> (state, metrics)` and
`__call__(key, hparams=None)`, so `awm_jax.run`, sharding, checkpoints and sweeps treat them like
the BPO trainer. Metrics per period include `eval/return`, `eval/env_steps` and `skipped_updates`,
on the same evaluation grid as the BPO methods.

rejax (sac, ppo, td3) is imported only here, when such a method is chosen.
"""

from __future__ import annotations


def make_baseline(config, task):
    """The trainer-like object of a model-free `config.method` on `task` (already validated)."""
    if config.method in ("sac", "ppo", "td3"):
        from awm_jax.baselines.rejax_adapter import make_rejax_trainer

        return make_rejax_trainer(config, task)
    if config.method == "online_dt":
        from awm_jax.baselines.online_dt import make_online_dt

        return make_online_dt(config, task)
    raise ValueError(f"{config.method!r} is not a baseline")
