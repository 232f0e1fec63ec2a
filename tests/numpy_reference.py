"""Independent plain-numpy (float64) reference implementations of the 24 `awm_envs` tasks.

Written from shared TASKS.md and the module docstrings of awm_envs.core / myriad / toys only (not from
the package's dynamics code), so that tests comparing the package against it catch bugs in either.

Conventions (TASKS.md "Conventions" + myriad.py docstring):
- H steps (default 100), dt = T / H, or T / 100 with ``fixed_dt``.
- Explicit Euler x_{t+1} = clip(x_t + dt f(x_t, u_t, t dt), state bounds).
- The task names give the paper's copies (TASKS.md "The paper's copies differ"): glucose l = 0.4,
  predator_prey T = 100, invasive_plant Euler-steps the difference (x + k x/(eps+x))(1-u) - x with
  T = 10, horizon 100, cost times dt. ``MYRIAD_ORIGINALS`` holds Myriad's originals of those three
  (invasive_plant discrete-time, x_{t+1} = f(x_t, u_t), dt = 1, horizon 10); ``variant="myriad"``.
- u = lo + (a + 1)(hi - lo) / 2 for a in [-1, 1].
- r_t = -c(x_t, u_t, t dt) dt; at t = H - 1 also -g_T(x_{H-1}) (state *before* the last transition)
  and, for systems with a Myriad terminal-state constraint x_T, also
  -terminal_weight * sum(((x_{H-1} - x_T) / (x_hi - x_lo))^2), terminal_weight = 10.
- simple_case (no control bounds in Myriad) maps actions to u in [-1, 3].

Toys (toys.py docstring): double_pendulum, one_bounce, credit_assignment; see their functions below.

Public entry point: ``reference_return(name, actions, horizon=None, fixed_dt=False, distractors=None)``.
"""

from __future__ import annotations

import math

import numpy as np

PI = np.pi
TERMINAL_WEIGHT = 10.0


def _arr(*v):
    return np.array(v, dtype=np.float64)


# ----------------------------------------------------------------------------------------------------
# Myriad systems: each entry has T, x0, control bounds (u_lo, u_hi), state bounds (x_lo, x_hi) or None,
# f(x, u, t), c(x, u, t), optional g(x) terminal cost, optional x_target (terminal-state constraint).
# ----------------------------------------------------------------------------------------------------


def _cancer():
    r, delta, a = 0.3, 0.45, 3.0
    return dict(
        T=20.0, x0=_arr(0.975), u_lo=_arr(0.0), u_hi=_arr(2.0), x_lo=_arr(1e-3), x_hi=_arr(1.0),
        f=lambda x, u, t: _arr(r * x[0] * np.log(1.0 / x[0]) - u[0] * delta * x[0]),
        c=lambda x, u, t: a * x[0] ** 2 + u[0] ** 2,
    )


def _bear():
    r, K, mp, mf, cp, cf = 0.1, 0.75, 0.5, 0.5, 1e4, 10.0
    k, k2 = r / K, r / K**2

    def f(x, u, t):
        x0, x1, _ = x
        up, uf = u
        return _arr(
            r * x0 - k * x0**2 + k * mf * (1 - x0 / K) * x1**2 - up * x0,
            r * x1 - k * x1**2 + k * mp * (1 - x1 / K) * x0**2 - uf * x1,
            k * (1 - mp) * x0**2 + k * (1 - mf) * x1**2 + k2 * mf * x0 * x1**2 + k2 * mp * x0**2 * x1,
        )

    return dict(
        T=25.0, x0=_arr(0.4, 0.2, 0.0), u_lo=_arr(0.0, 0.0), u_hi=_arr(0.2, 0.2),
        x_lo=_arr(0, 0, 0), x_hi=_arr(2, 2, 2), f=f,
        c=lambda x, u, t: x[2] + cp * u[0] ** 2 + cf * u[1] ** 2,
    )


