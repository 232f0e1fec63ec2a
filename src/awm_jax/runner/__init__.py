"""The host side of training: running a config in compiled chunks with progress, checkpoints and resume
(`run.py`), sweeps (`sweep.py`), seeds over devices and hosts (`sharding.py`), stopping cleanly on SIGINT
and SIGTERM (`interrupt.py`), the XLA CPU workaround (`xla_cpu.py`), and what a run leaves on disk: the
run-folder layout, locks, completion markers and atomic writes (`run_folder.py`), orbax checkpoints
(`checkpoint.py`), metrics, summaries and tables (`results.py`), and figures in one style (`plots.py`).
Layer rule: runner imports core (and `awm_envs`), never `awm_jax.analysis`, `awm_jax.api` or
`awm_jax.cli`."""
