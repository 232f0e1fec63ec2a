"""Tanh-Gaussian MLP policies in two parameterisations (`Config.parameterisation`).

a = tanh(mu + sigma * eps), eps ~ N(0, I): reparameterised, so the sampled action is a
differentiable function of the parameters and of the noise. The evaluation action is tanh(mu).

- "normalized" (awm_jax's): input [z-scored state, t / horizon] (`awm_jax.core.spaces.policy_input`);
  the last layer's init scaled by 0.01 and log sigma squashed smoothly into [-5, 2], so the initial
  policy has mean ~0 and sigma ~1 whatever the task. Its learning rate is retuned (README).
- "paper" (the reference implementation's): input the raw observation [state, t] with t = 0..H-1;
  brax's NormalTanh head, sigma = softplus(raw) + 0.001 (no upper bound), every layer with the
  ordinary lecun-uniform init. The paper's learning rate (1e-4) is tuned for this input scale.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from awm_jax.core.config import PARAMETERISATIONS
from awm_jax.core.models.networks import ACTIVATIONS, MLP
from awm_jax.core.spaces import Normalizer, policy_input

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
_MID, _HALF = (LOG_STD_MAX + LOG_STD_MIN) / 2, (LOG_STD_MAX - LOG_STD_MIN) / 2
_OFFSET = float(np.arctanh(-_MID / _HALF))  # a zero network output means log_std = 0 (std 1)
MIN_STD = 0.001  # brax NormalTanhDistribution's min_std


class LecunMLP(nn.Module):
    """brax's policy MLP: lecun-uniform kernels, zero biases, `activation` between layers, linear last."""

    hidden: tuple
    out: int
    activation: str = "swish"

    @nn.compact
    def __call__(self, x):
        init = nn.initializers.lecun_uniform()
        for width in self.hidden:
            x = ACTIVATIONS[self.activation](nn.Dense(width, kernel_init=init)(x))
        return nn.Dense(self.out, kernel_init=init)(x)


@dataclasses.dataclass(frozen=True)
class Policy:
    input_size: int
    action_size: int
    hidden: tuple = (64, 64)
    activation: str = "swish"
    horizon: int = 100  # "normalized" feeds t / horizon
    parameterisation: str = "normalized"

    def __post_init__(self):
        if self.parameterisation not in PARAMETERISATIONS:
            raise ValueError(f"unknown policy parameterisation {self.parameterisation!r}; "
                             f"valid: {', '.join(PARAMETERISATIONS)}")

    @property
    def net(self):
        if self.parameterisation == "paper":
            return LecunMLP(tuple(self.hidden), 2 * self.action_size, self.activation)
        return MLP(tuple(self.hidden), 2 * self.action_size, self.activation, out_init_scale=0.01)

    def init(self, key):
        return self.net.init(key, jnp.zeros((self.input_size,)))

    def features(self, norm: Normalizer, obs):
        """Raw task observations [..., n + 1] -> what the network sees [..., n + 1]."""
        if self.parameterisation == "paper":
            return obs
        return policy_input(norm, obs, self.horizon)

    def dist(self, params, x):
        """Features x [..., input] -> mean [..., m], log_std [..., m] of the Gaussian before tanh."""
        out = self.net.apply(params, x)
        mu, raw = jnp.split(out, 2, axis=-1)
        if self.parameterisation == "paper":
            return mu, jnp.log(jax.nn.softplus(raw) + MIN_STD)
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
