import awkward as ak
import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
import uproot
import yaml

from l1recal.config import IngestSettings, JetIngestSettings, SimulateSettings
from l1recal.data.column_map import (
    COLUMN_MAP_DIR,
    DEFAULT_COLUMN_MAP,
    load_column_map,
)
from l1recal.data.ingest import ingest_muons
from l1recal.data.jets import ingest_jets
from l1recal.errors import ConfigError
from l1recal.schema import (
    JET_HW_ETA,
    JET_HW_PHI,
    JET_HW_PT,
    N_JET_SLOTS,
    N_MUON_SLOTS,
    N_PF_JET_SLOTS,
    slot_column,
)
from l1recal.simulation.stage import JET_EVENTS_FILE, MUON_EVENTS_FILE, run_simulate
from l1recal.units import wrap_delta_phi

L1_TREE = "l1UpgradeTree/L1UpgradeTree"
MUON_RECO_TREE = "l1MuonRecoTree/Muon2RecoTree"
JET_RECO_TREE = "l1JetRecoTree/JetRecoTree"


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    """Simulated events in the default layout, and their muon and jet tables."""
    work = tmp_path_factory.mktemp("maps")
    run_simulate(
        SimulateSettings(n_events=500, noise_floor_muons=5_000, jet_events=300, seed=8),
        work / "raw",
    )
    ingest_muons(
        IngestSettings(), work / "raw" / MUON_EVENTS_FILE, work / "muons.parquet"
    )
    ingest_jets(
        JetIngestSettings(), work / "raw" / JET_EVENTS_FILE, work / "jets.parquet"
    )
    return {
        "muon_events": pq.read_table(work / "raw" / MUON_EVENTS_FILE).to_pandas(),
        "jet_events": pq.read_table(work / "raw" / JET_EVENTS_FILE).to_pandas(),
        "muons": pq.read_table(work / "muons.parquet"),
        "jets": pq.read_table(work / "jets.parquet"),
    }


def jagged(frame, count, stem, slots, dtype):
    """Return the filled slots of a flat column family as one list per event."""
    values = np.stack([frame[slot_column(stem, s)] for s in range(slots)], 1)
    counts = frame[count].to_numpy()
    flat = values[np.arange(slots)[None, :] < counts[:, None]].astype(dtype)
    return ak.unflatten(flat, counts)


def write_tree(handle, name, arrays, counter):
    tree = handle.mktree(
        name,
        {
            key: value.type if isinstance(value, ak.Array) else value.dtype
            for key, value in arrays.items()
        },
        counter_name=lambda counted: counter[counted],
    )
    tree.extend(arrays)


def muon_lists(frame):
    count = "nMatchedMuons"
    return {
        "hwPt": jagged(frame, count, "hwPtL1", N_MUON_SLOTS, np.int32),
        "hwEta": jagged(frame, count, "hwEtaL1", N_MUON_SLOTS, np.int32),
        "hwPhi": jagged(frame, count, "hwPhiL1", N_MUON_SLOTS, np.int32),
        "charge": 1 - 2 * jagged(frame, count, "hwSignL1", N_MUON_SLOTS, np.int32),
        "pt": jagged(frame, count, "ptReco", N_MUON_SLOTS, np.float64),
        "eta": jagged(frame, count, "etaVtxReco", N_MUON_SLOTS, np.float64),
        "phi": jagged(frame, count, "phiVtxReco", N_MUON_SLOTS, np.float64),
    }


def jet_lists(frame):
    l1_pt = (
        jagged(frame, "nJets", "jetHwPt", N_JET_SLOTS, np.float32) * JET_HW_PT.bin_width
    )
    l1_eta = (
        jagged(frame, "nJets", "jetHwEta", N_JET_SLOTS, np.float32)
        * JET_HW_ETA.bin_width
    )
    hw_phi = jagged(frame, "nJets", "jetHwPhi", N_JET_SLOTS, np.float64)
    # L1Ntuples store phi in [-pi, pi); the map converts it back to 0..143.
    l1_phi = ak.unflatten(
        wrap_delta_phi(ak.to_numpy(ak.flatten(hw_phi)) * JET_HW_PHI.bin_width),
        ak.num(hw_phi),
    )
    return {
        "l1_pt": ak.values_astype(l1_pt, np.float32),
        "l1_eta": ak.values_astype(l1_eta, np.float32),
        "l1_phi": ak.values_astype(l1_phi, np.float32),
        "pt": jagged(frame, "nPFJets", "pfJetPt", N_PF_JET_SLOTS, np.float64),
        "eta": jagged(frame, "nPFJets", "pfJetEta", N_PF_JET_SLOTS, np.float64),
        "phi": jagged(frame, "nPFJets", "pfJetPhi", N_PF_JET_SLOTS, np.float64),
        "mass": jagged(frame, "nPFJets", "pfJetMass", N_PF_JET_SLOTS, np.float64),
    }


