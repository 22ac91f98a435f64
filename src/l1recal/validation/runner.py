"""The ``validate`` stage: run the suites of one kind of table and write the reports.

Kinds and their inputs:

* ``raw-muon``: raw muon events, validated in chunks of ``batch_rows`` events.
* ``muon-table``: the flattened muon table, validated whole.
* ``raw-jet``: raw jet events, validated in chunks.
* ``jet-table``: the flattened jet table and its match records (two inputs, in
  that order), validated whole because the checks link rows of both files.

Outputs in the output folder: ``<kind>.json`` (success, statistics, failed
expectations), ``<kind>.md`` and ``<kind>_data_docs.tar.gz``. They are written
atomically, also when validation fails; then :class:`DataValidationError` is
raised afterwards.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import great_expectations as gx
import pandas as pd
import pyarrow.parquet as pq

from l1recal.atomic import atomic_path, write_json, write_text
from l1recal.config import JetValidateSettings, ValidateSettings
from l1recal.data.column_map import ColumnMap
from l1recal.data.parquet_input import open_parquet
from l1recal.errors import ConfigError, L1RecalError
from l1recal.schema import (
    JET_MATCH_COLUMNS,
    JET_TABLE_COLUMNS,
    MUON_TABLE_COLUMNS,
    raw_event_columns,
    raw_jet_event_columns,
)
from l1recal.validation import suites
from l1recal.validation.context import ValidationSession, pack_data_docs
from l1recal.validation.derived import (
    Batch,
    SlotGroup,
    slot_batches,
    with_duplicates,
    with_jet_links,
)
from l1recal.validation.mapping import RawLayout, raw_layout
from l1recal.validation.report import (
    ExpectationOutcome,
    compact_table,
    markdown_summary,
    merge_outcomes,
    outcome_from_result,
    outcome_record,
)

logger = logging.getLogger(__name__)

AnySettings = ValidateSettings | JetValidateSettings
Frames = dict[str, pd.DataFrame]


class DataValidationError(L1RecalError):
    """A table failed its expectations; ``failures`` is the compact table of them."""

    def __init__(self, message: str, failures: str) -> None:
        super().__init__(message)
        self.failures = failures


@dataclass(frozen=True)
class TableSpec:
    """One validated file.

    Attributes:
        name: table name, e.g. ``raw-muon`` or ``jet-matches``.
        columns: the layout the column-set expectation compares with.
        exact: whether extra columns fail the column set too.
        read_columns: the columns the row suites read (a subset of ``columns``).
    """

    name: str
    columns: tuple[str, ...]
    exact: bool
    read_columns: tuple[str, ...]


@dataclass(frozen=True)
class KindSpec:
    """One kind of validation: its files, settings, suites and batches.

    Attributes:
        name: the kind, e.g. ``raw-muon``.
        settings: the settings class of its ``params.yaml`` section.
        tables: the input files, in command-line order.
        row_suites: builds the row suites from the settings.
        groups: the slot groups of a raw kind, read in chunks of ``batch_rows``
            events; None for flattened tables, read whole.
        batches: turns the frames of a flattened kind (by table name) into
            the batches to validate; None for raw kinds.
    """

    name: str
    settings: type
    tables: tuple[TableSpec, ...]
    row_suites: Callable[[Any], list[gx.ExpectationSuite]]
    groups: tuple[SlotGroup, ...] | None = None
    batches: Callable[[Frames], list[Batch]] | None = None


def _muon_table_batches(frames: Frames) -> list[Batch]:
    table = with_duplicates(frames["muon-table"], MUON_TABLE_COLUMNS)
    return [Batch("muon-table", table)]


def _jet_table_batches(frames: Frames) -> list[Batch]:
    jets = with_duplicates(frames["jet-table"], JET_TABLE_COLUMNS)
    jets, matches = with_jet_links(jets, frames["jet-matches"])
    return [Batch("jet-table", jets), Batch("jet-matches", matches)]


def _jet_suites(settings: JetValidateSettings) -> list[gx.ExpectationSuite]:
    return suites.jet_table_suites(settings) + suites.jet_match_suites(settings)


KINDS = {
    spec.name: spec
    for spec in (
        KindSpec(
            "raw-muon",
            ValidateSettings,
            (
                TableSpec(
                    "raw-muon",
                    tuple(raw_event_columns()),
                    False,
                    tuple(suites.raw_muon_read_columns()),
                ),
            ),
            suites.raw_muon_suites,
            groups=suites.RAW_MUON_GROUPS,
        ),
        KindSpec(
            "muon-table",
            ValidateSettings,
            (TableSpec("muon-table", MUON_TABLE_COLUMNS, True, MUON_TABLE_COLUMNS),),
            suites.muon_table_suites,
            batches=_muon_table_batches,
        ),
        KindSpec(
            "raw-jet",
            JetValidateSettings,
            (
                TableSpec(
                    "raw-jet",
                    tuple(raw_jet_event_columns()),
                    False,
                    tuple(suites.raw_jet_read_columns()),
                ),
            ),
            suites.raw_jet_suites,
            groups=suites.RAW_JET_GROUPS,
        ),
        KindSpec(
            "jet-table",
            JetValidateSettings,
            (
                TableSpec("jet-table", JET_TABLE_COLUMNS, True, JET_TABLE_COLUMNS),
                TableSpec("jet-matches", JET_MATCH_COLUMNS, True, JET_MATCH_COLUMNS),
            ),
            _jet_suites,
            batches=_jet_table_batches,
        ),
    )
}


def get_kind(name: str) -> KindSpec:
    """Return a kind by name, raising :class:`ConfigError` with the valid names otherwise."""
    try:
        return KINDS[name]
    except KeyError:
        raise ConfigError(
            f"unknown validation kind {name!r}; valid kinds: {', '.join(KINDS)}"
        ) from None


def output_paths(output_dir: Path, kind: str) -> dict[str, Path]:
    """Return the JSON, Markdown and Data Docs archive paths of one kind."""
    return {
        "json": output_dir / f"{kind}.json",
        "markdown": output_dir / f"{kind}.md",
        "data_docs": output_dir / f"{kind}_data_docs.tar.gz",
    }


def _present(parquet: pq.ParquetFile, columns: tuple[str, ...]) -> list[str]:
    names = set(parquet.schema_arrow.names)
    return [name for name in columns if name in names]


def _iter_chunks(
    parquet: pq.ParquetFile, columns: list[str], batch_rows: int
) -> Iterator[tuple[int, pd.DataFrame]]:
    """Yield (first row, frame) per chunk; an empty file gives one empty frame."""
    first = 0
    for batch in parquet.iter_batches(batch_size=batch_rows, columns=columns):
        frame = batch.to_pandas()
        yield first, frame
        first += len(frame)
    if first == 0:
        yield 0, parquet.schema_arrow.empty_table().select(columns).to_pandas()


def _validate_layouts(
    session: ValidationSession,
    kind: KindSpec,
    parquets: dict[str, pq.ParquetFile],
    layout: RawLayout | None,
) -> list[ExpectationOutcome]:
    outcomes = []
    for table in kind.tables:
        columns = layout.columns if layout is not None else table.columns
        suite = suites.layout_suite(table.name, columns, exact=table.exact)
        session.add_suite(suite)
        empty = parquets[table.name].schema_arrow.empty_table().to_pandas()
        results = session.run(suite.name, empty, f"{suite.name} layout")
        outcomes += [outcome_from_result(table.name, result, 0) for result in results]
    return outcomes


def _raw_reads(
    kind: KindSpec,
    settings: AnySettings,
    parquet: pq.ParquetFile,
    layout: RawLayout,
) -> Iterator[tuple[int, int, Iterable[Batch]]]:
    """Yield (first event, events, batches) per chunk of a raw file, in project names."""
    (table,) = kind.tables
    columns = layout.columns if layout.rename else table.read_columns
    for first, frame in _iter_chunks(
        parquet, _present(parquet, columns), settings.batch_rows
    ):
        if layout.rename:
            frame = frame.rename(columns=layout.rename)
        yield first, len(frame), slot_batches(kind.name, frame, first, layout.groups)


def _table_reads(
    kind: KindSpec, parquets: dict[str, pq.ParquetFile]
) -> Iterator[tuple[int, int, Iterable[Batch]]]:
    """Yield the one read of a flattened kind: every table whole."""
    frames = {
        table.name: parquets[table.name]
        .read(columns=_present(parquets[table.name], table.read_columns))
        .to_pandas()
        for table in kind.tables
    }
    batches = kind.batches(frames) if kind.batches is not None else []
    yield 0, len(next(iter(frames.values()))), batches


def _validate_rows(
    session: ValidationSession,
    kind: KindSpec,
    settings: AnySettings,
    parquets: dict[str, pq.ParquetFile],
    layout: RawLayout | None,
    statistics: dict[str, dict[str, Any]],
) -> list[ExpectationOutcome]:
    for suite in kind.row_suites(settings):
        session.add_suite(suite)
    if layout is not None:
        reads = _raw_reads(kind, settings, parquets[kind.tables[0].name], layout)
    else:
        reads = _table_reads(kind, parquets)

    by_suite: dict[str, list[list[ExpectationOutcome]]] = {}
    chunks = 0
    for first, rows, batches in reads:
        for batch in batches:
            run_name = f"{batch.suite} rows {first}-{first + rows}"
            results = session.run(batch.suite, batch.frame, run_name)
            by_suite.setdefault(batch.suite, []).append(
                [
                    outcome_from_result(
                        batch.suite, result, settings.examples, batch.slots
                    )
                    for result in results
                ]
            )
        chunks += 1
        logger.info("validated %s rows %d-%d", kind.name, first, first + rows)
    for table in kind.tables:
        statistics[table.name]["chunks"] = chunks
    outcomes = []
    for per_chunk in by_suite.values():
        outcomes += merge_outcomes(per_chunk, settings.examples)
    return outcomes


def _duplicate_fractions(
    outcomes: list[ExpectationOutcome], statistics: dict[str, dict[str, Any]]
) -> None:
    for outcome in outcomes:
        if (
            outcome.arguments.get("value_set") == [False]
            and outcome.rows == "duplicate of an earlier row"
        ):
            statistics[outcome.table]["duplicate_fraction"] = (
                outcome.unexpected_fraction
            )


def run_validate(
    settings: AnySettings,
    kind_name: str,
    inputs: list[Path],
    output_dir: Path,
    column_map: ColumnMap | None = None,
) -> dict[str, Any]:
    """Validate the input files of one kind and write its reports into ``output_dir``.

    Args:
        settings: the ``validate`` (muon kinds) or ``jet_validate`` (jet kinds) section.
        kind_name: ``raw-muon``, ``muon-table``, ``raw-jet`` or ``jet-table``.
        inputs: the parquet files, one per table of the kind.
        output_dir: folder of ``<kind>.json``, ``<kind>.md`` and ``<kind>_data_docs.tar.gz``.
        column_map: names of the raw columns in the user's files (raw kinds
            only); None for the default layout.

    Returns:
        The JSON result.

    Raises:
        ConfigError: on an unknown kind, settings of the other task, a wrong
            number of inputs, or a column map that validation cannot apply.
        InputFileError: when an input is missing or not parquet.
        DataValidationError: when an expectation failed; the reports are written first.
    """
    kind = get_kind(kind_name)
    if not isinstance(settings, kind.settings):
        raise ConfigError(
            f"validation kind {kind.name} needs {kind.settings.__name__}, got {type(settings).__name__}"
        )
    if len(inputs) != len(kind.tables):
        expected = " and ".join(table.name for table in kind.tables)
        raise ConfigError(
            f"validation kind {kind.name} takes {len(kind.tables)} input file(s) ({expected}), got {len(inputs)}"
        )
    layout = None
    if kind.groups is not None:
        layout = raw_layout(kind.name, kind.tables[0].columns, kind.groups, column_map)
    elif column_map is not None:
        raise ConfigError(
            f"validation kind {kind.name} reads the project layout written by ingest; "
            "pass --column-map only with raw-muon or raw-jet"
        )
    parquets = {
        table.name: open_parquet(path)
        for table, path in zip(kind.tables, inputs, strict=True)
    }
    statistics: dict[str, dict[str, Any]] = {
        table.name: {
            "input": str(path),
            "rows": parquets[table.name].metadata.num_rows,
            "chunks": 1,
            "duplicate_fraction": None,
        }
        for table, path in zip(kind.tables, inputs, strict=True)
    }
    paths = output_paths(output_dir, kind.name)

    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="l1recal-data-docs-") as docs_dir:
        session = ValidationSession(Path(docs_dir), settings.examples)
        outcomes = _validate_layouts(session, kind, parquets, layout)
        outcomes += _validate_rows(
            session, kind, settings, parquets, layout, statistics
        )
        session.build_docs()
        seconds = time.perf_counter() - start
        _duplicate_fractions(outcomes, statistics)
        payload = _payload(kind, outcomes, statistics, seconds, paths["data_docs"])
        write_json(paths["json"], payload)
        write_text(paths["markdown"], markdown_summary(payload, outcomes))
        with atomic_path(paths["data_docs"]) as staging:
            pack_data_docs(Path(docs_dir), staging)

    logger.info(
        "%s: %s, %d of %d expectations failed in %.1f s -> %s",
        kind.name,
        "passed" if payload["success"] else "failed",
        payload["statistics"]["unsuccessful_expectations"],
        payload["statistics"]["evaluated_expectations"],
        seconds,
        paths["json"],
    )
    if not payload["success"]:
        raise DataValidationError(
            f"{', '.join(map(str, inputs))}: {kind.name} validation failed, "
            f"{payload['statistics']['unsuccessful_expectations']} expectation(s); "
            f"details in {paths['markdown']}, fix the input or the export and re-run",
            compact_table(outcomes),
        )
    return payload


def _payload(
    kind: KindSpec,
    outcomes: list[ExpectationOutcome],
    statistics: dict[str, dict[str, Any]],
    seconds: float,
    data_docs: Path,
) -> dict[str, Any]:
    evaluated = [o for o in outcomes if o.evaluated]
    failed = [o for o in outcomes if not o.success]
    return {
        "kind": kind.name,
        "success": not failed,
        "great_expectations_version": gx.__version__,
        "statistics": {
            "evaluated_expectations": len(evaluated),
            "successful_expectations": sum(1 for o in evaluated if o.success),
            "unsuccessful_expectations": sum(1 for o in evaluated if not o.success),
            "not_evaluated_expectations": len(outcomes) - len(evaluated),
            "seconds": round(seconds, 3),
            "tables": statistics,
        },
        "failed_expectations": [outcome_record(o) for o in failed],
        "data_docs": str(data_docs),
    }