def _bioreactor():
    G, D, K = 1.0, 1.0, 2.0
    return dict(
        T=2.0, x0=_arr(0.5), u_lo=_arr(0.0), u_hi=_arr(1.0), x_lo=_arr(0.0), x_hi=_arr(1.0),
        f=lambda x, u, t: _arr(G * u[0] * x[0] - D * x[0] ** 2),
        c=lambda x, u, t: -K * x[0] + u[0],
    )


def _hiv():
    s, m1, m2, m3, r, Tmax, k, N, A = 10.0, 0.02, 0.5, 4.4, 0.03, 1500.0, 2.4e-5, 300.0, 0.05

    def f(x, u, t):
        T_, Ti, V = x
        return _arr(
            s / (1 + V) - m1 * T_ + r * T_ * (1 - (T_ + Ti) / Tmax) - u[0] * k * T_ * V,
            u[0] * k * V * T_ - m2 * Ti,
            N * m2 * Ti - m3 * V,
        )

    return dict(
        T=20.0, x0=_arr(800, 0.04, 1.5), u_lo=_arr(0.0), u_hi=_arr(1.0),
        x_lo=_arr(0, 0, 0), x_hi=_arr(1600, 100, 100), f=f,
        c=lambda x, u, t: -A * x[0] + (1 - u[0]) ** 2,
    )


def _mould():
    r, M, A = 0.3, 10.0, 10.0
    return dict(
        T=5.0, x0=_arr(1.0), u_lo=_arr(0.0), u_hi=_arr(5.0), x_lo=_arr(0.0), x_hi=_arr(5.0),
        f=lambda x, u, t: _arr(r * (M - x[0]) - u[0] * x[0]),
        c=lambda x, u, t: A * x[0] ** 2 + u[0] ** 2,
    )


def _bacteria():
    r, A, B, C = 1.0, 1.0, 12.0, 1.0
    return dict(
        T=1.0, x0=_arr(1.0), u_lo=_arr(0.0), u_hi=_arr(2.0), x_lo=_arr(0.0), x_hi=_arr(10.0),
        f=lambda x, u, t: _arr(r * x[0] + A * u[0] * x[0] - B * u[0] ** 2 * np.exp(-x[0])),
        c=lambda x, u, t: u[0] ** 2,
        g=lambda x: -C * x[0],
    )


def _glucose(l=0.4):
    a, b, c, A = 1.0, 1.0, 1.0, 2.0
    return dict(
        T=0.2, x0=_arr(0.75, 0.0), u_lo=_arr(0.0), u_hi=_arr(0.01), x_lo=_arr(0, 0), x_hi=_arr(1, 1),
        f=lambda x, u, t: _arr(-a * x[0] - b * x[1], -c * x[1] + u[0]),
        c=lambda x, u, t: 1e5 * (A * (x[0] - l) ** 2 + u[0] ** 2),
    )


def _harvest():
    m, A, k = 0.2, 5.0, 10.0
    return dict(
        T=10.0, x0=_arr(0.4), u_lo=_arr(0.0), u_hi=_arr(1.0), x_lo=None, x_hi=None,
        f=lambda x, u, t: _arr(-(m + u[0]) * x[0]),
        c=lambda x, u, t: -A * (k * t / (t + 1)) * x[0] * u[0] + u[0] ** 2,
    )


def _predator_prey(T=100.0):
    d1, d2, A = 0.1, 0.1, 1.0
    return dict(
        T=T, x0=_arr(10, 1, 0), u_lo=_arr(0.0), u_hi=_arr(1.0), x_lo=_arr(0, 0, 0), x_hi=_arr(11, 11, 5),
        f=lambda x, u, t: _arr(
            (1 - x[1]) * x[0] - d1 * x[0] * u[0], (x[0] - 1) * x[1] - d2 * x[1] * u[0], u[0]
        ),
        c=lambda x, u, t: (A / 2) * u[0] ** 2,
        g=lambda x: x[0],
    )