def write_l1ntuple(path, muons=None, jets=None):
    """Write an L1Ntuple-style file: jagged L1Upgrade branches and reco friend trees."""
    with uproot.recreate(path) as handle:
        if muons is not None:
            write_tree(
                handle,
                L1_TREE,
                {
                    "muonIEt": muons["hwPt"],
                    "muonIEta": muons["hwEta"],
                    "muonIPhi": muons["hwPhi"],
                    "muonChg": muons["charge"],
                },
                dict.fromkeys(("muonIEt", "muonIEta", "muonIPhi", "muonChg"), "nMuons"),
            )
            write_tree(
                handle,
                MUON_RECO_TREE,
                {"pt": muons["pt"], "eta": muons["eta"], "phi": muons["phi"]},
                dict.fromkeys(("pt", "eta", "phi"), "nMuons"),
            )
        if jets is not None:
            write_tree(
                handle,
                L1_TREE,
                {
                    "jetEt": jets["l1_pt"],
                    "jetEta": jets["l1_eta"],
                    "jetPhi": jets["l1_phi"],
                },
                dict.fromkeys(("jetEt", "jetEta", "jetPhi"), "nJets"),
            )
            write_tree(
                handle,
                JET_RECO_TREE,
                {"et": jets["pt"], "eta": jets["eta"], "phi": jets["phi"]},
                dict.fromkeys(("et", "eta", "phi"), "nJets"),
            )


def write_nanoaod(path, muons, jets):
    """Write a NanoAOD-style Events tree; muons and jets are cut to the same events."""
    n = min(len(muons["pt"]), len(jets["pt"]))
    arrays = {
        "L1Mu_hwPt": muons["hwPt"][:n],
        "L1Mu_hwEta": muons["hwEta"][:n],
        "L1Mu_hwPhi": muons["hwPhi"][:n],
        "L1Mu_charge": muons["charge"][:n],
        "Muon_pt": muons["pt"][:n],
        "Muon_eta": muons["eta"][:n],
        "Muon_phi": muons["phi"][:n],
        "L1Jet_pt": jets["l1_pt"][:n],
        "L1Jet_eta": jets["l1_eta"][:n],
        "L1Jet_phi": jets["l1_phi"][:n],
        "Jet_pt": jets["pt"][:n],
        "Jet_eta": jets["eta"][:n],
        "Jet_phi": jets["phi"][:n],
        "Jet_mass": jets["mass"][:n],
    }
    counter = {name: "n" + name.split("_")[0] for name in arrays}
    with uproot.recreate(path) as handle:
        write_tree(handle, "Events", arrays, counter)
    return n


def test_shipped_maps_load():
    names = sorted(path.stem for path in COLUMN_MAP_DIR.glob("*.yaml"))
    assert names == ["default", "l1ntuple", "nanoaod"]
    for name in names:
        assert load_column_map(name).name == name


def test_default_yaml_matches_code():
    assert load_column_map(COLUMN_MAP_DIR / "default.yaml") == DEFAULT_COLUMN_MAP


def test_l1ntuple_muons_match_default_layout(tmp_path, raw):
    path = tmp_path / "l1ntuple.root"
    write_l1ntuple(path, muons=muon_lists(raw["muon_events"]))
    stats = ingest_muons(
        IngestSettings(batch_rows=64),
        path,
        tmp_path / "muons.parquet",
        column_map=load_column_map("l1ntuple"),
    )
    assert pq.read_table(tmp_path / "muons.parquet").equals(raw["muons"])
    assert stats["unmatched_muons"] is None


def test_l1ntuple_jets_match_default_layout(tmp_path, raw):
    path = tmp_path / "l1ntuple.root"
    write_l1ntuple(path, jets=jet_lists(raw["jet_events"]))
    ingest_jets(
        JetIngestSettings(batch_rows=64),
        path,
        tmp_path / "jets.parquet",
        column_map=load_column_map("l1ntuple"),
    )
    assert pq.read_table(tmp_path / "jets.parquet").equals(raw["jets"])


def test_nanoaod_matches_default_layout(tmp_path, raw):
    path = tmp_path / "nano.root"
    n = write_nanoaod(
        path, muon_lists(raw["muon_events"]), jet_lists(raw["jet_events"])
    )
    column_map = load_column_map("nanoaod")
    ingest_jets(
        JetIngestSettings(), path, tmp_path / "jets.parquet", column_map=column_map
    )
    jets = pq.read_table(tmp_path / "jets.parquet").to_pandas()
    expected = raw["jets"].to_pandas()
    expected = expected[expected["event"] < n].reset_index(drop=True)
    assert jets.equals(expected)
    stats = ingest_muons(
        IngestSettings(), path, tmp_path / "muons.parquet", column_map=column_map
    )
    assert stats["matched_muons"] == int(raw["muon_events"]["nMatchedMuons"][:n].sum())


