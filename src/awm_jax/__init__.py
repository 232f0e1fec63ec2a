"""awm_jax."""
