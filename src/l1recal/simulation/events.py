"""Assembly of simulated muons and other L1 objects into the raw event layout.

The layout is the one of :func:`l1recal.schema.raw_event_columns`: one row per
event, ``nMatchedMuons`` and 8 muon slots of 15 features, then 12 jets, 12
e/gammas and 12 taus with their counts. Matched muons fill the first
``nMatchedMuons`` slots with L1 and offline values; unmatched L1 muons fill the
``...Unmatched`` columns from slot 0; every other slot is zero.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from l1recal.config import MuonPhysics
from l1recal.schema import (
    EGAMMA_FEATURES,
    JET_FEATURES,
    JET_HW_ETA,
    JET_HW_PT,
    JET_PHI_BINS,
    MUON_L1_FEATURES,
    MUON_RECO_FEATURES,
    MUON_UNMATCHED_FEATURES,
    N_EGAMMA_SLOTS,
    N_EGAMMAS,
    N_JET_SLOTS,
    N_JETS,
    N_MATCHED_MUONS,
    N_MUON_SLOTS,
    N_TAU_SLOTS,
    N_TAUS,
    TAU_FEATURES,
    raw_event_columns,
    slot_column,
)
from l1recal.simulation.muons import MuonSample, simulate_muons

# Mean multiplicities and spectra of the non-muon objects (approximate; they
# only complete the layout and are not used by the muon re-calibration).
_MEAN_JETS, _JET_SEED_GEV, _JET_SLOPE_GEV = 4.0, 4.0, 10.0
_MEAN_EGAMMAS, _EGAMMA_MIN_GEV, _EGAMMA_SLOPE_GEV = 2.0, 2.0, 4.0
_MEAN_TAUS, _TAU_MIN_GEV, _TAU_SLOPE_GEV = 2.0, 3.0, 6.0
_MAX_ABS_ETA = 5.0


def _slot_positions(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (event index, slot index) of each object, objects of an event contiguous."""
    events = np.repeat(np.arange(counts.size), counts)
    starts = np.cumsum(counts) - counts
    slots = np.arange(events.size) - starts[events]
    return events, slots


def _fill_slots(
    n_events: int,
    n_slots: int,
    events: np.ndarray,
    slots: np.ndarray,
    values: np.ndarray,
    dtype: type,
) -> np.ndarray:
    table = np.zeros((n_events, n_slots), dtype=dtype)
    table[events, slots] = values
    return table


