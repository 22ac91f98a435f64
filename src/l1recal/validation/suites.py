"""Expectation suites of every validated table, built in code.

Each file has a layout suite, run once on a zero-row frame with the file's
columns (the column-set check), and row suites, run on the data. A raw event
file has one row suite per batch of :func:`l1recal.validation.derived.slot_batches`
(one count batch per object type and one stacked batch per slot feature). These
suites contain only per-row expectations, so that their counts add up over chunks. A flattened
table has one row suite, which also contains table-wide expectations (row count,
uniqueness, duplicate fraction) and runs on the whole table.

Expectations on a derived column (see :mod:`l1recal.validation.derived`) carry
``meta = {"column": <source column>, "rows": <which rows>}``, which the
reports show in place of the derived name.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import great_expectations as gx
import great_expectations.expectations as gxe

from l1recal.config import JetValidateSettings, ValidateSettings
from l1recal.schema import (
    JET_HW_ETA,
    JET_HW_PHI,
    JET_HW_PT,
    JET_MATCH_COLUMNS,
    JET_MATCH_DR,
    JET_PHI_BINS,
    JET_TABLE_COLUMNS,
    L1_JET_FEATURES,
    MUON_HW_ETA,
    MUON_HW_PT,
    MUON_HW_SIGN,
    MUON_PHI_BINS,
    MUON_RECO_FEATURES,
    MUON_SLOT_FEATURES,
    MUON_TABLE_COLUMNS,
    N_JET_SLOTS,
    N_JETS,
    N_MATCHED_MUONS,
    N_MUON_SLOTS,
    N_PF_JET_SLOTS,
    N_PF_JETS,
    PF_JET_FEATURES,
    slot_column,
)
from l1recal.validation.derived import (
    IS_DUPLICATE,
    L1_JET_IN_TABLE,
    MATCH_RECORDS,
    SlotGroup,
    filled_column,
    padding_column,
)

#: Largest physical energy accepted for a PF jet pT or mass, GeV: the LHC Run 3
#: centre-of-mass energy. It only rejects garbage and inf.
MAX_ENERGY_GEV = 13_600.0
#: Largest abs(dXY) accepted, cm: the outer radius of the CMS muon system is
#: about 750 cm, so only garbage and inf fail.
MAX_ABS_DXY_CM = 1_000.0

#: Used integer ranges (minimum, maximum) per feature stem. The uGMT stores
#: hwPhi in 10 bits but uses 0..575; the calo layer 2 stores jet hwPhi in 8
#: bits but uses 0..143.
MUON_L1_RANGES = {
    "hwPtL1": (MUON_HW_PT.minimum, MUON_HW_PT.maximum),
    "hwEtaL1": (MUON_HW_ETA.minimum, MUON_HW_ETA.maximum),
    "hwPhiL1": (0, MUON_PHI_BINS - 1),
    "hwSignL1": (MUON_HW_SIGN.minimum, MUON_HW_SIGN.maximum),
}
JET_L1_RANGES = {
    "hwPt": (JET_HW_PT.minimum, JET_HW_PT.maximum),
    "hwEta": (JET_HW_ETA.minimum, JET_HW_ETA.maximum),
    "hwPhi": (JET_HW_PHI.minimum, JET_PHI_BINS - 1),
}
_RAW_JET_RANGES = dict(zip(L1_JET_FEATURES, JET_L1_RANGES.values(), strict=True))


def _between(
    column: str,
    minimum: float,
    maximum: float | None,
    *,
    strict_min: bool = False,
    strict_max: bool = False,
    meta: dict | None = None,
) -> gxe.ExpectColumnValuesToBeBetween:
    return gxe.ExpectColumnValuesToBeBetween(
        column=column,
        min_value=minimum,
        max_value=maximum,
        strict_min=strict_min,
        strict_max=strict_max,
        meta=meta or {},
    )


def _in_set(
    column: str,
    values: Sequence,
    *,
    mostly: float = 1.0,
    meta: dict | None = None,
) -> gxe.ExpectColumnValuesToBeInSet:
    return gxe.ExpectColumnValuesToBeInSet(
        column=column, value_set=list(values), mostly=mostly, meta=meta or {}
    )


def _padding_zero(stem: str, group: SlotGroup) -> gxe.Expectation:
    return _in_set(
        padding_column(stem),
        [0],
        meta={"column": stem, "rows": f"padding slots, slot >= {group.count}"},
    )


def _filled_meta(stem: str, group: SlotGroup) -> dict:
    return {"column": stem, "rows": f"filled slots, slot < {group.count}"}


def _not_null(columns: Sequence[str]) -> list[gxe.Expectation]:
    return [gxe.ExpectColumnValuesToNotBeNull(column=name) for name in columns]


def layout_suite(
    name: str, columns: Sequence[str], *, exact: bool
) -> gx.ExpectationSuite:
    """Build the column-set suite of a table.

    Args:
        name: table name; the suite is ``<name>.columns``.
        columns: the columns of the layout.
        exact: reject extra columns too (flattened tables written by ingest);
            raw files may carry extra columns, which the stages ignore.
    """
    return gx.ExpectationSuite(
        name=f"{name}.columns",
        expectations=[
            gxe.ExpectTableColumnsToMatchSet(
                column_set=list(columns), exact_match=exact
            )
        ],
    )


#: Muon slots of the raw muon layout; the offline values mark a slot as matched.
MUON_SLOTS = SlotGroup(
    count=N_MATCHED_MUONS,
    slots=N_MUON_SLOTS,
    features=MUON_SLOT_FEATURES,
    padded=MUON_RECO_FEATURES,
    filled_checks=("ptReco", "chargeReco"),
    filled_name="filledSlots",
)
#: L1 jet slots, in the raw muon layout and in the raw jet layout.
L1_JET_SLOTS = SlotGroup(
    count=N_JETS,
    slots=N_JET_SLOTS,
    features=L1_JET_FEATURES,
    padded=L1_JET_FEATURES,
    filled_checks=("jetHwPt",),
    filled_name="filledJets",
)
#: PF jet slots of the raw jet layout.
PF_JET_SLOTS = SlotGroup(
    count=N_PF_JETS,
    slots=N_PF_JET_SLOTS,
    features=PF_JET_FEATURES,
    padded=PF_JET_FEATURES,
    filled_checks=("pfJetPt",),
    filled_name="filledPFJets",
)
RAW_MUON_GROUPS = (MUON_SLOTS, L1_JET_SLOTS)
RAW_JET_GROUPS = (L1_JET_SLOTS, PF_JET_SLOTS)


def _count_suites(
    prefix: str, groups: Sequence[SlotGroup]
) -> list[gx.ExpectationSuite]:
    """Build one suite per object count: its range and its agreement with the filled slots."""
    return [
        gx.ExpectationSuite(
            name=f"{prefix}.{group.count}",
            expectations=[
                _between(group.count, 0, group.slots),
                gxe.ExpectColumnPairValuesToBeEqual(
                    column_A=group.count,
                    column_B=group.filled_name,
                    meta={
                        "column": group.count,
                        "rows": f"compared with {group.filled_name}",
                    },
                ),
                *_not_null([group.count]),
            ],
        )
        for group in groups
    ]


def _slot_suites(
    prefix: str,
    group: SlotGroup,
    ranges: dict[str, tuple[float, float] | list[int]],
    filled_checks: dict[str, gxe.Expectation],
) -> list[gx.ExpectationSuite]:
    """Build one suite per stacked slot feature: range, no null, padding, filled checks.

    A range is (minimum, maximum), inclusive, or a list of the allowed values.
    """
    result = []
    for stem in group.features:
        bounds = ranges[stem]
        if isinstance(bounds, list):
            expectations = [_in_set(stem, bounds), *_not_null([stem])]
        else:
            expectations = [_between(stem, *bounds), *_not_null([stem])]
        if stem in group.padded:
            expectations.append(_padding_zero(stem, group))
        if stem in filled_checks:
            expectations.append(filled_checks[stem])
        result.append(
            gx.ExpectationSuite(name=f"{prefix}.{stem}", expectations=expectations)
        )
    return result


def _l1_jet_suites(prefix: str) -> list[gx.ExpectationSuite]:
    """Build the L1 jet slot suites; every slot within nJets must contain a jet with hwPt >= 1."""
    pt = "jetHwPt"
    return _slot_suites(
        prefix,
        L1_JET_SLOTS,
        _RAW_JET_RANGES,
        {
            pt: _between(
                filled_column(pt),
                1,
                JET_HW_PT.maximum,
                meta=_filled_meta(pt, L1_JET_SLOTS),
            )
        },
    )


def raw_muon_suites(settings: ValidateSettings) -> list[gx.ExpectationSuite]:
    """Build the row suites of raw muon events.

    They check every muon slot feature (matched and unmatched L1 integers,
    offline values), the slot bookkeeping of ``nMatchedMuons`` and the L1 jet
    slots of the same file. The e/gamma and tau slots are only part of the
    column set.
    """
    eta_limit = settings.max_abs_offline_eta
    ranges: dict[str, tuple[float, float] | list[int]] = {}
    for stem, bounds in MUON_L1_RANGES.items():
        ranges[stem] = bounds
        ranges[f"{stem}Unmatched"] = bounds
    sign_bits = [MUON_HW_SIGN.minimum, MUON_HW_SIGN.maximum]
    ranges["hwSignL1"] = ranges["hwSignL1Unmatched"] = sign_bits
    ranges.update(
        {
            "ptReco": (0.0, settings.max_offline_pt_gev),
            "etaExtRecoSt1": (-eta_limit, eta_limit),
            "phiExtRecoSt1": (-math.pi, math.pi),
            "etaVtxReco": (-eta_limit, eta_limit),
            "phiVtxReco": (-math.pi, math.pi),
            "dXYReco": (-MAX_ABS_DXY_CM, MAX_ABS_DXY_CM),
            # Padding slots hold charge 0; filled slots are checked below.
            "chargeReco": [-1, 0, 1],
        }
    )
    filled_checks = {
        "chargeReco": _in_set(
            filled_column("chargeReco"),
            [-1, 1],
            meta=_filled_meta("chargeReco", MUON_SLOTS),
        ),
        "ptReco": _between(
            filled_column("ptReco"),
            0.0,
            settings.max_offline_pt_gev,
            strict_min=True,
            meta=_filled_meta("ptReco", MUON_SLOTS),
        ),
    }
    return [
        *_count_suites("raw-muon", RAW_MUON_GROUPS),
        *_slot_suites("raw-muon", MUON_SLOTS, ranges, filled_checks),
        *_l1_jet_suites("raw-muon"),
    ]


def raw_muon_read_columns() -> list[str]:
    """Return the raw muon columns the row suites read."""
    return _group_columns(RAW_MUON_GROUPS)


def _group_columns(groups: Sequence[SlotGroup]) -> list[str]:
    columns = []
    for group in groups:
        columns.append(group.count)
        columns += [
            slot_column(f, slot) for slot in range(group.slots) for f in group.features
        ]
    return columns


def _table_expectations(
    name_columns: Sequence[str], min_rows: int, max_duplicate_fraction: float
) -> list[gxe.Expectation]:
    return [
        gxe.ExpectTableRowCountToBeBetween(min_value=min_rows),
        _in_set(
            IS_DUPLICATE,
            [False],
            mostly=1.0 - max_duplicate_fraction,
            meta={"column": "(all columns)", "rows": "duplicate of an earlier row"},
        ),
        *_not_null(name_columns),
    ]


def muon_table_suites(settings: ValidateSettings) -> list[gx.ExpectationSuite]:
    """Build the row suite of the flattened muon table (one row per matched muon)."""
    eta_limit = settings.max_abs_offline_eta
    expectations = [
        _between(feature, low, high)
        for feature, (low, high) in MUON_L1_RANGES.items()
        if feature != "hwSignL1"
    ]
    expectations.append(
        _in_set("hwSignL1", [MUON_HW_SIGN.minimum, MUON_HW_SIGN.maximum])
    )
    expectations += [
        _between("ptReco", 0.0, settings.max_offline_pt_gev, strict_min=True),
        _between("etaVtxReco", -eta_limit, eta_limit),
        _between("phiVtxReco", -math.pi, math.pi),
    ]
    expectations += _table_expectations(
        MUON_TABLE_COLUMNS, settings.min_rows, settings.max_duplicate_fraction
    )
    return [gx.ExpectationSuite(name="muon-table", expectations=expectations)]


def raw_jet_suites(settings: JetValidateSettings) -> list[gx.ExpectationSuite]:
    """Build the row suites of raw jet events: L1 jet slots and PF jet slots."""
    eta_limit = settings.max_abs_pf_eta
    pf_ranges = {
        "pfJetPt": (0.0, MAX_ENERGY_GEV),
        "pfJetEta": (-eta_limit, eta_limit),
        "pfJetPhi": (-math.pi, math.pi),
        "pfJetMass": (0.0, MAX_ENERGY_GEV),
    }
    pt = "pfJetPt"
    filled_checks = {
        pt: _between(
            filled_column(pt),
            0.0,
            MAX_ENERGY_GEV,
            strict_min=True,
            meta=_filled_meta(pt, PF_JET_SLOTS),
        )
    }
    return [
        *_count_suites("raw-jet", RAW_JET_GROUPS),
        *_l1_jet_suites("raw-jet"),
        *_slot_suites("raw-jet", PF_JET_SLOTS, pf_ranges, filled_checks),
    ]


def raw_jet_read_columns() -> list[str]:
    """Return the raw jet columns the row suites read (the whole default layout)."""
    return _group_columns(RAW_JET_GROUPS)


def jet_table_suites(settings: JetValidateSettings) -> list[gx.ExpectationSuite]:
    """Build the row suite of the flattened jet table (one row per matched L1 jet)."""
    expectations = [
        _between("event", 0, None),
        _between("l1Index", 0, N_JET_SLOTS - 1),
        *(
            _between(feature, low, high)
            for feature, (low, high) in JET_L1_RANGES.items()
        ),
        _between("ptPF", 0.0, MAX_ENERGY_GEV, strict_min=True),
        _between("nMatchedPF", 1, N_PF_JET_SLOTS),
        _between("maxDR", 0.0, JET_MATCH_DR, strict_max=True),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["event", "l1Index"]),
        gxe.ExpectColumnPairValuesToBeEqual(
            column_A="nMatchedPF",
            column_B=MATCH_RECORDS,
            meta={"column": "nMatchedPF", "rows": f"equal to {MATCH_RECORDS}"},
        ),
    ]
    expectations += _table_expectations(
        JET_TABLE_COLUMNS, settings.min_rows, settings.max_duplicate_fraction
    )
    return [gx.ExpectationSuite(name="jet-table", expectations=expectations)]


def jet_match_suites(settings: JetValidateSettings) -> list[gx.ExpectationSuite]:
    """Build the row suite of the jet match records (one row per matched PF jet)."""
    expectations = [
        _between("event", 0, None),
        _between("pfIndex", 0, N_PF_JET_SLOTS - 1),
        _between("l1Index", 0, N_JET_SLOTS - 1),
        _between("dR", 0.0, JET_MATCH_DR, strict_max=True),
        # A PF jet is matched to at most one L1 jet.
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["event", "pfIndex"]),
        _in_set(
            L1_JET_IN_TABLE,
            [True],
            meta={"column": "l1Index", "rows": "(event, l1Index) not in the jet table"},
        ),
        *_not_null(JET_MATCH_COLUMNS),
    ]
    return [gx.ExpectationSuite(name="jet-matches", expectations=expectations)]
