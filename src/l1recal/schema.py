"""Column names, hardware binning and reference figures, defined once.

Every stage, test and document takes its column names, bin widths and integer
ranges from here. Hardware integers follow the CMS uGMT and calo-layer-2
encodings; the bin widths are those of the ZeroBias re-calibration study
(muons: its Table 2, jets: its Table 4).

Muon pT convention: pT = hwPt * 0.5 GeV, the study's "multiply by the bin width"
reading. The uGMT firmware convention is (hwPt - 1) * 0.5 GeV, one bin lower; the
simulator writes integers with the same convention this module converts with, so
the two agree within the project. Real uGMT integers are read with the same
multiplication, which shifts every L1 pT up by 0.5 GeV; the models learn that
offset as part of the correction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

TWO_PI = 2.0 * math.pi


@dataclass(frozen=True)
class HardwareField:
    """A hardware integer and its physical meaning.

    Attributes:
        name: column stem in the raw event layout.
        minimum: smallest stored integer.
        maximum: largest stored integer.
        bin_width: physical value of one integer step (GeV or rad or unitless).
    """

    name: str
    minimum: int
    maximum: int
    bin_width: float


# Muon L1 inputs (uGMT encoding).
MUON_HW_PT = HardwareField("hwPtL1", 0, 2**9 - 1, 0.5)
MUON_HW_ETA = HardwareField("hwEtaL1", -(2**8), 2**8 - 1, 0.0870 / 8)
MUON_HW_PHI = HardwareField("hwPhiL1", 0, 2**10 - 1, TWO_PI / 576)
MUON_HW_SIGN = HardwareField("hwSignL1", 0, 1, 1.0)
MUON_HW_FIELDS = (MUON_HW_PT, MUON_HW_ETA, MUON_HW_PHI, MUON_HW_SIGN)

#: Number of phi bins actually used by the uGMT (hwPhi in 0..575, 10 bits stored).
MUON_PHI_BINS = 576

# Calo-layer-2 jet L1 values.
JET_HW_PT = HardwareField("hwPt", 0, 2**11 - 1, 0.5)
JET_HW_ETA = HardwareField("hwEta", -(2**7), 2**7 - 1, 0.0870 / 2)
JET_HW_PHI = HardwareField("hwPhi", 0, 2**8 - 1, TWO_PI / 144)
JET_PHI_BINS = 144

# Raw event layout: one row per event, fixed slots per object type.
N_MUON_SLOTS = 8
N_JET_SLOTS = 12
N_EGAMMA_SLOTS = 12
N_TAU_SLOTS = 12

N_MATCHED_MUONS = "nMatchedMuons"
N_JETS = "nJets"
N_EGAMMAS = "nEGammas"
N_TAUS = "nTaus"

#: L1 features of a matched muon slot, hardware integers.
MUON_L1_FEATURES = ("hwPtL1", "hwEtaL1", "hwPhiL1", "hwSignL1")
#: Offline (Kalman BMTF) features of a matched muon slot, physical units:
#: pT in GeV, eta unitless, phi in rad [-pi, pi), dXY in cm, charge in {-1, 1}.
MUON_RECO_FEATURES = (
    "ptReco",
    "etaExtRecoSt1",
    "phiExtRecoSt1",
    "etaVtxReco",
    "phiVtxReco",
    "dXYReco",
    "chargeReco",
)
#: L1 features of an unmatched muon, stored in their own columns.
MUON_UNMATCHED_FEATURES = tuple(f"{name}Unmatched" for name in MUON_L1_FEATURES)
#: The 15 features of one muon slot.
MUON_SLOT_FEATURES = MUON_L1_FEATURES + MUON_RECO_FEATURES + MUON_UNMATCHED_FEATURES

JET_FEATURES = ("jetHwPt", "jetHwEta", "jetHwPhi")
EGAMMA_FEATURES = ("egHwPt", "egHwEta", "egHwPhi", "egHwIso")
TAU_FEATURES = ("tauHwPt", "tauHwEta", "tauHwPhi", "tauHwIso", "tauHwQual")

#: Integer columns of the raw layout, per feature stem.
RAW_INTEGER_FEATURES = frozenset(
    MUON_L1_FEATURES
    + MUON_UNMATCHED_FEATURES
    + ("chargeReco",)
    + JET_FEATURES
    + EGAMMA_FEATURES
    + TAU_FEATURES
)


def slot_column(feature: str, slot: int) -> str:
    """Return the raw-layout column of one object slot, e.g. ``hwPtL1_3``."""
    return f"{feature}_{slot}"


def raw_event_columns() -> list[str]:
    """Return every column of the default raw event layout, in file order."""
    columns = [N_MATCHED_MUONS]
    for slot in range(N_MUON_SLOTS):
        columns += [slot_column(f, slot) for f in MUON_SLOT_FEATURES]
    for count, features, slots in (
        (N_JETS, JET_FEATURES, N_JET_SLOTS),
        (N_EGAMMAS, EGAMMA_FEATURES, N_EGAMMA_SLOTS),
        (N_TAUS, TAU_FEATURES, N_TAU_SLOTS),
    ):
        columns.append(count)
        for slot in range(slots):
            columns += [slot_column(f, slot) for f in features]
    return columns


def muon_ingest_columns() -> list[str]:
    """Return the raw columns the muon ingest stage reads."""
    columns = [N_MATCHED_MUONS]
    for slot in range(N_MUON_SLOTS):
        columns += [slot_column(f, slot) for f in MUON_L1_FEATURES]
        columns += [
            slot_column(f, slot) for f in ("ptReco", "etaVtxReco", "phiVtxReco")
        ]
    return columns


# Flattened muon table: one row per matched muon.
MUON_TABLE_COLUMNS = (
    "hwPtL1",
    "hwEtaL1",
    "hwPhiL1",
    "hwSignL1",
    "ptReco",
    "etaVtxReco",
    "phiVtxReco",
)

# Pre-processed muon table: physical L1 inputs, offline values, corrections.
#: Model inputs in physical units: pT in GeV, eta, phi in rad [0, 2 pi), sign in {0, 1}.
MUON_INPUTS = ("ptL1", "etaL1", "phiL1", "signL1")
#: Offline values in physical units: pT in GeV, eta, phi in rad [0, 2 pi).
MUON_OFFLINE = ("ptReco", "etaVtxReco", "phiVtxReco")
#: Regression targets, L1 minus offline: dpT in GeV, deta, dphi in rad wrapped to [-pi, pi).
MUON_TARGETS = ("dPt", "dEta", "dPhi")
#: Metric names, in the order of the study's RMSE table.
MUON_METRICS = ("phi", "eta", "pt_rel")

# Raw ZeroBias jet events: one row per event, up to 12 L1 jets and 35 offline
# PF jets (140 PF values: pt, eta, phi, mass), zero-padded after the count.
N_PF_JET_SLOTS = 35
N_PF_JETS = "nPFJets"
#: L1 jet features per slot (hardware integers): columns jetHwPt_{j} etc., with count nJets.
L1_JET_FEATURES = JET_FEATURES
#: PF jet features per slot: pT in GeV, eta, phi in rad [-pi, pi), mass in GeV.
PF_JET_FEATURES = ("pfJetPt", "pfJetEta", "pfJetPhi", "pfJetMass")
#: Matching cone: a PF jet matches its nearest L1 jet when dR is strictly below this.
JET_MATCH_DR = 0.4
#: Flattened jet table: one row per matched L1 jet.
JET_TABLE_COLUMNS = ("event", "l1Index", "hwPt", "hwEta", "hwPhi", "ptPF", "nMatchedPF", "maxDR")
#: Match records: one row per matched PF jet.
JET_MATCH_COLUMNS = ("event", "pfIndex", "l1Index", "dR")


def raw_jet_event_columns() -> list[str]:
    """Return every column of the default raw jet event layout, in file order."""
    columns = [N_JETS]
    for slot in range(N_JET_SLOTS):
        columns += [slot_column(f, slot) for f in L1_JET_FEATURES]
    columns.append(N_PF_JETS)
    for slot in range(N_PF_JET_SLOTS):
        columns += [slot_column(f, slot) for f in PF_JET_FEATURES]
    return columns


# Pre-processed jet table: physical L1 inputs, the summed matched PF pT, the correction.
#: Jet model inputs: pT in GeV, eta, phi in rad [0, 2 pi).
JET_INPUTS = ("ptL1", "etaL1", "phiL1")
#: Offline reference: summed pT of the PF jets matched to the L1 jet, GeV.
JET_OFFLINE = ("ptPF",)
#: Regression target, L1 minus offline pT in GeV.
JET_TARGETS = ("dPt",)
#: Relative pT residual (pT - pT_PF) / pT_PF.
JET_METRICS = ("pt_rel",)

# The study's reference figures (RMSE on its test split).
STUDY_GMT_RMSE = {"phi": 0.499, "eta": 0.032, "pt_rel": 0.493}
STUDY_MODEL_RMSE = {
    "NN 128x4": {"phi": 0.136, "eta": 0.030, "pt_rel": 0.259},
    "NN 32x3": {"phi": 0.136, "eta": 0.030, "pt_rel": 0.274},
    "Falkon Gaussian M=500": {"phi": 0.136, "eta": 0.030, "pt_rel": 0.270},
    "Falkon Gaussian M=100": {"phi": 0.137, "eta": 0.030, "pt_rel": 0.304},
    "Falkon linear M=100": {"phi": 0.173, "eta": 0.031, "pt_rel": 0.288},
    "Falkon polynomial M=100 deg 5": {"phi": 0.138, "eta": 0.030, "pt_rel": 0.272},
}
STUDY_MUON_ROWS = 1_336_160
STUDY_JET_RMSE = {"l1": 1.102, "nn_id6": 0.52}

# Track-finder regions in |eta|.
BARREL_MAX_ABS_ETA = 0.83
OVERLAP_MAX_ABS_ETA = 1.24
ENDCAP_MAX_ABS_ETA = 2.4
