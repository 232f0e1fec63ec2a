"""Each method reads exactly the config fields it declares (`Method.reads`), and any other field set away
from its default is refused before anything compiles, naming the method's own fields.

The reads are observed, not trusted: a Config subclass records every field read while the method's
learner is built and its whole training run and evaluation are traced (`jax.eval_shape`, nothing
compiles). Reads from dataclass machinery (repr, eq, hash: generated code) are not counted.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import jax
import pytest

import awm_envs
from awm_jax import Config
from awm_jax.core.methods import METHODS, RUN_FIELDS, method

FIELDS = [f.name for f in dataclasses.fields(Config)]
# read by make_train and the run drivers, outside the learner: the task is built from them, the seeds split
OUTSIDE = {"task", "horizon", "fixed_dt", "distractor_dims", "state_noise", "task_variant", "method", "seeds", "seed"}
TINY = dict(task="cancer_treatment", horizon=20, total_steps=392, warmup_steps=200, eval_every=64, imagined_rollouts=4,
            model_batch=8, width=16, heads=2, layers=1, rnn_hidden=16, ssm_state=8, mlp_hidden=(16,),
            policy_hidden=(16,), rl_hidden=(16,), rl_batch=32)


def observed_reads(name: str, **changes) -> set[str]:
    seen: set[str] = set()

    class Probe(Config):
        def __getattribute__(self, attr):
            if attr in FIELDS and sys._getframe(1).f_code.co_filename != "<string>":
                seen.add(attr)
            return object.__getattribute__(self, attr)

    base = Config(**TINY).for_method(name, **changes)
    cfg = Probe(**{f: getattr(base, f) for f in FIELDS})
    cfg.validate()
    task = awm_envs.make(cfg.task, **cfg.task_options())
    cfg.validate(task)
    seen.clear()  # validation reads everything; count what the learner reads
    learner = method(name).build(cfg, task)
    key = jax.random.PRNGKey(0)
    jax.eval_shape(learner, key)
    jax.eval_shape(learner.evaluate, jax.eval_shape(learner.init, key), key)
    return seen


@pytest.mark.parametrize("name", METHODS)
def test_each_method_reads_exactly_its_declared_fields(name):
    declared = set(method(name).reads)
    variants = [{}]
    if "parameterisation" in declared:
        variants.append(dict(parameterisation="paper"))
    seen = set().union(*(observed_reads(name, **v) for v in variants))
    assert seen - declared == set(), f"{name} reads undeclared fields"
    assert declared - seen - OUTSIDE == set(), f"{name} declares fields it never reads"


def _other_value(field: dataclasses.Field):
    """A value of `field`'s type other than its default (validity aside: the refusal comes first)."""
    d = field.default
    if isinstance(d, bool):
        return not d
    if isinstance(d, int):
        return d + 1
    if isinstance(d, float):
        return d / 2 if d else 0.5
    if isinstance(d, tuple):
        return (*d, 8)
    if isinstance(d, str):
        return d + "x"
    return 0.5 if "lr" in field.name or field.name in ("replay_half_life", "dt_target_entropy", "rl_entropy") else 7


@pytest.mark.parametrize("name", METHODS)
def test_every_field_a_method_does_not_read_is_refused(name):
    m = method(name)
    unread = [f for f in dataclasses.fields(Config) if f.name not in m.reads]
    assert unread, name
    for f in unread:
        cfg = Config(**{"method": name, f.name: _other_value(f)})
        with pytest.raises(ValueError, match=rf"^{name} does not use {f.name}=") as e:
            cfg.validate()
        assert all(own in str(e.value) for own in m.own_fields)
    # its own fields are taken: at their defaults, and the sweep helper drops the others
    Config(method=name).validate()
    assert Config(**{f.name: _other_value(f) for f in unread}).for_method(name).unused_settings() == {}
    with pytest.raises(ValueError, match=f"^{name} does not use {unread[0].name}="):
        Config().for_method(name, **{unread[0].name: _other_value(unread[0])}).validate()


