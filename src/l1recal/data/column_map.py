"""Column maps: the names a user's files give to the project's per-object features.

A column map is a YAML file (shipped ones: ``column_maps/*.yaml``) with one
section per object type, ``muon``, ``l1_jet`` and ``pf_jet``. Each section
describes the storage of the objects of an event:

* ``layout: flat``: one column per slot, named by a pattern with ``{slot}``
  (``hwPtL1_{slot}``), and a ``count`` column with the filled slots per event;
* ``layout: jagged``: one variable-length array per event (NanoAOD
  ``L1Jet_hwPt``), with an optional ``count`` column (``nL1Jet``).

``columns`` maps each project feature to the user's column, either a name or
``{column: NAME, transform: T}``. Transforms: ``physical`` (the column contains
GeV / rad / eta, converted to the project's hardware integer with its bin
width), ``charge_to_sign`` (a charge in {-1, +1} to the uGMT sign bit).
Objects past the project's slots (8 muons, 12 L1 jets, 35 PF jets) are dropped.

:func:`read_mapped` streams the mapped objects of one source as (events, slots)
arrays with a count per event, checking types, counts and finiteness on the way.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from l1recal.data.readers import ColumnInfo, Source
from l1recal.errors import ConfigError, InputFileError
from l1recal.schema import (
    JET_HW_ETA,
    JET_HW_PHI,
    JET_HW_PT,
    JET_PHI_BINS,
    MUON_HW_ETA,
    MUON_HW_PHI,
    MUON_HW_PT,
    MUON_PHI_BINS,
    N_JET_SLOTS,
    N_MUON_SLOTS,
    N_PF_JET_SLOTS,
    HardwareField,
)
from l1recal.units import wrap_phi_positive

#: Folder of the shipped column maps, next to params.yaml.
COLUMN_MAP_DIR = Path(__file__).resolve().parents[3] / "column_maps"

Kind = Literal["integer", "floating"]


@dataclass(frozen=True)
class Feature:
    """A project feature of one object type.

    Attributes:
        kind: integer (hardware) or floating (physical) values.
        hardware: binning used by the ``physical`` transform; None for physical features.
        required: False for features that only feed statistics.
        phi_bins: number of used phi bins for a hardware phi, else None.
        counted: slots past the event's count are empty; False for the
            unmatched-muon columns, which fill their own slots from 0.
        read: ingest reads the column; False for features that a map may
            name but no stage uses.
    """

    kind: Kind
    hardware: HardwareField | None = None
    required: bool = True
    phi_bins: int | None = None
    counted: bool = True
    read: bool = True


#: Project features and slot counts per object type.
OBJECT_FEATURES: dict[str, dict[str, Feature]] = {
    "muon": {
        "hwPtL1": Feature("integer", MUON_HW_PT),
        "hwEtaL1": Feature("integer", MUON_HW_ETA),
        "hwPhiL1": Feature("integer", MUON_HW_PHI, phi_bins=MUON_PHI_BINS),
        "hwSignL1": Feature("integer"),
        "ptReco": Feature("floating"),
        "etaVtxReco": Feature("floating"),
        "phiVtxReco": Feature("floating"),
        "hwPtL1Unmatched": Feature(
            "integer", MUON_HW_PT, required=False, counted=False
        ),
    },
    "l1_jet": {
        "hwPt": Feature("integer", JET_HW_PT),
        "hwEta": Feature("integer", JET_HW_ETA),
        "hwPhi": Feature("integer", JET_HW_PHI, phi_bins=JET_PHI_BINS),
    },
    "pf_jet": {
        "pt": Feature("floating"),
        "eta": Feature("floating"),
        "phi": Feature("floating"),
        "mass": Feature("floating", required=False, read=False),
    },
}
OBJECT_SLOTS = {"muon": N_MUON_SLOTS, "l1_jet": N_JET_SLOTS, "pf_jet": N_PF_JET_SLOTS}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnSpec(_Strict):
    """The user's column of one feature and the conversion applied to it."""

    column: str
    transform: Literal["none", "physical", "charge_to_sign"] = "none"
    tree: str | None = Field(
        None, description="ROOT tree of this column (default: the section's tree)."
    )


