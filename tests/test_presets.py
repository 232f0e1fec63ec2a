"""Named presets: "paper" gives the settings of the committed runs that reproduced the paper code's numbers,
"tuned" the fair benchmark's selection, and each preset is a whole, valid configuration of its method."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from awm_jax import Config
from awm_jax.core.methods import METHODS, method

DATA = Path(__file__).resolve().parents[1] / "docs" / "data"


def saved(folder: str) -> Config:
    return Config.from_dict(json.loads((DATA / folder / "config.json").read_text()))


def test_true_bptt_paper_preset_is_the_run_that_reproduced_the_paper_code():
    """docs/results/learning.md: true_bptt at the paper's settings ends at -20.87 on cancer_treatment, the
    paper code's number. The preset with that run's task and seeds is that run's whole configuration."""
    run = saved("learn_like_paper/cancer_true_paper/cancer_treatment-true_bptt")
    assert "-20.87" in (DATA / "learn_like_paper/cancer_true_paper/cancer_treatment-true_bptt/summary.txt").read_text()
    preset = Config.preset("true_bptt", "paper", task=run.task, seeds=run.seeds)
    differ = {f.name for f in dataclasses.fields(Config) if getattr(preset, f.name) != getattr(run, f.name)}
    assert differ == set(), {k: (getattr(preset, k), getattr(run, k)) for k in differ}


def test_world_model_paper_preset_matches_the_paper_variant_run():
    """The transformer AWM's run "the paper's way throughout" (raw policy inputs, raw model states, lr 1e-4):
    the preset sets exactly those fields to that run's values."""
    run = saved("learn_like_paper/awm_c_paper_variant/cancer_treatment-awm_transformer")
    preset = method("awm_transformer").presets["paper"]
    assert preset == {k: getattr(run, k) for k in ("parameterisation", "policy_lr", "model_scaling")}
    assert preset["policy_lr"] != Config(method="awm_transformer").policy_lr_value  # it changes something


def test_tuned_presets_are_the_fair_benchmarks_selection():
    selected = json.loads((DATA / "fair_benchmark" / "selected.json").read_text())
    tuned = {m: method(m).presets["tuned"] for m in METHODS if "tuned" in method(m).presets}
    assert tuned == {m: s["hyperparameters"] for m, s in selected.items()}


@pytest.mark.parametrize("name", METHODS)
def test_every_preset_validates_and_unknown_names_are_refused(name):
    for preset, fields in {"default": {}, **method(name).presets}.items():
        cfg = Config.preset(name, preset)
        cfg.validate()
        assert {k: getattr(cfg, k) for k in fields} == fields
    assert Config.preset(name, "default", seeds=3) == Config(method=name, seeds=3)
    with pytest.raises(ValueError, match=f"^{name} has no preset 'nope'; its presets: default"):
        Config.preset(name, "nope")
