"""Request and response bodies of the service, validated against the hardware ranges.

A request carries L1 objects as hardware integers, either as equal-length
arrays (one array per integer, e.g. ``{"hwPtL1": [...], "hwEtaL1": [...]}``)
or as a list of records (``{"muons": [{"hwPtL1": 20, ...}, ...]}``). Every
integer must be a JSON integer (no floats, strings or booleans) inside the
range its hardware word can store, as defined in :mod:`l1recal.schema`. A
violation raises a pydantic ``ValidationError`` whose ``loc`` names the field
and the index and whose message gives the value and the allowed range; BentoML
returns it to the client as HTTP 400.
"""

# Field names are the column names of the raw data layout (hwPtL1, ptL1, ...), hence mixedCase.
# ruff: noqa: N815

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    WithJsonSchema,
    model_validator,
)

from l1recal.schema import (
    JET_HW_ETA,
    JET_HW_PHI,
    JET_HW_PT,
    MUON_HW_ETA,
    MUON_HW_PHI,
    MUON_HW_PT,
    MUON_HW_SIGN,
    HardwareField,
)

MUON_FIELDS = (MUON_HW_PT, MUON_HW_ETA, MUON_HW_PHI, MUON_HW_SIGN)
JET_FIELDS = (JET_HW_PT, JET_HW_ETA, JET_HW_PHI)
MUON_COLUMNS = tuple(field.name for field in MUON_FIELDS)
JET_COLUMNS = tuple(field.name for field in JET_FIELDS)

_DESCRIPTIONS = {
    "hwPtL1": "uGMT muon pT word (9 bits); pT = hwPtL1 * 0.5 GeV.",
    "hwEtaL1": "uGMT muon eta word (9 bits, signed); eta = hwEtaL1 * 0.010875.",
    "hwPhiL1": "uGMT muon phi word (10 bits) at station 2; phi = hwPhiL1 * 2 pi / 576 rad, "
    "wrapped into [0, 2 pi).",
    "hwSignL1": "uGMT charge sign bit: 0 for mu+, 1 for mu-.",
    "hwPt": "Calo-layer-2 jet pT word (11 bits); pT = hwPt * 0.5 GeV.",
    "hwEta": "Calo-layer-2 jet eta word (8 bits, signed); eta = hwEta * 0.0435.",
    "hwPhi": "Calo-layer-2 jet phi word (8 bits); phi = hwPhi * 2 pi / 144 rad, "
    "wrapped into [0, 2 pi).",
}


def _range_checker(field: HardwareField) -> Any:
    def check(value: int) -> int:
        if not field.minimum <= value <= field.maximum:
            raise ValueError(
                f"{field.name} = {value} is outside the allowed range "
                f"{field.minimum}..{field.maximum}"
            )
        return value

    return check


def hardware_integer(field: HardwareField) -> Any:
    """Return the annotated type of one hardware integer: a strict int inside the field's range."""
    return Annotated[
        StrictInt,
        AfterValidator(_range_checker(field)),
        WithJsonSchema(
            {
                "type": "integer",
                "minimum": field.minimum,
                "maximum": field.maximum,
                "description": _DESCRIPTIONS[field.name],
            }
        ),
    ]


MuonHwPt = hardware_integer(MUON_HW_PT)
MuonHwEta = hardware_integer(MUON_HW_ETA)
MuonHwPhi = hardware_integer(MUON_HW_PHI)
MuonHwSign = hardware_integer(MUON_HW_SIGN)
JetHwPt = hardware_integer(JET_HW_PT)
JetHwEta = hardware_integer(JET_HW_ETA)
JetHwPhi = hardware_integer(JET_HW_PHI)


