"""World models behind one interface (`awm_jax.core.models.base.WorldModel`), made by name."""

from __future__ import annotations

from awm_jax.core.models.awm_rnn import RecurrentAWM
from awm_jax.core.models.awm_ssm import SSMAWM
from awm_jax.core.models.awm_transformer import TransformerAWM
from awm_jax.core.models.base import WorldModel
from awm_jax.core.models.hwm_transformer import TransformerHWM
from awm_jax.core.models.markov_mlp import MarkovMLP

# name -> (class, fixed keyword arguments); the paper's names for the methods that use them.
KINDS = {
    "awm_transformer": (TransformerAWM, {}),
    "awm_rnn": (RecurrentAWM, {"cell": "rnn"}),
    "awm_gru": (RecurrentAWM, {"cell": "gru"}),
    "awm_lstm": (RecurrentAWM, {"cell": "lstm"}),
    "awm_ssm": (SSMAWM, {}),
    "hwm_transformer": (TransformerHWM, {}),
    "markov_mlp": (MarkovMLP, {}),
}
_BUILT_IN = frozenset(KINDS)


def register(kind: str, cls: type[WorldModel], **fixed) -> None:
    """Make world model class `cls` (a `WorldModel` dataclass) available as `kind`, built with the keyword
    arguments `fixed` besides its sizes; a method names it as its `model` (docs/guide/extending.md).
    A built-in kind is refused."""
    if not (isinstance(cls, type) and issubclass(cls, WorldModel)):
        raise TypeError(f"register takes a WorldModel subclass, got {cls!r}")
    if kind in _BUILT_IN:
        raise ValueError(f"world model {kind!r} is built in; give the new one another name")
    KINDS[kind] = (cls, dict(fixed))


def world_model_from_config(kind: str, config, state_size: int, action_size: int, max_horizon: int) -> WorldModel:
    """World model `kind` sized by an awm_jax Config (`config_sizes` of its class)."""
    if kind not in KINDS:
        raise ValueError(f"unknown world model {kind!r}; valid: {', '.join(KINDS)}")
    return make_world_model(kind, state_size, action_size, max_horizon, **KINDS[kind][0].config_sizes(config))


def make_world_model(kind: str, state_size: int, action_size: int, max_horizon: int, **sizes) -> WorldModel:
    """Build world model `kind` (a key of KINDS); `sizes` override its defaults (width, layers, ...)."""
    if kind not in KINDS:
        raise ValueError(f"unknown world model {kind!r}; valid: {', '.join(KINDS)}")
    cls, fixed = KINDS[kind]
    import dataclasses

    valid = {f.name for f in dataclasses.fields(cls)} - {"state_size", "action_size", "max_horizon"} - set(fixed)
    unknown = sorted(set(sizes) - valid)
    if unknown:
        raise ValueError(f"unknown options {unknown} for world model {kind!r}; valid: {sorted(valid)}")
    return cls(state_size=state_size, action_size=action_size, max_horizon=max_horizon, **fixed, **sizes)


__all__ = ["KINDS", "MarkovMLP", "RecurrentAWM", "SSMAWM", "TransformerAWM", "TransformerHWM", "WorldModel",
           "make_world_model", "register", "world_model_from_config"]
