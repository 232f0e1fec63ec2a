"""The gradient-norm, gradient-quality and landscape experiments: the library pieces against independent
computations, and each script run end to end into a temporary folder. The default run uses tiny settings
(fewer models, one task) to stay near 3 minutes on a 2-core CPU; the scripts' own --quick settings, every
model and task, are marked slow."""

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import awm_envs
from awm_jax.analysis.gradient_growth import (
    final_state_jacobian_norms,
    fit_growth,
    jacobian_summary,
    raw_rollout,
    true_rollout,
)
from awm_jax.analysis.landscapes import (
    gradient_ascent,
    landscape,
    model_return,
    slice_actions,
    true_return,
)
from awm_jax.core.models import make_world_model
from awm_jax.core.models.true_task import TrueTask
from awm_jax.core.spaces import Normalizer

ROOT = Path(__file__).resolve().parents[1]


# -- gradient_growth -------------------------------------------------------------------------------
def test_fit_growth_recovers_exact_rates():
    """Exact exponential and polynomial series give back their rate and exponent with R^2 = 1."""
    h = np.array([10, 20, 40, 80, 160, 320])
    e = fit_growth(h, 3.0 * np.exp(0.07 * h))
    assert e["better"] == "exponential"
    assert e["exp_rate"] == pytest.approx(0.07, rel=1e-9) and e["exp_r2"] == pytest.approx(1.0)
    p = fit_growth(h, 2.0 * h**2.5)
    assert p["better"] == "polynomial"
    assert p["poly_exponent"] == pytest.approx(2.5, rel=1e-9) and p["poly_r2"] == pytest.approx(1.0)
    assert fit_growth(h, 5.0 / np.sqrt(h))["better"] == "bounded"  # decaying: no growth law to pick
    d = fit_growth(h, np.where(h > 100, np.inf, np.exp(0.1 * h)))  # overflowed points are dropped, counted
    assert d["dropped"] == 2 and d["points"] == 4 and d["exp_rate"] == pytest.approx(0.1)


def test_jacobian_norms_of_a_linear_system_match_the_closed_form():
    """s_{t+1} = A s_t + B a_t: d s_H / d a_k = A^(H-1-k) B, so ||d s_H / d a_0|| = ||A^(H-1) B|| and the
    full norm is sqrt(sum_k ||A^(H-1-k) B||^2); the fitted rate tends to log(spectral radius)."""
    A = np.array([[1.05, 0.3], [0.0, 0.8]], np.float32)
    B = np.array([[0.5], [1.0]], np.float32)

    def rollout(s0, acts):
        def step(s, a):
            s = jnp.asarray(A) @ s + jnp.asarray(B) @ a
            return s, s
        return jax.lax.scan(step, s0, acts)[1]

    T, hs = 60, [1, 5, 20, 40, 60]
    acts = jax.random.uniform(jax.random.PRNGKey(0), (T, 1))
    full, first, leak = jax.jit(lambda a: final_state_jacobian_norms(rollout, jnp.ones(2), a, hs))(acts)
    powers = [np.linalg.matrix_power(A.astype(np.float64), j) @ B for j in range(T)]
    want_first = [np.linalg.norm(powers[h - 1]) for h in hs]
    want_full = [math.sqrt(sum(np.linalg.norm(powers[h - 1 - k]) ** 2 for k in range(h))) for h in hs]
    np.testing.assert_allclose(first, want_first, rtol=1e-4)
    np.testing.assert_allclose(full, want_full, rtol=1e-4)
    assert float(leak) == 0.0
    fit = fit_growth(hs[2:], np.asarray(first)[2:])
    assert fit["better"] == "exponential" and fit["exp_rate"] == pytest.approx(math.log(1.05), abs=2e-3)


def test_true_rollout_jacobian_matches_finite_differences(x64):
    """The double pendulum's d s_H / d a_0 by reverse mode equals a central difference (float64)."""
    task = awm_envs.make("double_pendulum", dtype="float64")
    roll = true_rollout(task)
    s0 = task.reset(jax.random.PRNGKey(0)).obs[:-1]
    acts = jnp.zeros((8, 1), jnp.float64).at[0, 0].set(2.7 / 180)
    _, first, _ = jax.jit(lambda a: final_state_jacobian_norms(roll, s0, a, [8]))(acts)
    eps = 1e-7
    last = jax.jit(lambda a: roll(s0, a)[-1])
    fd = (last(acts.at[0, 0].add(eps)) - last(acts.at[0, 0].add(-eps))) / (2 * eps)
    assert float(first[0]) == pytest.approx(float(np.linalg.norm(fd)), rel=1e-5)


