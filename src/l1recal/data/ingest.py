"""The ``ingest`` stage: flatten raw muon events to one row per matched muon.

Inputs are one or more files or glob patterns in any format of
:mod:`l1recal.data.readers`, named through a column map
(:mod:`l1recal.data.column_map`; the project's raw layout by default). Every
input is checked before anything is written, then streamed in batches into
one parquet table, so memory does not grow with the input size. The output
appears only when every input was read completely.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from l1recal.atomic import atomic_path, write_json
from l1recal.config import IngestSettings
from l1recal.data.column_map import (
    ColumnMap,
    MappedSource,
    ObjectArrays,
    default_column_map,
    read_mapped,
    resolve,
)
from l1recal.data.readers import Source, expand_inputs, open_source
from l1recal.errors import InputFileError
from l1recal.schema import MUON_L1_FEATURES, MUON_TABLE_COLUMNS, N_MUON_SLOTS

logger = logging.getLogger(__name__)

_OFFLINE_FEATURES = ("ptReco", "etaVtxReco", "phiVtxReco")

MUON_TABLE_SCHEMA = pa.schema(
    [(name, pa.int64()) for name in MUON_L1_FEATURES]
    + [(name, pa.float64()) for name in _OFFLINE_FEATURES]
)


@dataclass
class InputPlan:
    """One checked input: the opened source, the columns to read and its event count."""

    source: Source
    mapped: list[MappedSource]
    events: int


class _StreamedFileError(Exception):
    """An input failed while it was streamed; carries the plan and the original error."""

    def __init__(self, plan: InputPlan, error: InputFileError) -> None:
        super().__init__(str(error))
        self.plan = plan
        self.error = error


def plan_inputs(
    inputs: Path | str | Sequence[Path | str],
    column_map: ColumnMap,
    kinds: Sequence[str],
    input_format: str | None = None,
    tree: str | None = None,
    skip_bad_files: bool = False,
) -> tuple[list[InputPlan], list[dict]]:
    """Open and check every input before any output is written.

    Args:
        inputs: file names or glob patterns.
        column_map: names of the columns in the user's files.
        kinds: object types to read (``muon``, ``l1_jet``, ``pf_jet``).
        input_format: reader for every input; None chooses by extension (or the map's format).
        tree: ROOT tree (or HDF5 group) overriding the map's.
        skip_bad_files: record and skip an input that fails its checks instead of stopping.

    Returns:
        The checked inputs and the skipped ones (``{"file", "error"}``).

    Raises:
        InputFileError: on the first bad input unless ``skip_bad_files``, or
            when every input was skipped.
    """
    for kind in kinds:
        column_map.section(kind)
    paths = expand_inputs([inputs] if isinstance(inputs, (str, Path)) else inputs)
    if tree is not None:
        column_map = column_map.model_copy(update={"tree": tree})
    plans: list[InputPlan] = []
    skipped: list[dict] = []
    for path in paths:
        try:
            source = open_source(
                path, input_format or column_map.format, column_map.tree
            )
            mapped = [resolve(source, column_map, kind) for kind in kinds]
            events = source.num_rows(mapped[0].tree)
            if events == 0:
                raise InputFileError(
                    f"{path}: file has no events; check that the export wrote any rows"
                )
        except InputFileError as error:
            if plans and "missing column" in str(error):
                error = InputFileError(
                    f"{error} (the first input {plans[0].source.path} has them: "
                    "the inputs' schemas disagree)"
                )
            if not skip_bad_files:
                raise error from error.__cause__
            logger.warning("skipping bad input: %s", error)
            skipped.append({"file": str(path), "error": str(error)})
            continue
        plans.append(InputPlan(source, mapped, events))
    if not plans:
        raise InputFileError(
            f"all {len(paths)} input(s) were skipped as bad files; nothing written "
            f"(first error: {skipped[0]['error']})"
        )
    return plans, skipped


def stream_inputs(
    plans: list[InputPlan],
    skipped: list[dict],
    write: Callable[[Iterator[tuple[InputPlan, int, dict[str, ObjectArrays]]]], dict],
    batch_rows: int,
    skip_bad_files: bool,
    desc: str,
) -> dict:
    """Run ``write`` over the batches of every input, with a progress bar.

    ``write`` consumes (plan, first event, objects) tuples and writes its
    outputs atomically. When an input fails mid-stream and ``skip_bad_files``
    is set, it is recorded in ``skipped`` and ``write`` runs again without it,
    so no output contains part of a bad file.
    """
    while True:
        total = sum(plan.events for plan in plans)
        try:
            with tqdm(
                total=total, unit="event", unit_scale=True, desc=desc, disable=None
            ) as bar:
                return write(_batches(plans, batch_rows, bar))
        except _StreamedFileError as failure:
            if not skip_bad_files:
                raise failure.error from failure.error.__cause__
            logger.warning("skipping bad input, restarting: %s", failure.error)
            skipped.append(
                {"file": str(failure.plan.source.path), "error": str(failure.error)}
            )
            plans = [plan for plan in plans if plan is not failure.plan]
            if not plans:
                raise InputFileError(
                    "every input was skipped as a bad file; nothing written "
                    f"(last error: {failure.error})"
                ) from failure.error


def _batches(
    plans: list[InputPlan], batch_rows: int, bar: tqdm
) -> Iterator[tuple[InputPlan, int, dict[str, ObjectArrays]]]:
    for plan in plans:
        try:
            for start, objects in read_mapped(plan.source, plan.mapped, batch_rows):
                yield plan, start, objects
                bar.update(next(iter(objects.values())).count.size)
        except InputFileError as error:
            raise _StreamedFileError(plan, error) from error


def flatten_muons(muons: ObjectArrays) -> pa.Table:
    """Turn mapped muons into one row per matched muon, in event then slot order."""
    in_slot = np.arange(N_MUON_SLOTS)[None, :] < muons.count[:, None]
    return pa.Table.from_pydict(
        {feature: muons.values[feature][in_slot] for feature in MUON_TABLE_COLUMNS},
        schema=MUON_TABLE_SCHEMA,
    )


def _log_file_counts(counts: dict) -> None:
    unmatched = counts["unmatched_muons"]
    logger.info(
        "%s: %d events, %d matched muons, %s unmatched muons",
        counts["file"],
        counts["events"],
        counts["matched_muons"],
        "no count of" if unmatched is None else unmatched,
    )


def _write_muon_table(output_path: Path) -> Callable:
    def write(
        batches: Iterator[tuple[InputPlan, int, dict[str, ObjectArrays]]],
    ) -> dict:
        per_file: dict[str, dict] = {}
        with (
            atomic_path(output_path) as staging,
            # lz4 without dictionaries: the table is an interim output, and
            # zstd with dictionaries cost about 15 % of the ingest CPU time.
            pq.ParquetWriter(
                staging, MUON_TABLE_SCHEMA, compression="lz4", use_dictionary=False
            ) as writer,
        ):
            for plan, _, objects in batches:
                muons = objects["muon"]
                table = flatten_muons(muons)
                writer.write_table(table)
                counts = per_file.setdefault(
                    str(plan.source.path),
                    {
                        "file": str(plan.source.path),
                        "events": 0,
                        "matched_muons": 0,
                        "unmatched_muons": 0
                        if "hwPtL1Unmatched" in muons.values
                        else None,
                    },
                )
                counts["events"] += muons.count.size
                counts["matched_muons"] += table.num_rows
                if counts["unmatched_muons"] is not None:
                    counts["unmatched_muons"] += int(
                        (muons.values["hwPtL1Unmatched"] != 0).sum()
                    )
                if counts["events"] == plan.events:
                    _log_file_counts(counts)
        return {"files": list(per_file.values())}

    return write


def ingest_muons(
    settings: IngestSettings,
    inputs: Path | str | Sequence[Path | str],
    output_path: Path,
    stats_path: Path | None = None,
    *,
    column_map: ColumnMap | None = None,
    input_format: str | None = None,
    tree: str | None = None,
    skip_bad_files: bool = False,
) -> dict:
    """Flatten the muons of every input into the muon table at ``output_path``.

    Returns:
        The statistics also written to ``stats_path``: totals of events,
        matched and unmatched muons, the same per file, and the skipped files.

    Raises:
        InputFileError: when an input is missing, unreadable, empty, lacks a
            column, has a wrong dtype, a bad count or a NaN; nothing is written then.
    """
    column_map = column_map or default_column_map()
    plans, skipped = plan_inputs(
        inputs, column_map, ["muon"], input_format, tree, skip_bad_files
    )
    result = stream_inputs(
        plans,
        skipped,
        _write_muon_table(output_path),
        settings.batch_rows,
        skip_bad_files,
        "ingest muons",
    )
    files = result["files"]
    unmatched = [f["unmatched_muons"] for f in files]
    stats = {
        "file": ", ".join(f["file"] for f in files),
        "events": sum(f["events"] for f in files),
        "matched_muons": sum(f["matched_muons"] for f in files),
        "unmatched_muons": None if None in unmatched else sum(unmatched),
        "column_map": column_map.name,
        "files": files,
        "skipped_files": skipped,
    }
    logger.info(
        "%d events, %d matched muons from %d file(s) (%d skipped) -> %s",
        stats["events"],
        stats["matched_muons"],
        len(files),
        len(skipped),
        output_path,
    )
    if stats_path is not None:
        write_json(stats_path, stats)
    return stats


def run_ingest(
    settings: IngestSettings,
    input_path: Path | str | Sequence[Path | str],
    output_path: Path,
    stats_path: Path | None = None,
    **options,
) -> dict:
    """Flatten raw muon events into the muon table; see :func:`ingest_muons` for ``options``.

    Returns:
        ``{"file", "events", "matched_muons"}``; the stats JSON at
        ``stats_path`` contains the full statistics of :func:`ingest_muons`.
    """
    stats = ingest_muons(settings, input_path, output_path, stats_path, **options)
    return {key: stats[key] for key in ("file", "events", "matched_muons")}
