"""Checkpoints of whole runs with orbax: every seed's TrainState (parameters, optimiser states, replay,
env state, keys, counters) plus the metrics so far, so a resumed run ends exactly where an
uninterrupted one would.

A checkpoint is `{"state": TrainState [seeds, ...], "metrics": {name: [seeds, periods]}, "done": []}`,
with metrics preallocated for the whole run (NaN where not yet computed) so every checkpoint of a run
has the same shapes. Orbax writes each step to a temporary folder and renames it when complete; a
step that fails to restore (corrupted, truncated) is skipped for the previous one.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

CONFIG_NAME = "config.json"


def _ocp():
    import orbax.checkpoint as ocp

    return ocp


class Checkpointer:
    """Save and restore run checkpoints under `directory`, keeping the last `keep`."""

    def __init__(self, directory, keep: int = 2):
        ocp = _ocp()
        self.directory = Path(directory).absolute()
        self.manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))

    def save(self, done: int, state, metrics) -> None:
        """Save after `done` periods (blocking until the step is committed)."""
        ocp = _ocp()
        for stale in [s for s in self.manager.all_steps() if s >= done]:  # unreadable ones we resumed past
            self.manager.delete(stale)
        self.manager.save(done, args=ocp.args.StandardSave({"state": state, "metrics": metrics,
                                                            "done": jnp.int32(done)}), force=True)
        self.manager.wait_until_finished()

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def restore_latest(self, state, metrics):
        """Restore the newest readable checkpoint into the structure of `state` and `metrics` (arrays or
        shape structs, e.g. from `jax.eval_shape`): (done, state, metrics), or None when there is none.
        Unreadable steps are reported and skipped; if none is readable, raise."""
        ocp = _ocp()
        target = {"state": state, "metrics": metrics, "done": jnp.zeros((), jnp.int32)}
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        steps = self.steps()
        for step in reversed(steps):
            try:
                ck = self.manager.restore(step, args=ocp.args.StandardRestore(abstract))
                _check_shapes(ck, abstract)
            except Exception as e:  # corrupted or partial: fall back to the previous step
                print(f"[awm-jax] checkpoint {step} in {self.directory} is unreadable ({type(e).__name__}: "
                      f"{str(e)[:120]}); trying the previous one")
                continue
            return int(ck["done"]), ck["state"], ck["metrics"]
        if steps:
            raise ValueError(f"no readable checkpoint in {self.directory} (steps {steps}); remove it to start over")
        return None

    def close(self) -> None:
        self.manager.close()


def _check_shapes(ck, abstract) -> None:
    for got, want in zip(jax.tree.leaves(ck), jax.tree.leaves(abstract)):
        if tuple(np.shape(got)) != tuple(want.shape):
            raise ValueError(f"shape {np.shape(got)} != {want.shape}")


def config_diff(saved: dict, current: dict, ignore=()) -> list[str]:
    """Human-readable differences between two config dicts (lists and tuples compare equal), leaving
    out the fields in `ignore` and fields the saved config lacks that still hold their default (a
    field added to Config since the run was saved)."""
    from awm_jax.config import Config

    defaults = Config().to_dict()
    norm = lambda v: list(v) if isinstance(v, (list, tuple)) else v
    keys = sorted((set(saved) | set(current)) - set(ignore))
    missing = object()
    out = []
    for k in keys:
        old, new = saved.get(k, missing), current.get(k, missing)
        if old is missing and k in defaults and norm(new) == norm(defaults[k]):
            continue
        if old is missing or new is missing or norm(old) != norm(new):
            show = lambda v: "(absent)" if v is missing else repr(v)
            out.append(f"{k}: saved {show(old)}, now {show(new)}")
    return out


def check_resume_config(out, config) -> None:
    """Refuse to resume a run folder written by a different configuration, saying what differs."""
    path = Path(out) / CONFIG_NAME
    if not path.exists():
        return
    diff = config_diff(json.loads(path.read_text()), config.to_dict(), ignore=config.ignored_fields())
    if diff:
        raise ValueError(f"{out} holds a run with a different configuration; refusing to resume. "
                         f"Differences: {'; '.join(diff)}")


def remove_checkpoints(directory) -> None:
    shutil.rmtree(directory, ignore_errors=True)
