"""Differentiable control tasks behind one functional interface (see `awm_envs.core`).

    import awm_envs
    awm_envs.names()                          # every task
    task = awm_envs.make("cancer_treatment")  # horizon 100, float32
    state = task.reset(key); state = task.step(state, action)
"""

from awm_envs.core import (
    System,
    Task,
    TaskState,
    affine_controls,
    describe,
    is_last_step,
)
from awm_envs.registry import GENERIC_OPTIONS, get_system, make, names, register, table

__all__ = [
    "GENERIC_OPTIONS", "System", "Task", "TaskState", "affine_controls", "describe", "get_system",
    "is_last_step", "make", "names", "register", "table",
]