class ObjectSpec(_Strict):
    """Storage layout of one object type in the user's files."""

    layout: Literal["flat", "jagged"] = "flat"
    count: str | None = Field(
        None, description="Column with the number of objects per event."
    )
    slots: int | None = Field(
        None,
        gt=0,
        description="Slots per event of a flat layout (default: the project's).",
    )
    tree: str | None = Field(
        None, description="ROOT tree of these columns (default: the map's tree)."
    )
    first_slot: int = Field(
        0,
        ge=0,
        description="Number that {slot} takes for the first slot (1 for hwPtL1Mu1 names).",
    )
    columns: dict[str, ColumnSpec]

    @model_validator(mode="before")
    @classmethod
    def _expand_names(cls, values: object) -> object:
        if isinstance(values, dict) and isinstance(values.get("columns"), dict):
            values = dict(values)
            values["columns"] = {
                key: {"column": spec} if isinstance(spec, str) else spec
                for key, spec in values["columns"].items()
            }
        return values

    @model_validator(mode="after")
    def _check_layout(self) -> ObjectSpec:
        if self.layout == "flat":
            if self.count is None:
                raise ValueError("a flat layout needs a 'count' column")
            for name, spec in self.columns.items():
                if "{slot}" not in spec.column:
                    raise ValueError(
                        f"column of {name} ({spec.column!r}) needs a '{{slot}}' placeholder in a flat layout"
                    )
        return self


class ColumnMap(_Strict):
    """A whole column map: reader hints and one section per object type."""

    name: str
    description: str = ""
    format: Literal["parquet", "root", "hdf5", "csv"] | None = None
    tree: str | None = None
    muon: ObjectSpec | None = None
    l1_jet: ObjectSpec | None = None
    pf_jet: ObjectSpec | None = None

    @model_validator(mode="after")
    def _check_features(self) -> ColumnMap:
        for kind, features in OBJECT_FEATURES.items():
            spec = getattr(self, kind)
            if spec is None:
                continue
            unknown = sorted(set(spec.columns) - set(features))
            if unknown:
                raise ValueError(
                    f"{kind}: unknown feature(s) {', '.join(unknown)}; valid: {', '.join(features)}"
                )
            missing = [
                name
                for name, feature in features.items()
                if feature.required and name not in spec.columns
            ]
            if missing:
                raise ValueError(f"{kind}: feature(s) {', '.join(missing)} not mapped")
        return self

    def section(self, kind: str, source: str = "") -> ObjectSpec:
        """Return the section of one object type, raising :class:`ConfigError` when absent."""
        spec = getattr(self, kind)
        if spec is None:
            raise ConfigError(
                f"column map {self.name}{source}: no '{kind}' section; add one to read these objects"
            )
        return spec


def load_column_map(path: str | Path) -> ColumnMap:
    """Load and validate a column map YAML file.

    ``path`` may also be the name of a shipped map (``default``, ``l1ntuple``,
    ``nanoaod``) in :data:`COLUMN_MAP_DIR`.

    Raises:
        ConfigError: when the file is missing, not YAML, or not a valid map.
    """
    path = Path(path)
    if (
        not path.exists()
        and path.suffix == ""
        and (COLUMN_MAP_DIR / f"{path}.yaml").exists()
    ):
        path = COLUMN_MAP_DIR / f"{path}.yaml"
    try:
        document = yaml.safe_load(path.read_text())
    except FileNotFoundError as error:
        shipped = ", ".join(sorted(p.stem for p in COLUMN_MAP_DIR.glob("*.yaml")))
        raise ConfigError(
            f"{path}: column map not found; pass a YAML file or a shipped map ({shipped})"
        ) from error
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: invalid YAML: {error}") from error
    try:
        return ColumnMap.model_validate(document)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in item['loc']) or 'map'}: {item['msg']}"
            for item in error.errors()
        )
        raise ConfigError(f"{path}: invalid column map: {problems}") from error


