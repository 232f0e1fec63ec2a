"""The benchmark's scoring (awm_jax/analysis/benchmark.py) against independent computations, and the three
benchmark experiments' --quick runs."""

from __future__ import annotations

import csv
import math
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from scipy import stats

import awm_envs
from awm_jax.analysis.benchmark import aggregate, normalized_score
from awm_jax.analysis.references import best_constant_return, plan_returns, trajectory_optimum

ROOT = Path(__file__).resolve().parents[1]


def test_normalized_score_anchors():
    assert normalized_score(-33.0, -33.0, -21.0) == 0.0
    assert normalized_score(-21.0, -33.0, -21.0) == 1.0
    np.testing.assert_allclose(normalized_score([-27.0, -15.0], -33.0, -21.0), [0.5, 1.5])


def test_aggregate_matches_scipy_trimmed_mean():
    rng = np.random.default_rng(0)
    scores = {"a": rng.normal(size=(5, 8)), "b": rng.normal(1.0, 0.5, size=(5, 8))}
    agg = aggregate(scores, reps=500)
    for k, x in scores.items():
        # rliable's IQM: the 25%-trimmed mean of all runs x tasks
        assert agg[k]["iqm"] == pytest.approx(stats.trim_mean(x.ravel(), 0.25), rel=1e-9)
        assert agg[k]["mean"] == pytest.approx(x.mean(), rel=1e-9)
        assert agg[k]["iqm_lo"] <= agg[k]["iqm"] <= agg[k]["iqm_hi"]
    assert aggregate(scores, reps=500) == agg  # the bootstrap is seeded


def test_trajectory_optimum_beats_constants_and_is_consistent():
    task = awm_envs.make("cancer_treatment", horizon=20)
    key = jax.random.PRNGKey(0)
    ret, actions = trajectory_optimum(task, key, restarts=4, steps=100)
    assert actions.shape == (20, 1) and np.all(np.abs(actions) <= 1)
    # the plan's return is what the task gives for it ...
    k_env = jax.random.split(key)[0]
    assert ret == pytest.approx(float(task.episode_return(k_env, actions)), rel=1e-4, abs=1e-4)
    # ... and no constant action does better (a constant is one of the plans it could have found)
    const, _ = best_constant_return(task, key, points=101)
    assert ret >= const - 1e-3


def test_curriculum_plans_score_the_whole_horizon_and_starts_are_independent():
    task = awm_envs.make("cancer_treatment", horizon=20)
    key = jax.random.PRNGKey(3)
    # the last stage scores all 20 steps: the return is the task's for the plan, not a 10-step one
    ret, actions = trajectory_optimum(task, key, restarts=4, steps=40, stages=(10, 20))
    k_env = jax.random.split(key)[0]
    assert ret == pytest.approx(float(task.episode_return(k_env, actions)), rel=1e-4, abs=1e-4)
    # plan_returns optimises each start state as trajectory_optimum does from that start's key
    per_start = plan_returns(task, key, 2, restarts=4, steps=40, stages=2)  # 2 equal stages: (10, 20)
    ret1, _ = trajectory_optimum(task, jax.random.split(key, 2)[1], restarts=4, steps=40, stages=(10, 20))
    assert per_start[1] == pytest.approx(ret1, rel=1e-4, abs=1e-4)
    # one start is trajectory_optimum's own start state (the Myriad references' keys, as they always were)
    assert plan_returns(task, key, 1, restarts=4, steps=40, stages=2)[0] == pytest.approx(ret, rel=1e-4, abs=1e-4)
    for bad in [(20, 10), (10,), (0, 20), 0]:
        with pytest.raises(ValueError, match="stages must be increasing"):
            trajectory_optimum(task, key, stages=bad)


SCRIPTS = ["myriad_benchmark.py", "horizon_scaling.py", "robustness.py"]


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_quick_runs_write_finite_results(tmp_path, script):
    out = tmp_path / "out"
    subprocess.run([sys.executable, str(ROOT / "experiments" / script), "--quick", "--out", str(out)], check=True,
                   cwd=ROOT)
    pngs = list(out.glob("*.png"))  # the data folder defaults to --out
    assert pngs and all(p.stat().st_size > 1000 for p in pngs)
    assert "## Missing groups\n\nnone" in (out / "tables.md").read_text()
    assert all(math.isfinite(float(r["score"])) for r in csv.DictReader(open(out / "scores.csv")))
    rows = list(csv.DictReader(open(out / "aggregate.csv")))
    assert rows
    for r in rows:
        for k in ("iqm", "iqm_lo", "iqm_hi", "mean"):
            assert math.isfinite(float(r[k]))
