"""`config(**fields)`: the tests' shared field sets (one small schedule and model size for several methods)
applied to one method the way a sweep applies its base config: the fields that method does not read are
left at their defaults (`Config.for_method`). `Config(...)` itself refuses them."""

from __future__ import annotations

from awm_jax import Config


def config(**fields) -> Config:
    name = fields.pop("method", Config.method)
    return Config(**fields).for_method(name)
