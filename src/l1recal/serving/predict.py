"""Hardware integers in, re-calibrated physical values out.

The service and the tests call the same functions, so an HTTP response can be
compared with an in-process prediction of the same bundle. Inputs must already
be validated (:mod:`l1recal.serving.requests`); nothing here re-checks ranges.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from l1recal.errors import ModelError
from l1recal.evaluation.metrics import recalibrate
from l1recal.models.bundle import Recalibrator
from l1recal.schema import JET_INPUTS, MUON_INPUTS
from l1recal.units import (
    charge_from_sign,
    jet_eta,
    jet_phi_rad,
    jet_pt_gev,
    muon_eta,
    muon_phi_rad,
    muon_pt_gev,
    wrap_phi_positive,
)

#: Physical model inputs of each kind, as in the pre-processed splits.
KIND_INPUTS = {"muon": MUON_INPUTS, "jet": JET_INPUTS}


def muon_physical(hardware: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Convert uGMT muon integers to the physical model inputs.

    Args:
        hardware: int arrays (n,) keyed hwPtL1, hwEtaL1, hwPhiL1, hwSignL1.

    Returns:
        float64 arrays (n,): ptL1 in GeV, etaL1, phiL1 in rad wrapped into
        [0, 2 pi) (hwPhiL1 576..1023 fold back onto 0..447), signL1 in {0, 1}.
    """
    return {
        "ptL1": muon_pt_gev(hardware["hwPtL1"]),
        "etaL1": muon_eta(hardware["hwEtaL1"]),
        "phiL1": wrap_phi_positive(muon_phi_rad(hardware["hwPhiL1"])),
        "signL1": np.asarray(hardware["hwSignL1"], dtype=np.float64),
    }


def jet_physical(hardware: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Convert calo-layer-2 jet integers to the physical model inputs.

    Args:
        hardware: int arrays (n,) keyed hwPt, hwEta, hwPhi.

    Returns:
        float64 arrays (n,): ptL1 in GeV, etaL1, phiL1 in rad wrapped into
        [0, 2 pi) (hwPhi 144..255 fold back onto 0..111).
    """
    return {
        "ptL1": jet_pt_gev(hardware["hwPt"]),
        "etaL1": jet_eta(hardware["hwEta"]),
        "phiL1": wrap_phi_positive(jet_phi_rad(hardware["hwPhi"])),
    }


def check_model_inputs(recalibrator: Recalibrator, kind: str) -> None:
    """Raise :class:`ModelError` unless the bundle reads exactly the physical inputs of ``kind``."""
    expected = KIND_INPUTS[kind]
    columns = tuple(recalibrator.input_scaler.columns)
    if set(columns) != set(expected):
        raise ModelError(
            f"model {recalibrator.name} reads inputs {', '.join(columns)}, "
            f"but a {kind} model must read {', '.join(expected)}"
        )


def _model_matrix(
    recalibrator: Recalibrator, physical: dict[str, np.ndarray]
) -> np.ndarray:
    """Stack the inputs (n, k) in the column order the bundle's input scaler was fitted with."""
    return np.column_stack(
        [physical[name] for name in recalibrator.input_scaler.columns]
    )


def predict_muons(
    recalibrator: Recalibrator, hardware: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Re-calibrate a batch of muons.

    Args:
        recalibrator: a loaded muon bundle.
        hardware: validated int arrays (n,) keyed hwPtL1, hwEtaL1, hwPhiL1, hwSignL1.

    Returns:
        Arrays (n,): ptL1, etaL1, phiL1 (L1 values in GeV and rad), charge
        (+1 or -1), and the re-calibrated pt (GeV), eta and phi (rad, [0, 2 pi)).
    """
    physical = muon_physical(hardware)
    corrections = recalibrator.predict(_model_matrix(recalibrator, physical))
    calibrated = recalibrate(pd.DataFrame(physical), corrections)
    return {
        "ptL1": physical["ptL1"],
        "etaL1": physical["etaL1"],
        "phiL1": physical["phiL1"],
        "charge": charge_from_sign(hardware["hwSignL1"]),
        "pt": calibrated["pt"].to_numpy(),
        "eta": calibrated["eta"].to_numpy(),
        "phi": calibrated["phi"].to_numpy(),
    }


def predict_jets(
    recalibrator: Recalibrator, hardware: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Calibrate the pT of a batch of jets.

    Args:
        recalibrator: a loaded jet bundle, predicting dPt = pT(L1) - pT(PF) in GeV.
        hardware: validated int arrays (n,) keyed hwPt, hwEta, hwPhi.

    Returns:
        Arrays (n,): ptL1, etaL1, phiL1 (L1 values in GeV and rad) and the
        calibrated pt in GeV.
    """
    physical = jet_physical(hardware)
    corrections = recalibrator.predict(_model_matrix(recalibrator, physical))
    return {
        "ptL1": physical["ptL1"],
        "etaL1": physical["etaL1"],
        "phiL1": physical["phiL1"],
        "pt": physical["ptL1"] - corrections[:, 0],
    }
