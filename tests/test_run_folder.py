"""Results are never lost or mixed: one writer per run folder, outputs complete or absent, checkpoints
checked and skipped when damaged, filesystem errors as one line, non-finite options refused and skipped
updates reported, files that honour the umask."""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from configs import config

from awm_jax import Config, load_run
from awm_jax.cli import main
from awm_jax.runner.checkpoint import Checkpointer
from awm_jax.runner.results import write_run
from awm_jax.runner.run import run_training
from awm_jax.runner.run_folder import (
    CHECKSUMS,
    COMPLETE,
    DamagedError,
    FolderBusy,
    RunFolderError,
    atomic_write,
    claim,
    saving,
    verify_checksums,
)
from awm_jax.runner.sweep import SweepSpec, run_sweep, write_aggregate

# Tiny: horizon 10, 2 evaluation periods of 2 policy updates each; compiles in seconds.
TINY = dict(task="cancer_treatment", method="true_bptt", horizon=10, total_steps=164, warmup_steps=100, eval_every=32,
            model_batch=8, imagined_rollouts=4, policy_hidden=(16,), policy_lr=1e-3)
FLAGS = ["--task", "cancer_treatment", "--method", "true_bptt", "--horizon", "10", "--total-steps", "164",
         "--warmup-steps", "100", "--eval-every", "32", "--model-batch", "8", "--imagined-rollouts", "4",
         "--policy-hidden", "16", "--policy-lr", "1e-3"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "JAX_PLATFORMS": "cpu"}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 2-seed run with a checkpoint after each of its 2 periods: (config, folder, metrics)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    cfg = config(seeds=2, **TINY)
    _, metrics = run_training(cfg, out=out, chunk_periods=1, checkpoint_every=1, keep=3, verbose=False)
    return cfg, out, metrics


def _copy(finished, tmp_path) -> Path:
    """A copy of the finished run folder to damage."""
    out = tmp_path / "run"
    shutil.copytree(finished[1], out)
    return out


