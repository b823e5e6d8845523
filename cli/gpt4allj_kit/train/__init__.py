"""Training: the documented `accelerate launch ... train.py` command, built, checked and run.

- `launch`: the accelerate command, the resolved config it reads and the hyperparameters it implies
  (`--dry-run`); the doctor's preflight on the plan; starting it, tracked by a pid file, and its result.
- `loop`: the training loop that runs inside each process (`train.py` at the repository root).
- `checkpoint`: resumable, atomic `step_N/` states and `epoch_N/`, `final/` weights.
- `optim`: AdamW and the warmup-then-constant learning rate, with or without DeepSpeed.
"""
