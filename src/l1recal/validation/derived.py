"""Batches and derived columns that turn cross-column conditions into stock expectations.

Great Expectations checks one column (or a pair) at a time, and its pandas
engine copies the whole batch once per metric when it drops nulls, so a wide
batch costs time in proportion to its width times its expectations. Raw event
files are therefore validated as narrow batches:

* one count batch per object type and chunk: the object count and the number
  of filled slots (``filledSlots`` and the like, a slot being filled when any
  of its padded values is non-zero), expected equal to the count;
* one stacked batch per slot feature: the feature of every slot in one column,
  one row per (event, slot), with the row index ``event * n_slots + slot``,
  which the reports decode back into the slot column name.

Stacked batches carry the derived columns ``<feature>[padding]`` (the value in
slots beyond the object count, null elsewhere, expected in {0}) and
``<feature>[filled]`` (the value in slots within the count, null elsewhere,
for checks such as charge in {-1, 1}); expectations skip the nulls.

Flattened tables get ``isDuplicate`` (the row repeats an earlier row exactly,
the rows a keep-first de-duplication drops) and, for jets, ``matchRecords``
and ``l1JetInTable``, which link the jet table and its match records.

A batch or derived column whose source column is missing is built without it.
The column-set expectation names the missing column, and the expectations on
the absent columns are reported as not evaluated.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from l1recal.schema import slot_column

IS_DUPLICATE = "isDuplicate"
MATCH_RECORDS = "matchRecords"
L1_JET_IN_TABLE = "l1JetInTable"


@dataclass(frozen=True)
class Batch:
    """One frame handed to Great Expectations.

    Attributes:
        suite: name of the suite that validates it (also the table name in reports).
        frame: the rows.
        slots: slots per event of a stacked batch (row index ``event * slots + slot``),
            1 for a count batch (row index = event), None for flattened tables.
    """

    suite: str
    frame: pd.DataFrame
    slots: int | None = None


@dataclass(frozen=True)
class SlotGroup:
    """One object type of the raw slot layout.

    Attributes:
        count: the count column, e.g. ``nMatchedMuons``.
        slots: slots per event.
        features: stems of every slot column, e.g. ``hwPtL1`` for ``hwPtL1_0`` ...
        padded: stems that must be zero in slots beyond the count; their
            non-zero values mark a slot as filled.
        filled_checks: stems with extra checks on filled slots.
        filled_name: name of the derived number of filled slots.
    """

    count: str
    slots: int
    features: tuple[str, ...]
    padded: tuple[str, ...]
    filled_checks: tuple[str, ...]
    filled_name: str


def padding_column(column: str) -> str:
    """Return the derived column holding ``column`` in slots beyond the object count."""
    return f"{column}[padding]"


def filled_column(column: str) -> str:
    """Return the derived column holding ``column`` in slots within the object count."""
    return f"{column}[filled]"


def _slot_matrix(frame: pd.DataFrame, feature: str, slots: int) -> np.ndarray | None:
    """Return the (events, slots) values of one feature, None when a slot column is missing."""
    columns = [slot_column(feature, slot) for slot in range(slots)]
    if not all(column in frame for column in columns):
        return None
    return np.stack([frame[column].to_numpy() for column in columns], axis=1)


def _filled_count(frame: pd.DataFrame, group: SlotGroup) -> np.ndarray | None:
    filled = np.zeros((len(frame), group.slots), dtype=bool)
    for feature in group.padded:
        values = _slot_matrix(frame, feature, group.slots)
        if values is None:
            return None
        # NaN != 0, so a NaN marks its slot as filled.
        filled |= values != 0
    return filled.sum(axis=1)


def slot_batches(
    prefix: str, frame: pd.DataFrame, first_event: int, groups: Sequence[SlotGroup]
) -> Iterator[Batch]:
    """Split a chunk of raw events into count batches and one stacked batch per feature.

    Batches are built one at a time as the caller iterates, so that only one
    stacked copy of the chunk is in memory. A group whose count column is
    missing gives no batch; the column-set expectation reports the missing column.

    Args:
        prefix: kind name; batches are ``<prefix>.<count column>`` and ``<prefix>.<feature>``.
        frame: events, one row each, with the count and slot columns.
        first_event: index of the chunk's first event in the file.
        groups: the object types of the layout.
    """
    event_index = pd.RangeIndex(first_event, first_event + len(frame))
    for group in groups:
        if group.count not in frame:
            continue
        count = frame[group.count].to_numpy()
        counts = {group.count: count}
        filled = _filled_count(frame, group)
        if filled is not None:
            counts[group.filled_name] = filled
        yield Batch(
            f"{prefix}.{group.count}", pd.DataFrame(counts, index=event_index), 1
        )
        within = (count[:, None] > np.arange(group.slots)[None, :]).reshape(-1)
        index = pd.RangeIndex(
            first_event * group.slots, (first_event + len(frame)) * group.slots
        )
        for feature in group.features:
            values = _slot_matrix(frame, feature, group.slots)
            columns: dict[str, np.ndarray] = {}
            if values is not None:
                flat = values.reshape(-1)
                columns[feature] = flat
                if feature in group.padded:
                    columns[padding_column(feature)] = np.where(within, np.nan, flat)
                if feature in group.filled_checks:
                    columns[filled_column(feature)] = np.where(within, flat, np.nan)
            yield Batch(
                f"{prefix}.{feature}", pd.DataFrame(columns, index=index), group.slots
            )


def with_duplicates(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Return ``frame`` with ``isDuplicate``: True for a row equal in ``columns`` to an earlier row."""
    present = [name for name in columns if name in frame]
    flags = frame.duplicated(subset=present, keep="first").to_numpy()
    return frame.assign(**{IS_DUPLICATE: flags})


def with_jet_links(
    jets: pd.DataFrame, matches: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Link the jet table and its match records.

    Adds ``matchRecords`` to ``jets`` (match rows of the same event and L1 jet,
    expected equal to ``nMatchedPF``) and ``l1JetInTable`` to ``matches`` (the
    match points to a row of the jet table). Returns the frames unchanged when
    a key column is missing.
    """
    keys = ["event", "l1Index"]
    if not all(key in jets for key in keys) or not all(key in matches for key in keys):
        return jets, matches
    jet_keys = pd.MultiIndex.from_frame(jets[keys])
    match_keys = pd.MultiIndex.from_frame(matches[keys])
    records = matches.groupby(keys).size()
    jets = jets.assign(
        **{MATCH_RECORDS: records.reindex(jet_keys, fill_value=0).to_numpy()}
    )
    matches = matches.assign(**{L1_JET_IN_TABLE: match_keys.isin(jet_keys)})
    return jets, matches