def _digests(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _flip(path: Path, n: int = 64) -> None:
    """Flip (xor 0xff) n bytes in the middle of a file."""
    data = bytearray(path.read_bytes())
    start = max(0, len(data) // 2 - n // 2)
    for i in range(start, min(len(data), start + n)):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _largest_data_file(folder: Path) -> Path:
    files = [p for p in folder.rglob("*") if p.is_file() and p.parent.name == "d"]
    return max(files, key=lambda p: p.stat().st_size)


def _abstract(cfg):
    from awm_jax.core.methods import make_train

    trainer = make_train(cfg)
    state = jax.eval_shape(jax.vmap(trainer.init), jax.random.split(jax.random.PRNGKey(cfg.seed), cfg.seeds))
    shapes = jax.eval_shape(jax.vmap(lambda s: trainer.run_chunk(s, 1)), state)[1]
    return state, {k: np.zeros((cfg.seeds, cfg.periods)) for k in shapes}


# -- 1. a finished run is never replaced without --overwrite, which moves it aside ----------------
def test_finished_run_is_refused_and_overwrite_moves_it_aside(finished, tmp_path, capsys):
    cfg, _, metrics = finished
    out = _copy(finished, tmp_path)
    before = _digests(out)
    with pytest.raises(RunFolderError, match="already holds a finished run.*--overwrite"):
        run_training(cfg, out=out, verbose=False)
    with pytest.raises(SystemExit, match="already holds a finished run"):
        main(["train", *FLAGS, "--seeds", "3", "--out", str(out)])
    assert _digests(out) == {**before, ".lock": (out / ".lock").read_bytes()}  # nothing rewritten

    # --resume on a finished run trains nothing and returns what it saved
    state, again = run_training(cfg, out=out, resume=True, chunk_periods=1, checkpoint_every=1, keep=3)
    assert "nothing to train" in capsys.readouterr().out
    for k in metrics:
        np.testing.assert_array_equal(again[k], metrics[k], err_msg=k)
    assert _digests(out) == {**before, ".lock": (out / ".lock").read_bytes()}

    new_cfg = config(seeds=3, **TINY)
    run_training(new_cfg, out=out, overwrite=True, verbose=False)
    old = [p for p in tmp_path.iterdir() if p.name.startswith("run.old-")]
    assert len(old) == 1
    assert {k: v for k, v in _digests(old[0]).items() if k != ".lock"} == {
        k: v for k, v in before.items() if k != ".lock"}  # moved aside intact
    assert load_run(old[0], state=False).config == cfg.resolved()
    assert load_run(out, state=False).config == new_cfg.resolved() and not (out / "checkpoints").exists()
    with pytest.raises(ValueError, match="pass one of them"):
        run_training(cfg, out=out, resume=True, overwrite=True, verbose=False)


# -- 2. a rerun killed early leaves nothing that loads; the old run is kept -----------------------
def test_overwrite_killed_while_compiling_leaves_no_loadable_mix(finished, tmp_path):
    cfg, _, metrics = finished
    out = _copy(finished, tmp_path)
    cmd = [sys.executable, "-m", "awm_jax.cli", "train", *FLAGS, "--seeds", "3", "--out", str(out), "--overwrite"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=ENV, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:  # kill once the new config.json is in place
        if (out / "config.json").exists() and json.loads((out / "config.json").read_text() or "{}").get("seeds") == 3:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be killed:\n" + proc.stdout.read()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / COMPLETE).exists()
    with pytest.raises(RunFolderError, match="no COMPLETE marker"):  # config says 3 seeds: not loadable
        load_run(out)
    (old,) = [p for p in tmp_path.iterdir() if p.name.startswith("run.old-")]
    run = load_run(old)
    assert run.config == cfg.resolved() and run.seeds == 2  # saved with the method defaults written out
    np.testing.assert_array_equal(run.metrics["eval/return"], metrics["eval/return"])
    # a fresh start in the half-written folder is refused; --resume starts it again and finishes it
    with pytest.raises(RunFolderError, match="unfinished run.*--resume"):
        run_training(config(seeds=3, **TINY), out=out, verbose=False)
    run_training(config(seeds=3, **TINY), out=out, resume=True, verbose=False)
    assert load_run(out).seeds == 3


# -- 3 and 6. an empty, partial or corrupted newest checkpoint is skipped -------------------------
def test_empty_partial_and_flipped_checkpoints_are_skipped(finished, tmp_path, capsys):
    cfg, _, metrics = finished
    out = _copy(finished, tmp_path)
    ck = out / "checkpoints"
    assert sorted(int(p.name) for p in ck.iterdir()) == [1, 2]
    shutil.copytree(ck / "2", ck / "4")
    (ck / "4" / CHECKSUMS).unlink()  # a step orbax committed but whose checksums were never written
    (ck / "3").mkdir()  # an empty step
    shutil.copytree(ck / "2", ck / "5")
    _largest_data_file(ck / "5").write_bytes(b"")  # a truncated step
    _flip(_largest_data_file(ck / "2"))  # 64 flipped bytes in the newest real step
    with pytest.raises(DamagedError, match="does not match its checksum"):
        verify_checksums(ck / "2")
    state, m = _abstract(cfg)
    checkpointer = Checkpointer(ck)
    done, restored, _ = checkpointer.restore_latest(state, m)
    checkpointer.close()
    assert done == 1  # steps 5, 4, 3 and 2 skipped: 1 is the newest intact one
    log = capsys.readouterr().out
    for step, why in ((5, "does not match its checksum"), (4, "its save did not finish"),
                      (3, "its save did not finish"), (2, "does not match its checksum")):
        assert f"checkpoints/{step} is incomplete or damaged" in log and why in log
    # as if killed before the run finished: --resume continues from step 1 and ends bit-identical
    (out / COMPLETE).unlink()
    _, resumed = run_training(cfg, out=out, chunk_periods=1, checkpoint_every=1, keep=3, resume=True, verbose=False)
    for k in metrics:
        np.testing.assert_array_equal(resumed[k], metrics[k], err_msg=k)
    assert sorted(int(p.name) for p in ck.iterdir()) == [1, 2]  # the damaged steps were replaced
    verify_checksums(ck / "2")
    # with no intact step at all, the error lists each step and does not ask to delete anything
    for step in (1, 2):
        _flip(_largest_data_file(ck / str(step)))
    (out / COMPLETE).unlink()
    with pytest.raises(RunFolderError, match="no intact checkpoint.*step 2: DamagedError.*step 1: DamagedError"):
        run_training(cfg, out=out, chunk_periods=1, checkpoint_every=1, keep=3, resume=True, verbose=False)


# -- 4. disk full, permissions, --out a file: one line, exit code 1, nothing that looks complete ---
def test_disk_full_while_saving_the_state_is_one_line_and_keeps_the_metrics(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"

    def full(self, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ocp.StandardCheckpointer, "save", full)
    with pytest.raises(SystemExit) as exit_:
        main(["train", *FLAGS, "--seeds", "2", "--out", str(out)])
    assert exit_.value.code == f"awm-jax: error: {out.absolute()}/final_state: No space left on device"
    assert "Traceback" not in capsys.readouterr().err
    assert (out / "metrics.json").exists() and (out / "summary.txt").exists()  # the small files came first
    assert not (out / COMPLETE).exists()
    assert not [p.name for p in out.iterdir() if p.name.startswith("final_state")]  # no partial state
    with pytest.raises(RunFolderError, match="no COMPLETE marker"):
        load_run(out)
    claim(out)[0].release()  # the lock went with the failed run


def test_saving_turns_storage_errors_into_one_os_error(tmp_path):
    """What orbax raises when tensorstore fills the disk (a ValueError quoting the strerror) becomes
    one OSError naming the folder being saved; orbax's temporary folder and the partial one go."""
    path = tmp_path / "final_state"
    with pytest.raises(OSError) as e:
        with saving(path):
            (tmp_path / "final_state.orbax-checkpoint-tmp-17").mkdir()
            path.mkdir()
            raise ValueError('RESOURCE_EXHAUSTED: Error writing "a/0" in OCDBT database at local file "...": '
                             "Failed to write 670744 bytes to file 4: No space left on device")
    assert (e.value.errno, e.value.filename, e.value.strerror) == (errno.ENOSPC, str(path), "No space left on device")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(KeyError):  # anything else passes through unchanged
        with saving(path):
            raise KeyError("x")


def test_disk_full_on_a_small_file_and_bad_out_folders(tmp_path, monkeypatch):
    out = tmp_path / "run"
    real = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("awm_jax.runner.run_folder.os.fsync", full)
    with pytest.raises(SystemExit) as exit_:
        main(["train", *FLAGS, "--out", str(out)])
    assert exit_.value.code == f"awm-jax: error: {out}/config.json: No space left on device"
    assert sorted(p.name for p in out.iterdir()) == [".lock"]  # no temporary file left
    monkeypatch.setattr("awm_jax.runner.run_folder.os.fsync", real)

    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    with pytest.raises(SystemExit) as exit_:
        main(["train", *FLAGS, "--out", str(a_file)])
    assert exit_.value.code == f"awm-jax: error: {a_file}: exists and is not a folder"
    with pytest.raises(SystemExit) as exit_:
        main(["sweep", *FLAGS[:2], *FLAGS[4:], "--methods", "true_bptt", "--out", str(a_file / "sub")])
    assert exit_.value.code.startswith(f"awm-jax: error: {a_file / 'sub'}: Not a directory")
    assert a_file.read_text() == "x"


def _mount_tmpfs(path: Path, options: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    mount = ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)]
    return subprocess.run(mount, capture_output=True).returncode == 0


@pytest.mark.slow  # a real full disk (root only: a 96 KiB tmpfs) through the command line
def test_real_full_disk_and_read_only_folder(tmp_path):
    full, ro = tmp_path / "full", tmp_path / "ro"
    if not _mount_tmpfs(full, "size=96k"):
        pytest.skip("needs root to mount a tmpfs")
    try:
        _mount_tmpfs(ro, "ro,size=16k")
        done = subprocess.run([sys.executable, "-m", "awm_jax.cli", "train", *FLAGS, "--seeds", "2", "--out",
                               str(full / "run")], capture_output=True, text=True, env=ENV, timeout=600)
        assert done.returncode == 1
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith(f"awm-jax: error: {full / 'run'}") and last.endswith("No space left on device"), last
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert not (full / "run" / COMPLETE).exists()
        assert not [p for p in (full / "run").iterdir() if "orbax-checkpoint-tmp" in p.name]
        done = subprocess.run([sys.executable, "-m", "awm_jax.cli", "train", *FLAGS, "--out", str(ro / "run")],
                              capture_output=True, text=True, env=ENV, timeout=600)
        assert done.returncode == 1
        assert done.stderr.strip() == f"awm-jax: error: {ro / 'run'}: Read-only file system", done.stderr
    finally:
        for m in (full, ro):
            subprocess.run(["umount", str(m)], capture_output=True)


# -- one writer per folder --------------------------------------------------------------------------
def test_a_second_writer_is_refused_naming_the_first(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; "
                               "from awm_jax.runner.run_folder import FolderLock; "
                               f"lock = FolderLock({str(out)!r}); print('locked', flush=True); time.sleep(600)"],
                              stdout=subprocess.PIPE, text=True, env=ENV, cwd=tmp_path)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(FolderBusy, match=f"in use by another process \\(pid {holder.pid} on "):
            run_training(config(**TINY), out=out, verbose=False)
        with pytest.raises(SystemExit, match=f"pid {holder.pid}"):
            main(["train", *FLAGS, "--out", str(out)])
        with pytest.raises(FolderBusy):
            run_sweep(SweepSpec(config(**TINY), ("cancer_treatment",), ("true_bptt",)), out, verbose=False)
    finally:
        holder.send_signal(signal.SIGKILL)  # the kernel drops a killed process's lock
        holder.wait()
    lock, status = claim(out)
    assert status == "new"
    lock.release()


# -- 5. non-finite options are refused; skipped updates are reported ------------------------------
def test_non_finite_options_and_grids_are_refused_before_compiling(tmp_path):
    for field, value in (("policy_lr", float("inf")), ("entropy", float("nan")), ("gamma", float("nan")),
                         ("state_noise", float("inf")), ("dt_target_entropy", float("-inf"))):
        with pytest.raises(ValueError, match=f"{field} must be a finite number"):
            Config(**{**TINY, field: value}).validate()  # non-finite is refused first, read or not
    with pytest.raises(SystemExit, match="policy_lr must be a finite number, got inf"):
        main(["train", *FLAGS, "--policy-lr", "inf", "--out", str(tmp_path / "a")])
    with pytest.raises(SystemExit, match="entropy must be a finite number, got nan"):
        main(["train", *FLAGS, "--entropy", "nan", "--out", str(tmp_path / "a")])
    with pytest.raises(SystemExit, match="the entropy grid holds nan"):
        main(["sweep", *FLAGS[:2], *FLAGS[4:], "--methods", "true_bptt", "--entropy-grid", "0.1,nan",
              "--out", str(tmp_path / "a")])
    assert not (tmp_path / "a").exists()


def test_skipped_updates_reach_every_summary(tmp_path, capsys):
    cfg = config(seeds=2, **TINY)
    keys = jax.random.split(jax.random.PRNGKey(0), 2)  # seed 0's policy loss is NaN: every update skipped
    _, metrics = run_training(cfg, out=tmp_path / "run", keys=keys, hparams={"entropy": np.array([np.nan, 0.1])})
    blocks = cfg.blocks
    text = (tmp_path / "run" / "summary.txt").read_text()
    assert f"skipped non-finite updates per seed: {blocks} 0" in text
    assert f"WARNING: {blocks} non-finite updates were skipped (seeds 0)" in text
    assert "WARNING" in capsys.readouterr().out

    spec = SweepSpec(cfg, ("cancer_treatment",), ("true_bptt",), (("entropy", (0.1, 0.2)),))
    for combo, skipped in zip(spec.combos(), (np.array([0, 0]), np.array([3, 0]))):
        m = {k: np.array(v) for k, v in metrics.items()}
        m["skipped_updates"][:, -1] = skipped
        write_run(spec.folder(tmp_path / "s", cfg, combo), cfg, m)
    rows = write_aggregate(spec, tmp_path / "s")
    assert [r["skipped_updates"] for r in rows] == ["0 0", "3 0"]
    csv = (tmp_path / "s" / "summary.csv").read_text().splitlines()
    assert csv[0].endswith(",skipped_updates") and csv[1].endswith(",0 0") and csv[2].endswith(",3 0")
    md = (tmp_path / "s" / "summary.md").read_text()
    assert "| skipped_updates |" in md and "| 3 0 |" in md
    assert "WARNING: cancer_treatment-true_bptt-entropy=0.2: 3 non-finite updates were skipped (seeds 0)" in md
    assert md.count("WARNING") == 1


# -- 7. load_run names the damaged file and says what to do ---------------------------------------
def test_load_run_errors_name_the_file(finished, tmp_path):
    cfg, _, _ = finished
    out = _copy(finished, tmp_path)
    load_run(out)
    for name in ("metrics.json", "config.json"):
        good = (out / name).read_bytes()
        (out / name).write_bytes(good[:len(good) // 2])
        with pytest.raises(DamagedError, match=f"{out / name} is not the file the run wrote.*--overwrite"):
            load_run(out)
        with pytest.raises(DamagedError, match=f"{out / name}: not valid JSON.*truncated or damaged"):
            load_run(out, require_complete=False)
        (out / name).write_bytes(good)
    data = _largest_data_file(out / "final_state")
    good = data.read_bytes()
    data.write_bytes(good[:len(good) // 2])  # a truncated state
    with pytest.raises(DamagedError, match=f"{data} does not match its checksum"):
        load_run(out)
    assert load_run(out, state=False).seeds == 2  # the config and metrics are still readable
    data.write_bytes(good)
    (out / "final_state" / CHECKSUMS).unlink()
    with pytest.raises(DamagedError, match="has no awm_sha256.json: its save did not finish"):
        load_run(out)
    (out / COMPLETE).unlink()
    with pytest.raises(RunFolderError, match="no COMPLETE marker.*interrupted"):
        load_run(out, state=False)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_run(tmp_path / "nowhere")


# -- 8. output files honour the umask ---------------------------------------------------------------
def test_outputs_honour_the_umask(finished, tmp_path):
    _, out, _ = finished
    mask = os.umask(0o022)
    os.umask(mask)
    for name in ("config.json", "metrics.json", "metrics.csv", "summary.txt", "returns.png", COMPLETE, ".lock",
                 f"final_state/{CHECKSUMS}", f"checkpoints/2/{CHECKSUMS}"):
        assert (out / name).stat().st_mode & 0o777 == 0o666 & ~mask, name
    for mask in (0o077, 0o002):
        old = os.umask(mask)
        try:
            atomic_write(tmp_path / f"f{mask:o}", "x")
        finally:
            os.umask(old)
        assert (tmp_path / f"f{mask:o}").stat().st_mode & 0o777 == 0o666 & ~mask
