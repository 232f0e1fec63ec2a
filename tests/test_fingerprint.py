"""A fixed reference run's metrics, bit for bit: restructuring the library must not change a number.

Two short runs, one BPO method through a learned world model (markov_mlp) and one model-free method
(sac), 2 vmapped seeds each on simple_case. Their metrics (every array, float32 bytes, in name order)
are hashed and compared with the hashes recorded in fingerprints.json for this jax and jaxlib version
and CPU: float32 programs round differently across jaxlib versions and instruction sets (XLA compiles
for the host's), so each has its own record. One without a record is skipped with the command that
records it (under the test run's XLA_FLAGS, which conftest sets):

    python tests/test_fingerprint.py --record

Record only from code whose numbers are known good (before a change that must not move them), and commit
the new record on its own.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
from pathlib import Path

import jax
import jaxlib
import numpy as np
import pytest

import awm_jax  # noqa: F401  (before version(): on some jaxlibs its XLA CPU workaround adds to XLA_FLAGS)

RECORD = Path(__file__).with_name("fingerprints.json")
SCHEDULE = dict(task="simple_case", horizon=10, seeds=2, seed=3, total_steps=328, warmup_steps=200, eval_every=64)
RUNS = {
    "markov_mlp": dict(method="markov_mlp", model_batch=16, imagined_rollouts=4),
    "sac": dict(method="sac", rl_hidden=(32, 32), rl_batch=32),
}


def version() -> str:
    """jax and jaxlib versions, backend, XLA_FLAGS (conftest's optimisation level), and on a CPU its model
    and a hash of its instruction-set flags."""
    out = f"jax {jax.__version__} jaxlib {jaxlib.__version__} {jax.default_backend()}"
    if os.environ.get("XLA_FLAGS"):
        out += f" XLA_FLAGS={os.environ['XLA_FLAGS']}"
    if jax.default_backend() == "cpu":
        info = dict(line.split(":", 1) for line in Path("/proc/cpuinfo").read_text().splitlines()[:40]
                    if ":" in line) if Path("/proc/cpuinfo").exists() else {}
        info = {k.strip(): v.strip() for k, v in info.items()}
        flags = hashlib.sha256(info.get("flags", platform.machine()).encode()).hexdigest()[:8]
        out += f" {info.get('model name', platform.processor() or platform.machine())} flags {flags}"
    return out


def fingerprint(name: str) -> dict:
    """{"hash": sha256 of the run's metrics, "final": its last mean evaluation return (for reading)}."""
    from awm_jax import Config, make_train

    cfg = Config(**SCHEDULE, **RUNS[name])
    learner = make_train(cfg)
    keys = jax.random.split(jax.random.PRNGKey(cfg.seed), cfg.seeds)
    _, metrics = jax.jit(jax.vmap(learner))(keys)
    h = hashlib.sha256()
    for k in sorted(metrics):
        v = np.asarray(metrics[k])
        h.update(k.encode())
        h.update(str(v.dtype).encode() + str(v.shape).encode())
        h.update(np.ascontiguousarray(v).tobytes())
    return {"hash": h.hexdigest(), "final": float(np.asarray(metrics["eval/return"])[:, -1].mean())}


def recorded() -> dict:
    return json.loads(RECORD.read_text()) if RECORD.exists() else {}


@pytest.mark.parametrize("name", sorted(RUNS))
def test_reference_run_is_bit_identical(name):
    want = recorded().get(version(), {}).get(name)
    if want is None:
        pytest.skip(f"no fingerprint recorded for {version()}: python tests/test_fingerprint.py --record")
    got = fingerprint(name)
    assert got["hash"] == want["hash"], (
        f"{name}'s reference metrics changed (final eval return {got['final']!r}, recorded {want['final']!r})")


if __name__ == "__main__":
    if sys.argv[1:] != ["--record"]:
        sys.exit("usage: python tests/test_fingerprint.py --record")
    import conftest  # noqa: F401  (the test run's XLA_FLAGS, set before the backend starts)

    data = recorded()
    data[version()] = {name: fingerprint(name) for name in sorted(RUNS)}
    RECORD.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"recorded {version()}: {data[version()]}")