def _timber():
    k, r = 1.0, 0.0
    return dict(
        T=5.0, x0=_arr(100.0), u_lo=_arr(0.0), u_hi=_arr(1.0), x_lo=_arr(0.0), x_hi=_arr(20000.0),
        f=lambda x, u, t: _arr(k * x[0] * u[0]),
        c=lambda x, u, t: -np.exp(-r * t) * x[0] * (1 - u[0]),
    )


def _invasive(discrete=False):
    k, eps, B = 1.0, 0.01, 1.0
    nxt = lambda x, u, t: (x + k * x / (eps + x)) * (1 - u)
    common = dict(x0=_arr(0.5, 1, 1.5, 2, 10), u_lo=np.zeros(5), u_hi=np.ones(5), x_lo=None, x_hi=None,
                  c=lambda x, u, t: B * np.sum(u**2), g=lambda x: np.sum(x))
    if discrete:  # Myriad's original
        return dict(discrete=True, horizon=10, f=nxt, **common)
    return dict(T=10.0, f=lambda x, u, t: nxt(x, u, t) - x, **common)  # the paper's copy


def _seirn(bounded):
    b, d, c, e, g, a, A = 0.525, 0.5, 1e-4, 0.5, 0.1, 0.2, 0.1

    def f(x, u, t):
        S, E, I, N = x
        return _arr(
            b * N - d * S - c * S * I - u[0] * S,
            c * S * I - (e + d) * E,
            e * E - (g + a + d) * I,
            (b - d) * N - a * I,
        )

    out = dict(
        T=20.0, x0=_arr(1000, 100, 50, 1165), u_lo=_arr(0.0), u_hi=_arr(1.0 if bounded else 0.9),
        x_lo=None, x_hi=None, f=f, c=lambda x, u, t: A * x[2] + u[0] ** 2,
    )
    if bounded:
        out.update(x_lo=_arr(0, 0, 0, 0), x_hi=_arr(2000, 250, 250, 3000))
    return out


def _tumour():
    xi, b, d, G, mu = 0.084, 5.85, 0.00873, 0.15, 0.02

    def f(x, u, t):
        p, q, _ = x
        return _arr(-xi * p * np.log(p / q), q * (b - mu - d * p ** (2.0 / 3.0) - G * u[0]), u[0])

    return dict(
        T=1.2, x0=_arr(8628.8, 4314.4, 0.0), u_lo=_arr(0.0), u_hi=_arr(75.0),
        x_lo=_arr(0, 0, 0), x_hi=_arr(17257.6, 17257.6, 15.0), f=f,
        c=lambda x, u, t: 0.0, g=lambda x: x[0],
    )


def _van_der_pol():
    a = 1.0
    return dict(
        T=10.0, x0=_arr(0.0, 1.0), u_lo=_arr(-0.75), u_hi=_arr(1.0), x_lo=_arr(-4, -4), x_hi=_arr(4, 4),
        f=lambda x, u, t: _arr(a * (1 - x[1] ** 2) * x[0] - x[1] + u[0], x[0]),
        c=lambda x, u, t: x[0] ** 2 + x[1] ** 2 + u[0] ** 2,
    )


def _cartpole():
    m1, m2, l, g = 1.0, 0.3, 0.5, 9.81

    def f(x, u, t):
        _, th, qd, thd = x
        s, c = np.sin(th), np.cos(th)
        qdd = (l * m2 * s * thd**2 + u[0] + m2 * g * c * s) / (m1 + m2 * (1 - c**2))
        thdd = -(l * m2 * c * s * thd**2 + u[0] * c + (m1 + m2) * g * s) / (l * m1 + l * m2 * (1 - c**2))
        return _arr(qd, thd, qdd, thdd)

    return dict(
        T=2.0, x0=np.zeros(4), u_lo=_arr(-20.0), u_hi=_arr(20.0),
        x_lo=_arr(-2, -2 * PI, -5, -10), x_hi=_arr(2, 2 * PI, 5, 10), f=f,
        c=lambda x, u, t: u[0] ** 2, x_target=_arr(1, PI, 0, 0),
    )


