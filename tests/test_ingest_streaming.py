import json
import logging
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import uproot
import yaml

from l1recal.config import IngestSettings, JetIngestSettings, SimulateSettings
from l1recal.data.column_map import load_column_map
from l1recal.data.ingest import ingest_muons
from l1recal.data.jets import ingest_jets
from l1recal.errors import InputFileError
from l1recal.schema import N_MUON_SLOTS, slot_column
from l1recal.simulation.stage import JET_EVENTS_FILE, MUON_EVENTS_FILE, run_simulate


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    """(muon event table, jet event table) of a small simulated sample."""
    folder = tmp_path_factory.mktemp("streaming") / "raw"
    run_simulate(
        SimulateSettings(
            n_events=1_200, noise_floor_muons=5_000, jet_events=300, seed=6
        ),
        folder,
    )
    return pq.read_table(folder / MUON_EVENTS_FILE), pq.read_table(
        folder / JET_EVENTS_FILE
    )


def write_root(table, path, tree="events"):
    arrays = {name: table.column(name).to_numpy() for name in table.column_names}
    with uproot.recreate(path) as handle:
        handle.mktree(tree, {n: a.dtype for n, a in arrays.items()}).extend(arrays)
    return path


def corrupt_row_group(table, path, row_group):
    """Write ``table`` in row groups of 400 rows and overwrite one row group's first page header."""
    pq.write_table(table, path, row_group_size=400)
    offset = (
        pq.ParquetFile(path).metadata.row_group(row_group).column(0).data_page_offset
    )
    data = bytearray(path.read_bytes())
    data[offset : offset + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))
    return path


def with_value(table, column, row, value):
    values = table.column(column).to_numpy().copy()
    values[row] = value
    return table.set_column(
        table.schema.get_field_index(column), column, pa.array(values)
    )


def assert_nothing_written(folder):
    leftovers = list(folder.iterdir()) if folder.exists() else []
    assert leftovers == []


def test_stats_count_matched_and_unmatched(tmp_path, events):
    muon_events, _ = events
    half = muon_events.num_rows // 2
    pq.write_table(muon_events.slice(0, half), tmp_path / "a.parquet")
    pq.write_table(muon_events.slice(half), tmp_path / "b.parquet")
    stats_path = tmp_path / "stats.json"
    ingest_muons(
        IngestSettings(batch_rows=100),
        [tmp_path / "a.parquet", tmp_path / "b.parquet"],
        tmp_path / "muons.parquet",
        stats_path,
    )
    stats = json.loads(stats_path.read_text())
    frame = muon_events.to_pandas()
    unmatched = sum(
        (frame[slot_column("hwPtL1Unmatched", s)] != 0).to_numpy()
        for s in range(N_MUON_SLOTS)
    )
    assert stats["events"] == muon_events.num_rows
    assert stats["matched_muons"] == frame["nMatchedMuons"].sum()
    assert stats["unmatched_muons"] == unmatched.sum()
    assert [f["events"] for f in stats["files"]] == [half, muon_events.num_rows - half]
    assert [f["unmatched_muons"] for f in stats["files"]] == [
        unmatched[:half].sum(),
        unmatched[half:].sum(),
    ]
    assert stats["skipped_files"] == []


def test_log_line_per_file(tmp_path, events, caplog):
    muon_events, _ = events
    pq.write_table(muon_events.slice(0, 10), tmp_path / "a.parquet")
    pq.write_table(muon_events.slice(10, 10), tmp_path / "b.parquet")
    with caplog.at_level(logging.INFO, logger="l1recal.data.ingest"):
        ingest_muons(
            IngestSettings(), str(tmp_path / "*.parquet"), tmp_path / "muons.parquet"
        )
    per_file = [
        r.getMessage() for r in caplog.records if "matched muons," in r.getMessage()
    ]
    assert len(per_file) == 2
    assert per_file[0].startswith(str(tmp_path / "a.parquet"))


