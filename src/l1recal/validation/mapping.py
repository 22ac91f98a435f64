"""The raw layout a validation expects, from the default schema or a column map.

Without a column map the raw files follow ``schema.raw_event_columns()`` and
``schema.raw_jet_event_columns()``. With a map (:mod:`l1recal.data.column_map`)
the column-set expectation compares with the user's column names, and each
chunk is renamed to the project's names before the row suites run, so their
expectations and reports use project names.

Validation reads parquet with the map's flat layout and untransformed
columns only: jagged arrays and unit conversions exist only once ingest has
run, so such inputs are validated as flattened tables (``muon-table``,
``jet-table``), which ingest writes in the project layout.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from l1recal.data.column_map import ColumnMap
from l1recal.errors import ConfigError
from l1recal.schema import slot_column
from l1recal.validation.derived import SlotGroup
from l1recal.validation.suites import L1_JET_SLOTS, MUON_SLOTS, PF_JET_SLOTS

#: Column-map feature name to project slot stem, per map section.
FEATURE_STEMS = {
    "muon": {stem: stem for stem in MUON_SLOTS.features},
    "l1_jet": {"hwPt": "jetHwPt", "hwEta": "jetHwEta", "hwPhi": "jetHwPhi"},
    "pf_jet": {
        "pt": "pfJetPt",
        "eta": "pfJetEta",
        "phi": "pfJetPhi",
        "mass": "pfJetMass",
    },
}
#: Map sections read per raw kind, with whether each is required.
KIND_SECTIONS = {
    "raw-muon": (("muon", MUON_SLOTS, True), ("l1_jet", L1_JET_SLOTS, False)),
    "raw-jet": (("l1_jet", L1_JET_SLOTS, True), ("pf_jet", PF_JET_SLOTS, True)),
}


@dataclass(frozen=True)
class RawLayout:
    """The columns of a raw file and how they map to the project layout.

    Attributes:
        columns: the file's expected columns (user names with a map).
        groups: the slot groups to validate, restricted to mapped features.
        rename: user column name to project column name; empty without a map.
    """

    columns: tuple[str, ...]
    groups: tuple[SlotGroup, ...]
    rename: dict[str, str] = field(default_factory=dict)


def _unsupported(column_map: ColumnMap, section: str, reason: str) -> ConfigError:
    kind = "muon-table" if section == "muon" else "jet-table"
    return ConfigError(
        f"column map {column_map.name}: section {section} {reason}; validate reads flat "
        f"parquet layouts without transforms, so run ingest and validate --kind {kind} instead"
    )


def _section_layout(
    column_map: ColumnMap, section: str, group: SlotGroup
) -> tuple[list[str], SlotGroup, dict[str, str]]:
    spec = column_map.section(section)
    if spec.layout != "flat":
        raise _unsupported(column_map, section, f"has layout {spec.layout}")
    if spec.slots not in (None, group.slots):
        raise _unsupported(
            column_map,
            section,
            f"has {spec.slots} slots, the project layout {group.slots}",
        )
    rename = {spec.count: group.count}
    stems = []
    for feature, column_spec in spec.columns.items():
        if column_spec.transform != "none":
            raise _unsupported(
                column_map, section, f"converts {feature} ({column_spec.transform})"
            )
        stem = FEATURE_STEMS[section][feature]
        stems.append(stem)
        for slot in range(group.slots):
            user = column_spec.column.format(slot=slot + spec.first_slot)
            rename[user] = slot_column(stem, slot)
    mapped = replace(
        group,
        features=tuple(f for f in group.features if f in stems),
        padded=tuple(f for f in group.padded if f in stems),
        filled_checks=tuple(f for f in group.filled_checks if f in stems),
    )
    return list(rename), mapped, rename


def raw_layout(
    kind: str,
    default_columns: tuple[str, ...],
    default_groups: tuple[SlotGroup, ...],
    column_map: ColumnMap | None,
) -> RawLayout:
    """Return the expected columns, the slot groups and the renaming of one raw kind.

    Raises:
        ConfigError: when the map lacks a required section or uses a jagged
            layout, another slot count or a transform.
    """
    if column_map is None:
        return RawLayout(default_columns, default_groups)
    columns: list[str] = []
    groups: list[SlotGroup] = []
    rename: dict[str, str] = {}
    for section, group, required in KIND_SECTIONS[kind]:
        if getattr(column_map, section) is None and not required:
            continue
        section_columns, mapped, section_rename = _section_layout(
            column_map, section, group
        )
        columns += [name for name in section_columns if name not in columns]
        groups.append(mapped)
        rename.update(section_rename)
    return RawLayout(tuple(columns), tuple(groups), rename)
