"""Generator of ZeroBias jet events: L1 calo jets and offline PF jets.

One call draws whole events in the raw jet layout of
:func:`l1recal.schema.raw_jet_event_columns`. The response model:

* central PF jets (abs(eta) < 3) from a power law above a few GeV; a share of
  them has a close PF neighbour (dR 0.4 to 0.8) that the same L1 jet absorbs,
  so one L1 jet can collect two PF jets;
* many soft forward PF jets (3 < abs(eta) < 5), the pile-up jets that
  charged-hadron subtraction cannot remove outside the tracker;
* raw L1 energy = response x PF pT, smeared by
  sigma / pT = sqrt((N / pT)^2 + S^2 / pT + C^2), plus an exponential pile-up
  energy; the forward (HF) response is low;
* an L1 jet exists only when its seed tower (a fixed share of the raw energy)
  passes the seed threshold;
* the calibrated L1 pT is the raw energy times the jet-energy-correction shape
  corr(pT) = p0 + p1 / (log10(pT)^2 + p2) + p3 exp(-p4 (log10(pT) - p5)^2),
  with the offline example set of the L1 jet group (1.25 at 10 GeV, 1.05 at 100);
* pile-up L1 jets with no PF partner;
* L1 position smearing, the 12 highest-pT L1 jets and the 35 highest-pT PF jets
  kept per event, hardware binning of the three L1 integers.

PF jets are the truth of this model: their own resolution is not simulated.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from l1recal.config import JetPhysics
from l1recal.schema import (
    JET_HW_ETA,
    JET_HW_PHI,
    JET_HW_PT,
    JET_PHI_BINS,
    L1_JET_FEATURES,
    N_JET_SLOTS,
    N_JETS,
    N_PF_JET_SLOTS,
    N_PF_JETS,
    PF_JET_FEATURES,
    raw_jet_event_columns,
    slot_column,
)
from l1recal.units import wrap_delta_phi, wrap_phi_positive

#: Jet-energy-correction parameters p0..p5 (offline example set of the L1 jet group).
JEC_PARAMETERS = (0.885, 28.49, 4.891, -19.02, 0.0228, -6.973)
_CENTRAL_MAX_ABS_ETA = 3.0
_FORWARD_MAX_ABS_ETA = 5.0
_PT_MAX_GEV = 1000.0
#: The correction is evaluated no lower than this raw energy (GeV); the shape diverges below.
_JEC_MIN_GEV = 5.0
_NEIGHBOUR_DR = (0.4, 0.8)
_NEIGHBOUR_PT_SHARE = (0.2, 0.7)
_FORWARD_POSITION_SCALE = 2.0
_MASS_SHARE = (0.05, 0.25)


def jet_energy_correction(raw_pt_gev: np.ndarray) -> np.ndarray:
    """Return the multiplicative L1 jet calibration for raw energies in GeV."""
    p0, p1, p2, p3, p4, p5 = JEC_PARAMETERS
    log_pt = np.log10(np.maximum(raw_pt_gev, _JEC_MIN_GEV))
    return p0 + p1 / (log_pt**2 + p2) + p3 * np.exp(-p4 * (log_pt - p5) ** 2)


def _power_law(
    rng: np.random.Generator, n: int, pt_min: float, index: float
) -> np.ndarray:
    exponent = 1.0 - index
    low, high = pt_min**exponent, _PT_MAX_GEV**exponent
    return (low + rng.random(n) * (high - low)) ** (1.0 / exponent)


def _signed_uniform(
    rng: np.random.Generator, n: int, low: float, high: float
) -> np.ndarray:
    magnitude = rng.uniform(low, high, n)
    return np.where(rng.random(n) < 0.5, -magnitude, magnitude)


def _rank_in_event(events: np.ndarray, pt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the order that sorts objects by event then decreasing pT, and each one's rank."""
    order = np.lexsort((-pt, events))
    sorted_events = events[order]
    counts = np.bincount(sorted_events, minlength=0)
    starts = np.cumsum(counts) - counts
    rank = np.arange(order.size) - starts[sorted_events]
    return order, rank


