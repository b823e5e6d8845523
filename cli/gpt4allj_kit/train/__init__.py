"""Training: the documented `accelerate launch ... train.py` command, built, checked and run.

- `launch`: the accelerate command, the resolved config it reads and the hyperparameters it implies
  (`--dry-run`); the doctor's preflight on the plan.
- `lifecycle`: starting it under its `supervisor` (a process that stops the training when its CLI dies),
  following, stopping or attaching to it, and what a fresh launch does with an earlier run's directory.
- `loop`: the training loop that runs inside each process (`train.py` at the repository root).
- `checkpoint`: resumable, atomic `step_N/` states and `epoch_N/`, `final/` weights.
- `optim`: AdamW and the warmup-then-constant learning rate, with or without DeepSpeed.
- `export`: a saved `step_N/` state (DDP, DeepSpeed ZeRO-2, LoRA) as a Hugging Face model folder.
"""
