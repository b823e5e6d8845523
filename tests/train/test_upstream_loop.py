"""The kit's loop against upstream's (tests/train/upstream_train.py) on the same config, 2 CPU processes:
the same loss and learning rate at every step, validation after the same batches with the same loss, and
resumable states under upstream's names (faithful padding, accumulation 1: the published settings)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

UPSTREAM = Path(__file__).with_name("upstream_train.py")
# Unshuffled, as the reference commit; eval_every/save_every small enough to land several times in the
# 5 batches per epoch of each process (38 training rows, 4 per process, 2 processes).
SETS = {"eval_every": 2, "save_every": 3, "log_grads_every": None}


@pytest.fixture(scope="module")
def pair(launch_train, tmp_path_factory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("upstream-pair")
    kit = launch_train(root / "kit", deepspeed=False, sets=SETS)
    assert kit.returncode == 0, kit.log[-4000:]
    upstream = launch_train(root / "upstream", deepspeed=False, sets=SETS, script=UPSTREAM)
    assert upstream.returncode == 0, upstream.log[-4000:]
    import json

    lines = (root / "upstream" / "upstream.jsonl").read_text().splitlines()
    return kit, [json.loads(line) for line in lines]


def test_every_step_has_upstreams_loss_and_learning_rate(pair) -> None:  # type: ignore[no-untyped-def]
    kit, upstream = pair
    theirs = [(r["loss"], r["lr"]) for r in upstream if "loss" in r]
    ours = [(m["train_loss"], m["lr"]) for m in kit.train_metrics()]
    assert len(ours) == len(theirs) == 10
    assert ours == theirs  # bit for bit: same data, order, model, optimizer, schedule and clipping


def test_validation_follows_upstreams_batches_with_its_loss(pair) -> None:  # type: ignore[no-untyped-def]
    kit, upstream = pair
    theirs = [(r["validate"], r["val_loss"]) for r in upstream if "validate" in r]
    ours = [(m["batch"], m["val_loss"]) for m in kit.metrics() if "val_loss" in m]
    # 0-based batch index 2 of each epoch (the 3rd batch) and each epoch's last: batches 2, 4, 7, 9.
    assert [batch for batch, _ in theirs] == [2, 4, 7, 9]
    assert ours == theirs
    # The kit's `step` of a validation is the optimizer steps done: one more than upstream's batch index.
    assert [m["step"] for m in kit.metrics() if "val_loss" in m] == [3, 5, 8, 10]


def test_states_carry_upstreams_names(pair) -> None:  # type: ignore[no-untyped-def]
    kit, upstream = pair
    theirs = [r["save"] for r in upstream if "save" in r]
    assert theirs == ["step_3", "step_8"]
    ours = sorted(p.name for p in kit.output_dir.glob("step_*"))
    assert ours == theirs
    # step_3 holds the state after batch index 3: 4 batches, 4 optimizer steps.
    import json

    state = json.loads((kit.output_dir / "step_3" / "trainer_state.json").read_text())
    assert (state["step"], state["epoch"], state["batches_done"]) == (4, 0, 4)
    # Upstream named the epochs' weights epoch_0, epoch_1; the kit's (and its evaluation's) are 1-based.
    assert [r["save_pretrained"] for r in upstream if "save_pretrained" in r] == ["epoch_0", "epoch_1"]
    assert (kit.output_dir / "epoch_1").is_dir() and (kit.output_dir / "epoch_2").is_dir()
