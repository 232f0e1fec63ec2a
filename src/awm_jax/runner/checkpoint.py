"""Every orbax read and write of awm_jax: run checkpoints (`Checkpointer`) and a run's final state
(`save_state`, `restore_state`).

Checkpoints of whole runs: every seed's TrainState (parameters, optimiser states, replay,
env state, keys, counters) plus the metrics so far, so a resumed run ends exactly where an
uninterrupted one would.

A checkpoint is `{"state": TrainState [seeds, ...], "metrics": {name: [seeds, periods]}, "done": []}`,
with metrics preallocated for the whole run (NaN where not yet computed) so every checkpoint of a run
has the same shapes. Each is one orbax folder `checkpoints/<periods done>/`: orbax writes it under a
temporary name and renames it to `<periods done>.partial` when complete, `awm_sha256.json` records the
sha256 of its files (see `awm_jax.runner.run_folder`), and only then is it renamed to `<periods done>`: a
step folder appears whole, with its checksums, or not at all, whenever the process is killed (so a second
Ctrl-C or a SIGKILL mid-save leaves the previous step the newest). Restoring takes the newest step whose
files all match their checksums and that orbax reads back; an empty, partial, truncated or corrupted
step (copied or damaged since) is reported and skipped.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from awm_jax.core.config import Config
from awm_jax.core.legacy import with_legacy_defaults, with_method_defaults
from awm_jax.runner import run_folder


def _ocp():
    import orbax.checkpoint as ocp

    return ocp


PARTIAL = ".partial"  # a step folder written and checksummed, not yet renamed into place


class Checkpointer:
    """Save and restore run checkpoints under `directory`, keeping the last `keep`."""

    def __init__(self, directory, keep: int = 2):
        self.directory = Path(directory).absolute()
        self.keep = keep
        self._ck = _ocp().StandardCheckpointer()

    def save(self, done: int, state, metrics) -> None:
        """Save after `done` periods (blocking until the step and its checksums are written). A
        filesystem failure raises one OSError naming the step and leaves no partial step behind."""
        primary = jax.process_index() == 0
        path = self.directory / str(done)
        partial = self.directory / (str(done) + PARTIAL)
        if primary:
            self.directory.mkdir(parents=True, exist_ok=True)
            for stale in [s for s in self.steps() if s >= done]:  # unreadable ones we resumed past
                self.delete(stale)
            for tmp in [*self.directory.glob("*" + run_folder.ORBAX_TMP + "*"), *self.directory.glob("*" + PARTIAL)]:
                shutil.rmtree(tmp, ignore_errors=True)  # left by a killed save
        with run_folder.saving(partial):
            self._ck.save(partial, {"state": state, "metrics": metrics, "done": jnp.int32(done)})
            self._ck.wait_until_finished()
            if primary:
                run_folder.write_checksums(partial)
                partial.rename(path)
        if primary:
            for old in self.steps()[:-self.keep]:
                self.delete(old)

    def steps(self) -> list[int]:
        """Every step folder present, intact or not."""
        if not self.directory.is_dir():
            return []
        return sorted(int(p.name) for p in self.directory.iterdir() if p.name.isdigit() and p.is_dir())

    def delete(self, step: int) -> None:
        shutil.rmtree(self.directory / str(step), ignore_errors=True)

    def restore_latest(self, state, metrics, log=print):
        """Restore the newest intact checkpoint into the structure of `state` and `metrics` (arrays or
        shape structs, e.g. from `jax.eval_shape`): (done, state, metrics), or None when there is none.
        A step whose files do not match its checksums (or without them: its save did not finish) or
        that orbax cannot read is reported and skipped; if no step is intact, raise."""
        ocp = _ocp()
        target = {"state": state, "metrics": metrics, "done": jnp.zeros((), jnp.int32)}
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        steps, problems = self.steps(), []
        for step in reversed(steps):
            path = self.directory / str(step)
            try:
                run_folder.verify_checksums(path)
                with run_folder.quiet_orbax():
                    ck = self._ck.restore(path, abstract)
                _check_shapes(ck, abstract)
                if int(ck["done"]) != step:
                    raise ValueError(f"it records {int(ck['done'])} periods done")
            except Exception as e:  # incomplete or corrupted: fall back to the previous step
                reason = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
                problems.append(f"step {step}: {reason}")
                log(f"[awm-jax] checkpoint {path} is incomplete or damaged ({reason}); trying the previous one")
                continue
            return int(ck["done"]), ck["state"], ck["metrics"]
        if steps:
            raise run_folder.RunFolderError(
                f"no intact checkpoint in {self.directory}: {'; '.join(problems)}. Start the run again with "
                "--overwrite (which moves this folder aside) or choose another --out")
        return None

    def close(self) -> None:
        self._ck.close()


def _check_shapes(ck, abstract) -> None:
    for got, want in zip(jax.tree.leaves(ck), jax.tree.leaves(abstract)):
        if tuple(np.shape(got)) != tuple(want.shape):
            raise ValueError(f"shape {np.shape(got)} != {want.shape}")


def config_diff(saved: dict, current: dict, ignore=(), run: bool = True) -> list[str]:
    """Human-readable differences between two config dicts (lists and tuples compare equal), leaving
    out the fields in `ignore` and fields the saved config lacks that still hold their default (a
    field added to Config since the run was saved; one whose default changed then counts as its old
    value, `legacy.LEGACY_DEFAULTS`). run: both are one run's configs, so the values in force of the
    fields whose None means the method's default are compared (`legacy.METHOD_DEFAULT_FIELDS`: policy_lr,
    model_scaling; in a saved config the default then); False compares sweeps' base configs as they are."""
    defaults = Config().to_dict()
    saved = with_legacy_defaults(saved, run=run)
    if run:
        current = with_method_defaults(current)
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
    path = Path(out) / run_folder.CONFIG
    if not path.exists():
        return
    diff = config_diff(run_folder.read_json(path, "config"), config.to_dict(), ignore=config.ignored_fields())
    if diff:
        raise ValueError(f"{out} holds a run with a different configuration; refusing to resume "
                         f"(--overwrite moves it aside instead). Differences: {'; '.join(diff)}")


