"""Training: the documented `accelerate launch ... train.py` command, built, checked and run.

- `launch`: the accelerate command and the effective hyperparameters it implies (`--dry-run`).
- `preflight`: can this machine run the launch as configured (before any model is loaded).
- `loop`: the training loop that runs inside each process (`train.py` at the repository root).
- `checkpoint`: resumable, atomic `step_N/` states and `epoch_N/`, `final/` weights.
- `optim`: AdamW and the warmup-then-constant learning rate, with or without DeepSpeed.
"""
