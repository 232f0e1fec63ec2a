"""Task names and `make`: every option is checked here, before anything is traced or compiled.

The brax_* tasks are listed without importing brax (`awm_envs.brax_tasks` imports it lazily); `make`
builds their physics model, so a missing brax is reported there, not at import.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from awm_envs.brax_tasks import BRAX_SYSTEMS
from awm_envs.core import System, Task
from awm_envs.myriad import ORIGINALS, SYSTEMS, VARIANTS
from awm_envs.toys import TOYS

GENERIC_OPTIONS = ("horizon", "fixed_dt", "distractor_dims", "state_noise", "dtype", "variant")
_DTYPES = {"float32": jnp.float32, "float64": jnp.float64}


# Tasks added at run time by `register` (docs/guide/extending.md), after the built-in ones.
_REGISTERED: dict[str, System] = {}


def _systems() -> dict[str, System]:
    return {**SYSTEMS, **TOYS, **BRAX_SYSTEMS, **_REGISTERED}


def register(system: System) -> System:
    """Make `system` a task: `make(system.name)` builds it from then on, and every awm_jax config and
    command in this process accepts the name. A built-in name is refused; registering the same name again
    replaces the earlier system. Returns `system`."""
    if not isinstance(system, System):
        raise TypeError(f"register takes a System instance, got {system!r}")
    if system.name in {**SYSTEMS, **TOYS, **BRAX_SYSTEMS}:
        raise ValueError(f"task {system.name!r} is built in; give the new system another name")
    _REGISTERED[system.name] = system
    return system


def names() -> list[str]:
    """Every task name: Myriad systems, then the paper's toys, then the Brax tasks."""
    return list(_systems())


def get_system(name: str, variant: str = "paper") -> System:
    """The system behind task `name`: the paper's version, or with variant="myriad" Myriad's original
    (the same system where the two agree; see `awm_envs.myriad`)."""
    systems = _systems()
    if name not in systems:
        raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(systems)}")
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r} of task {name!r}; valid variants: {', '.join(VARIANTS)}")
    return ORIGINALS.get(name, systems[name]) if variant == "myriad" else systems[name]


def _dtype(dtype):
    key = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    if key not in _DTYPES:
        raise ValueError(f"dtype must be one of {list(_DTYPES)}, got {dtype!r}")
    if key == "float64" and not jax.config.jax_enable_x64:
        raise ValueError("dtype float64 needs 64-bit JAX: set jax.config.update('jax_enable_x64', True) first")
    return _DTYPES[key]


def make(name: str, **options) -> Task:
    """Build task `name`. Options: horizon, fixed_dt, distractor_dims, state_noise, dtype, variant
    ("paper", the default, or "myriad": Myriad's original of glucose, predator_prey and invasive_plant),
    and any of the system's own parameters by name (`awm_envs.make(name).params` lists them)."""
    system = get_system(name, options.pop("variant", "paper"))
    if hasattr(system, "require"):
        system.require()  # e.g. build a Brax model: fails here where brax is absent
    valid = list(GENERIC_OPTIONS) + list(system.default_params)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"unknown options {unknown} for task {name!r}; valid options: {', '.join(valid)}")
    horizon = options.pop("horizon", system.default_horizon)
    if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 1:
        raise ValueError(f"horizon must be a positive integer number of steps, got {horizon!r}")
    distractor_dims = options.pop("distractor_dims", 0)
    if isinstance(distractor_dims, bool) or not isinstance(distractor_dims, (int, np.integer)) or distractor_dims < 0:
        raise ValueError(f"distractor_dims must be a non-negative integer, got {distractor_dims!r}")
    state_noise = float(options.pop("state_noise", 0.0))
    if not np.isfinite(state_noise) or state_noise < 0:
        raise ValueError(f"state_noise must be a finite standard deviation >= 0, got {state_noise!r}")
    fixed_dt = bool(options.pop("fixed_dt", False))
    dtype = _dtype(options.pop("dtype", "float32"))
    for k, v in options.items():
        if not np.all(np.isfinite(np.asarray(v, float))):
            raise ValueError(f"parameter {k!r} of task {name!r} must be finite, got {v!r}")
    raw = {**system.default_params, **options}
    params = {k: jnp.asarray(v, dtype) for k, v in raw.items()}
    horizon = int(horizon)
    dt = system.dt_for(horizon, fixed_dt)
    if hasattr(system, "derived_params"):
        params.update({k: jnp.asarray(v, dtype) for k, v in system.derived_params(params, horizon, dt).items()})
    return Task(
        params=params,
        system=system,
        horizon=horizon,
        dt=float(dt),
        distractor_dims=int(distractor_dims),
        state_noise=state_noise,
        dtype=dtype,
    )


def table() -> list[dict]:
    """One row per task at its default options: name, sizes, horizon, dt, source."""
    from awm_envs.core import describe

    return [describe(make(n)) for n in names()]
