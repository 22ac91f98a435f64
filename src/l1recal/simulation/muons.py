"""Generator of L1 and offline muon pairs with approximate CMS detector response.

One call draws independent muons: an offline (truth-like) track and the L1 muon
the uGMT would report for it. The response model:

* offline pT from a ZeroBias-like power law dN/dpT ~ pT^-n above a few GeV,
  plus a small W Jacobian peak near 40 GeV;
* track-finder regions barrel (|eta| < 0.83), overlap (0.83-1.24) and endcap
  (1.24-2.4);
* L1 phi measured at the second muon station, so phi_L1 - phi_vtx is the bend
  q * (p1(|eta|) / pT + p3(|eta|) / pT^3) plus noise. The p1 and p3 shapes and
  the noise follow the parametrisation of CMSSW's
  ``RecoMuon/TrackerSeedGenerator/src/L1MuonPixelTrackFitter.cc``;
* L1 pT scaled high as the track finders do (Kalman BMTF x1.17, EMTF 2017-18
  x1.2 / (1 - 0.015 * min(pT, 20))), with a Gaussian resolution on 1/pT and
  wider tails for a few per cent of muons;
* charge misassignment: a wrong-charge muon bends the true way but carries the
  flipped sign bit;
* eta resolution and a small eta extrapolation from the vertex to the station;
* hardware binning and clipping of all four L1 integers.

The offline values are the truth of this model: the offline resolution is not
simulated, so the noise floor computed from it is the floor for predicting the
offline values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from l1recal.config import MuonPhysics
from l1recal.schema import (
    BARREL_MAX_ABS_ETA,
    ENDCAP_MAX_ABS_ETA,
    MUON_HW_ETA,
    MUON_HW_PHI,
    MUON_HW_PT,
    MUON_PHI_BINS,
    OVERLAP_MAX_ABS_ETA,
)
from l1recal.units import sign_from_charge, wrap_delta_phi, wrap_phi_positive

# Bend parameters in bins of |eta| (rad GeV and rad GeV^3); approximate, after
# the |eta| dependence of L1MuonPixelTrackFitter::param().
_BEND_ABS_ETA = np.array([0.0, 0.1, 1.0, 1.4, 1.8, 2.0, 2.4])
_BEND_P1 = np.array([-2.68, -2.68, -2.55, -1.91, -1.26, -1.02, -1.02])
_BEND_P3 = np.array([-13.0, -13.0, -10.0, -4.0, -1.0, -0.3, -0.1])
# Bend noise sigma = a(|eta|) + b(|eta|) / pT^2 (rad, rad GeV^2), after getBendingError.
_NOISE_A = np.array([0.02, 0.02, 0.03, 0.04, 0.05, 0.06, 0.06])
_NOISE_B = np.array([0.005, 0.005, 0.008, 0.011, 0.014, 0.016, 0.016])

_W_PEAK_GEV = 38.0
_W_WIDTH_GEV = 6.0
#: Offline eta extrapolation from vertex to station 1: sign(eta) * this / pT (GeV).
_ETA_EXTRAPOLATION_GEV = 0.05
_DXY_CORE_CM = 0.003
_DXY_TAIL_CM = 0.1
_DXY_TAIL_FRACTION = 0.02


@dataclass
class MuonSample:
    """Simulated muons, one entry per muon; arrays of shape (n,).

    Attributes:
        pt_reco: offline pT in GeV.
        eta_vtx: offline eta at the vertex.
        phi_vtx: offline phi at the vertex, rad in [-pi, pi).
        eta_st1: offline eta extrapolated to station 1.
        phi_st1: offline phi extrapolated to station 1, rad in [-pi, pi).
        dxy: offline transverse impact parameter in cm.
        charge: offline charge in {-1, +1}.
        hw_pt, hw_eta, hw_phi, hw_sign: L1 uGMT integers.
    """

    pt_reco: np.ndarray
    eta_vtx: np.ndarray
    phi_vtx: np.ndarray
    eta_st1: np.ndarray
    phi_st1: np.ndarray
    dxy: np.ndarray
    charge: np.ndarray
    hw_pt: np.ndarray
    hw_eta: np.ndarray
    hw_phi: np.ndarray
    hw_sign: np.ndarray


def bend_rad(abs_eta: np.ndarray, pt_gev: np.ndarray, charge: np.ndarray) -> np.ndarray:
    """Return the L1 station-2 phi minus the vertex phi, in rad, without noise."""
    p1 = np.interp(abs_eta, _BEND_ABS_ETA, _BEND_P1)
    p3 = np.interp(abs_eta, _BEND_ABS_ETA, _BEND_P3)
    return charge * (p1 / pt_gev + p3 / pt_gev**3)


def l1_pt_scale(region: np.ndarray, pt_estimate_gev: np.ndarray) -> np.ndarray:
    """Return the track finders' deliberate pT over-scaling for each muon.

    Args:
        region: 0 barrel, 1 overlap, 2 endcap.
        pt_estimate_gev: unscaled L1 pT estimate in GeV.
    """
    endcap = 1.2 / (1.0 - 0.015 * np.minimum(pt_estimate_gev, 20.0))
    return np.select([region == 0, region == 1], [1.17, 1.2], default=endcap)


def _draw_offline_pt(
    rng: np.random.Generator, n: int, physics: MuonPhysics
) -> np.ndarray:
    # Inverse-CDF draw of a truncated power law, mixed with a Gaussian W peak.
    exponent = 1.0 - physics.spectrum_index
    low, high = physics.pt_min_gev**exponent, physics.pt_max_gev**exponent
    pt = (low + rng.random(n) * (high - low)) ** (1.0 / exponent)
    from_w = rng.random(n) < physics.w_fraction
    pt[from_w] = np.clip(
        rng.normal(_W_PEAK_GEV, _W_WIDTH_GEV, from_w.sum()), physics.pt_min_gev, 120.0
    )
    return pt


def _draw_eta(
    rng: np.random.Generator, n: int, physics: MuonPhysics
) -> tuple[np.ndarray, np.ndarray]:
    region = rng.choice(
        3,
        size=n,
        p=np.asarray(physics.region_fractions) / sum(physics.region_fractions),
    )
    edges = np.array([0.0, BARREL_MAX_ABS_ETA, OVERLAP_MAX_ABS_ETA, ENDCAP_MAX_ABS_ETA])
    abs_eta = edges[region] + rng.random(n) * (edges[region + 1] - edges[region])
    eta = np.where(rng.random(n) < 0.5, -abs_eta, abs_eta)
    return eta, region


def simulate_muons(
    rng: np.random.Generator, n: int, physics: MuonPhysics
) -> MuonSample:
    """Draw ``n`` independent offline muons and their L1 counterparts.

    Args:
        rng: random generator; the draw is reproducible for its state.
        n: number of muons.
        physics: detector and spectrum settings.

    Returns:
        The muons, with L1 integers already binned and clipped to their ranges.
    """
    pt = _draw_offline_pt(rng, n, physics)
    eta, region = _draw_eta(rng, n, physics)
    abs_eta = np.abs(eta)
    phi_vtx = rng.uniform(-np.pi, np.pi, n)
    charge = np.where(rng.random(n) < 0.5, -1, 1)

    # Offline extrapolation to station 1 (about half the station-2 bend in phi).
    eta_st1 = eta + np.sign(eta) * _ETA_EXTRAPOLATION_GEV / pt
    phi_st1 = wrap_delta_phi(phi_vtx + 0.5 * bend_rad(abs_eta, pt, charge))
    dxy_width = np.where(rng.random(n) < _DXY_TAIL_FRACTION, _DXY_TAIL_CM, _DXY_CORE_CM)
    dxy = rng.normal(0.0, 1.0, n) * dxy_width

    # L1 pT: resolution on 1/pT with tails, then the track finders' scale.
    resolution = np.asarray(physics.resolution_inv_pt)[region]
    resolution = np.where(
        rng.random(n) < physics.tail_fraction,
        resolution * physics.tail_scale,
        resolution,
    )
    inverse_smear = np.maximum(1.0 + resolution * rng.normal(0.0, 1.0, n), 0.05)
    pt_estimate = pt / inverse_smear
    pt_l1 = pt_estimate * l1_pt_scale(region, pt_estimate)

    # L1 phi at station 2: true-charge bend plus pT- and eta-dependent noise.
    noise = (
        np.interp(abs_eta, _BEND_ABS_ETA, _NOISE_A)
        + np.interp(abs_eta, _BEND_ABS_ETA, _NOISE_B) / pt**2
    )
    phi_l1 = phi_vtx + bend_rad(abs_eta, pt, charge) + noise * rng.normal(0.0, 1.0, n)

    eta_l1 = eta_st1 + rng.normal(0.0, physics.eta_resolution, n)
    flip = rng.random(n) < np.asarray(physics.charge_flip)[region]
    charge_l1 = np.where(flip, -charge, charge)

    return MuonSample(
        pt_reco=pt,
        eta_vtx=eta,
        phi_vtx=phi_vtx,
        eta_st1=eta_st1,
        phi_st1=phi_st1,
        dxy=dxy,
        charge=charge.astype(np.int64),
        hw_pt=np.clip(
            np.rint(pt_l1 / MUON_HW_PT.bin_width), 1, MUON_HW_PT.maximum
        ).astype(np.int64),
        hw_eta=np.clip(
            np.rint(eta_l1 / MUON_HW_ETA.bin_width),
            MUON_HW_ETA.minimum,
            MUON_HW_ETA.maximum,
        ).astype(np.int64),
        hw_phi=(
            np.rint(wrap_phi_positive(phi_l1) / MUON_HW_PHI.bin_width).astype(np.int64)
            % MUON_PHI_BINS
        ),
        hw_sign=sign_from_charge(charge_l1),
    )
