"""Studying what training produced: reference returns, normalised scores and their aggregates
(`references.py`, `benchmark.py`), experiments kept as committed data and their reports (`committed.py`,
`report.py`), the tuning protocol (`tuning.py`), and the gradient studies (gradient growth, landscapes,
action sensitivity, FLOPs). Layer rule: analysis imports core and runner (and `awm_envs`), never
`awm_jax.api` or `awm_jax.cli`."""
