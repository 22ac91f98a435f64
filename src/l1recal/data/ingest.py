"""The ``ingest`` stage: flatten raw muon events to one row per matched muon."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from l1recal.atomic import atomic_path, write_json
from l1recal.config import IngestSettings
from l1recal.data.parquet_input import check_columns, iter_record_batches, open_parquet
from l1recal.errors import InputFileError
from l1recal.schema import (
    MUON_L1_FEATURES,
    MUON_TABLE_COLUMNS,
    N_MATCHED_MUONS,
    N_MUON_SLOTS,
    muon_ingest_columns,
    slot_column,
)

logger = logging.getLogger(__name__)

_OFFLINE_FEATURES = ("ptReco", "etaVtxReco", "phiVtxReco")

MUON_TABLE_SCHEMA = pa.schema(
    [(name, pa.int64()) for name in MUON_L1_FEATURES]
    + [(name, pa.float64()) for name in _OFFLINE_FEATURES]
)


def flatten_muon_batch(batch: pa.RecordBatch) -> pa.Table:
    """Turn a batch of events into one row per matched muon, in event then slot order.

    Slot ``s`` of an event holds a matched muon when ``s < nMatchedMuons``.
    """
    n_matched = (
        batch.column(N_MATCHED_MUONS).to_numpy(zero_copy_only=False).astype(np.int64)
    )
    in_slot = np.arange(N_MUON_SLOTS)[None, :] < n_matched[:, None]  # (events, slots)
    columns = {}
    for feature in MUON_TABLE_COLUMNS:
        stacked = np.stack(
            [
                batch.column(slot_column(feature, slot)).to_numpy(zero_copy_only=False)
                for slot in range(N_MUON_SLOTS)
            ],
            axis=1,
        )
        columns[feature] = stacked[in_slot]
    return pa.Table.from_pydict(columns, schema=MUON_TABLE_SCHEMA)


def run_ingest(
    settings: IngestSettings,
    input_path: Path,
    output_path: Path,
    stats_path: Path | None = None,
) -> dict:
    """Flatten ``input_path`` (raw events, parquet) into the muon table at ``output_path``.

    Returns:
        Counts of events and matched muons; also written to ``stats_path`` when given.

    Raises:
        InputFileError: when the file is missing, not parquet, empty, lacks a
            column or has a wrong dtype. Nothing is written then.
    """
    parquet = open_parquet(input_path)
    integer_columns = [N_MATCHED_MUONS] + [
        slot_column(f, s) for s in range(N_MUON_SLOTS) for f in MUON_L1_FEATURES
    ]
    float_columns = [
        slot_column(f, s) for s in range(N_MUON_SLOTS) for f in _OFFLINE_FEATURES
    ]
    check_columns(input_path, parquet.schema_arrow, integer_columns, float_columns)
    if parquet.metadata.num_rows == 0:
        raise InputFileError(
            f"{input_path}: file has no events; check that the export wrote any rows"
        )

    events = muons = 0
    with (
        atomic_path(output_path) as staging,
        pq.ParquetWriter(staging, MUON_TABLE_SCHEMA, compression="zstd") as writer,
    ):
        for batch in iter_record_batches(
            parquet, muon_ingest_columns(), settings.batch_rows
        ):
            n_matched = batch.column(N_MATCHED_MUONS).to_numpy(zero_copy_only=False)
            if n_matched.min() < 0 or n_matched.max() > N_MUON_SLOTS:
                bad = int(n_matched[(n_matched < 0) | (n_matched > N_MUON_SLOTS)][0])
                raise InputFileError(
                    f"{input_path}: column {N_MATCHED_MUONS} has value {bad}, expected 0..{N_MUON_SLOTS}"
                )
            table = flatten_muon_batch(batch)
            writer.write_table(table)
            events += batch.num_rows
            muons += table.num_rows
    stats = {"file": str(input_path), "events": events, "matched_muons": muons}
    logger.info(
        "%s: %d events, %d matched muons -> %s", input_path, events, muons, output_path
    )
    if stats_path is not None:
        write_json(stats_path, stats)
    return stats
