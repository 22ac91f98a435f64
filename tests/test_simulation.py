import hashlib
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from l1recal.config import IngestSettings, PreprocessSettings, SimulateSettings
from l1recal.data.ingest import run_ingest
from l1recal.data.preprocess import load_split, run_preprocess
from l1recal.evaluation.metrics import muon_rmse
from l1recal.schema import (
    MUON_HW_ETA,
    MUON_HW_PT,
    MUON_PHI_BINS,
    MUON_RECO_FEATURES,
    N_MUON_SLOTS,
    STUDY_GMT_RMSE,
    raw_event_columns,
    slot_column,
)
from l1recal.simulation.stage import MUON_EVENTS_FILE, NOISE_FLOOR_FILE, run_simulate


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_same_bytes(tmp_path):
    settings = SimulateSettings(n_events=3_000, noise_floor_muons=10_000, seed=3)
    run_simulate(settings, tmp_path / "a")
    run_simulate(settings, tmp_path / "b")
    assert _digest(tmp_path / "a" / MUON_EVENTS_FILE) == _digest(
        tmp_path / "b" / MUON_EVENTS_FILE
    )
    assert _digest(tmp_path / "a" / NOISE_FLOOR_FILE) == _digest(
        tmp_path / "b" / NOISE_FLOOR_FILE
    )


def test_other_seed_other_bytes(tmp_path):
    run_simulate(
        SimulateSettings(n_events=3_000, noise_floor_muons=10_000, seed=3),
        tmp_path / "a",
    )
    run_simulate(
        SimulateSettings(n_events=3_000, noise_floor_muons=10_000, seed=4),
        tmp_path / "b",
    )
    assert _digest(tmp_path / "a" / MUON_EVENTS_FILE) != _digest(
        tmp_path / "b" / MUON_EVENTS_FILE
    )


def test_raw_layout_columns(small_raw):
    schema = pq.read_schema(small_raw / MUON_EVENTS_FILE)
    assert schema.names == raw_event_columns()
    # nMatchedMuons, 8 x 15 muon features, 3 counts, 12 x (3 + 4 + 5) other objects.
    assert len(schema.names) == 1 + 8 * 15 + 3 + 12 * 12


def test_padding_and_ranges(small_raw):
    table = pq.read_table(small_raw / MUON_EVENTS_FILE).to_pandas()
    n_matched = table["nMatchedMuons"].to_numpy()
    assert n_matched.min() >= 0
    assert n_matched.max() <= N_MUON_SLOTS
    for slot in range(N_MUON_SLOTS):
        empty = n_matched <= slot
        filled = ~empty
        for feature in (*MUON_RECO_FEATURES, "hwPtL1"):
            column = table[slot_column(feature, slot)].to_numpy()
            assert np.all(column[empty] == 0), f"{feature} slot {slot} not zero-padded"
        assert np.all(table[slot_column("ptReco", slot)].to_numpy()[filled] > 0)
        assert set(
            np.unique(table[slot_column("chargeReco", slot)].to_numpy()[filled])
        ) <= {-1, 1}
        hw_pt = table[slot_column("hwPtL1", slot)].to_numpy()
        hw_eta = table[slot_column("hwEtaL1", slot)].to_numpy()
        hw_phi = table[slot_column("hwPhiL1", slot)].to_numpy()
        assert hw_pt.max() <= MUON_HW_PT.maximum
        assert hw_eta.min() >= MUON_HW_ETA.minimum
        assert hw_eta.max() <= MUON_HW_ETA.maximum
        assert hw_phi.max() < MUON_PHI_BINS
        assert set(np.unique(table[slot_column("hwSignL1", slot)])) <= {0, 1}


def test_unmatched_muons_fill_their_columns(small_raw):
    table = pq.read_table(small_raw / MUON_EVENTS_FILE).to_pandas()
    unmatched = table["hwPtL1Unmatched_0"].to_numpy()
    assert (unmatched > 0).mean() > 0.1
    total = table["nMatchedMuons"].to_numpy() + sum(
        (table[slot_column("hwPtL1Unmatched", slot)].to_numpy() > 0)
        for slot in range(N_MUON_SLOTS)
    )
    assert total.max() <= N_MUON_SLOTS


def test_noise_floor_below_baseline(small_raw):
    floor = json.loads((small_raw / NOISE_FLOOR_FILE).read_text())
    for metric in ("phi", "eta", "pt_rel"):
        assert 0 < floor[metric] < floor[f"gmt_{metric}"]


def test_l1_baseline_matches_study(tmp_path):
    # 300k events give about 140k muons after the pT window: the RMSE is stable to ~1 %.
    run_simulate(
        SimulateSettings(n_events=300_000, noise_floor_muons=10_000, seed=99),
        tmp_path / "raw",
    )
    run_ingest(
        IngestSettings(),
        tmp_path / "raw" / MUON_EVENTS_FILE,
        tmp_path / "muons.parquet",
    )
    run_preprocess(
        PreprocessSettings(), tmp_path / "muons.parquet", tmp_path / "splits"
    )
    baseline = muon_rmse(load_split(tmp_path / "splits", "test"))
    for metric, study in STUDY_GMT_RMSE.items():
        assert baseline[metric] == pytest.approx(study, rel=0.15), metric