def test_own_fields_exclude_the_run_fields():
    for name in METHODS:
        own = method(name).own_fields
        assert own and not set(own) & set(RUN_FIELDS)
        assert set(own) | set(RUN_FIELDS) == set(method(name).reads)


def test_cli_refuses_sac_with_a_policy_learning_rate_before_compiling(tmp_path):
    out = tmp_path / "run"
    p = subprocess.run([sys.executable, "-m", "awm_jax.cli", "train", "--method", "sac", "--policy-lr", "0.5",
                        "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert p.returncode != 0
    lines = p.stderr.strip().splitlines()
    assert lines == [lines[-1]] and lines[-1].startswith("awm-jax: error: sac does not use policy_lr=0.5; its own "
                                                         "fields are rl_hidden, rl_lr, rl_gamma"), p.stderr
    assert not out.exists()  # refused before the run folder (and any compile)


def config_flags(text: str) -> set[str]:
    """The Config fields whose flags (--name-with-hyphens or --no-name) appear in `text`."""
    import re

    names = {f.replace("_", "-"): f for f in FIELDS}
    return {names[m.removeprefix("no-") if m not in names else m] for m in re.findall(r"--([a-z0-9-]+)", text)
            if m in names or m.removeprefix("no-") in names}


@pytest.mark.parametrize("name", METHODS)
def test_train_help_lists_exactly_the_flags_of_the_method(name, capsys):
    from awm_jax.cli import main

    with pytest.raises(SystemExit) as e:
        main(["train", "--method", name, "--help"])
    assert e.value.code == 0
    assert config_flags(capsys.readouterr().out) == set(method(name).reads)


def test_unread_flags_are_read_from_every_flag_spelling():
    from awm_jax.cli import unread_flags

    argv = ["train", "--method", "sac", "--policy-lr", "0.5", "--width=8", "--no-gradient-cosine", "--stop-state-grad",
            "--rl-lr", "1e-3", "--seeds", "2", "--out", "x"]
    assert unread_flags(argv, "sac") == {"policy_lr": "0.5", "width": "8", "gradient_cosine": "False",
                                         "stop_state_grad": "True"}
    assert unread_flags(argv, "true_bptt") == {"rl_lr": "1e-3", "width": "8"}


@pytest.mark.parametrize("name", METHODS)
def test_what_a_run_records_round_trips_and_holds_only_what_trained(name):
    """config.json holds `resolved()`: every field, those the method does not read at their defaults (so
    they say nothing that did not train), and reading it back gives the same config."""
    import json

    for preset in ("default", *method(name).presets):
        cfg = Config.preset(name, preset, seeds=2).resolved()
        assert cfg.unused_settings() == {}
        back = Config.from_dict(json.loads(json.dumps(cfg.to_dict())))
        assert back == cfg, {k: (getattr(back, k), getattr(cfg, k)) for k in FIELDS
                             if getattr(back, k) != getattr(cfg, k)}


def test_a_run_saved_before_methods_declared_their_fields_loads_as_what_trained():
    """Runs saved earlier wrote a policy_lr for sac (which trains at rl_lr) and online_dt's temperature
    rate as policy_lr: reading them back gives the config in force today's way."""
    sac = Config.from_dict({"method": "sac", "policy_lr": 1e-4, "rl_lr": 1e-3})
    assert sac.policy_lr is None and sac.rl_lr == 1e-3 and sac.unused_settings() == {}
    odt = Config.from_dict({"method": "online_dt", "policy_lr": 3e-4, "parameterisation": "normalized"})
    assert odt.dt_temperature_lr == 3e-4 and odt.policy_lr is None and odt.unused_settings() == {}
    assert Config.from_dict({"method": "online_dt", "policy_lr": None}).dt_temperature_lr == 1e-4
