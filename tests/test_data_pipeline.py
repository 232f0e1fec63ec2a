"""Experiments kept as data (awm_jax/analysis/committed.py, awm_jax/analysis/report.py and the benchmark,
horizon-scaling and robustness scripts) on tiny fixtures built here in the layout the pipeline writes: scores,
aggregates and the probability of improvement against direct numpy computations, missing groups,
the skipping of committed groups, and one real tiny training committed and taken back by --resume."""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import json
import shutil
import zlib
from pathlib import Path

import numpy as np
import pytest
from configs import config
from scipy import stats

from awm_jax.analysis.committed import GROUP_FILES, Setting, committed, run_groups
from awm_jax.runner.results import write_run
from pipeline import COMPILE_SECONDS, SECONDS_PER_SEED_KSTEP, estimate

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("cancer_treatment", "timber_harvest")
METHODS = ("awm_transformer", "true_bptt")
# a tiny schedule (validated, never trained by the fake) and hand-made references
BASE = config(seeds=2, total_steps=400, warmup_steps=200, model_batch=8)
REFS = {"cancer_treatment": dict(random=-30.0, best_constant=-22.0, trajectory_opt=-20.0, best=-20.0),
        "timber_harvest": dict(random=100.0, best_constant=1300.0, trajectory_opt=4900.0, best=4900.0)}
TIE = -25.0  # awm_transformer and true_bptt both end seed 0 of cancer_treatment here


def script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "experiments" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def final_returns(cfg) -> np.ndarray:
    """The fake run's final eval return per seed: a fixed draw per group, with one tie across methods."""
    rng = np.random.default_rng(zlib.crc32(f"{cfg.task}{cfg.method}{cfg.horizon}{cfg.distractor_dims}".encode()))
    r = REFS[cfg.task]
    ret = r["random"] + (r["best"] - r["random"]) * rng.uniform(0.2, 0.9, cfg.seeds)
    if cfg.task == "cancer_treatment":
        ret[0] = TIE
    return ret


class FakeTrain:
    """Stands in for run.run_training: writes a finished run folder with made-up metrics."""

    def __init__(self):
        self.calls = []

    def __call__(self, cfg, out, keys=None, **kw):
        from awm_jax.runner.run import seed_keys

        # the seeds asked for: all, or those whose keys are passed (a seed part)
        all_keys = np.asarray(seed_keys(cfg))
        seeds = [i for i in range(cfg.seeds) if keys is None or any((all_keys[i] == k).all() for k in np.asarray(keys))]
        self.calls.append((cfg.task, cfg.method, cfg.horizon) + ((tuple(seeds),) if keys is not None else ()))
        P = 3
        ret = np.linspace(0.0, 1.0, P)[None] * final_returns(cfg)[seeds, None]  # ends at the final returns
        metrics = {"eval/return": ret, "eval/env_steps": np.tile(np.arange(1, P + 1) * 100.0, (len(seeds), 1)),
                   "skipped_updates": np.zeros((len(seeds), P))}
        write_run(out, cfg, metrics, extra=dict(compile_seconds=1.0, run_seconds=10.0 + seeds[0],
                                                timed_periods=P - seeds[0],  # as if seed 1 resumed after 1
                                                machine=dict(platform="cpu", cpu_count=2 + 14 * seeds[0])))
        return None, metrics


def write_refs(folder, base, tasks=TASKS):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "references.json").write_text(json.dumps(dict(options=base.task_options(),
                                                            tasks={t: REFS[t] for t in tasks})))


def read_csv(path):
    return list(csv.DictReader(open(path)))


def prob_improve(x, y) -> float:
    """P(X > Y) + 0.5 P(X = Y) over all pairs of runs, per task, averaged over tasks."""
    gt = (x[:, None, :] > y[None, :, :]).mean((0, 1))
    eq = (x[:, None, :] == y[None, :, :]).mean((0, 1))
    return float(np.mean(gt + 0.5 * eq))


@pytest.fixture
def bench(tmp_path, monkeypatch):
    """The benchmark script trained by the fake on 2 tasks x 2 methods x 2 seeds into tmp/data."""
    fake = FakeTrain()
    monkeypatch.setattr("awm_jax.analysis.committed.run_training", fake)  # what run_groups trains with
    data = tmp_path / "data"
    write_refs(data, BASE)
    flags = ["--tasks", ",".join(TASKS), "--seeds", "2", "--total-steps", "400", "--warmup-steps", "200",
             "--model-batch", "8", "--reps", "200"]
    mod = script("myriad_benchmark")
    mod.main(["--out", str(tmp_path / "out"), "--data", str(data), "--methods", ",".join(METHODS), *flags])
    return mod, data, flags, fake


