"""Paired tests between two of our own evaluations: the statistics against known values, the documents'
matching, and the verdicts on hand-made per-document samples."""

from __future__ import annotations

from fractions import Fraction
from math import comb
from pathlib import Path

import numpy as np
import pytest
from gpt4allj_kit.compare.paired import (
    Settings,
    bootstrap_deltas,
    compare_paired,
    compare_runs,
    mcnemar_exact,
    pairs,
    percentile_interval,
)
from gpt4allj_kit.errors import ConfigError
from gpt4allj_kit.published import PublishedTable

# --- McNemar's exact test --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("only_a", "only_b", "expected"),
    [
        (0, 0, Fraction(1)),  # no discordant document: nothing to test
        (1, 0, Fraction(1)),  # one coin flip cannot be significant
        (5, 0, Fraction(2, 32)),  # 2 * (1/2)^5
        (10, 2, Fraction(2 * (1 + 12 + 66), 4096)),  # 2 * P(X <= 2), X ~ Bin(12, 1/2)
        (2, 10, Fraction(2 * (1 + 12 + 66), 4096)),  # symmetric in A and B
        (6, 6, Fraction(1)),  # the tail sum passes 1/2: capped at 1
    ],
)
def test_mcnemar_exact_against_hand_computed_values(only_a: int, only_b: int, expected: Fraction) -> None:
    assert mcnemar_exact(only_a, only_b) == pytest.approx(float(expected), rel=1e-12)


def test_mcnemar_exact_on_a_task_of_ten_thousand_documents() -> None:
    # 2**n overflows a float for n > 1023; the exact integer tail must still give the binomial p.
    only_a, only_b = 3000, 2800
    n = only_a + only_b
    expected = Fraction(2 * sum(comb(n, k) for k in range(only_b + 1)), 2**n)
    assert mcnemar_exact(only_a, only_b) == pytest.approx(float(expected), rel=1e-9)
    assert 0.008 < mcnemar_exact(only_a, only_b) < 0.01


# --- the paired bootstrap --------------------------------------------------------------------------------


def test_bootstrap_of_counts_is_the_bootstrap_of_documents() -> None:
    # The multinomial draw of the three kinds of document is the index bootstrap's distribution.
    docs_a = np.array([1] * 30 + [0] * 10 + [1] * 40 + [0] * 20)
    docs_b = np.array([0] * 30 + [1] * 10 + [1] * 40 + [0] * 20)
    n = len(docs_a)
    rng = np.random.default_rng(7)
    counted = bootstrap_deltas(30, 10, n, rng, 40_000)
    index = rng.integers(0, n, size=(40_000, n))
    resampled = (docs_a[index] - docs_b[index]).mean(axis=1)
    assert counted.mean() == pytest.approx(0.2, abs=0.002)
    assert counted.std() == pytest.approx(resampled.std(), rel=0.03)
    assert percentile_interval(counted, 0.05) == pytest.approx(
        percentile_interval(resampled, 0.05), abs=0.011
    )


def test_bootstrap_without_discordant_documents_is_exactly_zero() -> None:
    deltas = bootstrap_deltas(0, 0, 50, np.random.default_rng(0), 1000)
    assert percentile_interval(deltas, 0.05) == (0.0, 0.0)


# --- the comparison on hand-made evaluations --------------------------------------------------------------


def test_a_model_against_itself_is_same_with_zero_difference(
    scored_eval, tmp_path: Path, table: PublishedTable
) -> None:
    folder = scored_eval(tmp_path / "final", {"boolq": [1, 0, 1, 1, 0, 1, 0, 1]})
    paired = compare_paired(folder, folder, table=table)
    assert paired.same
    assert {t.verdict for t in paired.tasks} == {"same"}
    assert all(t.delta == t.ci_low == t.ci_high == 0 for t in paired.tasks)
    assert paired.average.verdict == "same" and paired.average.delta == 0