def _mountain_car():
    return dict(
        T=300.0, x0=_arr(-0.1, 0.0), u_lo=_arr(-1.0), u_hi=_arr(1.0),
        x_lo=_arr(-1.2, -0.07), x_hi=_arr(0.6, 0.07),
        f=lambda x, u, t: _arr(x[1], 0.0015 * u[0] - 0.0025 * x[0]),
        c=lambda x, u, t: 10 * u[0] ** 2, x_target=_arr(0.45, 0.0),
    )


def _wrap(a):
    """Angle to [-pi, pi)."""
    return (a + PI) % (2 * PI) - PI


def _pendulum():
    g, m, l = 10.0, 1.0, 1.0

    def f(x, u, t):
        th_n = _wrap(x[0])
        return _arr(np.clip(x[1], -8, 8), 0.05 * (-(3 * g / (2 * l)) * np.sin(th_n) + 3 * u[0] / (m * l**2)))

    return dict(
        T=15.0, x0=_arr(0.0, 0.0), u_lo=_arr(-2.0), u_hi=_arr(2.0), x_lo=_arr(-PI, -8), x_hi=_arr(PI, 8),
        f=f, c=lambda x, u, t: x[0] ** 2 + 0.1 * x[1] ** 2 + 0.001 * u[0] ** 2, x_target=_arr(PI, 0.0),
    )


def _rocket():
    m, L, g, F = 1e5, 50.0, 9.8, 2.21e6
    I = m * L**2 / 12

    def f(x, u, t):
        _, xd, _, yd, th, thd = x
        return _arr(
            xd, F * u[0] * np.sin(u[1] + th) / m,
            yd, F * u[0] * np.cos(u[1] + th) / m - g,
            thd, -(L / 2) * F * u[0] * np.sin(u[1]) / I,
        )

    return dict(
        T=16.0, x0=_arr(0, 0, 1000, -80, -PI / 2, 0), u_lo=_arr(0.4, -0.349), u_hi=_arr(1.0, 0.349),
        x_lo=_arr(-250, -250, 0, -250, -2 * PI, -250), x_hi=_arr(150, 150, 1000, 150, 2 * PI, 150), f=f,
        c=lambda x, u, t: u[0] ** 2 + u[1] ** 2 + 2 * x[5] ** 2, x_target=np.zeros(6),
    )


def _simple_case():
    C, A, B = 4.0, 1.0, 1.0
    return dict(
        T=1.0, x0=_arr(1.0), u_lo=_arr(-1.0), u_hi=_arr(3.0), x_lo=None, x_hi=None,
        f=lambda x, u, t: _arr(-x[0] ** 2 / 2 + C * u[0]),
        c=lambda x, u, t: -A * x[0] + B * u[0] ** 2,
    )


def _simple_case_with_bounds():
    C, A = 4.0, 1.0
    return dict(
        T=1.0, x0=_arr(1.0), u_lo=_arr(-1.0), u_hi=_arr(2.0), x_lo=_arr(0.0), x_hi=_arr(3.0),
        f=lambda x, u, t: _arr(-x[0] ** 2 / 2 + C * u[0]),
        c=lambda x, u, t: -A * x[0] + u[0] ** 2,
    )


MYRIAD = {
    "cancer_treatment": _cancer(),
    "bear_populations": _bear(),
    "bioreactor": _bioreactor(),
    "hiv_treatment": _hiv(),
    "mould_fungicide": _mould(),
    "bacteria": _bacteria(),
    "glucose": _glucose(),
    "harvest": _harvest(),
    "predator_prey": _predator_prey(),
    "timber_harvest": _timber(),
    "invasive_plant": _invasive(),
    "epidemic_seirn": _seirn(bounded=False),
    "seir": _seirn(bounded=True),
    "tumour": _tumour(),
    "van_der_pol": _van_der_pol(),
    "cartpole": _cartpole(),
    "mountain_car": _mountain_car(),
    "pendulum": _pendulum(),
    "rocket_landing": _rocket(),
    "simple_case": _simple_case(),
    "simple_case_with_bounds": _simple_case_with_bounds(),
}

