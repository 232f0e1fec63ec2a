"""experiments/brax_benchmark.py's brax_apg under the tuning protocol: its budget equals every method's, its
runs are committed and reused, its rows score and select as numpy computes them, its evaluation rows join the
report's, and its seed streams are disjoint. brax's training is replaced by a stand-in whose returns depend on
the settings and the seed (the real agent is tested in test_brax_env.py)."""

import json

import numpy as np
import pytest

import brax_benchmark as bb
from awm_jax import Config
from awm_jax.analysis import tuning
from awm_jax.analysis.committed import Setting
from awm_jax.core.methods import METHODS
from awm_jax.runner import brax_apg
from fair_benchmark import check_disjoint

TASK = "brax_reacher"
REFS = {"random": -20.0, "best": -4.0}
BASE = Config(total_steps=5000)


def fake_train(calls):
    def train(task, total_steps, settings, verbose, brax_seeds, **task_options):
        calls.append((task, settings, tuple(brax_seeds)))
        steps = np.arange(settings.evals) * 100.0
        ret = np.stack([-20 + 10 * settings.learning_rate * 100 * (steps / steps[-1]) + (s % 7) / 7
                        + settings.horizon_length / 100 for s in brax_seeds])
        return {"eval/return": ret, "eval/return_std": ret * 0, "eval/env_steps": steps}
    return train


@pytest.fixture
def committed(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(brax_apg, "train_apg", fake_train(calls))
    data = tmp_path / "data"
    (data / tuning.TUNING).mkdir(parents=True)
    (data / "references.json").write_text(json.dumps({"tasks": {TASK: REFS}}))
    bb.tune_apg(BASE, data, tmp_path / "out", [TASK], seeds=2, seed=100, verbose=False)
    return data, calls, tmp_path


def test_apg_gets_the_same_budget_and_a_valid_schedule():
    assert len(tuning.configurations(bb.APG)) == len(tuning.configurations("awm_transformer")) == 6
    assert {len(tuning.configurations(m)) for m in METHODS} == {6}
    for _, hp in tuning.configurations(bb.APG):
        s = bb.apg_settings(BASE, hp)
        s.validate(BASE.total_steps)
        assert s.evals == min(BASE.periods, 5000 // 100) + 1 and s.num_eval_envs == 1
        assert s.updates(BASE.total_steps) * s.horizon_length <= BASE.total_steps  # within the env-step budget


def test_stream_seeds_are_fixed_per_stream_and_disjoint_across_bases():
    a, b = brax_apg.stream_seeds(100, 4), brax_apg.stream_seeds(200, 4)
    assert a == brax_apg.stream_seeds(100, 4) and len(set(a)) == 4 and not set(a) & set(b)
    assert all(isinstance(s, int) and 0 <= s < 2**31 for s in a + b)


def test_apg_runs_are_committed_reused_and_checked(committed):
    data, calls, tmp = committed
    assert len(calls) == 6 and all(c[2] == tuple(brax_apg.stream_seeds(100, 2)) for c in calls)
    bb.tune_apg(BASE, data, tmp / "out", [TASK], seeds=2, seed=100, verbose=False)
    assert len(calls) == 6  # every configuration was committed: nothing trains again
    folder = tuning.member_folder(data, TASK, bb.APG, "c0")
    assert sorted(p.name for p in folder.iterdir()) == sorted([*bb.APG_FILES, "COMPLETE"])
    other = bb.apg_record(Config(total_steps=6000), TASK, dict(tuning.configurations(bb.APG))["c0"], 2, 100)
    with pytest.raises(ValueError, match="total_steps"):
        bb.apg_holds(folder, other)


def test_apg_scores_and_selection_against_numpy(committed):
    data, _, _ = committed
    rows = bb.apg_tuning_rows(data, [TASK], window=10)
    expect = {}
    for name, _ in tuning.configurations(bb.APG):
        m = json.loads((tuning.member_folder(data, TASK, bb.APG, name) / "metrics.json").read_text())
        ret = np.asarray(m["metrics"]["eval/return"])
        expect[name] = (ret[:, -10:].mean(1) - REFS["random"]) / (REFS["best"] - REFS["random"])
    got = {(r["config"], r["seed"]): r["score"] for r in rows}
    for name, s in expect.items():
        np.testing.assert_allclose([got[(name, "100:0")], got[(name, "100:1")]], s, rtol=1e-12)
    report = tuning.write_report(data, [TASK], [bb.APG], seeds=2, window=10, rows=rows)
    best = max(expect, key=lambda n: expect[n].mean())
    assert best == "c5"  # the stand-in rewards the highest rate and the whole-episode truncation
    assert report["selected"][bb.APG]["config"] == best
    assert report["selected"][bb.APG]["hyperparameters"] == {"learning_rate": 1e-2, "horizon_length": 100}


def test_apg_evaluation_rows_join_the_report(committed, monkeypatch):
    data, calls, tmp = committed
    ev = data / bb.EVALUATION
    ev.mkdir()
    (ev / "references.json").write_text(json.dumps({"tasks": {TASK: REFS}}))
    hp = {"learning_rate": 1e-2, "horizon_length": 100}
    bb.evaluate_apg(BASE, data, tmp / "out", [TASK], hp, seeds=4, seed=200, verbose=False)
    assert calls[-1][2] == tuple(brax_apg.stream_seeds(200, 4))
    by, curves, missing = bb.read_with_apg(ev, [Setting(BASE)], [TASK], [bb.APG], streams=True)
    rows = by[""]
    assert [r["seed"] for r in rows] == ["200:0", "200:1", "200:2", "200:3"] and not missing
    ret = np.asarray(json.loads((ev / f"{TASK}-{bb.APG}" / "metrics.json").read_text())["metrics"]["eval/return"])
    score = (ret[:, -1] - REFS["random"]) / (REFS["best"] - REFS["random"])
    np.testing.assert_allclose([r["score"] for r in rows], score, rtol=1e-12)
    assert curves[("", TASK, bb.APG)][1].shape == ret.shape
    tuned = bb.apg_tuning_rows(data, [TASK], window=10)
    check_disjoint(tuned, rows)  # fresh streams pass
    with pytest.raises(SystemExit, match="reuse tuning seed streams"):
        check_disjoint(tuned, rows + [dict(rows[0], seed="100:0")])
