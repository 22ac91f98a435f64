import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from l1recal.config import JetIngestSettings
from l1recal.data.jets import ingest_jets
from l1recal.errors import InputFileError
from l1recal.schema import (
    JET_HW_ETA,
    JET_HW_PHI,
    JET_MATCH_COLUMNS,
    JET_TABLE_COLUMNS,
    L1_JET_FEATURES,
    N_JET_SLOTS,
    N_JETS,
    N_PF_JET_SLOTS,
    N_PF_JETS,
    PF_JET_FEATURES,
    raw_jet_event_columns,
    slot_column,
)

ETA_STEP = JET_HW_ETA.bin_width
PHI_STEP = JET_HW_PHI.bin_width


def jet_events(events: list[tuple[list[tuple], list[tuple]]]) -> pa.Table:
    """Build raw jet events from (L1 jets as (hwPt, hwEta, hwPhi), PF jets as (pt, eta, phi)) per event."""
    columns = {name: [] for name in raw_jet_event_columns()}
    for l1_jets, pf_jets in events:
        columns[N_JETS].append(len(l1_jets))
        columns[N_PF_JETS].append(len(pf_jets))
        for slot in range(N_JET_SLOTS):
            values = l1_jets[slot] if slot < len(l1_jets) else (0, 0, 0)
            for feature, value in zip(L1_JET_FEATURES, values, strict=True):
                columns[slot_column(feature, slot)].append(value)
        for slot in range(N_PF_JET_SLOTS):
            values = (*pf_jets[slot], 1.0) if slot < len(pf_jets) else (0.0,) * 4
            for feature, value in zip(PF_JET_FEATURES, values, strict=True):
                columns[slot_column(feature, slot)].append(value)
    arrays = {}
    for name, values in columns.items():
        integer = name in (N_JETS, N_PF_JETS) or name.startswith("jetHw")
        arrays[name] = np.array(values, dtype=np.int64 if integer else np.float64)
    return pa.table(arrays)


def ingest(tmp_path, events, **settings):
    source = tmp_path / "jet_events.parquet"
    pq.write_table(jet_events(events), source)
    report = ingest_jets(
        JetIngestSettings(**settings),
        source,
        tmp_path / "jets.parquet",
        tmp_path / "jet_matches.parquet",
        tmp_path / "jet_matching.json",
    )
    jets = pq.read_table(tmp_path / "jets.parquet").to_pandas()
    matches = pq.read_table(tmp_path / "jet_matches.parquet").to_pandas()
    return jets, matches, report


def test_phi_wrap_across_zero(tmp_path):
    events = [
        ([(40, 0, 0)], [(18.0, 0.0, -0.1)]),
        ([(40, 0, 143)], [(18.0, 0.0, 0.05)]),
    ]
    jets, matches, _ = ingest(tmp_path, events)
    assert_array_equal(jets["event"], [0, 1])
    assert_allclose(matches["dR"], [0.1, 0.05 + PHI_STEP], atol=1e-12)


def test_two_pf_jets_onto_one_l1_jet(tmp_path):
    events = [([(60, 0, 0), (30, 40, 72)], [(20.0, 0.1, 0.0), (8.0, -0.2, 0.1)])]
    jets, matches, report = ingest(tmp_path, events)
    assert len(jets) == 1
    assert jets["l1Index"].iloc[0] == 0
    assert jets["nMatchedPF"].iloc[0] == 2
    assert jets["ptPF"].iloc[0] == pytest.approx(28.0)
    assert jets["maxDR"].iloc[0] == pytest.approx(math.hypot(0.2, 0.1))
    assert_array_equal(matches["pfIndex"], [0, 1])
    assert report["no_cut"]["multiplicity"] == {"1": 0, "2": 1, "3+": 0}


def test_dr_exactly_cone_not_matched(tmp_path):
    events = [([(40, 0, 0)], [(18.0, 0.4, 0.0), (10.0, 0.3999, 0.0)])]
    _, matches, report = ingest(tmp_path, events)
    assert_array_equal(matches["pfIndex"], [1])
    assert report["no_cut"]["matched"] == 1
    assert report["no_cut"]["unmatched"] == 1


def test_tie_goes_to_lower_l1_slot(tmp_path):
    events = [([(50, 5, 0), (40, -5, 0)], [(18.0, 0.0, 0.0)])]
    _, matches, _ = ingest(tmp_path, events)
    assert_array_equal(matches["l1Index"], [0])


