"""Differentiable Brax tasks: cart-pole swing-up, double inverted pendulum, reacher.

Each task is a `System`, so `Task` adds distractors, the time index and state noise as for every
other family. Brax is imported lazily, on the first build of a physics model (`BraxSystem.require`,
which `awm_envs.make` calls): importing `awm_envs` never needs brax.

Physics: our own MJCF models (below; brax's asset files were read for guidance only), loaded with
`brax.io.mjcf.loads` and stepped by brax's `generalized` pipeline, which JAX differentiates. Every
model sets ``matrix_inv_iterations = 0`` (an exact mass-matrix inverse, joint damping integrated
implicitly), so the pipeline state is a function of (q, qd) alone: `next_state` rebuilds it with
`pipeline.init(sys, q, qd)` and takes ``n_frames`` physics steps of ``timestep`` 0.01 s. No geometry
collides and no joint is limited, so no constraint force switches on: the dynamics are smooth.

State x = [q, qd] (plus the target for the reacher); actions in [-1, 1] map affinely onto each
actuator's control range. Rewards are smooth functions of (x_t, a_t) written here (not brax's
environment rewards); like every task, step t is scored on the state *before* the transition.

| task | x | action | dt | H | reward r(x_t, a_t) |
|---|---|---|---|---|---|
| brax_pendulum_swingup | (cart, angle, cart vel, angle vel) | cart force | 0.05 | 100 |
  cos(angle) - 0.05 cart^2 - 1e-3 (vels^2) - 0.01 a^2 |
| brax_double_pendulum | (cart, angle1, angle2, their vels) | cart force | 0.05 | 100 |
  tip height / (l1 + l2) - 0.05 cart^2 - 1e-3 vels^2 - 0.01 a^2 |
| brax_reacher | (2 joint angles, 2 joint vels, target xy) | 2 torques | 0.02 | 100 |
  -sqrt(dist^2 + 0.01^2) - 0.05 |a|^2 |

Angles are measured from upright; the pendulum starts hanging (``init_angle`` = pi) and must swing
up, the double pendulum starts upright (``init_angle`` = 0) and must balance; both take
``init_angle`` as a parameter. Start states get U(-``init_noise``, ``init_noise``) noise on q and qd
(0.05; the reacher: 0.1 on q, 0.005 on qd). The reacher's target is drawn uniformly in a disc of
radius ``target_radius`` = 0.2 around the base (the arm reaches 0.21) and carried, constant, in x.
Physics: cart 1 kg, poles 0.1 kg (one of 1 m, or two of 0.6 m), cart force up to 10 N (double: 20 N);
reacher links 0.1 and 0.11 m, joint armature 0.01, damping 0.05, torques up to 0.5 N m. Every
number of the rewards and the start states is a task parameter (`awm_envs.make(name).params`).

Cost of `jax.jit(jax.value_and_grad(episode_return))` over a full default episode, float32, measured
on a 2-core CPU shared with other jobs (load average ~12, so wall times are ~3x the CPU times):

    task                    physics steps   compile (CPU / wall)   grad run (wall)   forward run
    brax_pendulum_swingup   100 x 5         14 s / 43 s            51 ms             6 ms
    brax_double_pendulum    100 x 5         18 s / 55 s            51 ms             6 ms
    brax_reacher            100 x 2         16 s / 43 s            21 ms             1 ms

Compilation dominates: brax's generalized step is ~2,700 small ops (forward) even for two links, and
the horizon and frame loops are `lax.scan`s, so the compile cost does not grow with the horizon.
"""

from __future__ import annotations

import contextlib
import io
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from awm_envs.core import System, affine_controls

SOURCE = "Brax generalized pipeline (own MJCF)"

_HEADER = """
  <compiler angle="radian" inertiafromgeom="true"/>
  <option gravity="0 0 -9.81" timestep="{timestep}"/>
  <custom>
    <numeric name="matrix_inv_iterations" data="0"/>
  </custom>
"""


