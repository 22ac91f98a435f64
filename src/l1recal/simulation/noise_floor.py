"""Noise floor: the lowest RMSE any model can reach on simulated muons.

The models see only the four L1 integers. The simulated bend and pT response do
not depend on phi, and phi_vtx is uniform, so for each cell of (hwPtL1,
hwEtaL1, hwSignL1) the best prediction of a correction is its conditional mean
(phi, eta) and the best pT prediction for the relative residual is
p* = E[1/pT] / E[1/pT^2]. The floor is the pooled within-cell spread of each
metric, estimated on a large independent sample with one degree of freedom
removed per cell, so that cells with few muons do not bias it low.

The relative pT residual is heavy-tailed (a soft muon measured high), so its
in-cell optimum needs many muons per cell. Its cells pool what the simulated pT
response does not depend on: the charge, and eta inside bins of
_PT_CELL_ETA_BINS hardware units (0.087). With exact cells the in-sample
estimate came out about 8 % below the loss of the same per-cell optimum applied
to an independent sample; with pooled cells the two agree within about 3 %.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from l1recal.config import MuonPhysics
from l1recal.schema import MUON_HW_ETA
from l1recal.simulation.muons import simulate_muons
from l1recal.units import (
    muon_eta,
    muon_phi_rad,
    muon_pt_gev,
    wrap_delta_phi,
    wrap_phi_positive,
)

_CHUNK_MUONS = 1_000_000
_PT_CELL_ETA_BINS = 8


def estimate_noise_floor(
    physics: MuonPhysics, n_muons: int, seed: int, pt_window_gev: tuple[float, float]
) -> dict[str, float | int]:
    """Estimate the per-metric RMSE floor and the L1 baseline on ``n_muons`` fresh muons.

    Args:
        physics: simulator settings, the same as for the data set.
        n_muons: muons drawn before the pT window (the estimate uses those inside).
        seed: seed of this independent sample.
        pt_window_gev: exclusive L1 pT window in GeV, as in pre-processing.

    Returns:
        ``{"phi", "eta", "pt_rel"}`` floors (rad, unitless, unitless), the
        same metrics for the uncorrected L1 values under ``gmt_*``, and the
        number of muons and cells used.
    """
    rng = np.random.default_rng(seed)
    frames = []
    for start in range(0, n_muons, _CHUNK_MUONS):
        sample = simulate_muons(rng, min(_CHUNK_MUONS, n_muons - start), physics)
        pt_l1 = muon_pt_gev(sample.hw_pt)
        keep = (pt_l1 > pt_window_gev[0]) & (pt_l1 < pt_window_gev[1])
        dphi = wrap_delta_phi(
            muon_phi_rad(sample.hw_phi) - wrap_phi_positive(sample.phi_vtx)
        )
        frames.append(
            pd.DataFrame(
                {
                    "cell": _cell_key(sample.hw_pt, sample.hw_eta, sample.hw_sign)[
                        keep
                    ],
                    "pt_cell": _cell_key(
                        sample.hw_pt,
                        np.abs(sample.hw_eta) // _PT_CELL_ETA_BINS,
                        np.zeros_like(sample.hw_sign),
                    )[keep],
                    "dphi": dphi[keep],
                    "deta": (muon_eta(sample.hw_eta) - sample.eta_vtx)[keep],
                    "inv_pt": 1.0 / sample.pt_reco[keep],
                    "pt_rel_l1": (pt_l1[keep] - sample.pt_reco[keep])
                    / sample.pt_reco[keep],
                }
            )
        )
    table = pd.concat(frames, ignore_index=True)
    table["inv_pt2"] = table["inv_pt"] ** 2
    n_total = len(table)

    grouped = table.groupby("cell")
    n_cells = grouped.ngroups
    dof = n_total - n_cells
    floors: dict[str, float | int] = {}
    for metric, column in (("phi", "dphi"), ("eta", "deta")):
        within = grouped[column].var(ddof=0) * grouped[column].count()
        floors[metric] = float(np.sqrt(within.sum() / dof))
    pt_grouped = table.groupby("pt_cell")
    sums = pt_grouped[["inv_pt", "inv_pt2"]].sum()
    # Per cell: min over p of sum (p / pT - 1)^2 = n - (sum 1/pT)^2 / sum 1/pT^2.
    loss = pt_grouped["inv_pt"].count() - sums["inv_pt"] ** 2 / sums["inv_pt2"]
    floors["pt_rel"] = float(np.sqrt(loss.sum() / (n_total - pt_grouped.ngroups)))

    floors["gmt_phi"] = float(np.sqrt(np.mean(table["dphi"] ** 2)))
    floors["gmt_eta"] = float(np.sqrt(np.mean(table["deta"] ** 2)))
    floors["gmt_pt_rel"] = float(np.sqrt(np.mean(table["pt_rel_l1"] ** 2)))
    floors["muons"] = n_total
    floors["cells"] = n_cells
    floors["pt_cells"] = pt_grouped.ngroups
    return floors


def _cell_key(hw_pt: np.ndarray, hw_eta: np.ndarray, hw_sign: np.ndarray) -> np.ndarray:
    eta_index = hw_eta.astype(np.int64) - MUON_HW_ETA.minimum
    return (hw_pt.astype(np.int64) * 1024 + eta_index) * 2 + hw_sign.astype(np.int64)