def test_nearest_l1_jet_wins(tmp_path):
    events = [([(50, 0, 0), (40, 4, 0)], [(18.0, 0.16, 0.0)])]
    jets, matches, _ = ingest(tmp_path, events)
    assert_array_equal(matches["l1Index"], [1])
    assert_allclose(matches["dR"], [abs(0.16 - 4 * ETA_STEP)])
    assert_array_equal(jets["hwPt"], [40])


def test_events_without_l1_or_pf_jets(tmp_path):
    events = [
        ([], [(18.0, 0.0, 0.0), (5.0, 1.0, 1.0)]),
        ([(40, 0, 0)], []),
        ([(40, 0, 0)], [(18.0, 0.0, 0.0)]),
    ]
    jets, matches, report = ingest(tmp_path, events)
    assert_array_equal(jets["event"], [2])
    assert_array_equal(matches["event"], [2])
    assert report["no_cut"]["matched"] == 1
    assert report["no_cut"]["unmatched"] == 2
    assert report["no_cut"]["l1_jets"] == 2
    assert report["events"] == 3


def test_padding_slots_never_match(tmp_path):
    # Zero-padded slots sit at eta 0, phi 0; a PF jet there must stay unmatched.
    events = [([], [(18.0, 0.0, 0.0)])]
    jets, _, report = ingest(tmp_path, events)
    assert len(jets) == 0
    assert report["no_cut"]["matched_fraction"] == 0.0


def test_report_selections_and_fractions(tmp_path):
    events = [
        (
            [(60, 0, 0), (30, 80, 10)],  # central, forward at eta 3.48
            [(20.0, 0.1, 0.0), (10.0, 80 * ETA_STEP, 10 * PHI_STEP), (10.0, -4.0, 2.0)],
        )
    ]
    jets, _, report = ingest(tmp_path, events)
    assert len(jets) == 2
    assert report["no_cut"]["matched"] == 2
    assert report["no_cut"]["unmatched"] == 1
    assert report["no_cut"]["matched_fraction"] == pytest.approx(2 / 3)
    assert report["no_cut"]["matched_pt_fraction"] == pytest.approx(30 / 40)
    assert report["abs_eta_lt_3"]["matched"] == 1
    assert report["abs_eta_lt_3"]["unmatched"] == 0
    assert report["abs_eta_lt_3"]["matched_pt_fraction"] == pytest.approx(1.0)
    written = json.loads((tmp_path / "jet_matching.json").read_text())
    assert written["no_cut"] == report["no_cut"]


def test_table_cut_keeps_central_jets(tmp_path):
    events = [
        (
            [(60, 0, 0), (30, 80, 10)],
            [(20.0, 0.1, 0.0), (10.0, 80 * ETA_STEP, 10 * PHI_STEP)],
        )
    ]
    jets, _, report = ingest(tmp_path, events, abs_eta_max=3.0)
    assert_array_equal(jets["hwEta"], [0])
    assert report["table_abs_eta_max"] == 3.0


def test_output_columns_are_the_contract(tmp_path):
    jets, matches, _ = ingest(tmp_path, [([(40, 0, 0)], [(18.0, 0.0, 0.1)])])
    assert tuple(jets.columns) == JET_TABLE_COLUMNS
    assert tuple(matches.columns) == JET_MATCH_COLUMNS
    assert jets["event"].dtype == np.int64
    assert jets["ptPF"].dtype == np.float64


def test_event_index_runs_across_files(tmp_path):
    for index in range(2):
        events = [([(40, 0, 0)], [(18.0, 0.0, 0.0)])] * (index + 2)
        pq.write_table(jet_events(events), tmp_path / f"part-{index}.parquet")
    report = ingest_jets(
        JetIngestSettings(batch_rows=2),
        [str(tmp_path / "part-*.parquet")],
        tmp_path / "jets.parquet",
    )
    jets = pq.read_table(tmp_path / "jets.parquet").to_pandas()
    assert_array_equal(jets["event"], [0, 1, 2, 3, 4])
    assert report["events"] == 5
    assert [f["events"] for f in report["files"]] == [2, 3]


def test_pf_count_out_of_range_rejected(tmp_path):
    table = jet_events([([(40, 0, 0)], [(18.0, 0.0, 0.0)])])
    table = table.set_column(
        table.schema.get_field_index(N_PF_JETS), N_PF_JETS, pa.array([36], pa.int64())
    )
    pq.write_table(table, tmp_path / "jet_events.parquet")
    with pytest.raises(
        InputFileError, match=r"column nPFJets has value 36, expected 0\.\.35"
    ):
        ingest_jets(
            JetIngestSettings(),
            tmp_path / "jet_events.parquet",
            tmp_path / "jets.parquet",
        )
    assert not (tmp_path / "jets.parquet").exists()
