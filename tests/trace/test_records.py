"""trace.jsonl's format: rows as ranges, content digests, reading a trace (a torn last line tolerated, any
other damage one line naming it), and the cut back to a resumed state (the metrics' rule, reused)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from gpt4allj_kit.errors import ConfigError
from gpt4allj_kit.trace import records
from gpt4allj_kit.train.checkpoint import TrainerState
from gpt4allj_kit.train.loop import MetricsLog


def test_rows_round_trip_as_sorted_ranges_with_repeats() -> None:
    rows = [9, 3, 4, 5, 5, 6, 12, 0]
    text = records.encode_rows(rows)
    assert text == "0,3-5,5-6,9,12"
    assert records.decode_rows(text) == sorted(rows)
    assert records.encode_rows([]) == "" and records.decode_rows("") == []
    for bad in ("3-1", "a", "1-2-3", "-4"):
        with pytest.raises(ValueError):
            records.decode_rows(bad)


def test_a_rows_digest_covers_its_real_tokens_only() -> None:
    """The same row padded to 8 (faithful) or cut to 4 columns (dynamic padding) has the same digest;
    another token or another label changes it."""
    ids = np.array([[5, 6, 7, 50256, 50256, 50256, 50256, 50256]])
    labels = np.array([[-100, 6, 7, -100, -100, -100, -100, -100]])
    mask = np.array([[1, 1, 1, 0, 0, 0, 0, 0]])
    full = records.row_digests(ids, labels, mask)
    assert full == records.row_digests(ids[:, :4], labels[:, :4], mask[:, :4])
    assert full == records.row_digests(ids.astype(np.int32), labels.astype(np.int64), mask)
    other = ids.copy()
    other[0, 1] = 9
    assert records.row_digests(other, labels, mask) != full
    masked = labels.copy()
    masked[0, 1] = -100
    assert records.row_digests(ids, masked, mask) != full
    assert len(full[0]) == records.DIGEST_BYTES


def test_a_batch_hash_ignores_the_order_of_its_rows() -> None:
    a, b = b"a" * 16, b"b" * 16
    assert records.batch_hash([a, b]) == records.batch_hash([b, a]) != records.batch_hash([a, a])


def _step(step: int) -> dict:
    return {"step": step, "epoch": 0, "window": [step - 1, step - 1], "rows": f"{step}", "n_rows": 1}


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(lines), encoding="utf-8")
    return path


def test_a_torn_last_line_is_skipped_and_said(tmp_path: Path) -> None:
    lines = [
        json.dumps({"launch": True, "num_processes": 2}) + "\n",
        *(json.dumps(_step(s)) + "\n" for s in (1, 2)),
    ]
    trace = records.read_trace(_write(tmp_path / "t.jsonl", [*lines, '{"step": 3, "ep']))
    assert trace.torn and [s.step for s in trace.steps] == [1, 2]
    assert trace.launches[0].num_processes == 2
    assert not records.read_trace(_write(tmp_path / "u.jsonl", lines)).torn


def test_damage_before_the_last_line_is_one_line_naming_it(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "t.jsonl", [json.dumps(_step(1)) + "\n", "garbage\n", json.dumps(_step(3)) + "\n"]
    )
    with pytest.raises(ConfigError, match=r"t\.jsonl: line 2: not JSON"):
        records.read_trace(path)
    path = _write(tmp_path / "s.jsonl", [json.dumps({**_step(1), "step": 0}) + "\n"])
    with pytest.raises(ConfigError, match=r"s\.jsonl: line 1: key 'step'"):
        records.read_trace(path)
    path = _write(tmp_path / "l.jsonl", ["[1, 2]\n"])
    with pytest.raises(ConfigError, match=r"l\.jsonl: line 1: expected a JSON object"):
        records.read_trace(path)


def test_a_resume_cuts_the_trace_back_to_its_state(tmp_path: Path) -> None:
    """The killed launch wrote steps 1-5 and tore a 6th; the state resumed holds 3 steps: the launch record
    and steps 1-3 stay, the new launch appends from there, each line fsynced."""
    lines = [
        json.dumps({"launch": True, "step": 0}) + "\n",
        *(json.dumps(_step(s)) + "\n" for s in range(1, 6)),
    ]
    _write(tmp_path / "trace.jsonl", [*lines, '{"step": 6'])
    log = MetricsLog(
        tmp_path, True, TrainerState(step=3, batches_done=3), 5, name="trace.jsonl", durable=True
    )
    log.write({"launch": True, "step": 3})
    log.write(_step(4))
    trace = records.read_trace(tmp_path / "trace.jsonl")
    assert not trace.torn
    assert [s.step for s in trace.steps] == [1, 2, 3, 4]
    assert [r.step for r in trace.launches] == [0, 3]
