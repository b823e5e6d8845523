"""When the training loop validates and saves a resumable `step_N/` state.

Two cadences, chosen by the padding mode:

- **upstream's** (`padding: faithful`, the default, and `bucketed` and `packed`, which keep upstream's
  micro-batches, so a batch index counts the same batches upstream's did): upstream's train.py at
  a4e8616c counted micro-batches. Per epoch, `for step, batch in enumerate(train_dataloader)`, after the
  batch:
  `if step > 0 and step % save_every == 0: save_state(f"step_{step + epoch * len(train_dataloader)}")` and
  `if step > 0 and (step % eval_every == 0 or step == len(train_dataloader) - 1): validate`.
  `step` is the 0-based batch index in the epoch, so with eval_every 500 validation follows batches 501,
  1001, ... and the epoch's last one (none in an epoch of a single batch), and `step_500/` holds the state
  after 501 batches. With gradient accumulation above 1 (not the published run) a validation still follows
  its batch, mid-accumulation as upstream's did (it reads the weights, which only optimizer steps change);
  a save upstream would take inside an accumulation window is taken at the end of that window instead,
  since accumulated gradients are not part of a saved state and a resume from mid-window could not be
  exact: `step_N/` is then named after the window's last batch N (still 0-based, counted over epochs).
- **optimizer steps** (`padding: dynamic`, the kit's opt-in mode): validation after every `eval_every`-th
  optimizer step and at each epoch end, a `step_K/` state after every `save_every`-th optimizer step
  (K = optimizer steps done).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gpt4allj_kit.config import TrainConfig


def upstream_cadence(config: TrainConfig) -> bool:
    """Whether a run follows upstream's batch-index cadence (every mode but dynamic) or optimizer steps."""
    return config.padding != "dynamic"


@dataclass(frozen=True)
class Cadence:
    upstream: bool
    eval_every: int
    save_every: int
    batches: int  # micro-batches per epoch in each process (the prepared loader's length)

    @classmethod
    def of(cls, config: TrainConfig, batches: int) -> Cadence:
        return cls(upstream_cadence(config), config.eval_every, config.save_every, batches)

    def validates_mid_epoch(self, index: int, step: int, *, synced: bool) -> bool:
        """Whether validation follows batch `index` (0-based in the epoch); `step`: optimizer steps done,
        `synced`: the batch ended an optimizer step. The epoch's end is `validates_at_epoch_end`'s."""
        if index >= self.batches - 1:
            return False
        if self.upstream:
            return index > 0 and index % self.eval_every == 0
        return synced and step % self.eval_every == 0

    def validates_at_epoch_end(self) -> bool:
        # Upstream's `step > 0` leaves an epoch of one batch unvalidated.
        return not self.upstream or self.batches > 1

    def state_name(self, epoch: int, first: int, index: int, step: int) -> str | None:
        """The `step_N` to save after the optimizer step that ended at batch `index` (its accumulation
        window began at batch `first`), or None; `step`: optimizer steps done, counting this one."""
        if not self.upstream:
            return f"step_{step}" if step % self.save_every == 0 else None
        # The first b in [first, index] with b > 0 and b % save_every == 0: where upstream saved.
        due = max(first, 1)
        due += -due % self.save_every
        return f"step_{epoch * self.batches + index}" if due <= index else None

    def batch_number(self, epoch: int, index: int) -> int:
        """Upstream's `step + epoch * len(train_dataloader)`: the 0-based batch count over epochs."""
        return epoch * self.batches + index


def describe(config: TrainConfig) -> tuple[str, str]:
    """(validation, checkpoints) as the dry run states them."""
    if upstream_cadence(config):
        return (
            f"after batch index N > 0 with N % {config.eval_every} == 0 (0-based in each epoch: batches "
            f"{config.eval_every + 1}, {2 * config.eval_every + 1}, ...) and at each epoch end "
            "(upstream's cadence)",
            f"step_N/ after batch index N % {config.save_every} == 0 (N counted over epochs, as upstream "
            "named them; with accumulation > 1 at the end of that accumulation window)",
        )
    return (
        f"every {config.eval_every} optimizer steps and at each epoch end",
        f"step_K/ every {config.save_every} optimizer steps (K = optimizer steps done)",
    )
