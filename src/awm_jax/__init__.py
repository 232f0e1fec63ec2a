"""awm_jax: Actions World Models and backpropagation-based policy optimisation in JAX.

    from awm_jax import Config, make_train
    trainer = make_train(Config(task="cancer_treatment", method="awm_transformer"))
    state, metrics = jax.jit(jax.vmap(trainer))(jax.random.split(jax.random.PRNGKey(0), 8))
"""

from awm_jax.config import METHODS, Config
from awm_jax.trainer import Trainer, TrainState, make_train


def seed_slice(tree, i: int):
    """The seed-i slice of a vmapped pytree (a TrainState or metrics): every leaf loses its leading axis."""
    import jax

    return jax.tree.map(lambda x: x[i], tree)


__all__ = ["Config", "METHODS", "TrainState", "Trainer", "make_train", "seed_slice"]
