"""Checked access to parquet inputs: existence, format, columns and dtypes."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from l1recal.errors import InputFileError


def open_parquet(path: Path) -> pq.ParquetFile:
    """Open a parquet file, raising :class:`InputFileError` with the reason when it cannot be read."""
    if not path.exists():
        raise InputFileError(
            f"{path}: file not found; run 'l1recal simulate' or point the stage at your data"
        )
    if path.is_dir():
        raise InputFileError(f"{path}: is a folder, expected a parquet file")
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as error:
        raise InputFileError(
            f"{path}: not a readable parquet file ({error}); convert it to parquet first"
        ) from error


def check_columns(
    path: Path,
    schema: pa.Schema,
    integer_columns: Iterable[str],
    float_columns: Iterable[str],
) -> None:
    """Check that every required column exists with an integer or floating dtype.

    Raises:
        InputFileError: naming the file, the first missing columns or the column
            with a wrong dtype.
    """
    integer_columns, float_columns = list(integer_columns), list(float_columns)
    missing = [
        name for name in integer_columns + float_columns if name not in schema.names
    ]
    if missing:
        shown = ", ".join(missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        raise InputFileError(
            f"{path}: missing column(s) {shown}; the raw layout is described in docs/data-format.md"
        )
    for name in integer_columns:
        dtype = schema.field(name).type
        if not pa.types.is_integer(dtype):
            raise InputFileError(
                f"{path}: column {name} has dtype {dtype}, expected an integer type"
            )
    for name in float_columns:
        dtype = schema.field(name).type
        if not (pa.types.is_floating(dtype) or pa.types.is_integer(dtype)):
            raise InputFileError(
                f"{path}: column {name} has dtype {dtype}, expected a floating-point type"
            )


def iter_record_batches(
    parquet: pq.ParquetFile, columns: list[str], batch_rows: int
) -> Iterator[pa.RecordBatch]:
    """Yield record batches of at most ``batch_rows`` rows with only ``columns``."""
    yield from parquet.iter_batches(batch_size=batch_rows, columns=columns)