def test_benchmark_report_matches_independent_numbers(bench):
    mod, data, flags, fake = bench
    assert sorted(fake.calls) == sorted((t, m, None) for t in TASKS for m in METHODS)
    for t in TASKS:  # each group committed with exactly its small files
        for m in METHODS:
            assert sorted(p.name for p in (data / f"{t}-{m}").iterdir()) == sorted(GROUP_FILES + ("COMPLETE",))
    # regenerate from the data folder alone
    (data / "scores.csv").unlink()
    mod.main(["--data-only", "--data", str(data), "--methods", ",".join(METHODS), *flags])
    rows = read_csv(data / "scores.csv")
    assert list(rows[0]) == ["task", "method", "seed", "total_steps", "env_steps", "final_return", "score"]
    assert len(rows) == 8
    want = {}
    for t in TASKS:
        for m in METHODS:
            ret = final_returns(config(task=t, method=m, seeds=2))
            want[t, m] = (ret - REFS[t]["random"]) / (REFS[t]["best"] - REFS[t]["random"])
            got = [r for r in rows if r["task"] == t and r["method"] == m]
            assert [int(r["seed"]) for r in got] == [0, 1]
            np.testing.assert_allclose([float(r["final_return"]) for r in got], ret, rtol=1e-12)
            np.testing.assert_allclose([float(r["score"]) for r in got], want[t, m], rtol=1e-12)
            assert all(r["total_steps"] == "400" and r["env_steps"] == "300" for r in got)
    agg = {r["method"]: r for r in read_csv(data / "aggregate.csv")}
    for m in METHODS:
        x = np.stack([want[t, m] for t in TASKS], 1)  # [seeds, tasks]
        assert float(agg[m]["mean"]) == pytest.approx(x.mean(), rel=1e-12)
        assert float(agg[m]["iqm"]) == pytest.approx(stats.trim_mean(x.ravel(), 0.25), rel=1e-12)
        assert float(agg[m]["mean_lo"]) <= float(agg[m]["mean"]) <= float(agg[m]["mean_hi"])
        assert agg[m]["tasks"] == "2" and agg[m]["seeds"] == "2"
    (imp,) = read_csv(data / "improvement.csv")
    x = np.stack([want[t, "awm_transformer"] for t in TASKS], 1)
    y = np.stack([want[t, "true_bptt"] for t in TASKS], 1)
    assert x[0, 0] == y[0, 0]  # the fixture holds a tie, counted one half
    assert imp["method"] == "true_bptt" and float(imp["p_improve"]) == pytest.approx(prob_improve(x, y), abs=1e-12)
    assert float(imp["p_lo"]) <= float(imp["p_improve"]) <= float(imp["p_hi"])
    for name in ["aggregate.png"] + [f"curves_{t}.png" for t in TASKS]:
        assert (data / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert not (data / "change.csv").exists()  # one setting: nothing to change from
    md = (data / "tables.md").read_text()
    # the report covers every group of the benchmark: the 4 trained here, the rest listed as missing
    from awm_jax.analysis.benchmark import BENCHMARK_TASKS
    from awm_jax.core.config import METHODS as ALL_METHODS

    total = len(BENCHMARK_TASKS) * len(ALL_METHODS)
    assert f"4 of {total}" in md and f"{x.mean():.3f}" in md
    missing = md.split("## Missing groups")[1]
    assert missing.count("\n- ") == total - 4
    assert not any(f"- {t}-{m}\n" in missing for t in TASKS for m in METHODS)


def test_missing_groups_are_listed_not_errors(bench):
    mod, data, flags, _ = bench
    shutil.rmtree(data / "timber_harvest-true_bptt")
    res = mod.report(data, [Setting(BASE)], TASKS, METHODS + ("sac",), reps=100)
    assert sorted((t, m) for _, t, m in res["missing"]) == [("cancer_treatment", "sac"), ("timber_harvest", "sac"),
                                                           ("timber_harvest", "true_bptt")]
    rows = read_csv(data / "scores.csv")
    assert {(r["task"], r["method"]) for r in rows} == {("cancer_treatment", "awm_transformer"),
                                                       ("timber_harvest", "awm_transformer"),
                                                       ("cancer_treatment", "true_bptt")}
    agg = {r["method"]: r for r in read_csv(data / "aggregate.csv")}
    assert set(agg) == set(METHODS) and agg["true_bptt"]["tasks"] == "1"
    (imp,) = read_csv(data / "improvement.csv")  # over the one task both have
    t = "cancer_treatment"
    x = final_returns(config(task=t, method="awm_transformer", seeds=2))[:, None]
    y = final_returns(config(task=t, method="true_bptt", seeds=2))[:, None]
    assert imp["tasks"] == "1" and float(imp["p_improve"]) == pytest.approx(prob_improve(x, y), abs=1e-12)
    md = (data / "tables.md").read_text()
    assert "3 of 6" in md and "not comparable yet" in md
    assert "- timber_harvest-true_bptt" in md and "- cancer_treatment-sac" in md


def test_committed_groups_are_skipped_exactly(tmp_path, capsys):
    data, out, fake = tmp_path / "data", tmp_path / "out", FakeTrain()
    write_refs(data, BASE)
    s = [Setting(BASE)]
    r1 = run_groups(s, TASKS[:1], METHODS, out, data, train=fake)
    assert fake.calls == [("cancer_treatment", m, None) for m in METHODS] and r1["skipped"] == []
    r2 = run_groups(s, TASKS, METHODS, out, data, train=fake)
    assert fake.calls[2:] == [("timber_harvest", m, None) for m in METHODS]
    assert r2["skipped"] == [("", "cancer_treatment", m) for m in METHODS]
    assert "2/4 groups already committed" in capsys.readouterr().out
    assert run_groups(s, TASKS, METHODS, out, data, train=fake)["trained"] == [] and len(fake.calls) == 4
    assert "4/4 groups already committed" in capsys.readouterr().out
    # a copy without its COMPLETE marker does not count: trained again, the partial copy moved aside
    (data / "timber_harvest-true_bptt" / "COMPLETE").unlink()
    run_groups(s, TASKS, METHODS, out, data, train=fake)
    assert fake.calls[4:] == [("timber_harvest", "true_bptt", None)]
    assert committed(data, dataclasses.replace(BASE, task="timber_harvest", method="true_bptt"))
    assert len(list(data.glob("timber_harvest-true_bptt.old-*"))) == 1
    # a committed group of another configuration is refused, not mixed in
    with pytest.raises(ValueError, match="seeds: saved 2, now 3"):
        run_groups([Setting(dataclasses.replace(BASE, seeds=3))], TASKS, METHODS, out, data, train=fake)
    assert len(fake.calls) == 5


def test_seed_parts_commit_each_seed_and_merge_into_the_group(tmp_path, capsys):
    """--seed-parts: each seed is trained alone (its own key of seed_keys) and committed at once; a run
    killed after seed 0 loses nothing committed, the report names the parts of the missing group, and
    the next run trains seed 1 alone (its time estimate counting that seed only) and commits the group
    as the parts stacked, the parts removed."""
    estimated = []
    estimate = lambda cfg, measured, seeds=None: estimated.append(seeds) or 60.0
    data, out, fake = tmp_path / "data", tmp_path / "out", FakeTrain()
    write_refs(data, BASE)
    s, cfg = [Setting(BASE)], dataclasses.replace(BASE, task="timber_harvest", method="awm_transformer")

    def killed_at_seed_1(cfg, out, keys=None, **kw):
        if len(fake.calls) == 1:
            raise KeyboardInterrupt  # the machine is taken back while seed 1 trains
        return fake(cfg, out, keys=keys, **kw)

    with pytest.raises(KeyboardInterrupt):
        run_groups(s, ["timber_harvest"], ["awm_transformer"], out, data, train=killed_at_seed_1, seed_parts=True,
                   estimate=estimate)
    part0 = data / "parts" / "timber_harvest-awm_transformer" / "seed0"
    assert fake.calls == [("timber_harvest", "awm_transformer", None, (0,))]
    assert (part0 / "COMPLETE").is_file() and not committed(data, cfg)
    report = script("myriad_benchmark").report(data, s, ["timber_harvest"], ["awm_transformer"], reps=50)
    assert report["missing"] and "- timber_harvest-awm_transformer (seed 0 committed as parts)" in \
        (data / "tables.md").read_text()
    assert estimated == [2]  # the first estimate: both seeds to train
    run_groups(s, ["timber_harvest"], ["awm_transformer"], out, data, train=fake, seed_parts=True, estimate=estimate)
    assert fake.calls[1:] == [("timber_harvest", "awm_transformer", None, (1,))]
    assert estimated == [2, 1]  # seed 0 is committed: one seed's time
    assert "seed 0 of timber_harvest-awm_transformer is committed" in capsys.readouterr().out
    assert committed(data, cfg) and not (data / "parts").joinpath("timber_harvest-awm_transformer").exists()
    metrics = json.loads((data / "timber_harvest-awm_transformer" / "metrics.json").read_text())
    np.testing.assert_array_equal(np.asarray(metrics["metrics"]["eval/return"])[:, -1], final_returns(cfg))
    assert (metrics["seeds"], metrics["seed_parts"], metrics["run_seconds"], metrics["compile_seconds"],
            metrics["timed_periods"]) == (2, 2, 21.0, 2.0, 5)
    assert metrics["machine"] == [dict(platform="cpu", cpu_count=2), dict(platform="cpu", cpu_count=16)]  # differ
    assert json.loads((data / "timber_harvest-awm_transformer" / "config.json").read_text())["seeds"] == 2


@pytest.mark.slow  # ~19 s on the 2-core machine: the default run stays under 15 minutes
def test_seed_parts_compute_what_the_group_program_does(tmp_path):
    """A real tiny group whose seeds run one after another in its program (seed_batch 1, as the
    transformers' on one CPU device; markov_mlp here, which compiles faster) trained whole and in seed
    parts: the committed metrics are the same numbers, bit for bit."""
    import functools

    from awm_jax.runner.run import run_training
    from pipeline import QUICK_CONFIG

    method = "markov_mlp"
    cfg = config(task="cancer_treatment", method=method, seeds=2, mlp_hidden=(16,), policy_hidden=(16,),
                 **QUICK_CONFIG)
    s = [Setting(cfg)]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    for data in (whole, parts):
        write_refs(data, cfg, ["cancer_treatment"])
        run_groups(s, ["cancer_treatment"], [method], tmp_path / f"out-{data.name}", data, seed_parts=data == parts,
                   verbose=False, train=functools.partial(run_training, seed_batch=1))
    got = [json.loads((d / f"cancer_treatment-{method}" / "metrics.json").read_text())["metrics"]
           for d in (whole, parts)]
    assert set(got[0]) == set(got[1])
    for k in got[0]:
        np.testing.assert_array_equal(np.asarray(got[1][k], float), np.asarray(got[0][k], float), err_msg=k)


def test_estimate_uses_the_table_then_the_measured_groups():
    cfg = config(method="awm_transformer", seeds=4)  # the paper schedule
    k = 4 * cfg.env_steps / 1000  # seed-ksteps
    rate = SECONDS_PER_SEED_KSTEP
    assert estimate(cfg, {}) == pytest.approx(COMPILE_SECONDS + rate["awm_transformer"] * k)
    assert estimate(cfg, {}, seeds=1) == pytest.approx(COMPILE_SECONDS + rate["awm_transformer"] * k / 4)
    assert estimate(dataclasses.replace(cfg, horizon=400), {}) == pytest.approx(
        COMPILE_SECONDS + rate["awm_transformer"] * k * 10)  # the transformers: H (1 + H/100) / 200
    assert estimate(dataclasses.replace(cfg, horizon=800, method="markov_mlp"), {}) == pytest.approx(
        COMPILE_SECONDS + rate["markov_mlp"] * k * 8)  # the other BPO methods' updates cost in proportion to H
    assert estimate(dataclasses.replace(cfg, method="sac", horizon=400), {}) == pytest.approx(
        COMPILE_SECONDS + rate["sac"] * k)  # the model-free baselines' do not
    measured = {("awm_transformer", None): (300.0, k / 2)}  # half the seeds took 300 s
    assert estimate(cfg, measured) == pytest.approx(600.0)
    factor = 300.0 / (COMPILE_SECONDS + rate["awm_transformer"] * k / 2)
    assert estimate(dataclasses.replace(cfg, method="true_bptt"), measured) == pytest.approx(
        (COMPILE_SECONDS + rate["true_bptt"] * k) * factor)


def test_horizon_and_robustness_scores_carry_their_columns(tmp_path, monkeypatch):
    fake = FakeTrain()
    monkeypatch.setattr("awm_jax.analysis.committed.run_training", fake)  # what run_groups trains with
    common = ["--tasks", ",".join(TASKS), "--methods", ",".join(METHODS), "--seeds", "2", "--total-steps", "400",
              "--warmup-steps", "200", "--model-batch", "8", "--reps", "100"]
    data = tmp_path / "horizon"
    for H in (20, 40):
        write_refs(data / f"H{H}", config(horizon=H, fixed_dt=True))
    mod = script("horizon_scaling")
    mod.main(["--out", str(tmp_path / "out_h"), "--data", str(data), "--horizons", "20,40", *common])
    assert sorted(fake.calls) == sorted((t, m, H) for t in TASKS for m in METHODS for H in (20, 40))
    mod.main(["--data-only", "--data", str(data), "--horizons", "20,40", *common])
    rows = read_csv(data / "scores.csv")
    assert len(rows) == 16 and list(rows[0])[:4] == ["task", "method", "seed", "horizon"]
    for r in rows:
        cfg = config(task=r["task"], method=r["method"], seeds=2, horizon=int(r["horizon"]))
        ref = REFS[r["task"]]
        want = (final_returns(cfg)[int(r["seed"])] - ref["random"]) / (ref["best"] - ref["random"])
        assert float(r["score"]) == pytest.approx(want, rel=1e-12)
    agg = read_csv(data / "aggregate.csv")
    for r in agg:
        x = [float(q["score"]) for q in rows if q["method"] == r["method"] and q["horizon"] == r["horizon"]]
        assert float(r["mean"]) == pytest.approx(np.mean(x), rel=1e-12)
    assert (data / "scaling.png").read_bytes()[:4] == b"\x89PNG"
    check_change(data / "change.csv", rows, "horizon", "20", ["40"])
    assert "## Change of the score from horizon 20" in (data / "tables.md").read_text()
    # a run of one horizon rewrites the report of every defined horizon the folder holds (H80 has none)
    monkeypatch.setattr(mod, "HORIZONS", "20,40,80")
    mod.main(["--data-only", "--data", str(data), "--horizons", "40", *common])
    assert read_csv(data / "scores.csv") == rows
    tables = (data / "tables.md").read_text()
    assert "--horizons 20,40`" in tables and "8 of 24 setting" in tables and "H80" not in tables

    data = tmp_path / "robust"
    mod = script("robustness")
    for s in mod.settings_of(config(), (0, 4), (0, 0.05)):
        write_refs(data / s.folder, s.base, TASKS)
    assert [s.folder for s in mod.settings_of(config(), (0, 4), (0, 0.05))] == [
        "distractors0-noise0", "distractors4-noise0", "distractors0-noise0.05"]
    mod.main(["--out", str(tmp_path / "out_r"), "--data", str(data), "--distractors", "0,4", "--noise", "0,0.05",
              *common])
    rows = read_csv(data / "scores.csv")
    assert len(rows) == 24 and list(rows[0])[3:5] == ["distractor_dims", "state_noise"]
    assert {(r["distractor_dims"], r["state_noise"]) for r in rows} == {("0", "0.0"), ("4", "0.0"), ("0", "0.05")}
    assert (data / "robustness.png").read_bytes()[:4] == b"\x89PNG"
    check_change(data / "change.csv", [dict(r, setting=f"{r['distractor_dims']}/{r['state_noise']}") for r in rows],
                 "setting", "0/0.0", ["4/0.0", "0/0.05"])
    monkeypatch.setattr(mod, "DISTRACTORS", "0,4,16")
    monkeypatch.setattr(mod, "NOISE", "0,0.05")
    mod.main(["--data-only", "--data", str(data), "--distractors", "4", "--noise", "0.05", *common])
    assert read_csv(data / "scores.csv") == rows
    assert "--distractors 0,4 --noise 0,0.05`" in (data / "tables.md").read_text()


def check_change(path, rows, key, base, others):
    """change.csv against scores.csv: per setting and method the mean over tasks of the seed-mean score's
    change from the baseline, and awm_transformer's change minus the method's, each inside its CI."""
    def mean(setting, task, method):
        return np.mean([float(r["score"]) for r in rows if (r[key], r["task"], r["method"]) == (setting, task, method)])

    change = {(o, m): np.mean([mean(o, t, m) - mean(base, t, m) for t in TASKS]) for o in others for m in METHODS}
    got = read_csv(path)
    assert len(got) == len(others) * len(METHODS)
    for r in got:
        o = r[key] if key in r else f"{r['distractor_dims']}/{r['state_noise']}"
        assert float(r["change"]) == pytest.approx(change[(o, r["method"])], rel=1e-9, abs=1e-12)
        assert float(r["change_lo"]) <= float(r["change"]) <= float(r["change_hi"])
        if r["method"] == "awm_transformer":
            assert r["vs_reference"] == ""
        else:
            want = change[(o, "awm_transformer")] - change[(o, r["method"])]
            assert float(r["vs_reference"]) == pytest.approx(want, rel=1e-9, abs=1e-12)
            assert float(r["vs_lo"]) <= want <= float(r["vs_hi"]) and int(r["vs_tasks"]) == len(TASKS)


def test_mean_contrast_against_closed_forms():
    from awm_jax.analysis.benchmark import mean_contrast

    # constant runs: no spread, the CI is the value
    c = mean_contrast([(0.5, [0.9, 0.9, 0.9]), (-0.5, [0.4, 0.4])], reps=500)
    assert c["value"] == pytest.approx(0.25) and c["lo"] == pytest.approx(0.25) and c["hi"] == pytest.approx(0.25)
    # many normal runs: the percentile CI approaches value +- 1.96 sqrt(sum w^2 var / n), every term
    # resampled independently (two terms of equal spread: sqrt(2) times one term's half-width)
    rng = np.random.default_rng(1)
    x, y = rng.normal(1.0, 2.0, 400), rng.normal(0.0, 2.0, 400)
    one = mean_contrast([(1.0, x)], reps=4000)
    two = mean_contrast([(1.0, x), (-1.0, y)], reps=4000)
    assert one["value"] == pytest.approx(x.mean()) and two["value"] == pytest.approx(x.mean() - y.mean())
    for c, var in ((one, x.var()), (two, x.var() + y.var())):
        assert (c["hi"] - c["lo"]) / 2 == pytest.approx(1.96 * np.sqrt(var / 400), rel=0.1)
        assert c["lo"] < c["value"] < c["hi"]


def test_a_real_tiny_training_is_committed_and_taken_back_by_resume(tmp_path, capsys):
    """true_bptt on a 20-step cancer_treatment, 2 seeds (seconds): references computed once, the group
    committed with the run's own files, nothing trained again; removed from the data folder, the group
    comes back from its finished run folder through --resume without training."""
    mod = script("myriad_benchmark")
    out, data = tmp_path / "out", tmp_path / "data"
    argv = ["--quick", "--out", str(out), "--data", str(data), "--tasks", "cancer_treatment", "--methods", "true_bptt",
            "--reps", "100"]
    mod.main(argv)
    refs = json.loads((data / "references.json").read_text())["tasks"]["cancer_treatment"]
    assert refs["random"] < refs["best"]
    group, run = data / "cancer_treatment-true_bptt", out / "runs" / "cancer_treatment-true_bptt"
    for name in GROUP_FILES:
        assert (group / name).read_bytes() == (run / name).read_bytes()
    assert (run / "final_state").is_dir() and not (group / "final_state").exists()
    first = read_csv(data / "scores.csv")
    assert "compiled in" in capsys.readouterr().out
    mod.main(argv)
    assert "1/1 groups already committed" in capsys.readouterr().out
    shutil.rmtree(group)
    with pytest.raises(ValueError, match="--resume"):
        mod.main(argv)
    mod.main(argv + ["--resume"])
    text = capsys.readouterr().out
    assert "already holds this run" in text and "compiled in" not in text
    assert read_csv(data / "scores.csv") == first


def test_a_run_of_some_groups_reports_every_group_the_experiment_defines():
    import argparse

    from awm_jax.analysis.benchmark import BENCHMARK_TASKS
    from awm_jax.core.config import METHODS
    from pipeline import report_scope

    full = argparse.Namespace(quick=False)
    tasks, methods = report_scope(full, ["timber_harvest", "glucose"], ["markov_mlp"], BENCHMARK_TASKS, METHODS)
    assert tasks == [*BENCHMARK_TASKS, "glucose"] and methods == list(METHODS)
    quick = argparse.Namespace(quick=True)
    assert report_scope(quick, ["cancer_treatment"], ["true_bptt"], BENCHMARK_TASKS, METHODS) == (
        ["cancer_treatment"], ["true_bptt"])


def test_a_run_of_some_settings_reports_every_defined_setting_with_data(tmp_path):
    import argparse

    from awm_jax.analysis.committed import Setting
    from pipeline import report_settings

    defined = [Setting(config(horizon=h), folder=f"H{h}") for h in (10, 20, 40)]
    (tmp_path / "H10").mkdir()
    asked = [Setting(config(horizon=h), folder=f"H{h}") for h in (80, 20)]
    got = report_settings(argparse.Namespace(quick=False), tmp_path, asked, defined)
    assert [s.folder for s in got] == ["H10", "H20", "H80"] and got[1] is asked[1]  # H40: no folder
    assert report_settings(argparse.Namespace(quick=True), tmp_path, asked, defined) == asked


def test_lr_sweep_scores_paired_runs_on_the_final_and_the_last_10_evaluations(tmp_path, capsys):
    """experiments/lr_sweep.py --runs: single runs (found directly or inside a folder) scored against
    the references as numpy computes it; --data-only rebuilds the same tables from returns.csv."""
    lr_sweep = script("lr_sweep")
    rng = np.random.default_rng(0)
    runs = {}
    for lr in (3e-3, 1e-2):
        cfg = dataclasses.replace(BASE, task="cancer_treatment", policy_lr=lr)
        ret = rng.uniform(-30.0, -20.0, (2, 12))  # [seeds, periods]
        metrics = {"eval/return": ret, "eval/env_steps": np.tile(np.arange(1, 13) * 100.0, (2, 1)),
                   "skipped_updates": np.zeros((2, 12))}
        write_run(tmp_path / "runs" / f"lr{lr:g}", cfg, metrics)
        runs[lr] = ret
    (tmp_path / "runs" / "unfinished").mkdir()  # no COMPLETE marker: not a run
    out = tmp_path / "out"
    write_refs(out, BASE, tasks=("cancer_treatment",))
    lr_sweep.main(["--runs", f"{tmp_path / 'runs' / 'lr0.01'},{tmp_path / 'runs'}", "--out", str(out)])
    ref = REFS["cancer_treatment"]
    norm = lambda x: (x - ref["random"]) / (ref["best"] - ref["random"])
    with open(out / "returns.csv") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["policy_lr"]) for r in rows] == [3e-3, 1e-2]  # each run once (one was named twice), sorted
    for r in rows:
        ret = runs[float(r["policy_lr"])]
        np.testing.assert_allclose([float(r[k]) for k in ("mean", "std", "last10", "score", "last10_score")],
                                   [ret[:, -1].mean(), ret[:, -1].std(), ret[:, -10:].mean(),
                                    norm(ret[:, -1].mean()), norm(ret[:, -10:].mean())], rtol=1e-9)
    with open(out / "scores.csv") as f:
        table = {float(r["policy_lr"]): r for r in csv.DictReader(f)}
    np.testing.assert_allclose(float(table[3e-3]["mean_last10_score"]), norm(runs[3e-3][:, -10:].mean()))
    before = (out / "lr_sweep.md").read_text()
    lr_sweep.main(["--data-only", "--out", str(out)])
    assert (out / "lr_sweep.md").read_text() == before
    with pytest.raises(SystemExit, match="pass one of"):
        lr_sweep.main(["--runs", str(tmp_path / "runs"), "--data-only", "--out", str(out)])
    with pytest.raises(SystemExit, match="no finished run folder"):
        lr_sweep.main(["--runs", str(tmp_path / "runs" / "unfinished"), "--out", str(out)])