def default_column_map() -> ColumnMap:
    """Return the map of the project's own raw layout (``column_maps/default.yaml``)."""
    return DEFAULT_COLUMN_MAP


def _slot_pattern(stem: str) -> ColumnSpec:
    return ColumnSpec(column=f"{stem}_{{slot}}")


DEFAULT_COLUMN_MAP = ColumnMap(
    name="default",
    description="The project's raw layout (docs/data-format.md).",
    muon=ObjectSpec(
        count="nMatchedMuons",
        columns={name: _slot_pattern(name) for name in OBJECT_FEATURES["muon"]},
    ),
    l1_jet=ObjectSpec(
        count="nJets",
        columns={
            "hwPt": _slot_pattern("jetHwPt"),
            "hwEta": _slot_pattern("jetHwEta"),
            "hwPhi": _slot_pattern("jetHwPhi"),
        },
    ),
    pf_jet=ObjectSpec(
        count="nPFJets",
        columns={
            "pt": _slot_pattern("pfJetPt"),
            "eta": _slot_pattern("pfJetEta"),
            "phi": _slot_pattern("pfJetPhi"),
            "mass": _slot_pattern("pfJetMass"),
        },
    ),
)


@dataclass
class ObjectArrays:
    """Mapped objects of one type in a batch of events.

    Attributes:
        count: objects per event after truncation to the project's slots, shape (n,).
        values: per feature, an array of shape (n, slots); integer features
            as int64, floating ones as float64. Slots past ``count`` contain
            what the file stores there (zero in the default layout, NaN and inf
            replaced by 0), so readers must mask them with ``count``.
        dropped: objects past the project's slots in this batch.
    """

    count: np.ndarray
    values: dict[str, np.ndarray]
    dropped: int = 0


@dataclass
class MappedSource:
    """The resolved columns of one object type in one source.

    Attributes:
        kind: object type (``muon``, ``l1_jet``, ``pf_jet``).
        spec: its section of the column map.
        tree: tree of the count column (None for the source's default).
        slots: slots per event read from the file.
        columns: user column per (feature, slot) for a flat layout, per feature for jagged.
        present: the features whose columns exist.
        trees: tree of each present feature's columns.
    """

    kind: str
    spec: ObjectSpec
    tree: str | None
    slots: int
    columns: dict[str, list[str]] = field(default_factory=dict)
    present: list[str] = field(default_factory=list)
    trees: dict[str, str | None] = field(default_factory=dict)

    def requested(self) -> list[tuple[str | None, str]]:
        """Return every (tree, user column) read for this object type."""
        keys = [(self.tree, self.spec.count)] if self.spec.count else []
        for feature in self.present:
            keys.extend((self.trees[feature], name) for name in self.columns[feature])
        return keys


def _shown(names: list[str]) -> str:
    return ", ".join(names[:5]) + (
        f" and {len(names) - 5} more" if len(names) > 5 else ""
    )