def test_raw_rollout_of_the_transformer_awm_is_its_imagination():
    """raw_rollout's parallel pass == the cached step-by-step rollout, in raw units."""
    wm = make_world_model("awm_transformer", 3, 2, 12)
    params = wm.init(jax.random.PRNGKey(1))
    norm = Normalizer(jnp.array([1.0, -2.0, 0.5]), jnp.array([2.0, 0.5, 3.0]))
    s0 = jnp.array([0.3, -1.0, 2.0])
    acts = jax.random.uniform(jax.random.PRNGKey(2), (12, 2), minval=-1, maxval=1)
    want = jax.jit(lambda a: norm.denorm(wm.rollout(params, norm.norm(s0), a)))(acts)
    np.testing.assert_allclose(jax.jit(raw_rollout(wm, params, norm))(s0, acts), want, rtol=1e-5, atol=1e-5)


def test_jacobian_summary_of_a_known_jacobian():
    J_true = np.zeros((2, 3, 1, 3, 1))
    J_true[:, :, 0, 0, 0] = 1.0
    J = J_true.copy()
    J[:, 2, 0, 1, 0] = 2.0  # extra sensitivity to a_1 at t = 3
    s = jacobian_summary(J, J_true)
    assert s["rel_error"] == pytest.approx(2.0 / math.sqrt(3.0))
    assert s["causal_leak"] == 0.0 and s["heat"][2, 1] == pytest.approx(2.0) and s["heat"][0, 0] == 1.0
    J[:, 0, 0, 2, 0] = 0.5  # d s_1 / d a_2: non-causal
    assert jacobian_summary(J, J_true)["causal_leak"] == 0.5


# -- landscapes ------------------------------------------------------------------------------------
def test_one_bounce_true_landscape_matches_the_mirror_formula():
    """Under linear friction the ball travels y = v (1 - exp(-k T)) / k in time T; one elastic bounce at
    the wall w mirrors it to 2 w - y. The reward at step H - 1 is -(x_{H-1} - goal)^2, T = (H - 1) dt."""
    task = awm_envs.make("one_bounce")
    p = {k: float(v) for k, v in task.params.items()}
    grid = jnp.linspace(-1.0, 1.0, 41)
    v = p["v_scale"] * (np.asarray(grid, np.float64) - 2.0)
    k, T = p["friction"], (task.horizon - 1) * task.dt
    y = v * (1 - np.exp(-k * T)) / k
    x = np.where(y < p["wall"], 2 * p["wall"] - y, y)
    np.testing.assert_allclose(landscape(true_return(task), grid), -((x - p["goal"]) ** 2), rtol=1e-4, atol=1e-5)


def test_model_return_through_the_true_task_equals_the_true_return():
    """Scoring the true reward on a 'model' that is the simulator itself reproduces the task's return."""
    for name in ("one_bounce", "double_pendulum"):
        task = awm_envs.make(name)
        true = TrueTask.of(task)
        norm = Normalizer.identity(true.state_size)
        fn = model_return(task, true, true.params(norm, jax.random.PRNGKey(0)), norm)
        grid = jnp.linspace(-1.0, 1.0, 9)
        np.testing.assert_allclose(landscape(fn, grid), landscape(true_return(task), grid), rtol=1e-5, atol=1e-6)
    assert slice_actions(task, 0.4).shape == (task.horizon, 1)
    assert float(slice_actions(task, 0.4).sum()) == pytest.approx(0.4)


def test_gradient_ascent_reaches_the_maximiser_and_respects_the_bounds():
    starts = jnp.linspace(-0.9, 0.9, 5)
    final, rets = gradient_ascent(lambda a: -(a - 0.3) ** 2, starts, 400, 0.02)
    np.testing.assert_allclose(final, 0.3, atol=1e-2)
    assert rets.shape == (401, 5) and np.all(rets[-1] >= rets[0])
    final, _ = gradient_ascent(lambda a: -(a - 2.0) ** 2, starts, 200, jnp.array([0.05, 0.1]))
    assert final.shape == (2, 5) and np.all(np.asarray(final) == 1.0)  # projected onto [-1, 1]


# -- the scripts, end to end -----------------------------------------------------------------------
def _run(script, out, *flags):
    cmd = [sys.executable, str(ROOT / "experiments" / script), "--out", str(out), *flags]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout


def _check_outputs(out, pngs, csvs):
    json.loads((out / "config.json").read_text())
    for name in pngs:
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000, name
    for name in csvs:
        rows = list(csv.DictReader((out / name).open()))
        assert rows, name
        numbers = 0
        for row in rows:
            for k, v in row.items():
                try:
                    x = float(v)
                except ValueError:
                    continue  # labels (model names, "bounded", ...) and blanks
                assert math.isfinite(x), f"{name}: {k} = {v}"
                numbers += 1
        assert numbers > 0, name