def test_training_gradients_reads_the_committed_groups(tmp_path, capsys):
    """experiments/training_gradients.py: per committed group, the median and largest finite policy
    gradient norm and the share not finite, and the mean cosine with the true gradient (non-finite as 0),
    against numpy on the same made-up values; per setting and method the cosine's mean over tasks x seeds
    inside its bootstrap CI, two settings of one horizon kept apart; seed parts, groups without the metric
    and unfinished folders are left out."""
    mod = script("training_gradients")
    g = {("H100", "markov_mlp"): np.array([[1.0, np.inf, 1e12], [3.0, np.nan, 2.0]]),
         ("H800", "awm_transformer"): np.array([[5.0, 7.0, 6.0]]),
         ("default", "awm_lstm"): np.array([[1.0, 1.0, 1.0]])}  # the task's own horizon (None)
    cos = {("H100", "markov_mlp"): np.array([[0.5, np.nan, 0.1], [0.9, np.nan, 0.3]]),
           ("H800", "awm_transformer"): np.array([[0.2, 0.4, 0.3]])}  # awm_lstm: no cosine logged
    cos_cancer = np.array([[0.8, 0.6, 1.0], [0.0, 0.2, 0.1]])  # H100 markov_mlp's second task
    evals = lambda n: {"eval/return": np.ones((n, 3)), "eval/env_steps": np.tile([100.0, 200.0, 300.0], (n, 1))}
    for (folder, method), norms in g.items():
        cfg = config(task="timber_harvest", method=method, horizon=int(folder[1:]) if folder[0] == "H" else None,
                     seeds=len(norms))
        logged = {**evals(len(norms)), "policy/grad_norm": norms}
        if (folder, method) in cos:
            logged["policy/grad_cosine"] = cos[folder, method]
        write_run(tmp_path / folder / f"timber_harvest-{method}", cfg, logged)
        # a seed part of the same group (would double-count) and an unfinished group
        write_run(tmp_path / folder / "parts" / f"timber_harvest-{method}" / "seed0", cfg, logged)
    write_run(tmp_path / "H100" / "cancer_treatment-markov_mlp", config(method="markov_mlp", horizon=100, seeds=2),
              {**evals(2), "policy/grad_norm": np.ones((2, 3)), "policy/grad_cosine": cos_cancer})
    write_run(tmp_path / "H100" / "timber_harvest-sac", config(task="timber_harvest", method="sac", horizon=100),
              evals(1))  # no policy gradient through a model: no row
    (tmp_path / "H100" / "cancer_treatment-awm_lstm").mkdir()  # no COMPLETE marker: no row
    write_run(tmp_path / "noise" / "cancer_treatment-markov_mlp", config(method="markov_mlp", horizon=100, seeds=1),
              {**evals(1), "policy/grad_norm": np.ones((1, 3)), "policy/grad_cosine": np.full((1, 3), -0.5)})
    shutil.copytree(tmp_path / "H800" / "timber_harvest-awm_transformer",
                    tmp_path / "H800" / "timber_harvest-awm_transformer.old-1")  # a copy moved aside: no row
    rows, cosines, returns = mod.main(["--data", str(tmp_path), "--reps", "200"])
    assert returns == [] and not (tmp_path / "training_gradients_returns.csv").exists()  # no references.json
    assert [(r["setting"], r["horizon"], r["task"], r["method"]) for r in rows] == [
        ("default", None, "timber_harvest", "awm_lstm"), ("H100", 100, "cancer_treatment", "markov_mlp"),
        ("H100", 100, "timber_harvest", "markov_mlp"), ("noise", 100, "cancer_treatment", "markov_mlp"),
        ("H800", 800, "timber_harvest", "awm_transformer")]
    assert np.isnan(rows[0]["cosine_mean"]) and rows[1]["cosine_mean"] == pytest.approx(cos_cancer.mean())
    rows = [rows[2], rows[4]]
    assert rows[0]["values"] == 6 and rows[0]["nonfinite_share"] == pytest.approx(2 / 6)
    assert rows[0]["median"] == pytest.approx(np.median([1.0, 1e12, 3.0, 2.0])) and rows[0]["max_finite"] == 1e12
    assert rows[0]["cosine_mean"] == pytest.approx(np.mean([0.5, 0, 0.1, 0.9, 0, 0.3]))
    assert rows[0]["cosine_nonfinite_share"] == pytest.approx(2 / 6)
    assert (rows[1]["median"], rows[1]["max_finite"], rows[1]["nonfinite_share"]) == (6.0, 7.0, 0.0)
    # H100 markov_mlp over its 2 tasks x 2 seeds: the mean of the 4 seeds' mean cosines
    seed_means = [0.2, 0.4, 0.8, 0.1]  # timber (0.5+0+0.1)/3, (0.9+0+0.3)/3; cancer 2.4/3, 0.3/3
    c100, noise = [c for c in cosines if c["horizon"] == 100]
    assert (c100["setting"], c100["method"], c100["tasks"], c100["seeds"]) == ("H100", "markov_mlp", 2, 2)
    assert (noise["setting"], noise["tasks"], noise["cosine_mean"]) == ("noise", 1, pytest.approx(-0.5))
    assert c100["cosine_mean"] == pytest.approx(np.mean(seed_means))
    assert min(seed_means) <= c100["cosine_lo"] <= c100["cosine_mean"] <= c100["cosine_hi"] <= max(seed_means)
    table = capsys.readouterr().out
    assert "| H100 | 100 | timber_harvest | markov_mlp | 2.5 | 1e+12 | 33.3% | 0.30 |" in table
    assert "| default | task default | timber_harvest | awm_lstm | 1 | 1 | 0.0% | - |" in table
    written = read_csv(tmp_path / "training_gradients.csv")
    assert [(r["setting"], r["horizon"], float(r["median"])) for r in written] == [
        ("default", "", 1.0), ("H100", "100", 1.0), ("H100", "100", 2.5), ("noise", "100", 1.0), ("H800", "800", 6.0)]
    written = read_csv(tmp_path / "training_gradients_cosine.csv")
    assert [(r["setting"], r["method"], float(r["cosine_mean"])) for r in written] == [
        ("H100", "markov_mlp", pytest.approx(0.375)), ("noise", "markov_mlp", pytest.approx(-0.5)),
        ("H800", "awm_transformer", pytest.approx(0.3))]
    with pytest.raises(SystemExit):
        mod.main(["--data", str(tmp_path / "none")])


