"""Checkpoint and exact resume: a run killed with SIGKILL and resumed equals an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from configs import config

from awm_jax import Config
from awm_jax.runner.checkpoint import Checkpointer
from awm_jax.runner.run import run_training
from awm_jax.runner.run_folder import CHECKSUMS

SMALL = dict(task="cancer_treatment", warmup_steps=200, eval_every=64, model_batch=16, imagined_rollouts=4)
FLAGS = ["--task", "cancer_treatment", "--warmup-steps", "200", "--eval-every", "64", "--model-batch", "16",
         "--imagined-rollouts", "4"]


def _final_state(out, config):
    """The final checkpoint of a run folder, restored into the run's state structure."""
    from awm_jax.core.methods import make_train

    trainer = make_train(config)
    keys = jax.random.split(jax.random.PRNGKey(config.seed), config.seeds)
    state = jax.eval_shape(jax.vmap(trainer.init), keys)
    metrics = {k: np.zeros((config.seeds, config.periods)) for k in json.loads(
        (Path(out) / "metrics.json").read_text())["metrics"]}
    ck = Checkpointer(Path(out) / "checkpoints")
    done, st, m = ck.restore_latest(state, metrics)
    ck.close()
    return done, st


def test_sigkill_then_resume_equals_uninterrupted(tmp_path):
    cfg = config(method="markov_mlp", seeds=2, total_steps=200 + 64 * 6, **SMALL)
    ref_out = tmp_path / "ref"
    _, ref_metrics = run_training(cfg, out=ref_out, chunk_periods=1, checkpoint_every=1, verbose=False)

    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "awm_jax.cli", "train", *FLAGS, "--method", "markov_mlp", "--seeds", "2",
           "--total-steps", str(cfg.total_steps), "--out", str(out), "--chunk-periods", "1", "--checkpoint-every", "1"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    ck_dir = out / "checkpoints"
    deadline = time.time() + 300
    while time.time() < deadline:  # kill once two checkpoints are written (with their checksums), mid-run
        steps = [p for p in ck_dir.glob("*") if (p / CHECKSUMS).exists()] if ck_dir.exists() else []
        if len(steps) >= 2 or proc.poll() is not None:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed:\n" + proc.stdout.read()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "metrics.json").exists() and not (out / "COMPLETE").exists()  # it really died mid-run

    with pytest.raises(ValueError, match="--resume"):  # a fresh start would discard the checkpoints
        run_training(cfg, out=out, chunk_periods=1, checkpoint_every=1, verbose=False)
    with pytest.raises(ValueError, match="policy_lr: saved 0.001, now 0.003"):
        run_training(config(**{**cfg.to_dict(), "policy_lr": 3e-3}), out=out, resume=True, verbose=False)

    _, metrics = run_training(cfg, out=out, chunk_periods=1, checkpoint_every=1, resume=True, verbose=False)
    for k in ref_metrics:
        np.testing.assert_array_equal(metrics[k], ref_metrics[k], err_msg=k)
    saved = json.loads((out / "metrics.json").read_text())["metrics"]
    reference = json.loads((ref_out / "metrics.json").read_text())["metrics"]
    np.testing.assert_array_equal(saved["eval/return"], reference["eval/return"])
    done_a, state_a = _final_state(out, cfg)
    done_b, state_b = _final_state(ref_out, cfg)
    assert done_a == done_b == cfg.periods
    for a, b in zip(jax.tree.leaves(state_a), jax.tree.leaves(state_b)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_corrupted_checkpoint_falls_back_to_previous(tmp_path):
    cfg = config(method="markov_mlp", seeds=2, total_steps=200 + 64 * 3, **SMALL)
    _, metrics = run_training(cfg, out=tmp_path, chunk_periods=1, checkpoint_every=1, keep=3, verbose=False)
    ck = tmp_path / "checkpoints"
    assert sorted(int(p.name) for p in ck.iterdir() if p.name.isdigit()) == [1, 2, 3]
    for f in (ck / "3").rglob("*"):  # truncate every data file of the newest checkpoint
        if f.is_file() and f.name not in ("commit_success.txt", CHECKSUMS):
            f.write_bytes(b"")
    done, _ = _final_state(tmp_path, cfg)
    assert done == 2
    # as if killed before the run finished: resuming from there recomputes the last period exactly
    (tmp_path / "COMPLETE").unlink()
    timed = lambda: json.loads((tmp_path / "metrics.json").read_text())["timed_periods"]
    assert timed() == cfg.periods
    _, again = run_training(cfg, out=tmp_path, chunk_periods=1, checkpoint_every=1, keep=3, resume=True,
                            verbose=False)
    for k in metrics:
        np.testing.assert_array_equal(again[k], metrics[k], err_msg=k)
    assert timed() == cfg.periods - 2  # its run seconds cover the periods it ran, not the restored ones
    machine = json.loads((tmp_path / "metrics.json").read_text())["machine"]  # where it ran
    assert (machine["platform"], machine["devices"], machine["cpu_count"]) == (jax.default_backend(), 1, os.cpu_count())


def test_config_diff_names_what_differs_and_skips_what_is_not_read():
    from awm_jax.runner.checkpoint import config_diff

    cfg = config(method="true_bptt")
    saved = cfg.to_dict()
    assert config_diff(saved, cfg.to_dict()) == []
    assert config_diff(saved, config(method="true_bptt", policy_lr=1e-3).to_dict()) == [
        "policy_lr: saved 0.003, now 0.001"]  # the rates in force: None is the method's default
    # a field the method never reads
    changed = {**cfg.to_dict(), "dt_lr": 0.5}
    assert config_diff(saved, changed, ignore=cfg.ignored_fields()) == []
    assert config_diff(saved, changed) == ["dt_lr: saved 0.001, now 0.5"]
    assert "rl_lr" in config(method="online_dt").ignored_fields()
    assert "dt_lr" in config(method="sac").ignored_fields() and "rl_lr" not in config(method="sac").ignored_fields()
    # a field added to Config after the run was saved: fine while it holds its default
    older = {k: v for k, v in saved.items() if k != "gradient_cosine"}
    assert config_diff(older, cfg.to_dict()) == []
    assert config_diff(older, config(method="true_bptt", gradient_cosine=False).to_dict()) == [
        "gradient_cosine: saved (absent), now False"]
    assert config_diff({**saved, "retired": 1}, cfg.to_dict()) == ["retired: saved 1, now (absent)"]
    # a field whose default changed when it was added: an older run meant the old behaviour
    pre = {k: v for k, v in config().to_dict().items() if k != "transformer_init"}
    assert Config.from_dict(pre).transformer_init == "lecun" and config().transformer_init == "gpt2"
    # (its policy_lr None meant awm_transformer's rate then, 1e-3: legacy.LEGACY_POLICY_LR)
    assert config_diff(pre, config(transformer_init="lecun", policy_lr=1e-3).to_dict()) == []
    assert config_diff(pre, config(policy_lr=1e-3).to_dict()) == ["transformer_init: saved 'lecun', now 'gpt2'"]
    lstm = config(method="awm_lstm")  # which never reads it: an older awm_lstm run still resumes
    assert "transformer_init" in lstm.ignored_fields() and "transformer_init" not in config().ignored_fields()
    older_lstm = {k: v for k, v in lstm.to_dict().items() if k != "transformer_init"}
    assert config_diff(older_lstm, lstm.to_dict(), ignore=lstm.ignored_fields()) == []


def test_a_run_saves_its_policy_rate_and_older_runs_mean_the_default_then(monkeypatch):
    """A run's config.json holds the policy learning rate in force, so a later change of a method's default
    cannot pass it off as the new one; a config saved with None (before runs wrote the rate out) means the
    default when it was saved (`LEGACY_POLICY_LR`), in resume checks, committed-group checks and loading."""
    import awm_jax.core.config as config_mod
    from awm_jax.core import legacy
    from awm_jax.runner.checkpoint import config_diff

    monkeypatch.setitem(legacy.LEGACY_POLICY_LR, "awm_lstm", {"normalized": 0.123, "paper": 1e-4})
    now = config(method="awm_lstm")
    assert now.resolved().policy_lr == now.policy_lr_value == config_mod.POLICY_LR["normalized"] != 0.123
    assert config_diff(now.resolved().to_dict(), now.to_dict()) == []  # saved from now on: the rate written out
    old = {**now.to_dict(), "policy_lr": None}  # saved before, when the default was 0.123
    assert config_diff(old, now.to_dict()) == [f"policy_lr: saved 0.123, now {now.policy_lr_value!r}"]
    assert config_diff(old, config(method="awm_lstm", policy_lr=0.123).to_dict()) == []
    assert Config.from_dict(old).policy_lr == 0.123
    # methods whose default never changed: None then and None now are the same rate
    bptt = config(method="true_bptt")
    assert config_diff({**bptt.to_dict(), "policy_lr": None}, bptt.to_dict()) == []
    # the model scaling likewise: an awm_transformer run saved with z-scores (the default before) is not
    # today's default; a config from before the field existed meant z-scores (LEGACY_DEFAULTS)
    tf = config()
    saved_tf = {**tf.resolved().to_dict(), "model_scaling": "zscore"}
    assert config_diff(saved_tf, tf.to_dict()) == ["model_scaling: saved 'zscore', now 'symlog'"]
    assert config_diff(saved_tf, config(model_scaling="zscore").to_dict()) == []
    assert Config.from_dict({k: v for k, v in saved_tf.items() if k != "model_scaling"}).model_scaling == "zscore"
    # a sweep's base config keeps None (each method's own rate); sweep.json lists the rates separately
    assert Config.from_dict(old, run=False).policy_lr is None


def test_partial_restore_skips_fields_an_older_state_had(tmp_path):
    """A state saved with a field today's state lacks (an older awm_jax's) restores with partial=True,
    every value equal, and is refused without it."""
    from awm_jax.runner.checkpoint import restore_state, save_state
    from awm_jax.runner.run_folder import RunFolderError

    old = {"params": {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}, "step": np.int32(7),
           "critic": {"v": np.ones(4, np.float32)}}
    save_state(tmp_path / "state", old)
    today = {"params": {"w": jax.ShapeDtypeStruct((2, 3), np.float32)}, "step": jax.ShapeDtypeStruct((), np.int32)}
    got = restore_state(tmp_path / "state", today, partial=True)
    assert set(got) == {"params", "step"}
    np.testing.assert_array_equal(got["params"]["w"], old["params"]["w"])
    assert int(got["step"]) == 7
    with pytest.raises(RunFolderError, match="cannot be restored"):
        restore_state(tmp_path / "state", today)
