"""RMSE metrics of the re-calibration, in the form of the study's results table.

A model predicts corrections c = L1 - offline; the re-calibrated values are
L1 - c. The metrics are the RMSE of phi (rad, differences wrapped into
[-pi, pi)), of eta, and of the relative pT residual (pT_pred - pT_reco) / pT_reco.
The L1 (GMT) baseline is the same with c = 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from l1recal.units import wrap_delta_phi, wrap_phi_positive


def recalibrate(frame: pd.DataFrame, corrections: np.ndarray) -> pd.DataFrame:
    """Return re-calibrated pT (GeV), eta and phi (rad, [0, 2 pi)) for corrections (n, 3)."""
    return pd.DataFrame(
        {
            "pt": frame["ptL1"].to_numpy() - corrections[:, 0],
            "eta": frame["etaL1"].to_numpy() - corrections[:, 1],
            "phi": wrap_phi_positive(frame["phiL1"].to_numpy() - corrections[:, 2]),
        }
    )


def muon_rmse(
    frame: pd.DataFrame, corrections: np.ndarray | None = None
) -> dict[str, float]:
    """Return ``{"phi", "eta", "pt_rel"}`` RMSE of the re-calibrated muons against offline.

    Args:
        frame: a pre-processed split (physical L1 inputs and offline values).
        corrections: predicted corrections (n, 3) in physical units; None for the L1 baseline.
    """
    if corrections is None:
        corrections = np.zeros((len(frame), 3))
    predicted = recalibrate(frame, corrections)
    dphi = wrap_delta_phi(predicted["phi"].to_numpy() - frame["phiVtxReco"].to_numpy())
    deta = predicted["eta"].to_numpy() - frame["etaVtxReco"].to_numpy()
    pt_reco = frame["ptReco"].to_numpy()
    pt_rel = (predicted["pt"].to_numpy() - pt_reco) / pt_reco
    return {
        "phi": float(np.sqrt(np.mean(dphi**2))),
        "eta": float(np.sqrt(np.mean(deta**2))),
        "pt_rel": float(np.sqrt(np.mean(pt_rel**2))),
    }


def jet_rmse(
    frame: pd.DataFrame, corrections: np.ndarray | None = None
) -> dict[str, float]:
    """Return ``{"pt_rel"}``: RMSE of (pT - pT_PF) / pT_PF for re-calibrated L1 jets.

    Args:
        frame: a pre-processed jet split with ``ptL1`` and ``ptPF`` in GeV.
        corrections: predicted dPt (n, 1) in GeV; None for the L1 baseline.
    """
    pt = frame["ptL1"].to_numpy()
    if corrections is not None:
        pt = pt - np.asarray(corrections)[:, 0]
    pt_pf = frame["ptPF"].to_numpy()
    return {"pt_rel": float(np.sqrt(np.mean(((pt - pt_pf) / pt_pf) ** 2)))}