def remove_checkpoints(directory) -> None:
    shutil.rmtree(directory, ignore_errors=True)


def save_state(path, state) -> None:
    """Write a (vmapped) train state with orbax to folder `path`, replacing an older one, then the sha256
    of its files (`awm_sha256.json`, checked by `restore_state`). Orbax writes to a temporary folder and
    renames it when complete; a failure leaves no partial folder and raises one OSError naming `path`
    when the filesystem is the cause (disk full, permissions)."""
    path = Path(path).absolute()
    with run_folder.saving(path):
        with _ocp().StandardCheckpointer() as ck:
            ck.save(path, state, force=True)
            ck.wait_until_finished()
        run_folder.write_checksums(path)


def restore_state(path, abstract, verify: bool = True, partial: bool = False):
    """Read a state written by `save_state` into the structure of `abstract` (arrays or
    jax.ShapeDtypeStruct leaves, e.g. from `jax.eval_shape`), onto the first local device, after
    checking its files against their checksums (verify=False: only when a checksum file is present).
    partial=True skips saved fields that `abstract` lacks (a state saved by an older awm_jax whose
    states had more fields; every field of `abstract` must still be in the file). A damaged or
    unreadable state raises `run_folder.RunFolderError` naming the folder."""
    path = Path(path).absolute()
    advice = ("rerun the training (--overwrite moves this run aside), or read the config and metrics with "
              "load_run(path, state=False)")
    try:
        run_folder.verify_checksums(path, missing_ok=not verify)
    except run_folder.DamagedError as e:
        raise run_folder.DamagedError(f"the saved state is damaged or incomplete: {e}; {advice}") from None
    one = jax.sharding.make_single_device_sharding(jax.local_devices()[0])  # the class is deprecated in jax 0.12
    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=one), abstract)
    try:
        if partial:
            ocp = _ocp()
            args = ocp.args.PyTreeRestore(item=target, partial_restore=True,
                                          restore_args=ocp.checkpoint_utils.construct_restore_args(target))
            with run_folder.quiet_orbax(), ocp.PyTreeCheckpointer() as ck:
                return ck.restore(path, args=args)
        with run_folder.quiet_orbax(), _ocp().StandardCheckpointer() as ck:
            return ck.restore(path, target)
    except Exception as e:
        first = str(e).splitlines()[0][:300] if str(e) else ""
        raise run_folder.RunFolderError(f"{path}: the saved state cannot be restored ({type(e).__name__}: {first}); "
                                        f"{advice}") from e


def restore_members(trainer, folder, n: int, verify: bool = True):
    """The vmapped state of `n` members (seeds, or a sweep group's members x seeds) saved in orbax folder
    `folder` by a run of `trainer`: the structure rebuilt from `jax.eval_shape` of the vmapped
    `trainer.init`, filled by `restore_state` after checking the files against their checksums."""
    keys = jax.ShapeDtypeStruct((n, 2), jnp.uint32)
    abstract = jax.eval_shape(jax.vmap(lambda k: trainer.init(k)), keys)
    return restore_state(folder, abstract, verify=verify)
