"""`awm-jax sweep`: validation before compilation, and a sharded sweep killed, resumed, and compared."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from configs import config

from awm_jax.runner.run import run_training
from awm_jax.runner.sweep import SweepSpec, parse_list, run_sweep

SMALL = dict(total_steps=328, warmup_steps=200, eval_every=64, model_batch=16, imagined_rollouts=4, width=16,
             heads=2, layers=1)
FLAGS = ["--total-steps", "328", "--warmup-steps", "200", "--eval-every", "64", "--model-batch", "16",
         "--imagined-rollouts", "4", "--width", "16", "--heads", "2", "--layers", "1"]


def test_bad_sweeps_are_rejected_before_compiling(tmp_path):
    base = config(**SMALL)
    with pytest.raises(ValueError, match="valid tasks"):
        run_sweep(SweepSpec(base, ("cancer",), ("true_bptt",)), tmp_path / "a")
    with pytest.raises(ValueError, match="valid methods"):
        run_sweep(SweepSpec(base, ("cancer_treatment",), ("sac9",)), tmp_path / "a")
    with pytest.raises(ValueError, match="seeds must be a positive integer"):
        run_sweep(SweepSpec(config(seeds=0, **SMALL), ("cancer_treatment",), ("true_bptt",)), tmp_path / "a")
    with pytest.raises(ValueError, match="cannot be swept"):
        run_sweep(SweepSpec(base, ("cancer_treatment",), ("true_bptt",), (("width", (8.0, 16.0)),)), tmp_path / "a")
    with pytest.raises(ValueError, match="listed twice"):
        run_sweep(SweepSpec(base, ("cancer_treatment", "cancer_treatment"), ("true_bptt",)), tmp_path / "a")
    with pytest.raises(ValueError, match="cannot read the list"):
        parse_list("1e-4,abc", float)
    assert not (tmp_path / "a").exists()  # nothing written, nothing compiled
    spec = SweepSpec(config(seeds=1, **SMALL), ("cancer_treatment",), ("true_bptt",))
    run_sweep(spec, tmp_path / "b", verbose=False)
    with pytest.raises(ValueError, match="different sweep.*seeds: saved 1, now 2"):
        run_sweep(SweepSpec(config(seeds=2, **SMALL), ("cancer_treatment",), ("true_bptt",)), tmp_path / "b")
    with pytest.raises(ValueError, match="methods: saved"):
        run_sweep(SweepSpec(config(seeds=1, **SMALL), ("cancer_treatment",), ("markov_mlp",)), tmp_path / "b")
    with pytest.raises(ValueError, match="--resume"):
        run_sweep(spec, tmp_path / "b", verbose=False)
    # online_dt's and rejax's fields are not read by true_bptt: resuming after changing them is fine
    other = SweepSpec(config(seeds=1, dt_lr=0.5, rl_lr=0.5, **SMALL), ("cancer_treatment",), ("true_bptt",))
    rows = run_sweep(other, tmp_path / "b", resume=True, verbose=False)
    assert len(rows) == 1


def test_a_sweep_records_each_methods_policy_rate(monkeypatch):
    """sweep.json lists the policy learning rate each method ran at; resuming after a method's default
    changed is refused, and an older sweep.json without the list means the defaults then."""
    import json as _json

    import awm_jax.core.config as config_mod
    from awm_jax.core import legacy
    from awm_jax.runner.sweep import saved_method_values as saved_rates

    spec = SweepSpec(config(**SMALL), ("cancer_treatment",), ("true_bptt", "awm_lstm"))
    saved = _json.loads(_json.dumps(spec.to_dict()))
    rates = {"true_bptt": config_mod.TRUE_BPTT_POLICY_LR["normalized"], "awm_lstm": config_mod.POLICY_LR["normalized"]}
    assert saved["policy_lr"] == saved_rates(saved) == rates and spec.differences(saved) == []
    older = {k: v for k, v in saved.items() if k != "policy_lr"}
    assert saved_rates(older) == rates and spec.differences(older) == []
    monkeypatch.setitem(legacy.LEGACY_POLICY_LR, "awm_lstm", {"normalized": 0.123, "paper": 1e-4})
    assert saved_rates(older)["awm_lstm"] == 0.123
    assert spec.differences(older) == [f"policy_lr of awm_lstm: saved 0.123, now {rates['awm_lstm']!r}"]
    # the model scaling in force likewise: a file from before the entry held the base's (then always a name)
    zscore = {"true_bptt": "zscore", "awm_lstm": "zscore"}
    assert saved["model_scaling"] == saved_rates(saved, "model_scaling") == zscore
    tf = SweepSpec(spec.base, spec.tasks, ("awm_transformer",))
    before = {**_json.loads(_json.dumps(tf.to_dict())), "base": {**tf.base.to_dict(), "model_scaling": "zscore"}}
    del before["model_scaling"]
    assert saved_rates(before, "model_scaling") == {"awm_transformer": "zscore"}
    assert tf.differences(before) == ["model_scaling of awm_transformer: saved 'zscore', now 'symlog'"]
    # a sweep over the rate itself does not depend on the default
    grid = SweepSpec(spec.base, spec.tasks, spec.methods, (("policy_lr", (1e-3, 1e-2)),))
    assert grid.differences({**_json.loads(_json.dumps(grid.to_dict())), "policy_lr": {}}) == []


@pytest.mark.slow  # ~2-3 min: two subprocess sweeps of 4 groups on 4 devices, then 4 reference runs
def test_sharded_sweep_killed_and_resumed_equals_unsharded(tmp_path):
    """4 forced host devices, 8 seeds; SIGKILL once the first checkpoint lands, then --resume."""
    out = tmp_path / "s"
    cmd = [sys.executable, "-m", "awm_jax.cli", "sweep", "--tasks", "cancer_treatment,timber_harvest", "--methods",
           "awm_transformer,true_bptt", "--seeds", "8", *FLAGS, "--out", str(out), "--chunk-periods", "1",
           "--checkpoint-every", "1"]
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4"  # and the tests' flags
    env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    first = out / "groups" / "cancer_treatment-awm_transformer" / "checkpoints"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if first.exists() and any((p / "awm_sha256.json").exists() for p in first.iterdir()):
            break
        time.sleep(0.02)
    assert proc.poll() is None, proc.stdout.read()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "summary.csv").exists()
    done = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "resumed" in done.stdout and "4 devices" in done.stdout
    rows = (out / "summary.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 4
    for task in ("cancer_treatment", "timber_harvest"):
        for method in ("awm_transformer", "true_bptt"):
            swept = json.loads((out / f"{task}-{method}" / "metrics.json").read_text())["metrics"]
            _, single = run_training(config(task=task, method=method, seeds=8, **SMALL), shard=False, verbose=False)
            np.testing.assert_allclose(swept["eval/return"], single["eval/return"], rtol=1e-5)
            assert np.asarray(swept["eval/return"]).shape == (8, 2)
