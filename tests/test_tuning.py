"""The tuning protocol (awm_jax.analysis.tuning): equal budgets, programs that share shapes, members that
train what their config.json records, scores and selection against numpy, resumption, disjoint seeds."""

import dataclasses
import json

import numpy as np
import pytest
from configs import config

from awm_jax import Config
from awm_jax.analysis import tuning
from awm_jax.core.methods import METHODS, REGISTRY
from pipeline import QUICK_CONFIG

TINY = dict(QUICK_CONFIG, total_steps=328, warmup_steps=200)  # 2 evaluation periods of 20-step episodes


def test_every_method_declares_an_equal_budget_of_valid_configurations():
    sizes = {m: len(tuning.configurations(m)) for m in METHODS}
    assert set(sizes.values()) == {6}, sizes
    fields = {f.name for f in dataclasses.fields(Config)}
    for m in METHODS:
        space = REGISTRY[m].search_space
        configs = tuning.configurations(m)
        assert {n for n, _ in space} <= fields
        # product order: the first field varies slowest, names c0..c5
        expected = [dict(zip([n for n, _ in space], (a, b))) for a in space[0][1] for b in space[1][1]]
        assert [c for _, c in configs] == expected and [n for n, _ in configs] == [f"c{i}" for i in range(6)]
        for _, overrides in configs:  # each point is a config its method accepts
            dataclasses.replace(config(method=m), **overrides).validate()
    saved = tuning.search_spaces(METHODS)
    assert saved["sac"]["configs"]["c1"] == {"rl_lr": 1e-4, "rl_gamma": 0.99}


def test_unequal_budgets_and_bad_specs_are_refused(monkeypatch):
    base = config(**TINY)
    with pytest.raises(ValueError, match="at least 2 seeds"):
        tuning.TuningSpec(base, ("cancer_treatment",), ("true_bptt",), seeds=1).validate()
    with pytest.raises(ValueError, match="valid methods"):
        tuning.TuningSpec(base, ("cancer_treatment",), ("sac9",)).validate()
    with pytest.raises(ValueError, match="window"):
        tuning.TuningSpec(base, ("cancer_treatment",), ("true_bptt",), window=10).validate()  # 2 periods
    small = dataclasses.replace(REGISTRY["markov_mlp"], search_space=(("policy_lr", (1e-3, 3e-3)),))
    monkeypatch.setitem(REGISTRY, "markov_mlp", small)
    with pytest.raises(ValueError, match="same number of configurations.*true_bptt 6, markov_mlp 2"):
        tuning.TuningSpec(base, ("cancer_treatment",), ("true_bptt", "markov_mlp")).validate()


def test_programs_group_configurations_by_their_static_fields():
    spec = tuning.TuningSpec(config(**TINY), ("cancer_treatment",), ("true_bptt",), seeds=2)
    (prog,) = tuning.programs(spec, "cancer_treatment", "true_bptt")  # lr and gamma are both traced
    assert prog["name"] == "all" and len(prog["keys"]) == 12
    np.testing.assert_array_equal(prog["hparams"]["policy_lr"],
                                  np.repeat(np.float32([1e-3, 1e-3, 3e-3, 3e-3, 1e-2, 1e-2]), 2))
    np.testing.assert_array_equal(prog["hparams"]["gamma"], np.tile(np.float32([1.0, 1.0, 0.99, 0.99]), 3)[:12])
    # every configuration sees the same two streams of the tuning seed
    import jax

    keys = np.asarray(jax.random.split(jax.random.PRNGKey(100), 2))
    np.testing.assert_array_equal(prog["keys"], np.tile(keys, (6, 1)))
    # the world model's state scaling changes the program: two of three configurations each
    progs = tuning.programs(dataclasses.replace(spec, methods=("markov_mlp",)), "cancer_treatment", "markov_mlp")
    assert [p["name"] for p in progs] == ["model_scaling=zscore", "model_scaling=symlog"]
    assert [[n for n, _ in p["members"]] for p in progs] == [["c0", "c2", "c4"], ["c1", "c3", "c5"]]
    assert all(c.model_scaling == p["name"].split("=")[1] for p in progs for _, c in p["members"])
    # sac's rate and discount are rejax's rl_* fields behind its traced policy_lr and gamma
    (sac,) = tuning.programs(dataclasses.replace(spec, methods=("sac",)), "cancer_treatment", "sac")
    np.testing.assert_allclose(sac["hparams"]["policy_lr"], np.repeat([1e-4, 1e-4, 3e-4, 3e-4, 1e-3, 1e-3], 2),
                               rtol=1e-7)
    assert [c.rl_lr for _, c in sac["members"]] == [1e-4, 1e-4, 3e-4, 3e-4, 1e-3, 1e-3]


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """A tiny tuning run of true_bptt (one program of 6 configurations) and markov_mlp (two programs) on one
    task, into a data folder."""
    root = tmp_path_factory.mktemp("tuning")
    spec = tuning.TuningSpec(config(**TINY), ("cancer_treatment",), ("true_bptt", "markov_mlp"), seeds=2, window=2)
    result = tuning.run_tuning(spec, root / "out", root / "data", verbose=False)
    return spec, root, result