def _brax():
    """Import the parts of brax the tasks use (stdout quietened: mujoco.mjx prints warp notices)."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            from brax.generalized import pipeline
            from brax.io import mjcf
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("the brax_* tasks need brax (pip install brax); the other tasks do not") from e
    return mjcf, pipeline


def _cast_floats(tree, dtype):
    """Cast the floating-point leaves of a pytree to dtype, leaving integer leaves alone."""
    def cast(a):
        if isinstance(a, (jax.Array, np.ndarray)) and jnp.issubdtype(a.dtype, jnp.floating):
            return jnp.asarray(a, dtype)
        return a

    return jax.tree.map(cast, tree)


class BraxSystem(System):
    """A System stepped by brax's generalized pipeline; x = [q, qd, extra]. Hashed by identity."""

    time_span = None
    source = SOURCE
    timestep = 0.01
    n_frames = 5
    q_size: int
    extra_size = 0  # state carried besides the physics (e.g. the reacher's target)

    def __init__(self):
        self._models = {}  # dtype name -> brax System

    def mjcf(self) -> str:
        raise NotImplementedError

    def dt_for(self, horizon, fixed_dt):
        """One control step: n_frames physics steps, whatever the horizon."""
        return self.timestep * self.n_frames

    def require(self) -> None:
        """Build the brax model now (called by `make`), failing early where brax is absent."""
        self.model(jnp.float32)

    def model(self, dtype):
        """The brax System with float leaves in dtype (built once per dtype)."""
        name = np.dtype(dtype).name
        if name not in self._models:
            mjcf, _ = _brax()
            # concrete arrays even when first built inside a trace; brax warns on every load that it
            # is no longer maintained
            with jax.ensure_compile_time_eval(), warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Brax System, piplines", category=UserWarning)
                sys = _cast_floats(mjcf.loads(self.mjcf()), dtype)
            if sys.matrix_inv_iterations != 0 or sys.q_size() != self.q_size or sys.act_size() != self.action_size:
                raise RuntimeError(f"{self.name}: MJCF does not match the task layout")
            self._models[name] = sys
        return self._models[name]

    def split(self, x):
        """(q [q_size], qd [q_size], extra [extra_size]) from x."""
        n = self.q_size
        return x[..., :n], x[..., n : 2 * n], x[..., 2 * n :]

    def simulate(self, q, qd, action):
        """Take n_frames physics steps from (q, qd) with action in [-1, 1]: (q', qd')."""
        _, pipeline = _brax()
        dtype = q.dtype
        sys = self.model(dtype)
        ctrl_range = np.asarray(sys.actuator.ctrl_range)
        ctrl = affine_controls(action, ctrl_range[:, 0], ctrl_range[:, 1])

        def frame(carry, _):
            # (q, qd) is the whole state (no iterative inverse to warm-start), so rebuilding the
            # pipeline state every frame is exact, and only q, qd are carried: what step recomputes
            # after integrating (kinematics, mass matrix) is unused and can be dropped.
            state = pipeline.step(sys, pipeline.init(sys, *carry), ctrl)
            return (state.q.astype(dtype), state.qd.astype(dtype)), None

        return jax.lax.scan(frame, (q, qd), None, length=self.n_frames)[0]

    def next_state(self, p, x, action, t, dt, key):
        q, qd, extra = self.split(x)
        q, qd = self.simulate(q, qd, action)
        return jnp.concatenate([q, qd, extra]).astype(x.dtype)


class CartPoleBase(BraxSystem):
    """A cart on an unlimited rail carrying a chain of hinged poles; one force on the cart.

    q = (cart position, pole angles...), each pole angle relative to its parent, 0 = upright.
    """

    action_size = 1
    default_horizon = 100
    cart_mass = 1.0
    pole_mass = 0.1
    pole_lengths: tuple = (1.0,)
    max_force = 10.0

    @property
    def q_size(self):
        return 1 + len(self.pole_lengths)

    @property
    def state_size(self):
        return 2 * self.q_size

    def mjcf(self):
        poles, close = "", ""
        for i, length in enumerate(self.pole_lengths):
            pos = "0 0 0" if i == 0 else f"0 0 {self.pole_lengths[i - 1]}"
            poles += f"""
        <body name="pole{i}" pos="{pos}">
          <joint name="hinge{i}" type="hinge" axis="0 1 0" damping="0.01"/>
          <geom type="capsule" fromto="0 0 0 0 0 {length}" size="0.02" mass="{self.pole_mass}"/>"""
            close += "\n        </body>"
        return f"""<mujoco model="{self.name}">{_HEADER.format(timestep=self.timestep)}
  <default><geom contype="0" conaffinity="0"/></default>
  <worldbody>
    <body name="cart">
      <joint name="slider" type="slide" axis="1 0 0" damping="0.1"/>
      <geom type="box" size="0.1 0.05 0.05" mass="{self.cart_mass}"/>{poles}{close}
    </body>
  </worldbody>
  <actuator>
    <motor joint="slider" gear="{self.max_force}" ctrllimited="true" ctrlrange="-1 1"/>
  </actuator>
</mujoco>"""

    def init_state(self, p, key, dtype):
        q0 = jnp.zeros((self.q_size,), dtype).at[1].set(p["init_angle"])
        noise = jax.random.uniform(key, (2 * self.q_size,), dtype, -1.0, 1.0) * p["init_noise"]
        return jnp.concatenate([q0, jnp.zeros((self.q_size,), dtype)]) + noise

    def tip_height(self, q):
        """Height of the chain's end above the rail over the chain length, in [-1, 1]."""
        angles = jnp.cumsum(q[1:])
        lengths = jnp.asarray(self.pole_lengths, q.dtype)
        return jnp.sum(lengths * jnp.cos(angles)) / jnp.sum(lengths)

    def reward(self, p, x, action, t, dt, horizon):
        q, qd, _ = self.split(x)
        return (
            self.tip_height(q)
            - p["cart_cost"] * q[0] ** 2
            - p["velocity_cost"] * jnp.sum(qd**2)
            - p["action_cost"] * jnp.sum(action**2)
        )