def test_counts_deltas_and_verdicts(scored_eval, tmp_path: Path, table: PublishedTable) -> None:
    # BoolQ: A alone right on 12 of 40 documents, B alone right on none: McNemar p = 2/2**12.
    a = scored_eval(tmp_path / "a", {"boolq": [1] * 12 + [1] * 20 + [0] * 8, "piqa": [1, 0] * 4})
    b = scored_eval(tmp_path / "b", {"boolq": [0] * 12 + [1] * 20 + [0] * 8, "piqa": [0, 1] * 4})
    paired = compare_paired(a, b, table=table)
    boolq = next(t for t in paired.tasks if t.key == "boolq")
    assert (boolq.n, boolq.only_a, boolq.only_b) == (40, 12, 0)
    assert boolq.a == pytest.approx(80.0) and boolq.b == pytest.approx(50.0)
    assert boolq.delta == pytest.approx(30.0)
    assert boolq.p_value == pytest.approx(2 / 2**12)
    assert boolq.verdict == "differs"
    assert 0 < boolq.ci_low < boolq.delta < boolq.ci_high
    piqa = next(t for t in paired.tasks if t.key == "piqa")
    assert (piqa.only_a, piqa.only_b, piqa.delta, piqa.p_value) == (4, 4, 0.0, 1.0)
    assert piqa.verdict == "not significant" and piqa.ci_low < 0 < piqa.ci_high
    assert paired.differing == ["BoolQ"]
    # The average weighs each task the same, as the published Avg does.
    assert paired.average.delta == pytest.approx(30.0 / len(table.columns))


def test_the_bootstrap_is_seeded_and_recorded(scored_eval, tmp_path: Path, table: PublishedTable) -> None:
    a = scored_eval(tmp_path / "a", {"boolq": [1, 1, 0, 1, 0, 0, 1, 0, 1, 1] * 40})
    b = scored_eval(tmp_path / "b", {"boolq": [0, 1, 1, 1, 0, 1, 0, 0, 1, 0] * 40})
    first = compare_paired(a, b, table=table)
    assert compare_paired(a, b, table=table) == first
    other = compare_paired(a, b, table=table, settings=Settings(seed=99))
    assert other.settings.seed == 99 and first.settings.seed == Settings().seed
    assert other.average.ci_low != first.average.ci_low or other.average.ci_high != first.average.ci_high


def test_different_documents_are_refused(scored_eval, tmp_path: Path, table: PublishedTable) -> None:
    a = scored_eval(tmp_path / "a", {"boolq": [1] * 8})
    b = scored_eval(tmp_path / "b", {"boolq": [1] * 6})
    with pytest.raises(ConfigError, match=r"boolq: .* has 8 documents and .* 6, not the same ones"):
        compare_paired(a, b, table=table)
    c = scored_eval(tmp_path / "c", {})
    lines = (c / "samples" / "piqa.jsonl").read_text().replace('"hpiqa3"', '"changed"')
    (c / "samples" / "piqa.jsonl").write_text(lines)
    with pytest.raises(ConfigError, match="piqa: document 3 differs"):
        compare_paired(a, c, table=table)


def test_samples_that_are_not_lm_evals_are_one_line_errors(
    scored_eval, tmp_path: Path, table: PublishedTable
) -> None:
    a = scored_eval(tmp_path / "a", {})
    b = scored_eval(tmp_path / "b", {})
    (b / "samples" / "boolq.jsonl").write_text('{"doc_id": 0, "acc": 1.0}\n{not json\n')
    with pytest.raises(ConfigError, match=r"boolq.jsonl:2: not a JSON line"):
        compare_paired(a, b, table=table)
    (b / "samples" / "boolq.jsonl").write_text('{"doc_id": 0, "acc": 0.5}\n')
    with pytest.raises(ConfigError, match=r"boolq.jsonl:1: no doc_id and 0/1 'acc'"):
        compare_paired(a, b, table=table)
    (b / "samples" / "boolq.jsonl").unlink()
    with pytest.raises(ConfigError, match=r"boolq\.jsonl"):
        compare_paired(a, b, table=table)


def test_two_runs_pair_their_evaluations_by_label(scored_eval, tmp_path: Path, table: PublishedTable) -> None:
    for run in ("run_a", "run_b"):
        for label in ("epoch_1", "final", *(("published",) if run == "run_a" else ())):
            scored_eval(tmp_path / run / "eval" / label, {})
    found = pairs(tmp_path / "run_a", tmp_path / "run_b")
    assert [(x.name, y.name) for x, y in found] == [("epoch_1", "epoch_1"), ("final", "final")]
    assert [c.a_label for c in compare_runs(tmp_path / "run_a", tmp_path / "run_b")] == ["epoch_1", "final"]
    single = tmp_path / "run_a" / "eval" / "final"
    assert pairs(single, tmp_path / "run_b" / "eval" / "epoch_1") == [
        (single, tmp_path / "run_b" / "eval" / "epoch_1")
    ]
    with pytest.raises(ConfigError, match=r"holds several evaluations .*epoch_1, final.*pass one of them"):
        pairs(single, tmp_path / "run_b")
    with pytest.raises(ConfigError, match="holds no evaluation with per-document samples"):
        pairs(tmp_path, single)