def test_run_times_sums_the_committed_groups(tmp_path, capsys):
    """experiments/run_times.py: one row per committed group (seed parts, unfinished folders and copies moved
    aside left out) with its seconds and machine from metrics.json, and per setting and method the sums,
    the groups timed in part (resumed) and the machines, against the numbers written here."""
    mod = script("run_times")
    evals = {"eval/return": np.ones((2, 3)), "eval/env_steps": np.tile([1.0, 2.0, 3.0], (2, 1))}
    cpu = dict(platform="cpu", device_kind="cpu", devices=1, processes=1, cpu_model="EPYC", cpu_count=2)
    gpu = dict(platform="gpu", device_kind="NVIDIA H200", devices=1, processes=1, cpu_model="Xeon", cpu_count=16)
    runs = {("H100", "cancer_treatment", "markov_mlp"): dict(compile_seconds=5.0, run_seconds=100.0, timed_periods=3,
                                                             machine=cpu),
            ("H100", "timber_harvest", "markov_mlp"): dict(compile_seconds=7.0, run_seconds=50.0, timed_periods=1,
                                                           machine=gpu),  # resumed after 2 of 3 periods
            ("H100", "timber_harvest", "sac"): dict(compile_seconds=1.0, run_seconds=2.0),  # before the fields
            ("H800", "timber_harvest", "markov_mlp"): dict(compile_seconds=3.0, run_seconds=3600.0,
                                                           timed_periods=3, machine=[cpu, gpu], seed_parts=2)}
    for (setting, task, method), extra in runs.items():
        cfg = config(task=task, method=method, horizon=int(setting[1:]), seeds=2)
        write_run(tmp_path / setting / f"{task}-{method}", cfg, evals, extra=extra)
    write_run(tmp_path / "H100" / "parts" / "timber_harvest-sac" / "seed0", config(task="timber_harvest", method="sac",
              horizon=100), evals, extra=dict(run_seconds=1e6))  # a part: counted in its merged group
    shutil.copytree(tmp_path / "H100" / "timber_harvest-sac", tmp_path / "H100" / "timber_harvest-sac.old-1")
    (tmp_path / "H100" / "bacteria-sac").mkdir()  # unfinished
    out = mod.main(["--data", str(tmp_path)])[str(tmp_path)]
    assert [(r["setting"], r["task"], r["method"], r["run_seconds"], r["timed_periods"]) for r in out] == [
        ("H100", "cancer_treatment", "markov_mlp", 100.0, 3), ("H100", "timber_harvest", "markov_mlp", 50.0, 1),
        ("H100", "timber_harvest", "sac", 2.0, ""), ("H800", "timber_harvest", "markov_mlp", 3600.0, 3)]
    assert [r["machine"] for r in out] == ["cpu: EPYC, 2 cores", "gpu: 1 x NVIDIA H200", "",
                                           "cpu: EPYC, 2 cores / gpu: 1 x NVIDIA H200"]
    sums = mod.totals(out)
    assert [(t["setting"], t["method"], t["groups"], t["seeds"], t["compile_seconds"], t["run_seconds"], t["partial"])
            for t in sums] == [("H100", "markov_mlp", 2, 4, 12.0, 150.0, 1), ("H100", "sac", 1, 2, 1.0, 2.0, 0),
                               ("H800", "markov_mlp", 1, 2, 3.0, 3600.0, 0)]
    table = capsys.readouterr().out
    assert f"{tmp_path}: 4 groups, {(12 + 150 + 3 + 3603) / 3600:.2f} wall hours" in table
    assert "| H100 | markov_mlp | 2 | 4 | 0.00 | 0.04 | 1 | cpu: EPYC, 2 cores / gpu: 1 x NVIDIA H200 |" in table
    assert "| H100 | sac | 1 | 2 | 0.00 | 0.00 |  | not recorded |" in table
    assert [float(r["run_seconds"]) for r in read_csv(tmp_path / "run_times.csv")] == [100.0, 50.0, 2.0, 3600.0]
    with pytest.raises(SystemExit):
        mod.main(["--data", str(tmp_path / "H100" / "bacteria-sac")])  # no committed group


