"""Compare: our zero-shot numbers against the published table (results → Comparison → compare/ files).

`results` reads lm-eval's and the kit's result files, `comparison` judges them cell by cell against a
published row, and `stage` writes the comparisons with their manifest and reads them back. The stage
module is imported on its own (`gpt4allj_kit.compare.stage`): it renders through `gpt4allj_kit.report`.
"""

from gpt4allj_kit.compare.comparison import (
    RULE,
    AverageCell,
    Cell,
    Comparison,
    TableRow,
    Verdict,
    combined_table,
    compare,
    compare_path,
    default_against,
    read_comparison,
    regenerated_table,
)
from gpt4allj_kit.compare.results import (
    NOT_COMPARABLE_NOTE,
    Measured,
    Score,
    read_measured,
    result_candidates,
    result_files,
)

__all__ = [
    "NOT_COMPARABLE_NOTE",
    "RULE",
    "AverageCell",
    "Cell",
    "Comparison",
    "Measured",
    "Score",
    "TableRow",
    "Verdict",
    "combined_table",
    "compare",
    "compare_path",
    "default_against",
    "read_comparison",
    "read_measured",
    "regenerated_table",
    "result_candidates",
    "result_files",
]