def _slot_table(
    n_events: int,
    n_slots: int,
    events: np.ndarray,
    ranks: np.ndarray,
    values: np.ndarray,
    dtype: type,
) -> np.ndarray:
    table = np.zeros((n_events, n_slots), dtype=dtype)
    table[events, ranks] = values
    return table


def simulate_jet_event_batch(
    rng: np.random.Generator, n_events: int, physics: JetPhysics
) -> pa.Table:
    """Simulate ``n_events`` ZeroBias jet events in the raw jet layout.

    Returns:
        A table with the columns of :func:`l1recal.schema.raw_jet_event_columns`:
        counts and L1 integers as int64, PF values as float64 (GeV, rad in
        [-pi, pi)), every slot after the count zero.
    """
    # Central PF jets and their optional neighbours.
    n_central = rng.poisson(physics.mean_central_jets, n_events)
    c_events = np.repeat(np.arange(n_events), n_central)
    c_pt = _power_law(
        rng, c_events.size, physics.central_pt_min_gev, physics.central_spectrum_index
    )
    c_eta = rng.uniform(-_CENTRAL_MAX_ABS_ETA, _CENTRAL_MAX_ABS_ETA, c_events.size)
    c_phi = rng.uniform(-np.pi, np.pi, c_events.size)

    has_neighbour = rng.random(c_events.size) < physics.neighbour_fraction
    parent = np.flatnonzero(has_neighbour)
    distance = rng.uniform(*_NEIGHBOUR_DR, parent.size)
    direction = rng.uniform(-np.pi, np.pi, parent.size)
    n_pt = c_pt[parent] * rng.uniform(*_NEIGHBOUR_PT_SHARE, parent.size)
    n_eta = np.clip(
        c_eta[parent] + distance * np.cos(direction),
        -_CENTRAL_MAX_ABS_ETA + 1e-6,
        _CENTRAL_MAX_ABS_ETA - 1e-6,
    )
    n_phi = wrap_delta_phi(c_phi[parent] + distance * np.sin(direction))

    # Soft forward PF jets.
    n_forward = rng.poisson(physics.mean_forward_jets, n_events)
    f_events = np.repeat(np.arange(n_events), n_forward)
    f_pt = _power_law(
        rng, f_events.size, physics.forward_pt_min_gev, physics.forward_spectrum_index
    )
    f_eta = _signed_uniform(
        rng, f_events.size, _CENTRAL_MAX_ABS_ETA, _FORWARD_MAX_ABS_ETA
    )
    f_phi = rng.uniform(-np.pi, np.pi, f_events.size)

    # L1 candidates: a central jet merged with its neighbour (pT-weighted
    # centroid), and each forward jet on its own.
    cluster_pt = c_pt.copy()
    np.add.at(cluster_pt, parent, n_pt)
    cluster_eta = c_eta.copy()
    cluster_phi = c_phi.copy()
    share = n_pt / cluster_pt[parent]
    cluster_eta[parent] += share * (n_eta - c_eta[parent])
    cluster_phi[parent] += share * wrap_delta_phi(n_phi - c_phi[parent])
    l1_events = np.concatenate([c_events, f_events])
    true_pt = np.concatenate([cluster_pt, f_pt])
    true_eta = np.concatenate([cluster_eta, f_eta])
    true_phi = np.concatenate([cluster_phi, f_phi])
    forward = np.abs(true_eta) >= _CENTRAL_MAX_ABS_ETA

    response = np.where(forward, physics.forward_response, physics.central_response)
    resolution = np.sqrt(
        (physics.noise_gev / true_pt) ** 2
        + physics.stochastic**2 / true_pt
        + physics.constant**2
    )
    raw = response * true_pt * (1.0 + resolution * rng.normal(0.0, 1.0, true_pt.size))
    raw += rng.exponential(physics.pileup_offset_gev, true_pt.size)
    seeded = raw * physics.seed_fraction >= physics.seed_threshold_gev
    position_sigma = np.where(
        forward,
        physics.position_sigma * _FORWARD_POSITION_SCALE,
        physics.position_sigma,
    )
    l1_eta = true_eta + position_sigma * rng.normal(0.0, 1.0, true_pt.size)
    l1_phi = true_phi + position_sigma * rng.normal(0.0, 1.0, true_pt.size)

    # Pile-up L1 jets with no PF partner, just above the seed threshold. They
    # are central only: forward ones would collect far more random soft HF PF
    # jets than the 0.3 % matched beyond abs(eta) 3 in real ZeroBias data.
    n_pileup = rng.poisson(physics.mean_pileup_l1_jets, n_events)
    p_events = np.repeat(np.arange(n_events), n_pileup)
    p_raw = physics.seed_threshold_gev / physics.seed_fraction + rng.exponential(
        physics.pileup_offset_gev * 2.0, p_events.size
    )
    p_eta = rng.uniform(-_CENTRAL_MAX_ABS_ETA, _CENTRAL_MAX_ABS_ETA, p_events.size)
    p_phi = rng.uniform(-np.pi, np.pi, p_events.size)

    l1_events = np.concatenate([l1_events[seeded], p_events])
    l1_raw = np.concatenate([raw[seeded], p_raw])
    l1_eta = np.concatenate([l1_eta[seeded], p_eta])
    l1_phi = np.concatenate([l1_phi[seeded], p_phi])
    l1_pt = l1_raw * jet_energy_correction(l1_raw)

    pf_events = np.concatenate([c_events, c_events[parent], f_events])
    pf_pt = np.concatenate([c_pt, n_pt, f_pt])
    pf_eta = np.concatenate([c_eta, n_eta, f_eta])
    pf_phi = np.concatenate([c_phi, n_phi, f_phi])
    pf_mass = pf_pt * rng.uniform(*_MASS_SHARE, pf_pt.size)

    columns: dict[str, np.ndarray] = {}
    columns.update(_l1_columns(n_events, l1_events, l1_pt, l1_eta, l1_phi))
    columns.update(_pf_columns(n_events, pf_events, pf_pt, pf_eta, pf_phi, pf_mass))
    return pa.table({name: columns[name] for name in raw_jet_event_columns()})


