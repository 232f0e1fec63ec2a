"""State-space Actions World Model: s^_t = g(s_0, a_0, ..., a_{t-1}) with a stack of diagonal linear SSMs.

The paper's code offers an S4 sequence model besides GPT and LSTM; this is its S4D / S5 relative. Token 0
embeds s_0 and token t (t >= 1) embeds a_{t-1}, each through its own MLP (`embed`, as the recurrent AWM's)
into the width-`hidden` stream. Each of `layers` residual blocks computes

    x <- x + W(gelu(SSM(LayerNorm(x))))

and after a final LayerNorm an MLP decodes the feature at position t to the absolute state s^_t.

One SSM layer (S5-style, a diagonal complex state of size P = `ssm_state`, zero-order-hold discretised):

    Lambda = -exp(log_neg_re) + i im     (continuous eigenvalues, real part < 0 for every parameter value)
    dt     = exp(log_dt)                 (a learned timescale per state, init log-uniform in [dt_min, dt_max])
    lam    = exp(Lambda dt),  B_bar = (lam - 1) / Lambda * B
    h_t    = lam * h_{t-1} + B_bar u_t,  h_{-1} = 0
    y_t    = Re(C h_t) + D * u_t

so |lam| = exp(-exp(log_neg_re + log_dt)) < 1 for every parameter value: the recurrence is stable at
init and stays so through training. Init follows S4D-Lin / S5: Re Lambda = -1/2, Im Lambda = pi n,
B and C complex Gaussian with lecun variance, D ~ N(0, 1). B, C are stored as real [2, ...] pairs, so
every parameter is a real float (Adam and float64 conversion see ordinary arrays).

Training (`predict`) runs each layer's recurrence for all steps at once with jax.lax.associative_scan;
imagination (`start`/`step`) runs the same recurrence one token at a time, carrying the per-layer states
h [layers, P] (complex): `start` feeds token 0 from zero states, so its carry equals the parallel pass's
states after position 0, and `step` then equals row t + 1. Predictions never become inputs; within one
layer d h_t / d u_k = lam^(t-k) B_bar, a geometric decay whose sum over all lags is at most
|B_bar| / (1 - |lam|) whatever the horizon, so with a fixed number of layers the gradient from s^_t to a_k
cannot grow exponentially with t - k the way a product of recurrent-cell Jacobians can.

Sizes (chosen to match the recurrent AWMs): width `hidden` 48 (the config's `rnn_hidden`, the LSTM's
hidden size), `layers` 2 (the config's `layers`, the transformer's depth), embeddings and decoder MLP
(64, 64) as awm_lstm's, and P = 32 complex states per layer (`ssm_state`), which puts the total at 40,067
parameters for a 3-dimensional state and 2 actions against awm_lstm's 44,243 (awm_gru 36,515; P = 48
would give 46,307).
"""

from __future__ import annotations

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from awm_jax.core.models.base import WorldModel
from awm_jax.core.models.networks import MLP


def _combine(e1, e2):
    """Associative operator of h_t = a_t h_{t-1} + b_t: (a1, b1) then (a2, b2) -> (a2 a1, a2 b1 + b2)."""
    a1, b1 = e1
    a2, b2 = e2
    return a2 * a1, a2 * b1 + b2


def _log_uniform(lo: float, hi: float):
    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, math.log(lo), math.log(hi))
    return init


def _s4d_lin_imag(key, shape, dtype=jnp.float32):
    return jnp.pi * jnp.arange(shape[0], dtype=dtype)  # S4D-Lin: Im Lambda_n = pi n


class DiagonalSSM(nn.Module):
    """One diagonal linear state-space layer: inputs u [T, d] -> outputs y [T, d] (see the module docstring)."""

    features: int
    state: int = 32
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    param_dtype: jnp.dtype = jnp.float32  # as flax's Dense: float32 parameters even under jax_enable_x64

    def setup(self):
        P, d, dt = self.state, self.features, self.param_dtype
        self.log_neg_re = self.param("log_neg_re", nn.initializers.constant(math.log(0.5)), (P,), dt)
        self.im = self.param("im", _s4d_lin_imag, (P,), dt)
        self.log_dt = self.param("log_dt", _log_uniform(self.dt_min, self.dt_max), (P,), dt)
        self.B = self.param("B", nn.initializers.normal(1.0 / math.sqrt(2 * d)), (2, P, d), dt)  # [re/im, P, d]
        self.C = self.param("C", nn.initializers.normal(1.0 / math.sqrt(2 * P)), (2, d, P), dt)  # [re/im, d, P]
        self.D = self.param("D", nn.initializers.normal(1.0), (d,), dt)

    def discrete(self):
        """(lam [P], B_bar [P, d], C [d, P]): the zero-order-hold discretisation, complex."""
        lam_c = jax.lax.complex(-jnp.exp(self.log_neg_re), self.im)
        lam = jnp.exp(lam_c * jnp.exp(self.log_dt))
        B_bar = ((lam - 1.0) / lam_c)[:, None] * jax.lax.complex(self.B[0], self.B[1])
        return lam, B_bar, jax.lax.complex(self.C[0], self.C[1])

    def __call__(self, u):
        """All steps at once: u [T, d] -> y [T, d], the recurrence as an associative scan over T."""
        lam, B_bar, C = self.discrete()
        bu = u @ B_bar.T  # [T, P]
        _, h = jax.lax.associative_scan(_combine, (jnp.broadcast_to(lam, bu.shape), bu))
        return (h @ C.T).real + self.D * u

    def step(self, h, u):
        """One step: state h [P] (complex), input u [d] -> (h' [P], y [d])."""
        lam, B_bar, C = self.discrete()
        h = lam * h + B_bar @ u
        return h, (C @ h).real + self.D * u


