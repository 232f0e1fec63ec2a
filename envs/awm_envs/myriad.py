"""The 21 Myriad optimal-control systems as RL tasks (see shared TASKS.md for the equations).

Each problem  min g_T(x_T) + int_0^T c(x, u, t) dt,  dx/dt = f(x, u, t)  becomes a task by the paper's
conventions:
- explicit Euler, x_{t+1} = clip(x_t + dt f(x_t, u_t, t dt), state bounds), dt = T / horizon
  (or T / 100 with ``fixed_dt``);
- u = lo + (a + 1)(hi - lo) / 2 for an action a in [-1, 1];
- r_t = -c(x_t, u_t, t dt) dt, and at the last step t = H - 1 also -g_T(x_{H-1}) (the reference
  implementation scores the state before the last transition);
- where Myriad constrains the final state to x_T (cartpole, mountain_car, pendulum, rocket_landing),
  the last step also pays ``terminal_weight * sum(((x_{H-1} - x_T) / range)^2)``, with range the width
  of the state bounds, so that the penalty is scale-free. ``terminal_weight`` defaults to 10.
- simple_case has no control bounds in Myriad; actions map to u in [-1, 3]. That range contains the
  optimal control (0 <= u* = -C lambda / (2B) < 2 for T = 1), and it keeps x finite: from x0 = 1,
  dx/dt = -x^2/2 + C u blows up before T = 1 for u <= -2 but not for u >= -1.

Parameters are Myriad's defaults; every one can be overridden by name in `awm_envs.make`.

The paper's copies of three systems differ from Myriad's (shared TASKS.md), and the task names give
the paper's versions, which its benchmark used; `awm_envs.make(name, variant="myriad")` gives Myriad's
originals (`ORIGINALS`):
- glucose: l = 0.4 (Myriad 0.5);
- predator_prey: T = 100 (Myriad 10), so dt = 1 at H = 100;
- invasive_plant: Euler steps of the difference, x_{t+1} = x_t + dt ((x_t + k x_t/(eps + x_t))(1 - u_t) - x_t)
  with dt = T / H, T = 10, H = 100 by default, and the running cost times dt like every other task
  (Myriad's original is discrete-time, x_{t+1} = f(x_t, u_t), 10 steps, cost not scaled; the two agree at
  H = 10).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax.numpy as jnp
import numpy as np

from awm_envs.core import System, affine_controls, is_last_step

PI = float(np.pi)
LW = "Myriad; Lenhart & Workman (2007)"
CLASSIC = "Myriad; classic control"


@dataclasses.dataclass(frozen=True, eq=False, repr=False, kw_only=True)
class MyriadSystem(System):
    """A Myriad problem given by its data. ``f``, ``cost`` and ``terminal`` take (x, u, t, p)."""

    name: str
    state_size: int
    action_size: int
    time_span: float | None
    x0: tuple
    u_lo: tuple
    u_hi: tuple
    x_lo: tuple | None
    x_hi: tuple | None
    f: Callable
    cost: Callable
    terminal: Callable | None = None
    target: tuple | None = None  # terminal-state constraint x_T, turned into a penalty
    default_params: dict = dataclasses.field(default_factory=dict)
    source: str = LW
    default_horizon: int = 100

    def __post_init__(self):
        params = dict(self.default_params)
        if self.target is not None:
            params.setdefault("terminal_weight", 10.0)
        object.__setattr__(self, "default_params", params)

    @property
    def discrete(self) -> bool:
        return self.time_span is None

    def controls(self, action):
        return affine_controls(action, self.u_lo, self.u_hi)

    def init_state(self, params, key, dtype):
        return jnp.asarray(self.x0, dtype)

    def next_state(self, params, x, action, t, dt, key):
        u = self.controls(action)
        if self.discrete:
            return self.f(x, u, t, params)
        return x + dt * self.f(x, u, t * dt, params)

    def clip_state(self, params, x):
        if self.x_lo is None:
            return x
        return jnp.clip(x, jnp.asarray(self.x_lo, x.dtype), jnp.asarray(self.x_hi, x.dtype))

    def reward(self, params, x, action, t, dt, horizon):
        u = self.controls(action)
        r = -self.cost(x, u, t * dt, params) * dt
        last = is_last_step(t, horizon)
        if self.terminal is not None:
            r = r - jnp.where(last, self.terminal(x, params), 0.0)
        if self.target is not None:
            width = jnp.asarray(self.x_hi, x.dtype) - jnp.asarray(self.x_lo, x.dtype)
            dist = jnp.sum(((x - jnp.asarray(self.target, x.dtype)) / width) ** 2)
            r = r - jnp.where(last, params["terminal_weight"] * dist, 0.0)
        return r


def vec(*xs):
    return jnp.stack([jnp.asarray(v) for v in xs])


# --- dynamics and costs ---------------------------------------------------------------------------

def _bear_f(x, u, t, p):
    r, K, mp, mf = p["r"], p["K"], p["mp"], p["mf"]
    k, k2 = r / K, r / K**2
    up, uf = u[0], u[1]
    return vec(
        r * x[0] - k * x[0] ** 2 + k * mf * (1 - x[0] / K) * x[1] ** 2 - up * x[0],
        r * x[1] - k * x[1] ** 2 + k * mp * (1 - x[1] / K) * x[0] ** 2 - uf * x[1],
        k * (1 - mp) * x[0] ** 2 + k * (1 - mf) * x[1] ** 2 + k2 * mf * x[0] * x[1] ** 2 + k2 * mp * x[0] ** 2 * x[1],
    )


def _hiv_f(x, u, t, p):
    u = u[0]
    return vec(
        p["s"] / (1 + x[2]) - p["m1"] * x[0] + p["r"] * x[0] * (1 - (x[0] + x[1]) / p["Tmax"])
        - u * p["k"] * x[0] * x[2],
        u * p["k"] * x[2] * x[0] - p["m2"] * x[1],
        p["N"] * p["m2"] * x[1] - p["m3"] * x[2],
    )


def _seirn_f(x, u, t, p):
    S, E, I, N = x[0], x[1], x[2], x[3]
    b, d, c, e, g, a = p["b"], p["d"], p["c"], p["e"], p["g"], p["a"]
    return vec(
        b * N - d * S - c * S * I - u[0] * S,
        c * S * I - (e + d) * E,
        e * E - (g + a + d) * I,
        (b - d) * N - a * I,
    )


def _cartpole_f(x, u, t, p):
    m1, m2, l, g = p["m1"], p["m2"], p["l"], p["g"]
    th, thdot = x[1], x[3]
    s, c = jnp.sin(th), jnp.cos(th)
    qdd = (l * m2 * s * thdot**2 + u[0] + m2 * g * c * s) / (m1 + m2 * (1 - c**2))
    thdd = -(l * m2 * c * s * thdot**2 + u[0] * c + (m1 + m2) * g * s) / (l * m1 + l * m2 * (1 - c**2))
    return vec(x[2], x[3], qdd, thdd)


def _pendulum_f(x, u, t, p):
    g, m, l = p["g"], p["m"], p["l"]
    th_n = jnp.mod(x[0] + PI, 2 * PI) - PI
    return vec(jnp.clip(x[1], -8.0, 8.0), 0.05 * (-(3 * g / (2 * l)) * jnp.sin(th_n) + 3 * u[0] / (m * l**2)))


def _rocket_f(x, u, t, p):
    m, L, g, F = p["m"], p["L"], p["g"], p["F"]
    inertia = m * L**2 / 12
    th = x[4]
    return vec(
        x[1],
        F * u[0] * jnp.sin(u[1] + th) / m,
        x[3],
        F * u[0] * jnp.cos(u[1] + th) / m - g,
        x[5],
        -(L / 2) * F * u[0] * jnp.sin(u[1]) / inertia,
    )


def _tumour_f(x, u, t, p):
    pp, q = x[0], x[1]
    return vec(
        -p["xi"] * pp * jnp.log(pp / q),
        q * (p["b"] - p["mu"] - p["d"] * pp ** (2.0 / 3.0) - p["G"] * u[0]),
        u[0],
    )


def _sum_u2(u):
    return jnp.sum(u**2)


SYSTEMS: dict[str, MyriadSystem] = {}  # the paper's versions
ORIGINALS: dict[str, MyriadSystem] = {}  # Myriad's originals where the paper's copies differ (variant="myriad")
VARIANTS = ("paper", "myriad")


def _add(registry=SYSTEMS, **kw):
    s = MyriadSystem(**kw)
    registry[s.name] = s


_add(name="cancer_treatment", state_size=1, action_size=1, time_span=20.0, x0=(0.975,), u_lo=(0.0,), u_hi=(2.0,),
     x_lo=(1e-3,), x_hi=(1.0,), default_params=dict(r=0.3, delta=0.45, a=3.0),
     f=lambda x, u, t, p: p["r"] * x * jnp.log(1 / x) - u * p["delta"] * x,
     cost=lambda x, u, t, p: p["a"] * x[0] ** 2 + u[0] ** 2)
_add(name="bear_populations", state_size=3, action_size=2, time_span=25.0, x0=(0.4, 0.2, 0.0), u_lo=(0.0, 0.0),
     u_hi=(0.2, 0.2), x_lo=(0.0, 0.0, 0.0), x_hi=(2.0, 2.0, 2.0),
     default_params=dict(r=0.1, K=0.75, mp=0.5, mf=0.5, cp=1e4, cf=10.0), f=_bear_f,
     cost=lambda x, u, t, p: x[2] + p["cp"] * u[0] ** 2 + p["cf"] * u[1] ** 2)
_add(name="bioreactor", state_size=1, action_size=1, time_span=2.0, x0=(0.5,), u_lo=(0.0,), u_hi=(1.0,),
     x_lo=(0.0,), x_hi=(1.0,), default_params=dict(G=1.0, D=1.0, K=2.0),
     f=lambda x, u, t, p: p["G"] * u * x - p["D"] * x**2,
     cost=lambda x, u, t, p: -p["K"] * x[0] + u[0])
_add(name="hiv_treatment", state_size=3, action_size=1, time_span=20.0, x0=(800.0, 0.04, 1.5), u_lo=(0.0,),
     u_hi=(1.0,), x_lo=(0.0, 0.0, 0.0), x_hi=(1600.0, 100.0, 100.0),
     default_params=dict(s=10.0, m1=0.02, m2=0.5, m3=4.4, r=0.03, Tmax=1500.0, k=2.4e-5, N=300.0, A=0.05),
     f=_hiv_f, cost=lambda x, u, t, p: -p["A"] * x[0] + (1 - u[0]) ** 2)
_add(name="mould_fungicide", state_size=1, action_size=1, time_span=5.0, x0=(1.0,), u_lo=(0.0,), u_hi=(5.0,),
     x_lo=(0.0,), x_hi=(5.0,), default_params=dict(r=0.3, M=10.0, A=10.0),
     f=lambda x, u, t, p: p["r"] * (p["M"] - x) - u * x,
     cost=lambda x, u, t, p: p["A"] * x[0] ** 2 + u[0] ** 2)
_add(name="bacteria", state_size=1, action_size=1, time_span=1.0, x0=(1.0,), u_lo=(0.0,), u_hi=(2.0,),
     x_lo=(0.0,), x_hi=(10.0,), default_params=dict(r=1.0, A=1.0, B=12.0, C=1.0),
     f=lambda x, u, t, p: p["r"] * x + p["A"] * u * x - p["B"] * u**2 * jnp.exp(-x),
     cost=lambda x, u, t, p: u[0] ** 2, terminal=lambda x, p: -p["C"] * x[0])
_GLUCOSE = dict(name="glucose", state_size=2, action_size=1, time_span=0.2, x0=(0.75, 0.0), u_lo=(0.0,),
                u_hi=(0.01,), x_lo=(0.0, 0.0), x_hi=(1.0, 1.0),
                f=lambda x, u, t, p: vec(-p["a"] * x[0] - p["b"] * x[1], -p["c"] * x[1] + u[0]),
                cost=lambda x, u, t, p: 1e5 * (p["A"] * (x[0] - p["l"]) ** 2 + u[0] ** 2))
_add(**_GLUCOSE, default_params=dict(a=1.0, b=1.0, c=1.0, A=2.0, l=0.4))
_add(ORIGINALS, **_GLUCOSE, default_params=dict(a=1.0, b=1.0, c=1.0, A=2.0, l=0.5))
_add(name="harvest", state_size=1, action_size=1, time_span=10.0, x0=(0.4,), u_lo=(0.0,), u_hi=(1.0,),
     x_lo=None, x_hi=None, default_params=dict(m=0.2, A=5.0, k=10.0),
     f=lambda x, u, t, p: -(p["m"] + u) * x,
     cost=lambda x, u, t, p: -p["A"] * (p["k"] * t / (t + 1)) * x[0] * u[0] + u[0] ** 2)
_PREDATOR_PREY = dict(
    name="predator_prey", state_size=3, action_size=1, x0=(10.0, 1.0, 0.0), u_lo=(0.0,),
    u_hi=(1.0,), x_lo=(0.0, 0.0, 0.0), x_hi=(11.0, 11.0, 5.0), default_params=dict(d1=0.1, d2=0.1, A=1.0),
    f=lambda x, u, t, p: vec((1 - x[1]) * x[0] - p["d1"] * x[0] * u[0], (x[0] - 1) * x[1] - p["d2"] * x[1] * u[0],
                             u[0]),
    cost=lambda x, u, t, p: p["A"] / 2 * u[0] ** 2, terminal=lambda x, p: x[0])
_add(**_PREDATOR_PREY, time_span=100.0)
_add(ORIGINALS, **_PREDATOR_PREY, time_span=10.0)
_add(name="timber_harvest", state_size=1, action_size=1, time_span=5.0, x0=(100.0,), u_lo=(0.0,), u_hi=(1.0,),
     x_lo=(0.0,), x_hi=(20000.0,), default_params=dict(k=1.0, r=0.0),
     f=lambda x, u, t, p: p["k"] * x * u,
     cost=lambda x, u, t, p: -jnp.exp(-p["r"] * t) * x[0] * (1 - u[0]))
def _invasive_next(x, u, t, p):
    return (x + p["k"] * x / (p["eps"] + x)) * (1 - u)


_INVASIVE = dict(name="invasive_plant", state_size=5, action_size=5, x0=(0.5, 1.0, 1.5, 2.0, 10.0), u_lo=(0.0,) * 5,
                 u_hi=(1.0,) * 5, x_lo=None, x_hi=None, default_params=dict(k=1.0, eps=0.01, B=1.0),
                 cost=lambda x, u, t, p: p["B"] * _sum_u2(u), terminal=lambda x, p: jnp.sum(x))
_add(**_INVASIVE, time_span=10.0, default_horizon=100, f=lambda x, u, t, p: _invasive_next(x, u, t, p) - x)
_add(ORIGINALS, **_INVASIVE, time_span=None, default_horizon=10, f=_invasive_next)
_SEIRN = dict(b=0.525, d=0.5, c=1e-4, e=0.5, g=0.1, a=0.2, A=0.1)
_add(name="epidemic_seirn", state_size=4, action_size=1, time_span=20.0, x0=(1000.0, 100.0, 50.0, 1165.0),
     u_lo=(0.0,), u_hi=(0.9,), x_lo=None, x_hi=None, default_params=dict(_SEIRN), f=_seirn_f,
     cost=lambda x, u, t, p: p["A"] * x[2] + u[0] ** 2)
_add(name="seir", state_size=4, action_size=1, time_span=20.0, x0=(1000.0, 100.0, 50.0, 1165.0), u_lo=(0.0,),
     u_hi=(1.0,), x_lo=(0.0, 0.0, 0.0, 0.0), x_hi=(2000.0, 250.0, 250.0, 3000.0), default_params=dict(_SEIRN),
     f=_seirn_f, cost=lambda x, u, t, p: p["A"] * x[2] + u[0] ** 2)
_add(name="tumour", state_size=3, action_size=1, time_span=1.2, x0=(8628.8, 4314.4, 0.0), u_lo=(0.0,),
     u_hi=(75.0,), x_lo=(0.0, 0.0, 0.0), x_hi=(17257.6, 17257.6, 15.0),
     default_params=dict(xi=0.084, b=5.85, d=0.00873, G=0.15, mu=0.02), f=_tumour_f,
     cost=lambda x, u, t, p: jnp.zeros((), x.dtype), terminal=lambda x, p: x[0])
_add(name="van_der_pol", state_size=2, action_size=1, time_span=10.0, x0=(0.0, 1.0), u_lo=(-0.75,), u_hi=(1.0,),
     x_lo=(-4.0, -4.0), x_hi=(4.0, 4.0), default_params=dict(a=1.0), source=CLASSIC,
     f=lambda x, u, t, p: vec(p["a"] * (1 - x[1] ** 2) * x[0] - x[1] + u[0], x[0]),
     cost=lambda x, u, t, p: x[0] ** 2 + x[1] ** 2 + u[0] ** 2)
_add(name="cartpole", state_size=4, action_size=1, time_span=2.0, x0=(0.0, 0.0, 0.0, 0.0), u_lo=(-20.0,),
     u_hi=(20.0,), x_lo=(-2.0, -2 * PI, -5.0, -10.0), x_hi=(2.0, 2 * PI, 5.0, 10.0), target=(1.0, PI, 0.0, 0.0),
     default_params=dict(m1=1.0, m2=0.3, l=0.5, g=9.81), source=CLASSIC, f=_cartpole_f,
     cost=lambda x, u, t, p: u[0] ** 2)
_add(name="mountain_car", state_size=2, action_size=1, time_span=300.0, x0=(-0.1, 0.0), u_lo=(-1.0,), u_hi=(1.0,),
     x_lo=(-1.2, -0.07), x_hi=(0.6, 0.07), target=(0.45, 0.0), default_params=dict(), source=CLASSIC,
     f=lambda x, u, t, p: vec(x[1], 0.0015 * u[0] - 0.0025 * x[0]),
     cost=lambda x, u, t, p: 10 * u[0] ** 2)
_add(name="pendulum", state_size=2, action_size=1, time_span=15.0, x0=(0.0, 0.0), u_lo=(-2.0,), u_hi=(2.0,),
     x_lo=(-PI, -8.0), x_hi=(PI, 8.0), target=(PI, 0.0), default_params=dict(g=10.0, m=1.0, l=1.0),
     source=CLASSIC, f=_pendulum_f,
     cost=lambda x, u, t, p: x[0] ** 2 + 0.1 * x[1] ** 2 + 0.001 * u[0] ** 2)
_add(name="rocket_landing", state_size=6, action_size=2, time_span=16.0, x0=(0.0, 0.0, 1000.0, -80.0, -PI / 2, 0.0),
     u_lo=(0.4, -0.349), u_hi=(1.0, 0.349), x_lo=(-250.0, -250.0, 0.0, -250.0, -2 * PI, -250.0),
     x_hi=(150.0, 150.0, 1000.0, 150.0, 2 * PI, 150.0), target=(0.0,) * 6,
     default_params=dict(m=1e5, L=50.0, g=9.8, F=2.21e6), source=CLASSIC, f=_rocket_f,
     cost=lambda x, u, t, p: u[0] ** 2 + u[1] ** 2 + 2 * x[5] ** 2)
_add(name="simple_case", state_size=1, action_size=1, time_span=1.0, x0=(1.0,), u_lo=(-1.0,), u_hi=(3.0,),
     x_lo=None, x_hi=None, default_params=dict(C=4.0, A=1.0, B=1.0), source="Myriad",
     f=lambda x, u, t, p: -(x**2) / 2 + p["C"] * u,
     cost=lambda x, u, t, p: -p["A"] * x[0] + p["B"] * u[0] ** 2)
_add(name="simple_case_with_bounds", state_size=1, action_size=1, time_span=1.0, x0=(1.0,), u_lo=(-1.0,),
     u_hi=(2.0,), x_lo=(0.0,), x_hi=(3.0,), default_params=dict(C=4.0, A=1.0), source="Myriad",
     f=lambda x, u, t, p: -(x**2) / 2 + p["C"] * u,
     cost=lambda x, u, t, p: -p["A"] * x[0] + u[0] ** 2)

# The systems the paper's Myriad script wires in (TASKS.md marks them *).
PAPER_SYSTEMS = (
    "cancer_treatment", "bear_populations", "bioreactor", "hiv_treatment", "mould_fungicide", "bacteria",
    "glucose", "harvest", "predator_prey", "timber_harvest", "invasive_plant",
)