def resolve(source: Source, column_map: ColumnMap, kind: str) -> MappedSource:
    """Check the columns of one object type against ``source`` and return what to read.

    Raises:
        InputFileError: naming the file (and tree) and the first missing columns,
            a column of the wrong dtype, or a flat/jagged mismatch.
    """
    spec = column_map.section(kind, f" for {source.path}")
    tree = spec.tree or column_map.tree
    where = source.describe(tree)
    tables = {tree: source.columns(tree)}
    available = tables[tree]
    slots = spec.slots or OBJECT_SLOTS[kind]
    mapped = MappedSource(kind, spec, tree, slots)
    missing: list[str] = []
    if spec.count is not None and spec.count not in available:
        missing.append(spec.count)
    for feature, column_spec in spec.columns.items():
        if not OBJECT_FEATURES[kind][feature].read:
            continue
        feature_tree = column_spec.tree or tree
        if feature_tree not in tables:
            tables[feature_tree] = source.columns(feature_tree)
        if spec.layout == "flat":
            names = [
                column_spec.column.format(slot=s + spec.first_slot)
                for s in range(slots)
            ]
        else:
            names = [column_spec.column]
        absent = [name for name in names if name not in tables[feature_tree]]
        if absent and feature_tree != tree:
            missing.extend(f"{name} (tree {feature_tree})" for name in absent)
            continue
        if (
            absent
            and not OBJECT_FEATURES[kind][feature].required
            and len(absent) == len(names)
        ):
            continue
        missing.extend(absent)
        mapped.columns[feature] = names
        mapped.present.append(feature)
        mapped.trees[feature] = feature_tree
    if missing:
        raise InputFileError(
            f"{where}: missing column(s) {_shown(missing)}; the raw layout is described in "
            f"docs/data-format.md (column map {column_map.name})"
        )
    if spec.count is not None:
        _check_dtype(where, spec.count, available[spec.count], "integer", False)
    for feature in mapped.present:
        expected = _expected_kind(kind, feature, spec.columns[feature])
        feature_where = source.describe(mapped.trees[feature])
        info = tables[mapped.trees[feature]]
        for name in mapped.columns[feature]:
            _check_dtype(
                feature_where, name, info[name], expected, spec.layout == "jagged"
            )
    return mapped


def _expected_kind(kind: str, feature: str, column_spec: ColumnSpec) -> Kind:
    if column_spec.transform != "none":
        return "floating"
    return OBJECT_FEATURES[kind][feature].kind


def _check_dtype(
    where: str, name: str, info: ColumnInfo, expected: Kind, jagged: bool
) -> None:
    if info.jagged != jagged:
        expected_layout, found = (
            ("a list per event", "one value") if jagged else ("one value", "a list")
        )
        raise InputFileError(
            f"{where}: column {name} contains {found} per event, expected {expected_layout}; "
            "set 'layout' of the column map to match the file"
        )
    if expected == "integer" and info.kind != "integer":
        raise InputFileError(
            f"{where}: column {name} has dtype {info.dtype}, expected an integer type"
        )
    if expected == "floating" and info.kind not in ("integer", "floating"):
        raise InputFileError(
            f"{where}: column {name} has dtype {info.dtype}, expected a floating-point type"
        )


def _apply_transform(
    values: np.ndarray, column_spec: ColumnSpec, feature: Feature
) -> np.ndarray:
    if column_spec.transform == "charge_to_sign":
        return (values < 0).astype(np.int64)
    if column_spec.transform == "physical" and feature.hardware is not None:
        if feature.phi_bins is not None:
            bins = np.rint(wrap_phi_positive(values) / feature.hardware.bin_width)
            return bins.astype(np.int64) % feature.phi_bins
        return np.rint(values / feature.hardware.bin_width).astype(np.int64)
    return values


def _pad_jagged(values, slots: int) -> np.ndarray:
    import awkward as ak

    padded = ak.fill_none(ak.pad_none(values, slots, axis=1, clip=True), 0)
    return ak.to_numpy(padded)