class SSMAWMNet(nn.Module):
    """MLP token embeddings, `layers` residual SSM blocks, final LayerNorm and the decoder MLP."""

    state_size: int
    hidden: int = 48
    layers: int = 2
    ssm_state: int = 32
    embed: tuple = (64, 64)
    decoder: tuple = (64, 64)

    def setup(self):
        self.embed_s = MLP(self.embed, self.hidden, "relu")
        self.embed_a = MLP(self.embed, self.hidden, "relu")
        self.norms = [nn.LayerNorm(name=f"ln_{i}") for i in range(self.layers)]
        self.ssms = [DiagonalSSM(self.hidden, self.ssm_state, name=f"ssm_{i}") for i in range(self.layers)]
        self.mix = [nn.Dense(self.hidden, name=f"mix_{i}") for i in range(self.layers)]
        self.ln_f = nn.LayerNorm(name="ln_f")
        self.head = MLP(self.decoder, self.state_size, "relu")

    def __call__(self, s0, actions):
        """s0 [n], actions [H, m] -> predictions s^_1..s^_H [H, n] (parallel over time)."""
        x = jnp.concatenate([self.embed_s(s0)[None], self.embed_a(actions)], axis=0)  # [H + 1, hidden]
        for ln, ssm, mix in zip(self.norms, self.ssms, self.mix):
            x = x + mix(nn.gelu(ssm(ln(x))))
        return self.head(self.ln_f(x)[1:])

    def _token(self, x, states):
        """One token x [hidden] through every layer from states [layers, P] -> (states', feature)."""
        new = []
        for ln, ssm, mix, h in zip(self.norms, self.ssms, self.mix, states):
            h, y = ssm.step(h, ln(x))
            x = x + mix(nn.gelu(y))
            new.append(h)
        return jnp.stack(new), x

    def first(self, s0):
        """Token 0 (s_0) from zero states -> states [layers, P] after position 0."""
        dtype = jnp.result_type(s0.dtype, jnp.complex64)
        return self._token(self.embed_s(s0), jnp.zeros((self.layers, self.ssm_state), dtype))[0]

    def next(self, states, action):
        """Token t + 1 (a_t) -> (states', s^_{t+1} [n])."""
        states, x = self._token(self.embed_a(action), states)
        return states, self.head(self.ln_f(x))

    def eigenvalues(self):
        """The discrete eigenvalues lam [layers, P] (complex)."""
        return jnp.stack([ssm.discrete()[0] for ssm in self.ssms])


@dataclasses.dataclass(frozen=True)
class SSMAWM(WorldModel):
    """The world-model interface over SSMAWMNet; `predict` is the parallel pass (BPO recomputes through it)."""

    hidden: int = 48
    layers: int = 2
    ssm_state: int = 32
    embed: tuple = (64, 64)
    decoder: tuple = (64, 64)

    @classmethod
    def config_sizes(cls, config) -> dict:
        return dict(hidden=config.rnn_hidden, layers=config.layers, ssm_state=config.ssm_state,
                    embed=config.mlp_hidden, decoder=config.mlp_hidden)

    feeds_back_predictions = False
    parallel_predict = True

    @property
    def net(self):
        return SSMAWMNet(self.state_size, self.hidden, self.layers, self.ssm_state, tuple(self.embed),
                         tuple(self.decoder))

    def init(self, key):
        return self.net.init(key, jnp.zeros((self.state_size,)), jnp.zeros((1, self.action_size)))

    def predict(self, params, states, actions):
        return self.net.apply(params, states[0], actions)  # an AWM reads s_0 and the actions only

    def start(self, params, s0):
        return self.net.apply(params, s0, method=SSMAWMNet.first)

    def step(self, params, carry, action, t):
        return self.net.apply(params, carry, action, method=SSMAWMNet.next)

    def eigenvalues(self, params):
        """Discrete eigenvalues [layers, P] of every SSM layer (|lam| < 1 by construction)."""
        return self.net.apply(params, method=SSMAWMNet.eigenvalues)

    def check_horizon(self, horizon: int) -> None:
        """No position table: any horizon is accepted."""