def test_output_independent_of_batch_size(tmp_path, events):
    muon_events, _ = events
    pq.write_table(muon_events, tmp_path / "events.parquet")
    ingest_muons(
        IngestSettings(), tmp_path / "events.parquet", tmp_path / "one.parquet"
    )
    ingest_muons(
        IngestSettings(batch_rows=50),
        tmp_path / "events.parquet",
        tmp_path / "many.parquet",
    )
    assert pq.read_table(tmp_path / "many.parquet").equals(
        pq.read_table(tmp_path / "one.parquet")
    )
    assert pq.ParquetFile(tmp_path / "many.parquet").num_row_groups > 1


def test_truncated_parquet_rejected(tmp_path, events):
    muon_events, _ = events
    path = tmp_path / "events.parquet"
    pq.write_table(muon_events, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(
        InputFileError,
        match=r"events\.parquet: not a readable parquet file.*exported again",
    ):
        ingest_muons(IngestSettings(), path, tmp_path / "out" / "muons.parquet")
    assert_nothing_written(tmp_path / "out")


def test_corrupt_row_group_named(tmp_path, events):
    muon_events, _ = events
    path = corrupt_row_group(muon_events, tmp_path / "events.parquet", 1)
    with pytest.raises(
        InputFileError,
        match=r"events\.parquet: row group 1 cannot be read.*export it again",
    ):
        ingest_muons(
            IngestSettings(batch_rows=100), path, tmp_path / "out" / "muons.parquet"
        )
    assert_nothing_written(tmp_path / "out")


def test_root_without_expected_tree(tmp_path, events):
    muon_events, _ = events
    path = write_root(muon_events, tmp_path / "events.root", tree="Events")
    with pytest.raises(
        InputFileError,
        match=r"events\.root: tree l1UpgradeTree/L1UpgradeTree not found \(trees: Events\)",
    ):
        ingest_muons(
            IngestSettings(),
            path,
            tmp_path / "out" / "muons.parquet",
            column_map=load_column_map("l1ntuple"),
        )
    assert_nothing_written(tmp_path / "out")


def test_root_without_expected_branch(tmp_path, events):
    muon_events, _ = events
    path = write_root(muon_events.drop(["hwPhiL1_3"]), tmp_path / "events.root")
    with pytest.raises(
        InputFileError,
        match=r"events\.root: tree events: missing column\(s\) hwPhiL1_3",
    ):
        ingest_muons(IngestSettings(), path, tmp_path / "out" / "muons.parquet")
    assert_nothing_written(tmp_path / "out")


def test_schemas_disagree_names_second_file(tmp_path, events):
    muon_events, _ = events
    pq.write_table(muon_events.slice(0, 100), tmp_path / "a.parquet")
    pq.write_table(
        muon_events.slice(100, 100).drop(["ptReco_2"]), tmp_path / "b.parquet"
    )
    with pytest.raises(
        InputFileError,
        match=r"b\.parquet: missing column\(s\) ptReco_2.*a\.parquet has them: the inputs' schemas disagree",
    ):
        ingest_muons(
            IngestSettings(),
            [tmp_path / "a.parquet", tmp_path / "b.parquet"],
            tmp_path / "out" / "muons.parquet",
        )
    assert_nothing_written(tmp_path / "out")


def test_dtype_disagreement_names_file(tmp_path, events):
    muon_events, _ = events
    pq.write_table(muon_events.slice(0, 100), tmp_path / "a.parquet")
    retyped = muon_events.slice(100, 100)
    index = retyped.schema.get_field_index("hwPtL1_0")
    retyped = retyped.set_column(
        index, "hwPtL1_0", retyped.column(index).cast(pa.float32())
    )
    pq.write_table(retyped, tmp_path / "b.parquet")
    with pytest.raises(
        InputFileError,
        match=r"b\.parquet: column hwPtL1_0 has dtype float, expected an integer",
    ):
        ingest_muons(
            IngestSettings(),
            [tmp_path / "a.parquet", tmp_path / "b.parquet"],
            tmp_path / "out" / "muons.parquet",
        )


@pytest.mark.parametrize(
    "value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "minus-inf"]
)
def test_non_finite_value_rejected(tmp_path, events, value):
    muon_events, _ = events
    frame = muon_events.to_pandas()
    row = int(np.flatnonzero(frame["nMatchedMuons"] > 0)[3])
    pq.write_table(
        with_value(muon_events, "ptReco_0", row, value), tmp_path / "events.parquet"
    )
    with pytest.raises(
        InputFileError,
        match=rf"events\.parquet: column ptReco_0 has a NaN or inf value in event {row}; drop or fix",
    ):
        ingest_muons(
            IngestSettings(batch_rows=64),
            tmp_path / "events.parquet",
            tmp_path / "out" / "muons.parquet",
        )
    assert_nothing_written(tmp_path / "out")


def test_padding_nan_ignored(tmp_path, events):
    # Exports that pad empty slots with NaN are read as zero-padded.
    muon_events, _ = events
    frame = muon_events.to_pandas()
    row = int(np.flatnonzero(frame["nMatchedMuons"] == 0)[0])
    pq.write_table(
        with_value(muon_events, "ptReco_0", row, np.nan), tmp_path / "events.parquet"
    )
    stats = ingest_muons(
        IngestSettings(), tmp_path / "events.parquet", tmp_path / "muons.parquet"
    )
    assert stats["matched_muons"] == frame["nMatchedMuons"].sum()


def test_jet_nan_rejected_without_outputs(tmp_path, events):
    _, jet_events = events
    frame = jet_events.to_pandas()
    row = int(np.flatnonzero(frame["nPFJets"] > 0)[0])
    pq.write_table(
        with_value(jet_events, "pfJetEta_0", row, np.nan),
        tmp_path / "jet_events.parquet",
    )
    out = tmp_path / "out"
    with pytest.raises(
        InputFileError,
        match=rf"column pfJetEta_0 has a NaN or inf value in event {row}",
    ):
        ingest_jets(
            JetIngestSettings(),
            tmp_path / "jet_events.parquet",
            out / "jets.parquet",
            out / "jet_matches.parquet",
            out / "jet_matching.json",
        )
    assert_nothing_written(out)


def test_map_names_absent_column(tmp_path, events):
    muon_events, _ = events
    pq.write_table(muon_events, tmp_path / "events.parquet")
    document = yaml.safe_load(load_column_map("default").model_dump_json())
    document["name"] = "typo"
    document["muon"]["columns"]["ptReco"]["column"] = "ptRec_{slot}"
    map_path = tmp_path / "typo.yaml"
    map_path.write_text(yaml.safe_dump(document))
    with pytest.raises(
        InputFileError, match=r"missing column\(s\) ptRec_0, .*\(column map typo\)"
    ):
        ingest_muons(
            IngestSettings(),
            tmp_path / "events.parquet",
            tmp_path / "out" / "muons.parquet",
            column_map=load_column_map(map_path),
        )
    assert_nothing_written(tmp_path / "out")


def test_one_bad_input_writes_nothing(tmp_path, events):
    muon_events, _ = events
    pq.write_table(muon_events.slice(0, 500), tmp_path / "a.parquet")
    corrupt_row_group(muon_events.slice(500), tmp_path / "b.parquet", 1)
    out = tmp_path / "out"
    with pytest.raises(InputFileError, match=r"b\.parquet: row group 1"):
        ingest_muons(
            IngestSettings(batch_rows=100),
            [tmp_path / "a.parquet", tmp_path / "b.parquet"],
            out / "muons.parquet",
            out / "stats.json",
        )
    assert_nothing_written(out)


def test_skip_bad_files_reports_them(tmp_path, events):
    muon_events, _ = events
    pq.write_table(muon_events.slice(0, 500), tmp_path / "a.parquet")
    corrupt_row_group(muon_events.slice(500), tmp_path / "b.parquet", 1)
    (tmp_path / "c.parquet").write_text("not parquet")
    pq.write_table(muon_events.slice(0, 500), tmp_path / "reference.parquet")
    ingest_muons(
        IngestSettings(),
        tmp_path / "reference.parquet",
        tmp_path / "reference_out.parquet",
    )
    stats = ingest_muons(
        IngestSettings(batch_rows=100),
        [tmp_path / "a.parquet", tmp_path / "b.parquet", tmp_path / "c.parquet"],
        tmp_path / "muons.parquet",
        skip_bad_files=True,
    )
    skipped = [entry["file"] for entry in stats["skipped_files"]]
    assert sorted(skipped) == [str(tmp_path / "b.parquet"), str(tmp_path / "c.parquet")]
    assert [f["file"] for f in stats["files"]] == [str(tmp_path / "a.parquet")]
    assert pq.read_table(tmp_path / "muons.parquet").equals(
        pq.read_table(tmp_path / "reference_out.parquet")
    )


def test_skip_with_every_input_bad(tmp_path):
    (tmp_path / "a.parquet").write_text("not parquet")
    (tmp_path / "b.csv").write_text("")
    with pytest.raises(
        InputFileError,
        match=r"all 2 input\(s\) were skipped as bad files; nothing written",
    ):
        ingest_muons(
            IngestSettings(),
            [tmp_path / "a.parquet", tmp_path / "b.csv"],
            tmp_path / "out" / "muons.parquet",
            skip_bad_files=True,
        )
    assert_nothing_written(tmp_path / "out")


def _run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "l1recal", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def test_cli_skip_bad_files(tmp_path, events):
    muon_events, _ = events
    pq.write_table(muon_events.slice(0, 300), tmp_path / "a.parquet")
    (tmp_path / "b.parquet").write_text("not parquet")
    (tmp_path / "params.yaml").write_text("ingest: {}\n")
    output, stats = tmp_path / "muons.parquet", tmp_path / "stats.json"
    common = [
        str(tmp_path / "*.parquet"),
        str(output),
        "--stats",
        str(stats),
        "--params",
        str(tmp_path / "params.yaml"),
    ]
    failed = _run_cli("ingest", *common)
    assert failed.returncode == 1
    assert "b.parquet: not a readable parquet file" in failed.stderr
    assert not output.exists()
    result = _run_cli("ingest", *common, "--skip-bad-files")
    assert result.returncode == 0, result.stderr
    payload = json.loads(stats.read_text())
    assert payload["skipped_files"][0]["file"] == str(tmp_path / "b.parquet")
    assert payload["events"] == 300


def test_cli_jet_ingest_with_root_map(tmp_path, events):
    _, jet_events = events
    write_root(jet_events, tmp_path / "jets.root")
    (tmp_path / "params.yaml").write_text("jet_ingest: {abs_eta_max: 3.0}\n")
    report = tmp_path / "jet_matching.json"
    result = _run_cli(
        "ingest",
        "--task",
        "jet",
        str(tmp_path / "jets.root"),
        str(tmp_path / "jets.parquet"),
        "--matches",
        str(tmp_path / "matches.parquet"),
        "--stats",
        str(report),
        "--tree",
        "events",
        "--params",
        str(tmp_path / "params.yaml"),
    )
    assert result.returncode == 0, result.stderr
    payload = json.loads(report.read_text())
    assert set(payload) >= {"no_cut", "abs_eta_lt_3"}
    assert payload["table_abs_eta_max"] == 3.0
    assert (
        pq.read_metadata(tmp_path / "matches.parquet").num_rows
        == payload["abs_eta_lt_3"]["matched"]
    )
