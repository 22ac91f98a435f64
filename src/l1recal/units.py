"""Hardware-to-physical conversions and angle arithmetic.

Every conversion of a hardware integer to physical units goes through this
module, so the pT convention of :mod:`l1recal.schema` is applied in one place.
"""

from __future__ import annotations

import numpy as np

from l1recal.schema import (
    JET_HW_ETA,
    JET_HW_PHI,
    JET_HW_PT,
    MUON_HW_ETA,
    MUON_HW_PHI,
    MUON_HW_PT,
    TWO_PI,
)


def wrap_delta_phi(dphi: np.ndarray) -> np.ndarray:
    """Reduce an angle difference into [-pi, pi).

    Args:
        dphi: angle differences in rad, any shape.

    Returns:
        The same differences modulo 2 pi, in [-pi, pi).
    """
    return np.mod(np.asarray(dphi) + np.pi, TWO_PI) - np.pi


def wrap_phi_positive(phi: np.ndarray) -> np.ndarray:
    """Map an angle into [0, 2 pi), the range of the L1 muon phi."""
    return np.mod(np.asarray(phi), TWO_PI)


def muon_pt_gev(hw_pt: np.ndarray) -> np.ndarray:
    """Convert uGMT hwPt to pT in GeV (hwPt * 0.5 GeV)."""
    return np.asarray(hw_pt, dtype=np.float64) * MUON_HW_PT.bin_width


def muon_eta(hw_eta: np.ndarray) -> np.ndarray:
    """Convert uGMT hwEta to eta (hwEta * 0.010875)."""
    return np.asarray(hw_eta, dtype=np.float64) * MUON_HW_ETA.bin_width


def muon_phi_rad(hw_phi: np.ndarray) -> np.ndarray:
    """Convert uGMT hwPhi to phi in rad, [0, 2 pi) for hwPhi in 0..575."""
    return np.asarray(hw_phi, dtype=np.float64) * MUON_HW_PHI.bin_width


def charge_from_sign(hw_sign: np.ndarray) -> np.ndarray:
    """Convert the uGMT sign bit to a charge: 0 is mu+ (+1), 1 is mu- (-1)."""
    return 1 - 2 * np.asarray(hw_sign, dtype=np.int64)


def sign_from_charge(charge: np.ndarray) -> np.ndarray:
    """Convert a charge in {-1, +1} to the uGMT sign bit (1 for mu-)."""
    return (np.asarray(charge) < 0).astype(np.int64)


def jet_pt_gev(hw_pt: np.ndarray) -> np.ndarray:
    """Convert calo-layer-2 jet hwPt to pT in GeV (hwPt * 0.5 GeV)."""
    return np.asarray(hw_pt, dtype=np.float64) * JET_HW_PT.bin_width


def jet_eta(hw_eta: np.ndarray) -> np.ndarray:
    """Convert calo-layer-2 jet hwEta to eta (hwEta * 0.0435)."""
    return np.asarray(hw_eta, dtype=np.float64) * JET_HW_ETA.bin_width


def jet_phi_rad(hw_phi: np.ndarray) -> np.ndarray:
    """Convert calo-layer-2 jet hwPhi to phi in rad, [0, 2 pi) for hwPhi in 0..143.

    The bin width is 2 pi / 144; CMSSW's 0.0435 per unit is 0.3 % smaller.
    """
    return np.asarray(hw_phi, dtype=np.float64) * JET_HW_PHI.bin_width
