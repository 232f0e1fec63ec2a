"""The code inside the compiled training program: the configuration (`config.py`), the `Learner`
interface every method implements (`learner.py`) and the pieces learners share (`pieces.py`: optimisers,
the guarded update, the env step with autoreset, the evaluation episode and period), the episode replay
(`replay.py`), state normalisers and policy inputs (`spaces.py`), the world models and the policy
(`models/`), the training methods and their registry (`methods/`), and the diagnostics the BPO learner
logs and the API computes on a trained state (`diagnostics.py`). Everything here is pure and safe
under `jax.jit(jax.vmap(...))`; nothing here touches files, signals or devices. Layer rule: core imports
only core and the tasks (`awm_envs`), never `awm_jax.runner`, `awm_jax.analysis`, `awm_jax.api` or
`awm_jax.cli`."""