def test_training_gradients_returns_follow_alignment(tmp_path):
    """experiments/training_gradients.py's returns table: per horizon and task, Spearman's correlation over
    the world models' seeds between a seed's mean cosine and its final normalised score equals scipy's;
    a task where the score rises with the cosine gets 1 with the CI [1, 1]; markov_svg and groups without a
    cosine (true_bptt) are left out; per horizon the mean over tasks."""
    mod = script("training_gradients")
    base = config(horizon=400, seeds=3)
    write_refs(tmp_path / "H400", base)
    rng = np.random.default_rng(3)
    cos = {("cancer_treatment", "awm_transformer"): [[0.1, 0.1], [0.2, 0.4], [0.9, 0.7]],  # seed means .1 .3 .8
           ("cancer_treatment", "markov_mlp"): [[0.2, 0.2], [0.4, 0.4], [0.6, 0.6]],  # .2 .4 .6
           ("cancer_treatment", "markov_svg"): [[0.9, 0.9], [0.95, 0.95], [0.99, np.nan]],  # worst scores: excluded
           ("timber_harvest", "awm_transformer"): rng.uniform(0, 1, (3, 2)),
           ("timber_harvest", "markov_mlp"): rng.uniform(0, 1, (3, 2))}
    scores = {("cancer_treatment", "awm_transformer"): [0.1, 0.3, 0.8],
              ("cancer_treatment", "markov_mlp"): [0.2, 0.4, 0.6],
              ("cancer_treatment", "markov_svg"): [-1.0, -0.9, -0.8],
              ("timber_harvest", "awm_transformer"): rng.uniform(0, 1, 3),
              ("timber_harvest", "markov_mlp"): rng.uniform(0, 1, 3)}
    for task, method in [*cos, ("cancer_treatment", "true_bptt")]:
        r = REFS[task]
        final = r["random"] + (r["best"] - r["random"]) * np.asarray(scores.get((task, method), [1.0, 1.0, 1.0]))
        logged = {"eval/return": np.stack([final / 2, final], 1), "eval/env_steps": np.tile([100.0, 200.0], (3, 1)),
                  "policy/grad_norm": np.ones((3, 2))}
        if (task, method) in cos:
            logged["policy/grad_cosine"] = np.asarray(cos[task, method], float)
        write_run(tmp_path / "H400" / f"{task}-{method}", dataclasses.replace(base, task=task, method=method), logged)
    _, _, returns = mod.main(["--data", str(tmp_path), "--reps", "300"])
    assert [(r["setting"], r["horizon"], r["task"], r["methods"], r["seeds"]) for r in returns] == [
        ("H400", 400, "cancer_treatment", 2, 6), ("H400", 400, "timber_harvest", 2, 6), ("H400", 400, "mean", 2, 12)]
    cancer, timber, mean = returns
    assert (cancer["spearman"], cancer["spearman_lo"], cancer["spearman_hi"]) == pytest.approx((1.0, 1.0, 1.0))
    x = np.concatenate([np.mean(cos["timber_harvest", m], 1) for m in ("awm_transformer", "markov_mlp")])
    y = np.concatenate([scores["timber_harvest", m] for m in ("awm_transformer", "markov_mlp")])
    assert timber["spearman"] == pytest.approx(stats.spearmanr(x, y)[0])
    assert -1 <= timber["spearman_lo"] <= timber["spearman_hi"] <= 1
    assert mean["spearman"] == pytest.approx((1 + timber["spearman"]) / 2)
    assert mean["spearman_lo"] <= mean["spearman"] <= mean["spearman_hi"]
    written = read_csv(tmp_path / "training_gradients_returns.csv")
    assert [(r["task"], float(r["spearman"])) for r in written] == [
        ("cancer_treatment", 1.0), ("timber_harvest", pytest.approx(timber["spearman"])),
        ("mean", pytest.approx(mean["spearman"]))]