def test_flat_csv_with_one_based_names(tmp_path, raw):
    # Per-muon columns like hwPtL1Mu1, ptRecoMu1 (slots numbered from 1), two slots.
    frame = raw["muon_events"]
    columns = {"nMu": np.minimum(frame["nMatchedMuons"], 2)}
    names = {
        "hwPtL1": "hwPtL1Mu",
        "hwEtaL1": "hwEtaL1Mu",
        "hwPhiL1": "hwPhiL1Mu",
        "hwSignL1": "hwSignL1Mu",
        "ptReco": "ptRecoMu",
        "etaVtxReco": "etaVtxRecoMu",
        "phiVtxReco": "phiVtxRecoMu",
    }
    for feature, stem in names.items():
        for slot in range(2):
            columns[f"{stem}{slot + 1}"] = frame[slot_column(feature, slot)]
    pa_csv.write_csv(pa.table(columns), tmp_path / "muons.csv")

    map_path = tmp_path / "study_csv.yaml"
    map_path.write_text(
        yaml.safe_dump(
            {
                "name": "study_csv",
                "muon": {
                    "layout": "flat",
                    "count": "nMu",
                    "slots": 2,
                    "first_slot": 1,
                    "columns": {f: f"{stem}{{slot}}" for f, stem in names.items()},
                },
            }
        )
    )

    stats = ingest_muons(
        IngestSettings(),
        tmp_path / "muons.csv",
        tmp_path / "muons.parquet",
        column_map=load_column_map(map_path),
    )
    assert stats["matched_muons"] == int(columns["nMu"].sum())
    table = pq.read_table(tmp_path / "muons.parquet").to_pandas()
    first = frame["nMatchedMuons"] > 0
    assert table["hwPtL1"].iloc[0] == frame.loc[first, "hwPtL1_0"].iloc[0]


def test_jagged_objects_past_slots_dropped(tmp_path):
    events = 3
    l1 = ak.Array([[100 - i for i in range(15)], [50], []])
    pf = ak.Array([[float(10 + i) for i in range(2)], [25.0], [5.0]])
    arrays = {
        "L1Jet_pt": ak.values_astype(l1 * 0.5, np.float32),
        "L1Jet_eta": ak.values_astype(l1 * 0.0, np.float32),
        "L1Jet_phi": ak.values_astype(l1 * 0.0, np.float32),
        "Jet_pt": pf,
        "Jet_eta": pf * 0.0,
        "Jet_phi": pf * 0.0,
        "Jet_mass": pf * 0.0,
    }
    with uproot.recreate(tmp_path / "nano.root") as handle:
        write_tree(handle, "Events", arrays, {n: "n" + n.split("_")[0] for n in arrays})
    column_map = load_column_map("nanoaod").model_copy(update={"muon": None})
    report = ingest_jets(
        JetIngestSettings(),
        tmp_path / "nano.root",
        tmp_path / "jets.parquet",
        column_map=column_map,
    )
    assert report["objects_past_slots"] == 3
    assert report["events"] == events
    assert report["no_cut"]["l1_jets"] == N_JET_SLOTS + 1


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (
            {"name": "m", "muon": {"count": "n", "columns": {"hwPtL1": "a_{slot}"}}},
            r"muon: feature\(s\) hwEtaL1, .* not mapped",
        ),
        (
            {
                "name": "m",
                "l1_jet": {
                    "count": "n",
                    "columns": {
                        "hwPt": "a_{slot}",
                        "hwEta": "b_{slot}",
                        "hwPhi": "c_{slot}",
                        "size": "d_{slot}",
                    },
                },
            },
            r"l1_jet: unknown feature\(s\) size",
        ),
        (
            {
                "name": "m",
                "pf_jet": {
                    "count": "n",
                    "columns": {"pt": "pt", "eta": "eta", "phi": "phi"},
                },
            },
            r"needs a '\{slot\}' placeholder",
        ),
        (
            {
                "name": "m",
                "pf_jet": {
                    "columns": {"pt": "a_{slot}", "eta": "b_{slot}", "phi": "c_{slot}"}
                },
            },
            r"a flat layout needs a 'count' column",
        ),
        ({"name": "m", "colour": "red"}, r"colour: Extra inputs are not permitted"),
    ],
    ids=[
        "missing-feature",
        "unknown-feature",
        "flat-without-slot",
        "flat-without-count",
        "unknown-key",
    ],
)
def test_invalid_map_rejected(tmp_path, document, message):
    path = tmp_path / "map.yaml"
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(ConfigError, match=message):
        load_column_map(path)


def test_missing_map_lists_shipped_maps(tmp_path):
    with pytest.raises(
        ConfigError, match=r"column map not found; .*default, l1ntuple, nanoaod"
    ):
        load_column_map(tmp_path / "absent.yaml")


def test_map_section_missing_for_objects(tmp_path, raw):
    column_map = DEFAULT_COLUMN_MAP.model_copy(update={"l1_jet": None})
    with pytest.raises(ConfigError, match=r"no 'l1_jet' section"):
        ingest_jets(
            JetIngestSettings(),
            tmp_path / "x.parquet",
            tmp_path / "jets.parquet",
            column_map=column_map,
        )