class Strict(BaseModel):
    """Base of the request bodies: unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid")


class MuonRecord(Strict):
    """One L1 muon as uGMT hardware integers."""

    hwPtL1: MuonHwPt
    hwEtaL1: MuonHwEta
    hwPhiL1: MuonHwPhi
    hwSignL1: MuonHwSign


class JetRecord(Strict):
    """One L1 jet as calo-layer-2 hardware integers."""

    hwPt: JetHwPt
    hwEta: JetHwEta
    hwPhi: JetHwPhi


def _hardware_arrays(
    request: BaseModel, columns: tuple[str, ...], records_field: str
) -> dict[str, np.ndarray]:
    records = getattr(request, records_field)
    if records is not None:
        return records_to_arrays(records, columns)
    return {
        column: np.asarray(getattr(request, column), dtype=np.int64)
        for column in columns
    }


def _check_batch_form(
    request: BaseModel, columns: tuple[str, ...], records_field: str
) -> None:
    """Require either all arrays with equal lengths or the list of records, not both."""
    given = [column for column in columns if getattr(request, column) is not None]
    names = ", ".join(columns)
    if getattr(request, records_field) is not None:
        if given:
            raise ValueError(
                f"give either the arrays {names} or the list {records_field}, not both "
                f"(got {records_field} and {', '.join(given)})"
            )
        return
    if not given:
        raise ValueError(
            f"the request contains no objects: give the arrays {names}, "
            f"or a list of records in {records_field}"
        )
    missing = [column for column in columns if column not in given]
    if missing:
        raise ValueError(
            f"missing array(s) {', '.join(missing)}; every one of {names} is required"
        )
    lengths = {column: len(getattr(request, column)) for column in columns}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{column}: {length}" for column, length in lengths.items())
        raise ValueError(f"arrays must have equal lengths, got {listed}")


@dataclass(frozen=True)
class BatchRequestModels:
    """Request bodies of the batch endpoints, for one maximum batch size.

    Attributes:
        max_batch_size: the maximum number of objects in one request.
        muon: body of the muon batch endpoint.
        jet: body of the jet batch endpoint.
    """

    max_batch_size: int
    muon: type[BaseModel]
    jet: type[BaseModel]


def batch_request_models(max_batch_size: int) -> BatchRequestModels:
    """Build the batch request bodies that accept at most ``max_batch_size`` objects."""

    def array(description: str) -> Any:
        return Field(
            None, min_length=1, max_length=max_batch_size, description=description
        )

    class MuonBatch(Strict):
        """A batch of L1 muons: four equal-length arrays, or a list of records."""

        hwPtL1: list[MuonHwPt] | None = array(_DESCRIPTIONS["hwPtL1"])
        hwEtaL1: list[MuonHwEta] | None = array(_DESCRIPTIONS["hwEtaL1"])
        hwPhiL1: list[MuonHwPhi] | None = array(_DESCRIPTIONS["hwPhiL1"])
        hwSignL1: list[MuonHwSign] | None = array(_DESCRIPTIONS["hwSignL1"])
        muons: list[MuonRecord] | None = array(
            "The muons as records; use instead of the arrays."
        )

        @model_validator(mode="after")
        def _check_form(self) -> MuonBatch:
            _check_batch_form(self, MUON_COLUMNS, "muons")
            return self

        def hardware_arrays(self) -> dict[str, np.ndarray]:
            """Return each hardware integer as an int64 array (n,), keyed by field name."""
            return _hardware_arrays(self, MUON_COLUMNS, "muons")

    class JetBatch(Strict):
        """A batch of L1 jets: three equal-length arrays, or a list of records."""

        hwPt: list[JetHwPt] | None = array(_DESCRIPTIONS["hwPt"])
        hwEta: list[JetHwEta] | None = array(_DESCRIPTIONS["hwEta"])
        hwPhi: list[JetHwPhi] | None = array(_DESCRIPTIONS["hwPhi"])
        jets: list[JetRecord] | None = array(
            "The jets as records; use instead of the arrays."
        )

        @model_validator(mode="after")
        def _check_form(self) -> JetBatch:
            _check_batch_form(self, JET_COLUMNS, "jets")
            return self

        def hardware_arrays(self) -> dict[str, np.ndarray]:
            """Return each hardware integer as an int64 array (n,), keyed by field name."""
            return _hardware_arrays(self, JET_COLUMNS, "jets")

    return BatchRequestModels(max_batch_size, MuonBatch, JetBatch)


def records_to_arrays(
    records: list[BaseModel], columns: tuple[str, ...]
) -> dict[str, np.ndarray]:
    """Return each hardware integer of ``records`` as an int64 array (n,), keyed by field name."""
    return {
        column: np.fromiter(
            (getattr(record, column) for record in records),
            dtype=np.int64,
            count=len(records),
        )
        for column in columns
    }


class MuonPredictions(BaseModel):
    """Re-calibrated muons of a batch, one array entry per input muon, in input order."""

    model: str = Field(description="BentoML tag of the model that made the prediction.")
    ptL1: list[float] = Field(description="L1 pT in GeV.")
    etaL1: list[float] = Field(description="L1 eta.")
    phiL1: list[float] = Field(description="L1 phi at station 2 in rad, [0, 2 pi).")
    charge: list[int] = Field(description="L1 charge, +1 or -1.")
    pt: list[float] = Field(description="Re-calibrated pT in GeV.")
    eta: list[float] = Field(description="Re-calibrated eta.")
    phi: list[float] = Field(
        description="Re-calibrated phi at the vertex in rad, [0, 2 pi)."
    )


class MuonPrediction(BaseModel):
    """One re-calibrated muon (adaptive-batching endpoint)."""

    ptL1: float = Field(description="L1 pT in GeV.")
    etaL1: float = Field(description="L1 eta.")
    phiL1: float = Field(description="L1 phi at station 2 in rad, [0, 2 pi).")
    charge: int = Field(description="L1 charge, +1 or -1.")
    pt: float = Field(description="Re-calibrated pT in GeV.")
    eta: float = Field(description="Re-calibrated eta.")
    phi: float = Field(description="Re-calibrated phi at the vertex in rad, [0, 2 pi).")


class JetPredictions(BaseModel):
    """Calibrated jets of a batch, one array entry per input jet, in input order."""

    model: str = Field(description="BentoML tag of the model that made the prediction.")
    ptL1: list[float] = Field(description="L1 pT in GeV.")
    etaL1: list[float] = Field(description="L1 eta.")
    phiL1: list[float] = Field(description="L1 phi in rad, [0, 2 pi).")
    pt: list[float] = Field(description="Calibrated pT in GeV.")


class JetPrediction(BaseModel):
    """One calibrated jet (adaptive-batching endpoint)."""

    ptL1: float = Field(description="L1 pT in GeV.")
    etaL1: float = Field(description="L1 eta.")
    phiL1: float = Field(description="L1 phi in rad, [0, 2 pi).")
    pt: float = Field(description="Calibrated pT in GeV.")
