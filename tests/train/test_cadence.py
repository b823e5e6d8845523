"""When the loop validates and saves (train/cadence.py): upstream's batch-index cadence and optimizer steps.

The loop's use of it runs in test_upstream_loop.py (against upstream's loop) and test_runs.py.
"""

from __future__ import annotations

from gpt4allj_kit.config import TrainConfig
from gpt4allj_kit.train.cadence import Cadence, describe


def _config(padding: str, eval_every: int = 10, save_every: int = 500) -> TrainConfig:
    return TrainConfig(
        model_name="m", tokenizer_name="t", dataset_path="d", output_dir="o", padding=padding,
        eval_every=eval_every, save_every=save_every,
    )  # fmt: skip


def _walk(cadence: Cadence, accumulation: int, epochs: int = 1) -> tuple[list[int], list[str]]:
    """The batches (over epochs) after which a validation comes, and the states saved, as the loop runs."""
    validated, saved = [], []
    step = 0
    for epoch in range(epochs):
        window = 0
        for index in range(cadence.batches):
            synced = (index + 1) % accumulation == 0 or index == cadence.batches - 1
            step += synced
            if cadence.validates_mid_epoch(index, step, synced=synced):
                validated.append(cadence.batch_number(epoch, index))
            if synced:
                if (name := cadence.state_name(epoch, window, index, step)) is not None:
                    saved.append(name)
                window = index + 1
        if cadence.validates_at_epoch_end():
            validated.append(cadence.batch_number(epoch, cadence.batches - 1))
    return validated, saved


def test_faithful_validates_after_batches_11_21_31_and_at_the_epoch_end() -> None:
    validated, _ = _walk(Cadence.of(_config("faithful"), batches=35), accumulation=1)
    assert [b + 1 for b in validated] == [11, 21, 31, 35]  # batches done (1-based)


def test_faithful_step_500_comes_after_501_batches_and_is_named_over_epochs() -> None:
    _, saved = _walk(Cadence.of(_config("faithful", save_every=500), batches=1200), accumulation=1, epochs=2)
    assert saved == ["step_500", "step_1000", "step_1700", "step_2200"]  # upstream: step + epoch * len


def test_faithful_with_accumulation_saves_at_the_end_of_the_window() -> None:
    cadence = Cadence.of(_config("faithful", eval_every=6, save_every=6), batches=20)
    validated, saved = _walk(cadence, accumulation=4)
    assert validated == [6, 12, 18, 19]  # as upstream: inside windows 4-7 and 12-15, before their steps
    assert saved == ["step_7", "step_15", "step_19"]  # upstream's 6, 12, 18, each at its window's end


def test_an_epoch_of_one_batch_is_never_validated_upstream() -> None:
    assert Cadence.of(_config("faithful"), batches=1).validates_at_epoch_end() is False
    assert Cadence.of(_config("dynamic"), batches=1).validates_at_epoch_end() is True


def test_dynamic_padding_counts_optimizer_steps() -> None:
    cadence = Cadence.of(_config("dynamic", eval_every=2, save_every=3), batches=20)
    validated, saved = _walk(cadence, accumulation=2)
    assert validated == [3, 7, 11, 15, 19]  # after optimizer steps 2, 4, 6, 8 and the epoch's end
    assert saved == ["step_3", "step_6", "step_9"]


def test_the_dry_run_says_which_cadence() -> None:
    validation, checkpoints = describe(_config("faithful", eval_every=500, save_every=500))
    assert "batches 501, 1001" in validation and "upstream" in validation
    assert "step_N/" in checkpoints and "accumulation window" in checkpoints
    validation, checkpoints = describe(_config("dynamic", eval_every=500, save_every=500))
    assert validation == "every 500 optimizer steps and at each epoch end"
    assert checkpoints == "step_K/ every 500 optimizer steps (K = optimizer steps done)"