def test_a_members_runs_equal_its_own_config_trained_alone(tuned):
    """What config.json records is what trained: configuration c4 of markov_mlp (policy_lr 1e-2, z-scores),
    vmapped beside two others, against a run of its recorded config alone."""
    from awm_jax.runner.results import read_run_files
    from awm_jax.runner.run import run_training

    spec, root, _ = tuned
    cfg, metrics = read_run_files(tuning.member_folder(root / "data", "cancer_treatment", "markov_mlp", "c4"))
    assert (cfg.policy_lr, cfg.model_scaling, cfg.seed, cfg.seeds) == (1e-2, "zscore", 100, 2)
    _, alone = run_training(cfg, verbose=False)
    # bit-identical on jax 0.10.2's CPU backend; but the vmapped program of 6 members is another XLA program than
    # the 2-member one, so another XLA may reassociate its sums: rounding-level equality (float32's 1.2e-7 grown
    # over 2 evaluation periods of training stays far below 1e-5; a wrong member's return differs by > 1e-2)
    np.testing.assert_allclose(metrics["eval/return"], alone["eval/return"], rtol=1e-5)
    other, _ = read_run_files(tuning.member_folder(root / "data", "cancer_treatment", "markov_mlp", "c0"))
    assert other.policy_lr == 1e-3 and other.model_scaling == "zscore"


def test_scores_and_selection_against_numpy(tuned):
    spec, root, result = tuned
    data = root / "data"
    assert len(result["trained"]) == 3 and not result["skipped"]
    report = tuning.write_report(data, spec.tasks, spec.methods, spec.seeds, spec.window)
    refs = json.loads((data / "references.json").read_text())["tasks"]["cancer_treatment"]
    by = {}
    for m in spec.methods:
        for name, _ in tuning.configurations(m):
            ret = np.array(json.loads((tuning.member_folder(data, "cancer_treatment", m, name) / "metrics.json")
                                      .read_text())["metrics"]["eval/return"])
            by[(m, name)] = ((ret[:, -2:].mean(1) - refs["random"]) / (refs["best"] - refs["random"]))
    rows = {(r["method"], r["config"], r["seed"]): r["score"] for r in report["rows"]}
    for (m, name), scores in by.items():
        np.testing.assert_allclose([rows[(m, name, "100:0")], rows[(m, name, "100:1")]], scores, rtol=1e-12)
    for m in spec.methods:
        best = max(tuning.configurations(m), key=lambda c: by[(m, c[0])].mean())
        assert report["selected"][m]["config"] == best[0]
        assert report["selected"][m]["hyperparameters"] == best[1]
    assert json.loads((data / tuning.SELECTED).read_text()) == report["selected"]
    assert (data / "sensitivity.png").stat().st_size > 0
    assert (data / tuning.TUNING / "scores.csv").read_text().splitlines()[0].startswith(
        "task,method,config,seed,score")
    folder = tuning.member_folder(data, "cancer_treatment", "true_bptt", "c0")  # what a run commits
    assert sorted(p.name for p in folder.iterdir()) == sorted([*tuning.TUNING_FILES, "COMPLETE"])


def test_selection_waits_for_every_run_and_keeps_the_first_of_a_tie():
    rows = [dict(method="true_bptt", config=c, complete=True, mean_score=s, runs=2)
            for c, s in zip(["c0", "c1", "c2", "c3", "c4", "c5"], [0.1, 0.5, 0.5, 0.2, 0.3, 0.4])]
    assert tuning.select(rows, ["true_bptt"])["true_bptt"]["config"] == "c1"
    rows[4]["complete"] = False
    assert tuning.select(rows, ["true_bptt"]) == {}


def test_tuning_resumes_without_training_again(tuned):
    spec, root, _ = tuned
    calls = []
    again = tuning.run_tuning(spec, root / "out", root / "data", verbose=False, train=lambda *a, **k: calls.append(a))
    assert not calls and not again["trained"] and len(again["skipped"]) == 3
    # a committed run is whole: a changed byte is found
    folder = tuning.member_folder(root / "data", "cancer_treatment", "true_bptt", "c0")
    from awm_jax.runner.run_folder import DamagedError, check_complete

    text = (folder / "summary.txt").read_text()
    (folder / "summary.txt").write_text(text + " ")
    try:
        with pytest.raises(DamagedError):
            check_complete(folder, verify=("summary.txt",))
    finally:
        (folder / "summary.txt").write_text(text)


def test_the_evaluation_refuses_tuning_streams(tuned):
    """experiments/fair_benchmark.py's check: an evaluation run on a tuning stream is refused."""
    import importlib.util
    from pathlib import Path

    spec, root, _ = tuned
    path = Path(__file__).parents[1] / "experiments" / "fair_benchmark.py"
    mod = importlib.util.module_from_spec(importlib.util.spec_from_file_location("fair_benchmark", path))
    mod.__spec__.loader.exec_module(mod)
    fresh = [dict(task="cancer_treatment", method="true_bptt", seed="200:0", score=0.5)]
    tuned = tuning.tuning_rows(root / "data", spec.tasks, spec.methods, spec.window)
    mod.check_disjoint(tuned, fresh)
    with pytest.raises(SystemExit, match="reuse tuning seed streams"):
        mod.check_disjoint(tuned, fresh + [dict(task="cancer_treatment", method="true_bptt", seed="100:1",
                                                         score=0.5)])