def _calo_objects(
    rng: np.random.Generator,
    n_events: int,
    mean: float,
    n_slots: int,
    pt_min: float,
    slope: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    # Exponential pT spectrum above a threshold, sorted by decreasing pT per event.
    counts = np.minimum(rng.poisson(mean, n_events), n_slots)
    events, _ = _slot_positions(counts)
    pt = pt_min + rng.exponential(slope, events.size)
    order = np.lexsort((-pt, events))
    pt = pt[order]
    _, slots = _slot_positions(counts)
    hw_pt = np.clip(np.rint(pt / JET_HW_PT.bin_width), 1, JET_HW_PT.maximum).astype(
        np.int64
    )
    max_hw_eta = int(_MAX_ABS_ETA / JET_HW_ETA.bin_width)
    hw_eta = rng.integers(-max_hw_eta, max_hw_eta + 1, events.size)
    hw_phi = rng.integers(0, JET_PHI_BINS, events.size)
    return counts, events, slots, hw_pt, hw_eta, hw_phi


def simulate_event_batch(
    rng: np.random.Generator, n_events: int, physics: MuonPhysics
) -> pa.Table:
    """Simulate ``n_events`` ZeroBias events in the raw event layout.

    Returns:
        A table with the columns of :func:`l1recal.schema.raw_event_columns`;
        hardware integers and ``chargeReco`` as int64, offline values as float64.
    """
    n_matched = np.minimum(
        rng.poisson(physics.mean_matched_muons, n_events), N_MUON_SLOTS
    )
    n_unmatched = np.minimum(
        rng.poisson(physics.mean_unmatched_muons, n_events), N_MUON_SLOTS - n_matched
    )
    matched = simulate_muons(rng, int(n_matched.sum()), physics)
    unmatched = simulate_muons(rng, int(n_unmatched.sum()), physics)

    columns: dict[str, np.ndarray] = {N_MATCHED_MUONS: n_matched.astype(np.int64)}
    columns.update(
        _muon_slot_columns(n_events, n_matched, n_unmatched, matched, unmatched)
    )
    columns.update(_other_object_columns(rng, n_events))
    return pa.table({name: columns[name] for name in raw_event_columns()})


def _muon_slot_columns(
    n_events: int,
    n_matched: np.ndarray,
    n_unmatched: np.ndarray,
    matched: MuonSample,
    unmatched: MuonSample,
) -> dict[str, np.ndarray]:
    events, slots = _slot_positions(n_matched)
    u_events, u_slots = _slot_positions(n_unmatched)
    per_feature = {
        "hwPtL1": matched.hw_pt,
        "hwEtaL1": matched.hw_eta,
        "hwPhiL1": matched.hw_phi,
        "hwSignL1": matched.hw_sign,
        "ptReco": matched.pt_reco,
        "etaExtRecoSt1": matched.eta_st1,
        "phiExtRecoSt1": matched.phi_st1,
        "etaVtxReco": matched.eta_vtx,
        "phiVtxReco": matched.phi_vtx,
        "dXYReco": matched.dxy,
        "chargeReco": matched.charge,
    }
    unmatched_values = dict(
        zip(
            MUON_UNMATCHED_FEATURES,
            (unmatched.hw_pt, unmatched.hw_eta, unmatched.hw_phi, unmatched.hw_sign),
            strict=True,
        )
    )
    columns: dict[str, np.ndarray] = {}
    for feature in MUON_L1_FEATURES + MUON_RECO_FEATURES:
        dtype = np.float64 if per_feature[feature].dtype.kind == "f" else np.int64
        table = _fill_slots(
            n_events, N_MUON_SLOTS, events, slots, per_feature[feature], dtype
        )
        for slot in range(N_MUON_SLOTS):
            columns[slot_column(feature, slot)] = table[:, slot]
    for feature, values in unmatched_values.items():
        table = _fill_slots(n_events, N_MUON_SLOTS, u_events, u_slots, values, np.int64)
        for slot in range(N_MUON_SLOTS):
            columns[slot_column(feature, slot)] = table[:, slot]
    return columns


def _other_object_columns(
    rng: np.random.Generator, n_events: int
) -> dict[str, np.ndarray]:
    columns: dict[str, np.ndarray] = {}
    specs = (
        (N_JETS, JET_FEATURES, N_JET_SLOTS, _MEAN_JETS, _JET_SEED_GEV, _JET_SLOPE_GEV),
        (
            N_EGAMMAS,
            EGAMMA_FEATURES,
            N_EGAMMA_SLOTS,
            _MEAN_EGAMMAS,
            _EGAMMA_MIN_GEV,
            _EGAMMA_SLOPE_GEV,
        ),
        (N_TAUS, TAU_FEATURES, N_TAU_SLOTS, _MEAN_TAUS, _TAU_MIN_GEV, _TAU_SLOPE_GEV),
    )
    for count_name, features, n_slots, mean, pt_min, slope in specs:
        counts, events, slots, hw_pt, hw_eta, hw_phi = _calo_objects(
            rng, n_events, mean, n_slots, pt_min, slope
        )
        values = [hw_pt, hw_eta, hw_phi]
        if len(features) > 3:
            values.append(rng.integers(0, 4, events.size))  # isolation bits
        if len(features) > 4:
            values.append(rng.integers(0, 16, events.size))  # quality bits
        columns[count_name] = counts.astype(np.int64)
        for feature, feature_values in zip(features, values, strict=True):
            table = _fill_slots(
                n_events, n_slots, events, slots, feature_values, np.int64
            )
            for slot in range(n_slots):
                columns[slot_column(feature, slot)] = table[:, slot]
    return columns
