import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from numpy.testing import assert_array_equal

from l1recal.config import IngestSettings
from l1recal.data.ingest import run_ingest
from l1recal.errors import InputFileError
from l1recal.schema import (
    MUON_SLOT_FEATURES,
    N_MUON_SLOTS,
    muon_ingest_columns,
    raw_event_columns,
    slot_column,
)
from l1recal.simulation.stage import MUON_EVENTS_FILE


def _hand_events() -> pa.Table:
    """Three events with 2, 0 and 1 matched muons; slot values encode (event, slot)."""
    n_matched = [2, 0, 1]
    columns = {"nMatchedMuons": np.array(n_matched, dtype=np.int64)}
    for slot in range(N_MUON_SLOTS):
        for feature in MUON_SLOT_FEATURES:
            values = []
            for event, count in enumerate(n_matched):
                filled = slot < count and not feature.endswith("Unmatched")
                values.append(10 * (event + 1) + slot if filled else 0)
            dtype = (
                np.float64
                if feature in ("ptReco", "etaVtxReco", "phiVtxReco")
                else np.int64
            )
            columns[slot_column(feature, slot)] = np.array(values, dtype=dtype)
    return pa.table(columns)


def test_flatten_one_row_per_matched_muon(tmp_path):
    pq.write_table(_hand_events(), tmp_path / "events.parquet")
    stats = run_ingest(
        IngestSettings(batch_rows=2),
        tmp_path / "events.parquet",
        tmp_path / "muons.parquet",
    )
    muons = pq.read_table(tmp_path / "muons.parquet").to_pandas()
    assert stats == {
        "file": str(tmp_path / "events.parquet"),
        "events": 3,
        "matched_muons": 3,
    }
    assert_array_equal(muons["hwPtL1"], [10, 11, 30])
    assert_array_equal(muons["ptReco"], [10.0, 11.0, 30.0])
    assert list(muons.columns) == [
        "hwPtL1",
        "hwEtaL1",
        "hwPhiL1",
        "hwSignL1",
        "ptReco",
        "etaVtxReco",
        "phiVtxReco",
    ]


def test_matches_simulated_counts(small_raw, tmp_path):
    stats = run_ingest(
        IngestSettings(), small_raw / MUON_EVENTS_FILE, tmp_path / "muons.parquet"
    )
    events = (
        pq.read_table(small_raw / MUON_EVENTS_FILE, columns=["nMatchedMuons"])
        .column(0)
        .to_numpy()
    )
    assert stats["matched_muons"] == events.sum()
    assert pq.read_metadata(tmp_path / "muons.parquet").num_rows == events.sum()


def _write_without(tmp_path, dropped):
    table = _hand_events()
    table = table.drop([dropped])
    path = tmp_path / "events.parquet"
    pq.write_table(table, path)
    return path


def _run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "l1recal", *args],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize(
    ("make_input", "message"),
    [
        (lambda p: p / "absent.parquet", r"absent\.parquet: file not found"),
        (
            lambda p: _write_text(p / "events.parquet", "hwPtL1,hwEtaL1\n1,2\n"),
            r"events\.parquet: not a readable parquet file",
        ),
        (
            lambda p: _write_without(p, "hwPhiL1_3"),
            r"events\.parquet: missing column\(s\) hwPhiL1_3",
        ),
        (
            lambda p: _write_retyped(p, "hwEtaL1_0", pa.float64()),
            r"column hwEtaL1_0 has dtype double, expected an integer type",
        ),
        (
            lambda p: _write_retyped(p, "ptReco_1", pa.string()),
            r"column ptReco_1 has dtype string, expected a floating-point type",
        ),
        (lambda p: _write_empty(p), r"events\.parquet: file has no events"),
    ],
    ids=[
        "missing-file",
        "not-parquet",
        "missing-column",
        "float-hardware-integer",
        "string-offline",
        "empty",
    ],
)
def test_bad_input_rejected_without_output(tmp_path, make_input, message):
    source = make_input(tmp_path)
    output = tmp_path / "out" / "muons.parquet"
    with pytest.raises(InputFileError, match=message):
        run_ingest(IngestSettings(), source, output)
    assert not output.exists()
    leftovers = (
        list((tmp_path / "out").iterdir()) if (tmp_path / "out").exists() else []
    )
    assert leftovers == []


def _write_text(path, text):
    path.write_text(text)
    return path


def _write_retyped(tmp_path, column, dtype):
    table = _hand_events()
    index = table.schema.get_field_index(column)
    values = table.column(column).cast(pa.float64())
    table = table.set_column(index, column, values.cast(dtype))
    path = tmp_path / "events.parquet"
    pq.write_table(table, path)
    return path


def _write_empty(tmp_path):
    path = tmp_path / "events.parquet"
    pq.write_table(_hand_events().slice(0, 0), path)
    return path


def test_cli_one_line_error_and_exit_code(tmp_path):
    source = _write_without(tmp_path, "ptReco_0")
    output = tmp_path / "muons.parquet"
    result = _run_cli(
        "ingest", str(source), str(output), "--params", str(tmp_path / "none.yaml")
    )
    assert result.returncode != 0
    assert "parameter file not found" in result.stderr
    (tmp_path / "params.yaml").write_text("ingest: {}\n")
    result = _run_cli(
        "ingest", str(source), str(output), "--params", str(tmp_path / "params.yaml")
    )
    assert result.returncode == 1
    error_lines = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert len(error_lines) == 1
    assert "events.parquet: missing column(s) ptReco_0" in error_lines[0]
    assert "Traceback" not in result.stderr
    assert not output.exists()


def test_ingest_reads_only_needed_columns():
    needed = set(muon_ingest_columns())
    assert needed < set(raw_event_columns())
    assert "dXYReco_0" not in needed
