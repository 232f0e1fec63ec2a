"""The episode replay: which slots hold completed episodes, and how often each is drawn."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from configs import config

from awm_jax import Config
from awm_jax.core.replay import Replay


def filled(episodes: int, capacity: int, horizon: int = 3) -> Replay:
    """A replay after `episodes` whole episodes; episode e's observations all equal e."""
    replay = Replay.empty(capacity, horizon, 1, 1)
    for e in range(episodes):
        for t in range(horizon):
            replay = replay.add(t, jnp.full(1, e, jnp.float32), jnp.zeros(1), 0.0, jnp.full(1, e, jnp.float32),
                                t == horizon - 1)
    return replay


@pytest.mark.parametrize("episodes", [3, 9])  # 9 > capacity 6: the replay has wrapped around
@pytest.mark.parametrize("half_life", [None, 1.5])
def test_sampling_frequencies_match_the_weights(episodes, half_life):
    replay = filled(episodes, capacity=6)
    n = 200_000
    obs, _, _ = replay.sample(jax.random.PRNGKey(0), n, half_life)
    drawn = np.asarray(obs[:, 0, 0]).astype(int)
    available = min(episodes, replay.capacity - 1)  # one slot is always being written
    newest = episodes - 1
    age = np.arange(available)
    w = np.ones(available) if half_life is None else 0.5 ** (age / half_life)
    expected = w / w.sum()  # by age: episode newest - j
    freq = np.array([(drawn == newest - j).mean() for j in age])
    assert set(drawn) <= set(newest - age)  # only completed episodes, never the slot being written
    np.testing.assert_allclose(freq, expected, atol=4 * np.sqrt(expected.max() / n))


def test_half_life_must_be_positive_and_needs_a_world_model():
    with pytest.raises(ValueError, match="replay_half_life"):
        config(replay_half_life=0.0).validate()
    for name in ("true_bptt", "sac", "online_dt"):
        with pytest.raises(ValueError, match=f"^{name} does not use replay_half_life=5.0"):
            Config(method=name, replay_half_life=5.0).validate()
    config(method="markov_svg", replay_half_life=5.0).validate()