class PendulumSwingup(CartPoleBase):
    name = "brax_pendulum_swingup"
    pole_lengths = (1.0,)
    default_params = dict(init_angle=float(np.pi), init_noise=0.05, cart_cost=0.05, velocity_cost=1e-3,
                          action_cost=0.01)


class DoublePendulum(CartPoleBase):
    name = "brax_double_pendulum"
    pole_lengths = (0.6, 0.6)
    max_force = 20.0
    default_params = dict(init_angle=0.0, init_noise=0.05, cart_cost=0.05, velocity_cost=1e-3, action_cost=0.01)


class Reacher(BraxSystem):
    """A two-link planar arm (links 0.1 and 0.11 to the fingertip) reaching for a target.

    x = (shoulder, elbow, their velocities, target x, target y); the target never moves.
    """

    name = "brax_reacher"
    state_size = 6
    action_size = 2
    q_size = 2
    extra_size = 2
    n_frames = 2
    default_horizon = 100
    links = (0.1, 0.11)
    max_torque = 0.5
    default_params = dict(target_radius=0.2, init_noise=0.1, action_cost=0.05, distance_eps=0.01)

    def mjcf(self):
        l0, l1 = self.links
        return f"""<mujoco model="{self.name}">{_HEADER.format(timestep=self.timestep)}
  <default>
    <joint type="hinge" axis="0 0 1" armature="0.01" damping="0.05"/>
    <geom contype="0" conaffinity="0" size="0.01"/>
  </default>
  <worldbody>
    <body name="arm0" pos="0 0 0.01">
      <joint name="shoulder"/>
      <geom type="capsule" fromto="0 0 0 {l0} 0 0" mass="0.03"/>
      <body name="arm1" pos="{l0} 0 0">
        <joint name="elbow"/>
        <geom type="capsule" fromto="0 0 0 {l1 - 0.01} 0 0" mass="0.03"/>
        <body name="fingertip" pos="{l1} 0 0">
          <geom type="sphere" mass="0.005"/>
        </body>
      </body>
    </body>
  </worldbody>
  <actuator>
    <motor joint="shoulder" gear="{self.max_torque}" ctrllimited="true" ctrlrange="-1 1"/>
    <motor joint="elbow" gear="{self.max_torque}" ctrllimited="true" ctrlrange="-1 1"/>
  </actuator>
</mujoco>"""

    def init_state(self, p, key, dtype):
        k_q, k_r, k_a = jax.random.split(key, 3)
        qqd = jax.random.uniform(k_q, (4,), dtype, -1.0, 1.0) * p["init_noise"]
        qqd = qqd * jnp.asarray([1.0, 1.0, 0.05, 0.05], dtype)  # velocities start near rest
        radius = p["target_radius"] * jnp.sqrt(jax.random.uniform(k_r, (), dtype))  # uniform in the disc
        angle = jax.random.uniform(k_a, (), dtype, 0.0, 2 * np.pi)
        return jnp.concatenate([qqd, jnp.stack([radius * jnp.cos(angle), radius * jnp.sin(angle)])])

    def fingertip(self, q):
        """Fingertip position (x, y) in the plane of the arm: [2]."""
        l0, l1 = self.links
        a0, a1 = q[0], q[0] + q[1]
        return jnp.stack([l0 * jnp.cos(a0) + l1 * jnp.cos(a1), l0 * jnp.sin(a0) + l1 * jnp.sin(a1)])

    def reward(self, p, x, action, t, dt, horizon):
        q, _, target = self.split(x)
        d2 = jnp.sum((self.fingertip(q) - target) ** 2)
        return -jnp.sqrt(d2 + p["distance_eps"] ** 2) - p["action_cost"] * jnp.sum(action**2)


BRAX_SYSTEMS = {s.name: s for s in (PendulumSwingup(), DoublePendulum(), Reacher())}
