"""How configs saved by earlier versions read today: the one place that knows what changed.

A run's config.json is read back by `Config.from_dict` (loading runs, resuming, checking committed
groups, sweeps' saved specs). Fields added since a run was saved, defaults that changed, and fields that
were renamed or given to one method are mapped here, so a folder written by any earlier version loads as
the config that trained it:
- a field added with a default other than the behaviour before it (`LEGACY_DEFAULTS`);
- a policy_lr of None, which meant the method's default when the run was saved (`LEGACY_POLICY_LR` where
  that default has changed since; `with_method_defaults`);
- online_dt's temperature learning rate, read from policy_lr before it had a field of its own
  (`dt_temperature_lr`);
- fields a method never read (runs saved before methods declared their fields wrote out a policy_lr for
  sac, ppo and td3 too): `Config.from_dict` sets them back to their defaults (`Config.for_method`).
"""

from __future__ import annotations

from awm_jax.core.methods import REGISTRY, method

# Fields added with a default other than the behaviour before them: a saved config without the field
# meant this value (config.json files of older runs; `Config.from_dict` and resume checks read them so).
LEGACY_DEFAULTS = {"transformer_init": "lecun", "model_scaling": "zscore"}


# Default policy learning rates that changed, per method and parameterisation. Runs saved before runs
# wrote out the rate in force (`Config.resolved`) hold policy_lr None: such a run trained at the rate here.
# (model_scaling, the other field whose None means the method's default, no run ever saved as None.)
LEGACY_POLICY_LR = {"awm_transformer": {"normalized": 1e-3, "paper": 1e-4}}
METHOD_DEFAULT_FIELDS = ("policy_lr", "model_scaling")  # None: the method's default (awm_jax.core.methods.Method)


def with_legacy_defaults(saved: dict, run: bool = True) -> dict:
    """A saved config dict with the fields it predates set to what they meant then (`LEGACY_DEFAULTS`).
    run: `saved` is one run's config, so policy_lr None means the method's default when it was saved
    (`LEGACY_POLICY_LR`), written out; a sweep's base config (run=False) keeps None: each method's own."""
    out = {**{k: v for k, v in LEGACY_DEFAULTS.items() if k not in saved}, **saved}
    if out.get("method") == "online_dt" and "dt_temperature_lr" not in out:  # before it had its own field,
        # online_dt's temperature learned at policy_lr (None: the model-free default, 1e-4)
        out["dt_temperature_lr"] = out.get("policy_lr") or 1e-4
    if run:
        out = with_method_defaults(out, LEGACY_POLICY_LR)
    return out


def method_default(d: dict, name: str, legacy_policy_lr: dict | None = None):
    """The value in force of `METHOD_DEFAULT_FIELDS` field `name` in config dict `d`: its own, or when
    None its method's default (policy_lr: for its parameterisation, or where `legacy_policy_lr` names the
    method, the rate given there); None where the method or parameterisation is unknown."""
    if d.get(name) is not None or d.get("method") not in REGISTRY:
        return d.get(name)
    m = method(d["method"])
    if name == "model_scaling":
        return m.model_scaling
    rates = (legacy_policy_lr or {}).get(d["method"]) or m.policy_lr
    return rates.get(d.get("parameterisation", "normalized"))


def with_method_defaults(d: dict, legacy_policy_lr: dict | None = None) -> dict:
    """Config dict `d` with each `METHOD_DEFAULT_FIELDS` field that is None written out as the value in
    force (`method_default`). Unknown methods are left."""
    return {**d, **{k: method_default(d, k, legacy_policy_lr) for k in METHOD_DEFAULT_FIELDS if k in d}}
