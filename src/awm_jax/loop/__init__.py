"""The training loop every method shares: the `Learner` interface (`learner.py`) and its pieces
(`pieces.py`: optimisers built once, the guarded update, the env step with autoreset, the evaluation
episode and period), the episode replay (`replay.py`) and state normalisers (`spaces.py`)."""