GRAD_NORM = dict(pngs=["grad_norm_horizon.png"], csvs=["rates.csv", "norms.csv"])
QUALITY = dict(pngs=["jacobians.png", "cosine.png"],
               csvs=["jacobians.csv", "jacobian_table.csv", "cosine.csv", "cosine_summary.csv"])
LANDSCAPES = dict(pngs=["landscapes.png"], csvs=["landscape.csv", "ascent.csv", "summary.csv"])


@pytest.mark.slow  # ~50 s on the 2-core machine
def test_grad_norm_horizon_script_tiny(tmp_path):
    stdout = _run("grad_norm_horizon.py", tmp_path, "--quick", "--hmax", "24", "--num-h", "4", "--train-horizon", "8",
                  "--episodes", "16", "--train-steps", "5", "--samples", "1", "--variants", "trained")
    _check_outputs(tmp_path, **GRAD_NORM)
    rates = list(csv.DictReader((tmp_path / "rates.csv").open()))
    assert [(r["model"], r["variant"]) for r in rates] == [
        ("true", "-"), ("markov_mlp", "trained"), ("awm_rnn", "trained"), ("awm_transformer", "trained"),
        ("awm_ssm", "trained")]
    assert all(float(r["causal_leak"]) == 0.0 for r in rates)  # every model is causal
    assert "exp_rate" in stdout


@pytest.mark.slow  # ~40 s on the 2-core machine
def test_gradient_quality_script_tiny(tmp_path):
    _run("gradient_quality.py", tmp_path, "--quick", "--episodes", "16", "--fit-steps", "5",
         "--jac-models", "awm_transformer,markov_mlp", "--methods", "markov_mlp", "--total-steps", "300")
    _check_outputs(tmp_path, **QUALITY)
    table = {r["model"]: r for r in csv.DictReader((tmp_path / "jacobian_table.csv").open())}
    assert float(table["true"]["rel_error"]) == 0.0 and float(table["true"]["ds0_da0_mean"]) == pytest.approx(1.0)
    cos = [float(r["grad_cosine"]) for r in csv.DictReader((tmp_path / "cosine.csv").open())]
    assert all(-1.0 - 1e-6 <= c <= 1.0 + 1e-6 for c in cos)


@pytest.mark.slow  # ~16 s on the 2-core machine: the default run stays under 15 minutes
def test_landscapes_script_tiny(tmp_path):
    _run("landscapes.py", tmp_path, "--quick", "--episodes", "16", "--fit-steps", "5", "--grid", "21",
         "--starts", "4", "--steps", "5", "--lr-factors", "1,10", "--tasks", "one_bounce")
    _check_outputs(tmp_path, **LANDSCAPES)
    summary = list(csv.DictReader((tmp_path / "summary.csv").open()))
    assert {(r["task"], r["method"], float(r["lr"])) for r in summary} == {
        ("one_bounce", m, lr) for m in ("true_sim", "awm_transformer") for lr in (0.01, 0.1)}


@pytest.mark.slow
@pytest.mark.parametrize("script,outputs", [("grad_norm_horizon.py", GRAD_NORM), ("gradient_quality.py", QUALITY),
                                            ("landscapes.py", LANDSCAPES)])
def test_script_quick_setting(tmp_path, script, outputs):
    """Each script's own --quick setting (a few minutes of CPU in all)."""
    _run(script, tmp_path, "--quick")
    _check_outputs(tmp_path, **outputs)


@pytest.mark.slow  # ~30 s: two subprocesses compile markov_mlp's update
def test_xla_scheduler_bench_times_both_settings(tmp_path):
    _run("bench_xla_scheduler.py", tmp_path, "--methods", "markov_mlp", "--seeds", "2", "--reps", "1")
    table = (tmp_path / "scheduler.md").read_text().splitlines()
    row = next(line.split() for line in table if line.startswith("markov_mlp"))
    off, on, ratio = (float(x) for x in row[2:5])
    assert off > 0 and on > 0 and ratio == pytest.approx(on / off, abs=0.01)  # ms rounded to 0.01


@pytest.mark.slow  # ~40 s
def test_profile_update_lists_parts_and_costliest_ops(tmp_path):
    _run("profile_update.py", tmp_path, "--quick", "--ops", "4")
    text = (tmp_path / "profile.md").read_text()
    assert "one whole model update" in text and "attention (QKV, softmax, proj)" in text
    for label in ("unbatched", "one seed vmapped"):
        block = text.split(f"costliest ops, {label}")[1].split("```")[1].strip().splitlines()[2:]
        assert len(block) == 4 and all(float(row.split()[1]) > 0 for row in block)
