"""Validation outcomes: merged over chunks, written as JSON and Markdown, printed as a table.

Great Expectations returns one result per expectation and batch. A raw file
validated in chunks gives one batch per chunk, so :func:`merge_outcomes` adds
up the unexpected counts of the same expectation and keeps the first examples.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

#: Message fragment of the exception Great Expectations raises for an absent column.
_MISSING_COLUMN = re.compile(
    r'The column "(?P<column>.+?)" in BatchData does not exist'
)
_COMPACT_ROWS = 20
_EXAMPLE_WIDTH = 60


@dataclass
class ExpectationOutcome:
    """The result of one expectation on one table, possibly summed over chunks.

    Attributes:
        table: validated table, e.g. ``raw-muon`` or ``jet-matches``.
        expectation: Great Expectations type, e.g. ``expect_column_values_to_be_between``.
        column: the column it checks; the source column for a derived one,
            ``a, b`` for a pair, ``(table)`` for table-wide expectations.
        rows: which rows it checks, when not all of them.
        arguments: the expectation's other arguments (range, value set, mostly).
        success: whether it passed.
        evaluated: False when it could not run because its column is missing.
        unexpected_count: rows that failed, or missing columns for the column set.
        element_count: rows checked, None for table-wide expectations.
        missing_count: null rows, which column-value expectations skip.
        examples: a few unexpected values (value pairs for a pair expectation).
        example_events: the event (row of the raw file) of each example, for
            stacked slot batches.
        observed_value: the measured value of a table-wide expectation.
        exception: the error message when Great Expectations raised one.
        key: the expectation's id, the same in every chunk.
    """

    table: str
    expectation: str
    column: str
    rows: str | None
    arguments: dict[str, Any]
    success: bool
    evaluated: bool = True
    unexpected_count: int | None = None
    element_count: int | None = None
    missing_count: int | None = None
    examples: list[Any] = field(default_factory=list)
    example_events: list[int] = field(default_factory=list)
    observed_value: Any = None
    exception: str | None = None
    key: str = ""

    @property
    def unexpected_fraction(self) -> float | None:
        """Unexpected rows over checked non-null rows, or None when not counted."""
        if self.unexpected_count is None or not self.element_count:
            return None
        checked = self.element_count - (self.missing_count or 0)
        return self.unexpected_count / checked if checked else 0.0


_ARGUMENT_KEYS = (
    "min_value",
    "max_value",
    "strict_min",
    "strict_max",
    "value_set",
    "mostly",
    "column_set",
    "exact_match",
    "column_list",
)


def _exception_message(info: dict) -> str | None:
    # Great Expectations stores either one flat record or one record per metric.
    if not info:
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message"))
    for value in info.values():
        if isinstance(value, dict) and value.get("raised_exception"):
            return str(value.get("exception_message"))
    return None


def _display_column(kwargs: dict, meta: dict) -> str:
    if meta.get("column"):
        return str(meta["column"])
    if "column" in kwargs:
        return str(kwargs["column"])
    if "column_A" in kwargs:
        return f"{kwargs['column_A']}, {kwargs['column_B']}"
    if "column_list" in kwargs:
        return ", ".join(kwargs["column_list"])
    return "(table)"


def _name_slots(outcome: ExpectationOutcome, index: list[Any], slots: int) -> None:
    """Turn the row index of a stacked batch into slot column names and event numbers."""
    rows = [int(row) for row in index[: len(outcome.examples)]]
    if not rows:
        return
    outcome.example_events = [row // slots for row in rows]
    slot_ids = sorted({row % slots for row in rows})
    outcome.column = ", ".join(f"{outcome.column}_{slot}" for slot in slot_ids)


def outcome_from_result(
    table: str, result: Any, examples: int, slots: int | None = None
) -> ExpectationOutcome:
    """Convert one Great Expectations ``ExpectationValidationResult``.

    Args:
        table: name of the batch's suite.
        result: the result of one expectation on one batch.
        examples: unexpected values to keep.
        slots: slots per event when the batch is a stacked slot batch, whose
            row index is ``event * slots + slot``; 1 for a batch of one row per event.
    """
    config = result.expectation_config
    kwargs = dict(config.kwargs)
    meta = dict(config.meta or {})
    details = dict(result.result or {})
    outcome = ExpectationOutcome(
        table=table,
        expectation=config.type,
        column=_display_column(kwargs, meta),
        rows=meta.get("rows"),
        arguments={
            key: kwargs[key]
            for key in _ARGUMENT_KEYS
            if key in kwargs and key != "column_set"
        },
        success=bool(result.success),
        key=str(config.id),
        exception=_exception_message(dict(result.exception_info or {})),
    )
    if outcome.exception and _MISSING_COLUMN.search(outcome.exception):
        outcome.evaluated = False
    if "unexpected_count" in details:
        outcome.unexpected_count = int(details["unexpected_count"])
        outcome.element_count = int(details.get("element_count", 0))
        outcome.missing_count = int(details.get("missing_count", 0) or 0)
        outcome.examples = list(details.get("partial_unexpected_list", []))[:examples]
        if slots == 1:
            outcome.example_events = [
                int(row) for row in (details.get("partial_unexpected_index_list") or [])
            ][: len(outcome.examples)]
        elif slots:
            _name_slots(
                outcome, list(details.get("partial_unexpected_index_list") or []), slots
            )
    elif config.type == "expect_table_columns_to_match_set":
        mismatched = (details.get("details") or {}).get("mismatched") or {}
        missing = list(mismatched.get("missing", []))
        extra = (
            list(mismatched.get("unexpected", []))
            if kwargs.get("exact_match", True)
            else []
        )
        outcome.unexpected_count = len(missing) + len(extra)
        outcome.examples = [f"missing {name}" for name in missing] + [
            f"extra {name}" for name in extra
        ]
        if missing and not meta.get("column"):
            outcome.column = ", ".join(missing[:3]) + (
                " ..." if len(missing) > 3 else ""
            )
    else:
        outcome.observed_value = details.get("observed_value")
    return outcome


def merge_outcomes(
    chunks: list[list[ExpectationOutcome]], examples: int
) -> list[ExpectationOutcome]:
    """Sum the outcomes of the same expectations over chunks of one table.

    Counts add up and the first ``examples`` unexpected values are kept. An expectation with
    ``mostly`` below 1 is re-judged on the summed counts, since passing in
    every chunk does not imply passing on the whole.
    """
    if len(chunks) == 1:
        return chunks[0]
    merged: dict[str, ExpectationOutcome] = {}
    for outcomes in chunks:
        for outcome in outcomes:
            total = merged.get(outcome.key)
            if total is None:
                merged[outcome.key] = ExpectationOutcome(**asdict(outcome))
                continue
            total.success = total.success and outcome.success
            total.evaluated = total.evaluated and outcome.evaluated
            total.exception = total.exception or outcome.exception
            if outcome.examples and not total.examples:
                total.column = outcome.column
            if outcome.unexpected_count is not None:
                total.unexpected_count = (
                    total.unexpected_count or 0
                ) + outcome.unexpected_count
                total.element_count = (total.element_count or 0) + (
                    outcome.element_count or 0
                )
                total.missing_count = (total.missing_count or 0) + (
                    outcome.missing_count or 0
                )
                total.examples = (total.examples + outcome.examples)[:examples]
                total.example_events = (total.example_events + outcome.example_events)[
                    :examples
                ]
    for total in merged.values():
        mostly = total.arguments.get("mostly", 1.0)
        if mostly < 1.0 and total.evaluated and total.unexpected_fraction is not None:
            total.success = total.unexpected_fraction <= 1.0 - mostly
    return list(merged.values())


def json_safe(value: Any) -> Any:
    """Return ``value`` with NaN and inf as strings and numpy scalars as Python numbers."""
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    return str(value)


def outcome_record(outcome: ExpectationOutcome) -> dict[str, Any]:
    """Return the JSON record of one outcome."""
    record = asdict(outcome)
    record.pop("key")
    record["unexpected_fraction"] = outcome.unexpected_fraction
    return json_safe(record)


def _format_examples(values: list[Any], events: list[int]) -> str:
    shown = [str(json_safe(value)) for value in values]
    if len(events) == len(values):
        shown = [
            f"{value} (event {event})"
            for value, event in zip(shown, events, strict=True)
        ]
    text = ", ".join(shown)
    return text if len(text) <= _EXAMPLE_WIDTH else text[: _EXAMPLE_WIDTH - 3] + "..."


def _count_text(outcome: ExpectationOutcome) -> str:
    if outcome.unexpected_count is not None:
        return str(outcome.unexpected_count)
    if outcome.observed_value is not None:
        return f"observed {json_safe(outcome.observed_value)}"
    return "-"


def _failure_rows(failed: list[ExpectationOutcome]) -> list[tuple[str, str, str, str]]:
    rows = []
    for outcome in failed:
        column = (
            outcome.column
            if outcome.rows is None
            else f"{outcome.column} ({outcome.rows})"
        )
        if outcome.examples:
            examples = _format_examples(outcome.examples, outcome.example_events)
        else:
            examples = _format_examples(
                [outcome.exception] if outcome.exception else [], []
            )
        rows.append((column, outcome.expectation, _count_text(outcome), examples))
    return rows


def compact_table(outcomes: list[ExpectationOutcome]) -> str:
    """Format the failed, evaluated expectations as an aligned text table.

    Expectations that could not run because their column is missing are
    counted in one closing line; the column-set expectation names the column.
    """
    failed = [o for o in outcomes if not o.success and o.evaluated]
    skipped = sum(1 for o in outcomes if not o.evaluated)
    header = ("column", "expectation", "unexpected", "examples")
    rows = _failure_rows(failed[:_COMPACT_ROWS])
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(3)]
    lines = [
        "  ".join(
            cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)
        )
        + "  "
        + row[3]
        for row in [header, *rows]
    ]
    if len(failed) > _COMPACT_ROWS:
        lines.append(f"... and {len(failed) - _COMPACT_ROWS} more failed expectations")
    if skipped:
        lines.append(
            f"{skipped} expectations not evaluated because their column is missing"
        )
    return "\n".join(line.rstrip() for line in lines)


def markdown_summary(
    payload: dict[str, Any], outcomes: list[ExpectationOutcome]
) -> str:
    """Render the Markdown summary of one validated kind.

    Args:
        payload: the JSON result written beside it.
        outcomes: every outcome, merged over chunks.
    """
    statistics = payload["statistics"]
    verdict = "passed" if payload["success"] else "failed"
    lines = [
        f"# Validation of {payload['kind']}: {verdict}",
        "",
        f"Great Expectations {payload['great_expectations_version']}; "
        f"{statistics['unsuccessful_expectations']} of {statistics['evaluated_expectations']} "
        f"expectations failed, {statistics['not_evaluated_expectations']} not evaluated; "
        f"{statistics['seconds']:.1f} s.",
        "",
        "| table | input | rows | chunks | duplicate fraction |",
        "|---|---|---:|---:|---:|",
    ]
    for name, table in statistics["tables"].items():
        duplicates = table.get("duplicate_fraction")
        shown = "-" if duplicates is None else f"{duplicates:.4%}"
        lines.append(
            f"| {name} | `{table['input']}` | {table['rows']} | {table['chunks']} | {shown} |"
        )
    failed = [o for o in outcomes if not o.success]
    if failed:
        lines += [
            "",
            "## Failed expectations",
            "",
            "| table | column | expectation | unexpected | examples |",
            "|---|---|---|---:|---|",
        ]
        for outcome, row in zip(failed, _failure_rows(failed), strict=True):
            cells = [outcome.table, *row]
            lines.append(
                "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"
            )
    lines += [
        "",
        f"Data Docs: `{payload['data_docs']}` (unpack it and open `data_docs/index.html`).",
        "",
    ]
    return "\n".join(lines)
