import hashlib

import numpy as np
import pyarrow.parquet as pq
import pytest

from l1recal.config import (
    JetIngestSettings,
    JetPreprocessSettings,
    SimulateSettings,
)
from l1recal.data.jet_preprocess import run_jet_preprocess
from l1recal.data.jets import ingest_jets
from l1recal.data.preprocess import load_scalers, load_split
from l1recal.evaluation.metrics import jet_rmse
from l1recal.schema import (
    JET_HW_ETA,
    JET_HW_PT,
    JET_INPUTS,
    JET_OFFLINE,
    JET_PHI_BINS,
    JET_TARGETS,
    N_JET_SLOTS,
    N_PF_JET_SLOTS,
    STUDY_JET_RMSE,
    raw_jet_event_columns,
    slot_column,
)
from l1recal.simulation.stage import JET_EVENTS_FILE, run_simulate

# Matching statistics of the ZeroBias study: matched PF jets and their pT share.
STUDY_MATCHED_FRACTION = {"no_cut": 0.0375, "abs_eta_lt_3": 0.5962}
STUDY_MATCHED_PT_FRACTION = {"no_cut": 0.0547, "abs_eta_lt_3": 0.6152}


@pytest.fixture(scope="module")
def jet_sample(tmp_path_factory):
    """60,000 simulated jet events taken through jet ingest and jet preprocess."""
    work = tmp_path_factory.mktemp("jets")
    run_simulate(
        SimulateSettings(
            n_events=1_000, noise_floor_muons=10_000, jet_events=60_000, seed=9
        ),
        work / "raw",
    )
    report = ingest_jets(
        JetIngestSettings(),
        work / "raw" / JET_EVENTS_FILE,
        work / "jets.parquet",
        work / "jet_matches.parquet",
    )
    run_jet_preprocess(JetPreprocessSettings(), work / "jets.parquet", work / "splits")
    return work, report


def test_layout_and_ranges(jet_sample):
    work, _ = jet_sample
    table = pq.read_table(work / "raw" / JET_EVENTS_FILE)
    assert table.column_names == raw_jet_event_columns()
    frame = table.to_pandas()
    assert frame["nJets"].between(0, N_JET_SLOTS).all()
    assert frame["nPFJets"].between(0, N_PF_JET_SLOTS).all()
    hw_pt = np.stack([frame[slot_column("jetHwPt", s)] for s in range(N_JET_SLOTS)], 1)
    hw_eta = np.stack(
        [frame[slot_column("jetHwEta", s)] for s in range(N_JET_SLOTS)], 1
    )
    hw_phi = np.stack(
        [frame[slot_column("jetHwPhi", s)] for s in range(N_JET_SLOTS)], 1
    )
    filled = np.arange(N_JET_SLOTS)[None, :] < frame["nJets"].to_numpy()[:, None]
    assert (hw_pt[filled] >= 1).all()
    assert (hw_pt[filled] <= JET_HW_PT.maximum).all()
    assert (np.abs(hw_eta[filled]) <= JET_HW_ETA.maximum).all()
    assert (hw_phi[filled] < JET_PHI_BINS).all()
    assert (hw_pt[~filled] == 0).all()
    assert (np.diff(np.where(filled, hw_pt, -1), axis=1)[filled[:, 1:]] <= 0).all()
    pf_pt = np.stack(
        [frame[slot_column("pfJetPt", s)] for s in range(N_PF_JET_SLOTS)], 1
    )
    pf_filled = (
        np.arange(N_PF_JET_SLOTS)[None, :] < frame["nPFJets"].to_numpy()[:, None]
    )
    assert (pf_pt[pf_filled] > 0).all()
    assert (pf_pt[~pf_filled] == 0).all()


@pytest.mark.parametrize("selection", ["no_cut", "abs_eta_lt_3"])
def test_matching_fractions_near_study(jet_sample, selection):
    _, report = jet_sample
    fraction = report[selection]["matched_fraction"]
    pt_fraction = report[selection]["matched_pt_fraction"]
    assert fraction == pytest.approx(STUDY_MATCHED_FRACTION[selection], rel=0.15)
    assert pt_fraction == pytest.approx(STUDY_MATCHED_PT_FRACTION[selection], rel=0.15)


def test_most_l1_jets_match_one_pf_jet(jet_sample):
    _, report = jet_sample
    multiplicity = report["no_cut"]["multiplicity"]
    assert multiplicity["1"] > multiplicity["2"] > multiplicity["3+"] > 0


def test_l1_residual_near_study(jet_sample):
    work, _ = jet_sample
    test = load_split(work / "splits", "test")
    rmse = jet_rmse(test)["pt_rel"]
    assert rmse == pytest.approx(STUDY_JET_RMSE["l1"], rel=0.15)


def test_splits_carry_jet_columns(jet_sample):
    work, _ = jet_sample
    for name in ("train", "val", "test"):
        split = load_split(work / "splits", name)
        for column in JET_INPUTS + JET_OFFLINE + JET_TARGETS:
            assert column in split.columns, (name, column)
        assert np.allclose(split["dPt"], split["ptL1"] - split["ptPF"])
        assert split["phiL1"].between(0.0, 2 * np.pi).all()
    scalers = load_scalers(work / "splits")
    assert set(scalers) == {"inputs", "targets"}


def test_same_seed_same_jet_bytes(tmp_path):
    settings = SimulateSettings(
        n_events=500, noise_floor_muons=5_000, jet_events=2_000, seed=4
    )
    digests = []
    for name in ("a", "b"):
        run_simulate(settings, tmp_path / name)
        digests.append(
            hashlib.sha256((tmp_path / name / JET_EVENTS_FILE).read_bytes()).hexdigest()
        )
    assert digests[0] == digests[1]


def test_no_jet_file_when_disabled(tmp_path):
    settings = SimulateSettings(n_events=500, noise_floor_muons=5_000, jet_events=0)
    run_simulate(settings, tmp_path / "raw")
    assert not (tmp_path / "raw" / JET_EVENTS_FILE).exists()
