"""Tanh-Gaussian MLP policy on [normalised state, t / horizon] (see `awm_jax.spaces.policy_input`).

a = tanh(mu + sigma * eps), eps ~ N(0, I): reparameterised, so the sampled action is a
differentiable function of the parameters and of the noise. The evaluation action is tanh(mu).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from awm_jax.networks import MLP

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
_MID, _HALF = (LOG_STD_MAX + LOG_STD_MIN) / 2, (LOG_STD_MAX - LOG_STD_MIN) / 2
_OFFSET = float(np.arctanh(-_MID / _HALF))  # a zero network output means log_std = 0 (std 1)


@dataclasses.dataclass(frozen=True)
class Policy:
    input_size: int
    action_size: int
    hidden: tuple = (64, 64)
    activation: str = "swish"

    @property
    def net(self):
        return MLP(tuple(self.hidden), 2 * self.action_size, self.activation, out_init_scale=0.01)

    def init(self, key):
        return self.net.init(key, jnp.zeros((self.input_size,)))

    def dist(self, params, x):
        """x [..., input] -> mean [..., m], log_std [..., m] (log_std squashed smoothly into
        [LOG_STD_MIN, LOG_STD_MAX]; the initial policy has std close to 1)."""
        out = self.net.apply(params, x)
        mu, raw = jnp.split(out, 2, axis=-1)
        return mu, _MID + _HALF * jnp.tanh(raw + _OFFSET)

    def sample(self, params, x, key):
        """A reparameterised action [..., m] in (-1, 1) and its log-probability [...]."""
        mu, log_std = self.dist(params, x)
        eps = jax.random.normal(key, mu.shape, mu.dtype)
        return self.squash(mu, log_std, eps)

    @staticmethod
    def squash(mu, log_std, eps):
        """tanh(mu + exp(log_std) eps) and its log-density (change of variables through tanh)."""
        u = mu + jnp.exp(log_std) * eps
        a = jnp.tanh(u)
        logp_u = jnp.sum(-0.5 * eps**2 - log_std - 0.5 * jnp.log(2 * jnp.pi), axis=-1)
        # log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), stable for large |u|
        log_det = jnp.sum(2 * (jnp.log(2.0) - u - jax.nn.softplus(-2 * u)), axis=-1)
        return a, logp_u - log_det

    def mode(self, params, x):
        """The deterministic evaluation action tanh(mu) [..., m]."""
        return jnp.tanh(self.dist(params, x)[0])