MYRIAD_ORIGINALS = {"glucose": _glucose(l=0.5), "predator_prey": _predator_prey(T=10.0),
                    "invasive_plant": _invasive(discrete=True)}

TOY_HORIZONS = {"double_pendulum": 10, "one_bounce": 10, "credit_assignment": 20}
TASK_NAMES = list(MYRIAD) + list(TOY_HORIZONS)


def action_size(name: str) -> int:
    if name in MYRIAD:
        return len(MYRIAD[name]["u_lo"])
    return 1


def default_horizon(name: str) -> int:
    if name in TOY_HORIZONS:
        return TOY_HORIZONS[name]
    return MYRIAD[name].get("horizon", 100)


def myriad_rollout(name, actions, horizon=None, fixed_dt=False, variant="paper"):
    """Return (xs [H+1, n] with xs[t] = x_t, rewards [H]) for a Myriad system in float64."""
    sys = MYRIAD_ORIGINALS.get(name, MYRIAD[name]) if variant == "myriad" else MYRIAD[name]
    actions = np.asarray(actions, dtype=np.float64).reshape(-1, len(sys["u_lo"]))
    H = actions.shape[0] if horizon is None else int(horizon)
    assert actions.shape[0] == H
    discrete = sys.get("discrete", False)
    dt = 1.0 if discrete else (sys["T"] / 100 if fixed_dt else sys["T"] / H)
    lo, hi = sys["u_lo"], sys["u_hi"]
    x = sys["x0"].copy()
    xs, rewards = [x.copy()], []
    for t in range(H):
        u = lo + (actions[t] + 1) * (hi - lo) / 2
        time = t * dt
        r = -float(sys["c"](x, u, time)) * dt
        if t == H - 1:
            if "g" in sys:
                r -= float(sys["g"](x))
            if "x_target" in sys:
                rng = sys["x_hi"] - sys["x_lo"]
                r -= TERMINAL_WEIGHT * float(np.sum(((x - sys["x_target"]) / rng) ** 2))
        rewards.append(r)
        x = sys["f"](x, u, time) if discrete else x + dt * sys["f"](x, u, time)
        if sys["x_lo"] is not None:
            x = np.clip(x, sys["x_lo"], sys["x_hi"])
        xs.append(x.copy())
    return np.array(xs), np.array(rewards)


# ----------------------------------------------------------------------------------------------------
# Toys (toys.py docstring)
# ----------------------------------------------------------------------------------------------------

DP = dict(m1=1.0, m2=1.0, L1=1.0, L2=1.0, g=9.8, angle_scale=180.0, theta2_0=0.0, goal_action=0.3,
          dt=0.05, substeps=20)


def double_pendulum_deriv(s, m1=1.0, m2=1.0, L1=1.0, L2=1.0, g=9.8):
    """Point-mass double pendulum, absolute angles from the downward vertical: (th1, th2, w1, w2)."""
    th1, th2, w1, w2 = s
    delta = th2 - th1
    cd, sd = math.cos(delta), math.sin(delta)
    den1 = (m1 + m2) * L1 - m2 * L1 * cd * cd
    dw1 = (m2 * L1 * w1 * w1 * sd * cd + m2 * g * math.sin(th2) * cd + m2 * L2 * w2 * w2 * sd
           - (m1 + m2) * g * math.sin(th1)) / den1
    den2 = (L2 / L1) * den1
    dw2 = (-m2 * L2 * w2 * w2 * sd * cd
           + (m1 + m2) * (g * math.sin(th1) * cd - L1 * w1 * w1 * sd - g * math.sin(th2))) / den2
    return np.array([w1, w2, dw1, dw2])