def extract(
    mapped: MappedSource, where: str, first_event: int, batch: dict
) -> ObjectArrays:
    """Turn one reader batch into (events, project slots) arrays of one object type.

    Raises:
        InputFileError: on a count outside 0..slots, jagged arrays of unequal
            lengths, or NaN / inf values, naming the column and the event.
    """
    spec = mapped.spec
    project_slots = OBJECT_SLOTS[mapped.kind]
    features = OBJECT_FEATURES[mapped.kind]
    key = mapped.tree
    trees = mapped.trees
    dropped = 0
    if spec.layout == "flat":
        count = np.asarray(batch[(key, spec.count)]).astype(np.int64, copy=False)
        bad = (count < 0) | (count > mapped.slots)
        if bad.any():
            index = int(np.flatnonzero(bad)[0])
            raise InputFileError(
                f"{where}: column {spec.count} has value {int(count[index])}, expected "
                f"0..{mapped.slots} (event {first_event + index})"
            )
        n_events = count.size
        raw = {
            feature: np.stack(
                [np.asarray(batch[(trees[feature], name)]) for name in names], axis=1
            )
            for feature, names in mapped.columns.items()
        }
        if mapped.slots > project_slots:
            dropped = int(np.maximum(count - project_slots, 0).sum())
            raw = {f: v[:, :project_slots] for f, v in raw.items()}
            count = np.minimum(count, project_slots)
    else:
        import awkward as ak

        lengths = None
        raw = {}
        for feature in mapped.present:
            values = batch[(trees[feature], mapped.columns[feature][0])]
            feature_lengths = ak.to_numpy(ak.num(values, axis=1)).astype(np.int64)
            if lengths is None:
                lengths, first_name = feature_lengths, mapped.columns[feature][0]
            elif not np.array_equal(lengths, feature_lengths):
                index = int(np.flatnonzero(lengths != feature_lengths)[0])
                raise InputFileError(
                    f"{where}: columns {first_name} and {mapped.columns[feature][0]} have "
                    f"different lengths in event {first_event + index}; objects of one type "
                    "need one entry in every column"
                )
            raw[feature] = _pad_jagged(values, project_slots)
        assert lengths is not None
        if spec.count is not None:
            count_column = np.asarray(batch[(key, spec.count)]).astype(np.int64)
            if not np.array_equal(count_column, lengths):
                index = int(np.flatnonzero(count_column != lengths)[0])
                raise InputFileError(
                    f"{where}: column {spec.count} is {int(count_column[index])} in event "
                    f"{first_event + index} but the arrays hold {int(lengths[index])} objects; "
                    "fix 'count' in the column map"
                )
        n_events = lengths.size
        dropped = int(np.maximum(lengths - project_slots, 0).sum())
        count = np.minimum(lengths, project_slots)

    values: dict[str, np.ndarray] = {}
    filled = np.arange(project_slots)[None, :] < count[:, None]
    for feature, array in raw.items():
        column_spec = spec.columns[feature]
        counted = features[feature].counted
        width = min(array.shape[1], project_slots)
        # ``array`` is a fresh copy (np.stack or padding), so it may be changed in place.
        array = array[:, :width]
        if array.dtype.kind == "f":
            finite = np.isfinite(array)
            if not finite.all():
                bad = ~finite & filled[:, :width] if counted else ~finite
                if bad.any():
                    event, slot = (int(i[0]) for i in np.nonzero(bad))
                    name = mapped.columns[feature][slot if spec.layout == "flat" else 0]
                    raise InputFileError(
                        f"{where}: column {name} has a NaN or inf value in event "
                        f"{first_event + event}; drop or fix these events before ingesting"
                    )
                array[~finite] = 0  # NaN or inf padding of empty slots
        if column_spec.transform != "none":
            array = _apply_transform(array, column_spec, features[feature])
        target = np.int64 if features[feature].kind == "integer" else np.float64
        if width == project_slots:
            values[feature] = array.astype(target, copy=False)
        else:
            padded = np.zeros((n_events, project_slots), dtype=target)
            padded[:, :width] = array
            values[feature] = padded
    return ObjectArrays(count=count, values=values, dropped=dropped)


def read_mapped(
    source: Source, mapped: list[MappedSource], batch_rows: int
) -> Iterator[tuple[int, dict[str, ObjectArrays]]]:
    """Yield (first event index, objects per type) for every batch of ``source``."""
    request: dict[str | None, list[str]] = {}
    for item in mapped:
        for tree, name in item.requested():
            names = request.setdefault(tree, [])
            if name not in names:
                names.append(name)
    for start, batch in source.iter_batches(request, batch_rows):
        yield (
            start,
            {
                item.kind: extract(item, source.describe(item.tree), start, batch)
                for item in mapped
            },
        )
