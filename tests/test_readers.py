import h5py
import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
import uproot

from l1recal.config import IngestSettings, JetIngestSettings, SimulateSettings
from l1recal.data.ingest import ingest_muons
from l1recal.data.jets import ingest_jets
from l1recal.data.readers import detect_format, expand_inputs, open_source
from l1recal.errors import InputFileError
from l1recal.simulation.stage import JET_EVENTS_FILE, MUON_EVENTS_FILE, run_simulate

FORMATS = ("parquet", "root", "hdf5", "csv")
SUFFIX = {"parquet": ".parquet", "root": ".root", "hdf5": ".h5", "csv": ".csv"}


def write_as(table: pa.Table, path, fmt: str) -> None:
    """Write ``table`` in one of the supported formats, one column per branch or dataset."""
    if fmt == "parquet":
        pq.write_table(table, path)
    elif fmt == "csv":
        pa_csv.write_csv(table, path)
    elif fmt == "hdf5":
        with h5py.File(path, "w") as handle:
            for name in table.column_names:
                handle.create_dataset(name, data=table.column(name).to_numpy())
    else:
        arrays = {name: table.column(name).to_numpy() for name in table.column_names}
        with uproot.recreate(path) as handle:
            tree = handle.mktree("events", {n: a.dtype for n, a in arrays.items()})
            tree.extend(arrays)


@pytest.fixture(scope="module")
def raw_events(tmp_path_factory):
    """A small simulated sample: (muon event table, jet event table)."""
    folder = tmp_path_factory.mktemp("readers") / "raw"
    run_simulate(
        SimulateSettings(n_events=600, noise_floor_muons=5_000, jet_events=400, seed=2),
        folder,
    )
    return pq.read_table(folder / MUON_EVENTS_FILE), pq.read_table(
        folder / JET_EVENTS_FILE
    )


@pytest.mark.parametrize("fmt", FORMATS)
def test_muon_round_trip_identical(tmp_path, raw_events, fmt):
    muon_events, _ = raw_events
    reference = tmp_path / "reference.parquet"
    ingest_muons(IngestSettings(), _write(tmp_path, muon_events, "parquet"), reference)
    output = tmp_path / f"muons-{fmt}.parquet"
    stats = ingest_muons(
        IngestSettings(batch_rows=128), _write(tmp_path, muon_events, fmt), output
    )
    assert pq.read_table(output).equals(pq.read_table(reference))
    assert stats["events"] == muon_events.num_rows


@pytest.mark.parametrize("fmt", FORMATS)
def test_jet_round_trip_identical(tmp_path, raw_events, fmt):
    _, jet_events = raw_events
    reference = tmp_path / "reference.parquet"
    ingest_jets(JetIngestSettings(), _write(tmp_path, jet_events, "parquet"), reference)
    output = tmp_path / f"jets-{fmt}.parquet"
    ingest_jets(
        JetIngestSettings(batch_rows=100), _write(tmp_path, jet_events, fmt), output
    )
    expected = pq.read_table(reference)
    assert expected.num_rows > 0
    assert pq.read_table(output).equals(expected)


def _write(tmp_path, table, fmt):
    path = tmp_path / f"events-{fmt}{SUFFIX[fmt]}"
    if not path.exists():
        write_as(table, path, fmt)
    return path


def test_explicit_format_overrides_extension(tmp_path, raw_events):
    muon_events, _ = raw_events
    path = tmp_path / "events.dat"
    pa_csv.write_csv(muon_events, path)
    stats = ingest_muons(
        IngestSettings(), path, tmp_path / "muons.parquet", input_format="csv"
    )
    assert stats["events"] == muon_events.num_rows


def test_several_files_and_globs(tmp_path, raw_events):
    muon_events, _ = raw_events
    half = muon_events.num_rows // 2
    pq.write_table(muon_events.slice(0, half), tmp_path / "part-0.parquet")
    write_as(muon_events.slice(half), tmp_path / "part-1.root", "root")
    single = tmp_path / "single.parquet"
    pq.write_table(muon_events, single)
    ingest_muons(IngestSettings(), single, tmp_path / "reference.parquet")
    stats = ingest_muons(
        IngestSettings(),
        [str(tmp_path / "part-*.parquet"), tmp_path / "part-1.root"],
        tmp_path / "muons.parquet",
    )
    assert pq.read_table(tmp_path / "muons.parquet").equals(
        pq.read_table(tmp_path / "reference.parquet")
    )
    assert [f["events"] for f in stats["files"]] == [half, muon_events.num_rows - half]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.parquet", "parquet"),
        ("a.pq", "parquet"),
        ("a.root", "root"),
        ("a.h5", "hdf5"),
        ("a.hdf5", "hdf5"),
        ("a.csv", "csv"),
        ("a.csv.gz", "csv"),
        ("A.ROOT", "root"),
    ],
)
def test_format_by_extension(tmp_path, name, expected):
    assert detect_format(tmp_path / name) == expected


def test_unknown_extension_asks_for_format(tmp_path):
    with pytest.raises(
        InputFileError, match=r"a\.dat: cannot tell the file format.*--format"
    ):
        detect_format(tmp_path / "a.dat")


def test_unknown_explicit_format_rejected(tmp_path):
    with pytest.raises(InputFileError, match=r"unknown input format 'feather'"):
        detect_format(tmp_path / "a.parquet", "feather")


def test_glob_without_match_rejected(tmp_path):
    with pytest.raises(InputFileError, match=r"pattern matches no file"):
        expand_inputs([str(tmp_path / "*.root")])


def test_root_reader_names_trees(tmp_path):
    path = tmp_path / "two.root"
    with uproot.recreate(path) as handle:
        for name in ("a", "b"):
            handle.mktree(name, {"x": np.int64}).extend({"x": np.arange(3)})
    with pytest.raises(InputFileError, match=r"2 trees \(a, b\); name one with --tree"):
        open_source(path).columns()
    assert set(open_source(path, tree="b").columns()) == {"x"}


def test_rntuple_named_as_unsupported(tmp_path):
    path = tmp_path / "rntuple.root"
    with uproot.recreate(path) as handle:
        # uproot 5 writes a dict of arrays assigned by name as an RNTuple.
        handle["l1UpgradeTree/L1UpgradeTree"] = {"x": np.arange(3)}
    with pytest.raises(InputFileError, match=r"L1UpgradeTree is a ROOT::RNTuple, not a TTree"):
        open_source(path, tree="l1UpgradeTree/L1UpgradeTree").columns()


def test_batches_bounded_by_batch_rows(tmp_path, raw_events):
    muon_events, _ = raw_events
    for fmt in FORMATS:
        source = open_source(_write(tmp_path, muon_events, fmt))
        sizes = [
            len(batch[(None, "nMatchedMuons")])
            for _, batch in source.iter_batches({None: ["nMatchedMuons"]}, 97)
        ]
        assert max(sizes) <= 97, fmt
        assert sum(sizes) == muon_events.num_rows, fmt
