"""Ctrl-C and SIGTERM: a default-flag run stops after its chunk with a checkpoint, one line and exit 130/143;
`--resume` ends bit-identical to an uninterrupted run; a second signal stops at once and the folder still
resumes. The runs are real `awm-jax` processes (they share the tests' compilation cache, so only the first
compiles)."""

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from awm_jax.runner import interrupt

PERIODS = 6  # evaluation periods of 64 env steps after 200 of warm-up: 584 env steps, one chunk each
FLAGS = ["--warmup-steps", "200", "--eval-every", "64", "--model-batch", "16", "--imagined-rollouts", "4",
         "--seeds", "2", "--total-steps", str(200 + 64 * PERIODS), "--chunk-periods", "1"]
TRAIN = ["train", "--task", "cancer_treatment", "--method", "markov_mlp", *FLAGS]
SWEEP = ["sweep", "--tasks", "cancer_treatment", "--methods", "markov_mlp", *FLAGS]
CHUNK_LINE = "[awm-jax] env steps"  # printed after every chunk


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The metrics of an uninterrupted default-flag run, which is shorter than the default wall-time interval
    and so writes no checkpoint."""
    out = tmp_path_factory.mktemp("reference") / "run"
    done = subprocess.run(_cli([*TRAIN, "--out", str(out)]), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (out / "COMPLETE").exists() and not any((out / "checkpoints").glob("*"))
    return _metrics(out)


def _cli(args):
    return [sys.executable, "-m", "awm_jax.cli", *args]


def _interrupt(args, signals, wait_for=CHUNK_LINE, timeout=300):
    """Start `awm-jax ARGS`, send `signals` once a line starting with `wait_for` is printed (each next one once
    the previous one's acknowledgement is), and return (exit code, output)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(_cli(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    lines, waiting = [], [wait_for] + ["awm-jax: "] * (len(signals) - 1)
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        for line in proc.stdout:
            lines.append(line)
            if signals and line.startswith(waiting[0]):
                proc.send_signal(signals.pop(0))
                waiting.pop(0)
        proc.wait()
    finally:
        timer.cancel()
    assert not signals, "the run ended before every signal was sent:\n" + "".join(lines)
    return proc.returncode, "".join(lines)


def _resume(line: str, expect_resumed: bool = True) -> str:
    """Run the command the exit line names (`awm-jax ... --resume`); returns its output."""
    command = re.search(r"`(awm-jax [^`]*)`", line).group(1)
    args = shlex.split(command)[1:]
    assert args[-1] == "--resume"
    done = subprocess.run(_cli(args), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    resumed = re.search(r"resumed .* after (\d+)/(\d+) evaluation periods", done.stdout)
    if expect_resumed:
        assert resumed and 0 < int(resumed.group(1)) < PERIODS, done.stdout
    return done.stdout


def _metrics(folder):
    return json.loads((folder / "metrics.json").read_text())["metrics"]


def _assert_equal_metrics(got, want):
    assert sorted(got) == sorted(want)
    for k in want:  # json floats: equal lists are equal float64 values
        np.testing.assert_array_equal(np.asarray(got[k], dtype=np.float64), np.asarray(want[k], dtype=np.float64),
                                      err_msg=k)


def test_ctrl_c_stops_after_the_chunk_with_a_checkpoint_and_resume_is_exact(tmp_path, reference):
    out = tmp_path / "run"
    rc, text = _interrupt([*TRAIN, "--out", str(out)], [signal.SIGINT])
    assert rc == 130, text
    assert "Traceback" not in text and "Exception" not in text, text
    last = text.strip().splitlines()[-1]
    m = re.fullmatch(r"awm-jax: SIGINT: stopped training cancer_treatment / markov_mlp at env step (\d+)/584; "
                     r"checkpoint (\S+); `awm-jax train .* --resume` continues from it", last)
    assert m, last
    step, checkpoint = int(m.group(1)), m.group(2)
    assert 200 < step < 584 and checkpoint.startswith(str(out / "checkpoints")), last
    # a default-flag run this short writes no checkpoint but the signal's, and nothing looks finished
    steps = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert steps == [os.path.basename(checkpoint)] and not (out / "COMPLETE").exists()
    _resume(last)
    _assert_equal_metrics(_metrics(out), reference)


def test_sigterm_stops_a_sweep_and_resume_is_exact(tmp_path, reference):
    out = tmp_path / "sweep"
    rc, text = _interrupt([*SWEEP, "--out", str(out)], [signal.SIGTERM])
    assert rc == 143, text
    assert "Traceback" not in text, text
    last = text.strip().splitlines()[-1]
    assert re.fullmatch(r"awm-jax: SIGTERM: stopped training group 1/1 \(cancer_treatment / markov_mlp\) of sweep "
                        r"\S+ at env step \d+/584; checkpoint \S+/groups/cancer_treatment-markov_mlp/checkpoints/\d+; "
                        r"`awm-jax sweep .* --resume` continues from it", last), last
    _resume(last)
    _assert_equal_metrics(_metrics(out / "cancer_treatment-markov_mlp"), reference)
    assert (out / "COMPLETE").exists()


@pytest.mark.slow  # ~12-19 s: out of the default run, which must stay under 15 minutes
def test_a_second_signal_stops_at_once_and_the_folder_still_resumes(tmp_path, reference):
    out = tmp_path / "run"
    rc, text = _interrupt([*TRAIN, "--out", str(out)], [signal.SIGTERM, signal.SIGTERM])
    assert rc == 143, text
    assert "Traceback" not in text, text
    last = text.strip().splitlines()[-1]
    assert last.startswith("awm-jax: second signal (SIGTERM): stopped at once; "), last
    assert re.search(r"`awm-jax train .* --resume` (starts it again from env step 0|continues from it)", last), last
    assert not (out / "COMPLETE").exists() and not list((out / "checkpoints").glob("*.partial"))
    _resume(last, expect_resumed=False)
    _assert_equal_metrics(_metrics(out), reference)


def test_the_watch_restores_handlers_and_stays_out_of_other_threads():
    before = {s: signal.getsignal(s) for s in interrupt.SIGNALS}
    with interrupt.watch() as w:
        assert w.active and signal.getsignal(signal.SIGINT) != before[signal.SIGINT]
        with interrupt.watch(hard=True) as inner:
            assert inner is w  # nested runs share the outermost watch
        os.kill(os.getpid(), signal.SIGTERM)  # the first signal only sets the flag
        time.sleep(0.05)
        assert w.signum == signal.SIGTERM
        with pytest.raises(interrupt.Interrupted, match="SIGTERM: stopped before group 2") as e:
            interrupt.check("before group 2")
        assert e.value.exit_code == 143
        with pytest.raises(KeyboardInterrupt):  # from Python, a second signal stops at once as Python would
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
    assert {s: signal.getsignal(s) for s in interrupt.SIGNALS} == before
    seen = []

    def elsewhere():
        with interrupt.watch() as w:
            seen.append(w.active)

    t = threading.Thread(target=elsewhere)
    t.start()
    t.join()
    assert seen == [False] and signal.getsignal(signal.SIGINT) == before[signal.SIGINT]