def _l1_columns(
    n_events: int,
    events: np.ndarray,
    pt: np.ndarray,
    eta: np.ndarray,
    phi: np.ndarray,
) -> dict[str, np.ndarray]:
    hw_pt = np.clip(np.rint(pt / JET_HW_PT.bin_width), 1, JET_HW_PT.maximum)
    hw_eta = np.clip(
        np.rint(eta / JET_HW_ETA.bin_width), JET_HW_ETA.minimum, JET_HW_ETA.maximum
    )
    hw_phi = np.rint(wrap_phi_positive(phi) / JET_HW_PHI.bin_width) % JET_PHI_BINS
    order, rank = _rank_in_event(events, hw_pt)
    kept = rank < N_JET_SLOTS  # the 12 highest-pT L1 jets per crossing
    sorted_events = events[order][kept]
    rank = rank[kept]
    columns = {N_JETS: np.bincount(sorted_events, minlength=n_events).astype(np.int64)}
    for feature, values in zip(L1_JET_FEATURES, (hw_pt, hw_eta, hw_phi), strict=True):
        table = _slot_table(
            n_events,
            N_JET_SLOTS,
            sorted_events,
            rank,
            values[order][kept].astype(np.int64),
            np.int64,
        )
        for slot in range(N_JET_SLOTS):
            columns[slot_column(feature, slot)] = table[:, slot]
    return columns


def _pf_columns(
    n_events: int,
    events: np.ndarray,
    pt: np.ndarray,
    eta: np.ndarray,
    phi: np.ndarray,
    mass: np.ndarray,
) -> dict[str, np.ndarray]:
    order, rank = _rank_in_event(events, pt)
    kept = rank < N_PF_JET_SLOTS  # the 35 highest-pT PF jets per event
    sorted_events = events[order][kept]
    rank = rank[kept]
    columns = {
        N_PF_JETS: np.bincount(sorted_events, minlength=n_events).astype(np.int64)
    }
    for feature, values in zip(PF_JET_FEATURES, (pt, eta, phi, mass), strict=True):
        table = _slot_table(
            n_events,
            N_PF_JET_SLOTS,
            sorted_events,
            rank,
            values[order][kept],
            np.float64,
        )
        for slot in range(N_PF_JET_SLOTS):
            columns[slot_column(feature, slot)] = table[:, slot]
    return columns