def double_pendulum_states(a0, steps, p=DP):
    """States after 0..steps transitions of dt from theta1 = angle_scale * a0 (RK4, `substeps` each)."""
    s = np.array([p["angle_scale"] * float(a0), p["theta2_0"], 0.0, 0.0])
    h = p["dt"] / p["substeps"]
    kw = dict(m1=p["m1"], m2=p["m2"], L1=p["L1"], L2=p["L2"], g=p["g"])
    out = [s.copy()]
    for _ in range(steps):
        for _ in range(p["substeps"]):
            k1 = double_pendulum_deriv(s, **kw)
            k2 = double_pendulum_deriv(s + h / 2 * k1, **kw)
            k3 = double_pendulum_deriv(s + h / 2 * k2, **kw)
            k4 = double_pendulum_deriv(s + h * k3, **kw)
            s = s + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        out.append(s.copy())
    return np.array(out)


def double_pendulum_goal_state(horizon=10, p=DP):
    """x_{H-1} reached from goal_action: H - 1 transitions from theta1 = angle_scale * goal_action."""
    return double_pendulum_states(p["goal_action"], horizon - 1, p)[-1]


def double_pendulum_return(actions, horizon=10, p=DP):
    a0 = float(np.asarray(actions, dtype=np.float64).reshape(-1)[0])
    x = double_pendulum_states(a0, horizon - 1, p)[-1]  # x_{H-1}
    d = x - double_pendulum_goal_state(horizon, p)
    d[:2] = _wrap(d[:2])
    return -float(np.mean(d**2))


def one_bounce_return(actions, horizon=10, friction=10.0, v_scale=10.0, wall=-1.0, goal=0.0, dt=0.05):
    """Ball at rest at 0; v = v_scale (a0 - 2) at t = 0; linear friction (closed form); elastic wall at
    x = wall; reward -(x_{H-1} - goal)^2 at the last step (x_{H-1}: after H - 1 transitions)."""
    a0 = float(np.asarray(actions, dtype=np.float64).reshape(-1)[0])
    x, v = 0.0, v_scale * (a0 - 2.0)
    decay = math.exp(-friction * dt)
    for _ in range(horizon - 1):
        x = x + v * (1 - decay) / friction
        v = v * decay
        if x < wall:
            x, v = 2 * wall - x, -v
    return -((x - goal) ** 2)


def credit_assignment_return(actions, distractors, target=0.5, final_scale=20.0, final_bonus=10.0,
                             final_floor=-10.0, distract_scale=20.0):
    """distractors[t] = d_t, the distractor in the observation at step t (t = 0..H-1).

    Return = clip(-final_scale (a_0 - target)^2 + final_bonus, min final_floor)
             + sum_{t=1}^{H-1} -(d_t - a_t)^2 / distract_scale.
    """
    a = np.asarray(actions, dtype=np.float64).reshape(-1)
    d = np.asarray(distractors, dtype=np.float64).reshape(-1)
    assert a.shape == d.shape
    final = max(-final_scale * (a[0] - target) ** 2 + final_bonus, final_floor)
    return float(final - np.sum((d[1:] - a[1:]) ** 2) / distract_scale)


# ----------------------------------------------------------------------------------------------------


def reference_return(name, actions, horizon=None, fixed_dt=False, distractors=None, variant="paper"):
    """Undiscounted float64 return of `actions` [H, action_size] (values in [-1, 1]) for task `name`
    (variant "paper" or "myriad", see MYRIAD_ORIGINALS).

    `distractors` (credit_assignment only): the distractor d_t observed at every step t = 0..H-1.
    """
    actions = np.asarray(actions, dtype=np.float64)
    if name in MYRIAD:
        return float(np.sum(myriad_rollout(name, actions, horizon, fixed_dt, variant)[1]))
    H = actions.shape[0] if horizon is None else int(horizon)
    if name == "double_pendulum":
        return double_pendulum_return(actions, H)
    if name == "one_bounce":
        return one_bounce_return(actions, H)
    if name == "credit_assignment":
        if distractors is None:
            raise ValueError("credit_assignment needs the distractor sequence")
        return credit_assignment_return(actions, distractors)
    raise ValueError(f"unknown task {name!r}")
