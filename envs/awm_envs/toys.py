"""The paper's three toy tasks: a chaotic double pendulum, a bouncing ball, and credit assignment.

Choices TASKS.md leaves open, fixed here (each a parameter where it is a number):
- double_pendulum: point masses m1 = m2 = 1 on rods L1 = L2 = 1, g = 9.8, state
  (theta1, theta2, omega1, omega2), 10 steps of dt = 0.05, each integrated by 20 RK4 substeps. The
  action at t = 0, times ``angle_scale`` = 180, becomes theta1 before the first step (theta2 stays at
  ``theta2_0`` = 0, velocities 0); later actions are ignored. Only the last step is rewarded:
  -mean(d^2) over the four state components of d = x_{H-1} - x_goal, the two angle differences
  wrapped to [-pi, pi) (angles are compared on the circle, so the reward is bounded and jagged), with
  x_goal the state at step H - 1 reached from ``goal_action`` = 0.3 (computed once when made).
- one_bounce: state (position, velocity), starting at rest at 0. The action at t = 0 sets the velocity
  v = ``v_scale`` (a - 2) = 10 (a - 2); between steps the ball moves under linear friction
  dv/dt = -``friction`` v (solved in closed form, friction 10) and bounces elastically off the wall at
  x = -1 (position and velocity reflected). 10 steps of dt = 0.05. Last step only:
  -(x_{H-1} - ``goal``)^2 with goal 0.
- credit_assignment: 20 steps; state (a_0 as recorded after the first step, distractor d_t ~ U(-1, 1)
  drawn afresh every step). Return = clip(-20 (a_0 - 0.5)^2 + 10, min -10) at the last step, plus for
  t >= 1 the distracting reward -(d_t - a_t)^2 / 20. The distracting rewards start at t = 1 so that
  they never depend on a_0: the return's only dependence on a_0 is through the final reward, which
  is the credit that must travel 20 steps back.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from awm_envs.core import System, is_last_step

PAPER_TOY = "paper toy (Ma et al. 2024)"


class FixedStep(System):
    """A toy whose step length is fixed (0.05) whatever the horizon."""

    step_length = 0.05

    def dt_for(self, horizon, fixed_dt):
        return self.step_length


class DoublePendulum(FixedStep):
    name = "double_pendulum"
    state_size = 4
    action_size = 1
    default_horizon = 10
    source = PAPER_TOY
    substeps = 20
    default_params = dict(m1=1.0, m2=1.0, L1=1.0, L2=1.0, g=9.8, angle_scale=180.0, theta2_0=0.0, goal_action=0.3)

    @staticmethod
    def derivative(p, x):
        th1, th2, w1, w2 = x[0], x[1], x[2], x[3]
        m1, m2, L1, L2, g = p["m1"], p["m2"], p["L1"], p["L2"], p["g"]
        delta = th2 - th1
        s, c = jnp.sin(delta), jnp.cos(delta)
        den1 = (m1 + m2) * L1 - m2 * L1 * c * c
        dw1 = (m2 * L1 * w1 * w1 * s * c + m2 * g * jnp.sin(th2) * c + m2 * L2 * w2 * w2 * s
               - (m1 + m2) * g * jnp.sin(th1)) / den1
        den2 = (L2 / L1) * den1
        dw2 = (-m2 * L2 * w2 * w2 * s * c
               + (m1 + m2) * (g * jnp.sin(th1) * c - L1 * w1 * w1 * s - g * jnp.sin(th2))) / den2
        return jnp.stack([w1, w2, dw1, dw2])

    def integrate(self, p, x, dt):
        n = self.substeps
        h = dt / n

        def rk4(x, _):
            k1 = self.derivative(p, x)
            k2 = self.derivative(p, x + h / 2 * k1)
            k3 = self.derivative(p, x + h / 2 * k2)
            k4 = self.derivative(p, x + h * k3)
            return x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4), None

        return jax.lax.scan(rk4, x, None, length=n)[0]

    def init_state(self, p, key, dtype):
        return jnp.stack([jnp.zeros(()), jnp.asarray(p["theta2_0"]), jnp.zeros(()), jnp.zeros(())]).astype(dtype)

    def next_state(self, p, x, action, t, dt, key):
        th1 = jnp.where(t == 0, p["angle_scale"] * action[0], x[0])
        return self.integrate(p, x.at[0].set(th1), dt)

    def reward(self, p, x, action, t, dt, horizon):
        d = x - p["goal_state"]
        d = d.at[:2].set(jnp.mod(d[:2] + jnp.pi, 2 * jnp.pi) - jnp.pi)
        err = -jnp.mean(d**2)
        return jnp.where(is_last_step(t, horizon), err, 0.0)

    def derived_params(self, p, horizon, dt):
        """goal_state: the state at step H - 1 reached from goal_action (computed once, when made)."""
        x = self.init_state(p, None, jnp.asarray(p["m1"]).dtype)
        for t in range(horizon - 1):
            x = self.next_state(p, x, jnp.asarray([p["goal_action"]], x.dtype), t, dt, None)
        return dict(goal_state=np.asarray(x))


class OneBounce(FixedStep):
    name = "one_bounce"
    state_size = 2
    action_size = 1
    default_horizon = 10
    source = PAPER_TOY
    default_params = dict(friction=10.0, v_scale=10.0, wall=-1.0, goal=0.0)

    def init_state(self, p, key, dtype):
        return jnp.zeros((2,), dtype)

    def next_state(self, p, x, action, t, dt, key):
        k = p["friction"]
        v = jnp.where(t == 0, p["v_scale"] * (action[0] - 2.0), x[1])
        decay = jnp.exp(-k * dt)
        y = x[0] + v * (1 - decay) / k  # position without the wall
        v_new = v * decay
        hit = y < p["wall"]
        return jnp.stack([jnp.where(hit, 2 * p["wall"] - y, y), jnp.where(hit, -v_new, v_new)])

    def reward(self, p, x, action, t, dt, horizon):
        return jnp.where(is_last_step(t, horizon), -((x[0] - p["goal"]) ** 2), 0.0)


class CreditAssignment(System):
    name = "credit_assignment"
    state_size = 2
    action_size = 1
    default_horizon = 20
    time_span = None
    source = PAPER_TOY
    default_params = dict(target=0.5, final_scale=20.0, final_bonus=10.0, final_floor=-10.0, distract_scale=20.0)

    def init_state(self, p, key, dtype):
        return jnp.stack([jnp.zeros((), dtype), jax.random.uniform(key, (), dtype, -1.0, 1.0)])

    def next_state(self, p, x, action, t, dt, key):
        a0 = jnp.where(t == 0, action[0], x[0])
        return jnp.stack([a0, jax.random.uniform(key, (), x.dtype, -1.0, 1.0)])

    def reward(self, p, x, action, t, dt, horizon):
        a0 = jnp.where(t < 0.5, action[0], x[0])  # at t = 0 the first action is the current one
        final = jnp.maximum(-p["final_scale"] * (a0 - p["target"]) ** 2 + p["final_bonus"], p["final_floor"])
        distract = -((x[1] - action[0]) ** 2) / p["distract_scale"]
        return jnp.where(is_last_step(t, horizon), final, 0.0) + jnp.where(t > 0.5, distract, 0.0)


TOYS = {s.name: s for s in (DoublePendulum(), OneBounce(), CreditAssignment())}
