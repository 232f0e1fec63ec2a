"""awm_jax: Actions World Models and backpropagation-based policy optimisation in JAX.

    import jax, awm_jax
    trainer = awm_jax.make_train(awm_jax.Config(task="cancer_treatment", method="awm_transformer"))
    state, metrics = jax.jit(jax.vmap(trainer))(jax.random.split(jax.random.PRNGKey(0), 8))
    metrics["eval/return"]                         # [8 seeds, evaluation periods]
    agent = awm_jax.Agent.from_state(trainer, awm_jax.seed_slice(state, 3))   # seed 3's policy
    awm_jax.evaluate(agent, trainer.task, jax.random.PRNGKey(1), episodes=10)  # [10] returns

    run = awm_jax.load_run("runs/x")               # a `awm-jax train` folder: config, metrics, state

Public API:
    Config, METHODS          the experiment configuration (a frozen dataclass) and the method names
    make_train(config)       -> a Learner: learner(key), learner.init(key), learner.run_chunk(state, n)
    TrainState               what a BPO run carries; after vmap every leaf has a leading seed axis
    seed_slice(tree, i)      seed i of a seed-batched tree (state, metrics, Agent)
    load_run(path), load_sweep(path), Run     outputs read back, the final state included
    Agent, act, evaluate     one seed's policy: actions and evaluation returns (BPO methods)
    imagine, policy_gradient_cosine, jacobians   diagnostics on one seed of a run (BPO methods)
"""

from awm_jax.runner import xla_cpu

xla_cpu.set_default_flags()  # before anything compiles: see awm_jax/runner/xla_cpu.py

from awm_jax.api import (  # noqa: E402
                         Agent,
                         Run,
                         act,
                         evaluate,
                         imagine,
                         jacobians,
                         load_run,
                         load_sweep,
                         policy_gradient_cosine,
                         seed_slice,
)
from awm_jax.core.config import METHODS, Config  # noqa: E402
from awm_jax.core.methods import make_train  # noqa: E402
from awm_jax.core.methods.bpo_learner import BPOLearner, TrainState  # noqa: E402

__all__ = ["Agent", "BPOLearner", "Config", "METHODS", "Run", "TrainState", "act", "evaluate", "imagine", "jacobians",
           "load_run", "load_sweep", "make_train", "policy_gradient_cosine", "seed_slice"]
