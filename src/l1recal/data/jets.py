"""The jet ``ingest`` stage: dR matching of PF jets to L1 jets, one row per matched L1 jet.

Each PF jet is matched to the L1 jet of smallest dR = sqrt(deta^2 + dphi^2)
(dphi wrapped into [-pi, pi)) when that dR is strictly below 0.4. One L1 jet
may collect several PF jets; its offline reference is the summed pT of its
matched PF jets. On a tie in dR the L1 jet with the lower slot index (the
higher pT) wins. The matching is vectorised over whole batches of events on
the zero-padded (events, slots) arrays.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from l1recal.atomic import atomic_path, write_json
from l1recal.config import JetIngestSettings
from l1recal.data.column_map import ColumnMap, ObjectArrays, default_column_map
from l1recal.data.ingest import InputPlan, plan_inputs, stream_inputs
from l1recal.schema import (
    JET_MATCH_COLUMNS,
    JET_MATCH_DR,
    JET_TABLE_COLUMNS,
    TWO_PI,
)
from l1recal.units import jet_eta, jet_phi_rad, wrap_delta_phi

logger = logging.getLogger(__name__)

#: The abs(eta) selection reported beside the full sample.
CENTRAL_ABS_ETA = 3.0
SELECTIONS = {"no_cut": None, "abs_eta_lt_3": CENTRAL_ABS_ETA}

JET_TABLE_SCHEMA = pa.schema(
    [
        ("event", pa.int64()),
        ("l1Index", pa.int64()),
        ("hwPt", pa.int64()),
        ("hwEta", pa.int64()),
        ("hwPhi", pa.int64()),
        ("ptPF", pa.float64()),
        ("nMatchedPF", pa.int64()),
        ("maxDR", pa.float64()),
    ]
)
JET_MATCH_SCHEMA = pa.schema(
    [
        ("event", pa.int64()),
        ("pfIndex", pa.int64()),
        ("l1Index", pa.int64()),
        ("dR", pa.float64()),
    ]
)
assert tuple(JET_TABLE_SCHEMA.names) == JET_TABLE_COLUMNS
assert tuple(JET_MATCH_SCHEMA.names) == JET_MATCH_COLUMNS


@dataclass
class JetBatch:
    """L1 and PF jets of a batch of events; slots past each count are ignored.

    Attributes:
        first_event: index of the batch's first event in the whole input.
        l1_count: L1 jets per event, shape (n,).
        l1_hw_pt, l1_hw_eta, l1_hw_phi: L1 hardware integers, shape (n, 12).
        pf_count: PF jets per event, shape (n,).
        pf_pt, pf_eta, pf_phi: PF pT (GeV), eta and phi (rad), shape (n, 35).
    """

    first_event: int
    l1_count: np.ndarray
    l1_hw_pt: np.ndarray
    l1_hw_eta: np.ndarray
    l1_hw_phi: np.ndarray
    pf_count: np.ndarray
    pf_pt: np.ndarray
    pf_eta: np.ndarray
    pf_phi: np.ndarray


@dataclass
class MatchResult:
    """Per-PF-jet outcome of :func:`match_jets`.

    Attributes:
        l1_index: matched L1 slot per PF slot, -1 when unmatched or empty, shape (n, p).
        dr: dR to that L1 jet, NaN when unmatched, shape (n, p).
        pf_valid: PF slot contains a jet inside the selection, shape (n, p).
        l1_valid: L1 slot contains a jet inside the selection, shape (n, l).
    """

    l1_index: np.ndarray
    dr: np.ndarray
    pf_valid: np.ndarray
    l1_valid: np.ndarray


@dataclass
class PairGeometry:
    """Distances of the (PF jet, L1 jet) pairs of a batch that can match.

    Only PF jets with at least one L1 jet in their event take part, and only
    the first ``l1_width`` L1 slots (the batch's largest L1 count), which cuts
    the work several times against the full (events, 35, 12) pair array.

    Attributes:
        shape: (events, PF slots) of the batch.
        events, pf_slots: event and PF slot of each candidate PF jet, shape (m,).
        pf_eta, pf_phi: its eta and phi (rad), float64, shape (m,).
        l1_eta, l1_phi: L1 eta and phi (rad) of its event, float64, shape (m, l1_width).
        dr_squared: dR^2 to each of those L1 slots in float32, shape (m, l1_width);
            float32 halves the memory and triples the speed of the nearest-jet search.
    """

    shape: tuple[int, int]
    events: np.ndarray
    pf_slots: np.ndarray
    pf_eta: np.ndarray
    pf_phi: np.ndarray
    l1_eta: np.ndarray
    l1_phi: np.ndarray
    dr_squared: np.ndarray


def pair_geometry(
    l1_eta: np.ndarray,
    l1_phi: np.ndarray,
    l1_valid: np.ndarray,
    pf_eta: np.ndarray,
    pf_phi: np.ndarray,
    pf_valid: np.ndarray,
) -> PairGeometry:
    """Compute dR^2 between every valid PF jet and the L1 slots of its event.

    Args:
        l1_eta, l1_phi: L1 eta and phi (rad), shape (n, l).
        l1_valid: mask of filled L1 slots, shape (n, l).
        pf_eta, pf_phi: PF eta and phi (rad, any range), shape (n, p).
        pf_valid: mask of filled PF slots, shape (n, p).
    """
    filled_l1 = l1_valid.any(axis=1)
    # Pairs reach up to the last L1 slot filled in any event of the batch.
    filled_columns = np.flatnonzero(l1_valid.any(axis=0))
    l1_width = int(filled_columns[-1]) + 1 if filled_columns.size else 0
    events, pf_slots = np.nonzero(pf_valid & filled_l1[:, None])
    candidate_l1_eta = np.asarray(l1_eta, dtype=np.float64)[events, :l1_width]
    candidate_l1_phi = np.asarray(l1_phi, dtype=np.float64)[events, :l1_width]
    candidate_eta = np.asarray(pf_eta, dtype=np.float64)[events, pf_slots]
    candidate_phi = np.asarray(pf_phi, dtype=np.float64)[events, pf_slots]

    deta = candidate_eta.astype(np.float32)[:, None] - candidate_l1_eta.astype(
        np.float32
    )
    dphi = np.abs(
        candidate_phi.astype(np.float32)[:, None] - candidate_l1_phi.astype(np.float32)
    )
    # Wrapping abs(dphi) into [0, pi] with one comparison needs abs(dphi) < 3 pi,
    # true for phi in [-pi, pi) against [0, 2 pi); other ranges take the modulo first.
    if dphi.size and dphi.max() >= 3 * np.pi:
        np.mod(dphi, np.float32(TWO_PI), out=dphi)
    dphi = np.where(dphi > np.pi, np.abs(dphi - np.float32(TWO_PI)), dphi)
    np.multiply(deta, deta, out=deta)
    np.multiply(dphi, dphi, out=dphi)
    return PairGeometry(
        shape=pf_valid.shape,
        events=events,
        pf_slots=pf_slots,
        pf_eta=candidate_eta,
        pf_phi=candidate_phi,
        l1_eta=candidate_l1_eta,
        l1_phi=candidate_l1_phi,
        dr_squared=np.add(deta, dphi, out=deta),
    )


def match_pairs(
    geometry: PairGeometry,
    l1_valid: np.ndarray,
    pf_valid: np.ndarray,
    max_dr: float = JET_MATCH_DR,
) -> MatchResult:
    """Match every valid PF jet to its nearest valid L1 jet if that dR is below ``max_dr``.

    The nearest L1 jet is searched in float32, and its dR is then recomputed in
    float64 for the cone. L1 jets whose dR to a PF jet differ by less than
    float32 resolution (about 1e-7 relative) count as a tie.

    Args:
        geometry: pair distances from :func:`pair_geometry`, computed with
            masks that contain ``l1_valid`` and ``pf_valid``.
        l1_valid: mask of L1 slots taking part, shape (n, l).
        pf_valid: mask of PF slots taking part, shape (n, p).
        max_dr: matching cone; dR equal to it does not match.

    Returns:
        The matched L1 slot and dR of every PF slot. Ties go to the lower L1 slot.
    """
    l1_index = np.full(geometry.shape, -1, dtype=np.int64)
    dr = np.full(geometry.shape, np.nan)
    l1_width = geometry.dr_squared.shape[1]
    if geometry.events.size and l1_width:
        take = (
            pf_valid[geometry.events, geometry.pf_slots][:, None]
            & l1_valid[geometry.events, :l1_width]
        )
        candidates = np.where(take, geometry.dr_squared, np.float32(np.inf))
        nearest = np.argmin(candidates, axis=1)  # first minimum: lowest L1 slot on ties
        rows = np.arange(nearest.size)
        found = np.isfinite(candidates[rows, nearest])
        deta = geometry.pf_eta - geometry.l1_eta[rows, nearest]
        dphi = wrap_delta_phi(geometry.pf_phi - geometry.l1_phi[rows, nearest])
        nearest_dr = np.where(found, np.hypot(deta, dphi), np.inf)
        matched = nearest_dr < max_dr
        events, slots = geometry.events[matched], geometry.pf_slots[matched]
        l1_index[events, slots] = nearest[matched]
        dr[events, slots] = nearest_dr[matched]
    return MatchResult(l1_index=l1_index, dr=dr, pf_valid=pf_valid, l1_valid=l1_valid)


def match_jets(
    l1_eta: np.ndarray,
    l1_phi: np.ndarray,
    l1_valid: np.ndarray,
    pf_eta: np.ndarray,
    pf_phi: np.ndarray,
    pf_valid: np.ndarray,
    max_dr: float = JET_MATCH_DR,
) -> MatchResult:
    """Match every PF jet to its nearest L1 jet in dR, if that dR is below ``max_dr``.

    Args:
        l1_eta, l1_phi: L1 eta and phi (rad), shape (n, l).
        l1_valid: mask of filled L1 slots, shape (n, l).
        pf_eta, pf_phi: PF eta and phi (rad), shape (n, p).
        pf_valid: mask of filled PF slots, shape (n, p).
        max_dr: matching cone; dR equal to it does not match.

    Returns:
        The matched L1 slot and dR of every PF slot. Ties go to the lower L1 slot.
    """
    geometry = pair_geometry(l1_eta, l1_phi, l1_valid, pf_eta, pf_phi, pf_valid)
    return match_pairs(geometry, l1_valid, pf_valid, max_dr)


def slot_mask(count: np.ndarray, n_slots: int) -> np.ndarray:
    """Return the (n, n_slots) mask of slots below each event's count."""
    return np.arange(n_slots)[None, :] < np.asarray(count)[:, None]


def batch_geometry(batch: JetBatch) -> PairGeometry:
    """Compute the pair distances of the filled slots of a batch."""
    return pair_geometry(
        jet_eta(batch.l1_hw_eta),
        jet_phi_rad(batch.l1_hw_phi),
        slot_mask(batch.l1_count, batch.l1_hw_pt.shape[1]),
        batch.pf_eta,
        batch.pf_phi,
        slot_mask(batch.pf_count, batch.pf_pt.shape[1]),
    )


def match_batch(
    batch: JetBatch, abs_eta_max: float | None, geometry: PairGeometry | None = None
) -> MatchResult:
    """Match one batch, keeping only jets with abs(eta) < ``abs_eta_max`` when it is set.

    ``geometry`` from :func:`batch_geometry` saves recomputing the pairs when
    one batch is matched under several selections.
    """
    l1_valid = slot_mask(batch.l1_count, batch.l1_hw_pt.shape[1])
    pf_valid = slot_mask(batch.pf_count, batch.pf_pt.shape[1])
    if abs_eta_max is not None:
        l1_valid &= np.abs(jet_eta(batch.l1_hw_eta)) < abs_eta_max
        pf_valid &= np.abs(batch.pf_eta) < abs_eta_max
    if geometry is None:
        geometry = batch_geometry(batch)
    return match_pairs(geometry, l1_valid, pf_valid)


def matched_l1_table(batch: JetBatch, match: MatchResult) -> pa.Table:
    """Return one row per L1 jet with at least one match, in event then slot order."""
    n_events, n_l1 = batch.l1_hw_pt.shape
    matched = match.l1_index >= 0
    event_of = np.broadcast_to(np.arange(n_events)[:, None], matched.shape)[matched]
    flat = event_of * n_l1 + match.l1_index[matched]
    size = n_events * n_l1
    n_matches = np.bincount(flat, minlength=size)
    pt_sum = np.bincount(flat, weights=batch.pf_pt[matched], minlength=size)
    max_dr = np.zeros(size)
    np.maximum.at(max_dr, flat, match.dr[matched])
    rows = np.flatnonzero(n_matches)
    events, slots = np.divmod(rows, n_l1)
    return pa.Table.from_pydict(
        {
            "event": events + batch.first_event,
            "l1Index": slots,
            "hwPt": batch.l1_hw_pt[events, slots].astype(np.int64),
            "hwEta": batch.l1_hw_eta[events, slots].astype(np.int64),
            "hwPhi": batch.l1_hw_phi[events, slots].astype(np.int64),
            "ptPF": pt_sum[rows],
            "nMatchedPF": n_matches[rows],
            "maxDR": max_dr[rows],
        },
        schema=JET_TABLE_SCHEMA,
    )


def match_records(batch: JetBatch, match: MatchResult) -> pa.Table:
    """Return one row per matched PF jet, in event then PF slot order."""
    events, pf_slots = np.nonzero(match.l1_index >= 0)
    return pa.Table.from_pydict(
        {
            "event": events + batch.first_event,
            "pfIndex": pf_slots,
            "l1Index": match.l1_index[events, pf_slots],
            "dR": match.dr[events, pf_slots],
        },
        schema=JET_MATCH_SCHEMA,
    )


@dataclass
class MatchingCounts:
    """Running Table-5 counts of one selection."""

    matched: int = 0
    unmatched: int = 0
    matched_pt_gev: float = 0.0
    total_pt_gev: float = 0.0
    l1_jets: int = 0
    matched_l1_jets: int = 0
    multiplicity: dict[str, int] = field(
        default_factory=lambda: {"1": 0, "2": 0, "3+": 0}
    )

    def add(self, batch: JetBatch, match: MatchResult) -> None:
        """Add the counts of one matched batch."""
        matched = match.l1_index >= 0
        n_matched = int(matched.sum())
        self.matched += n_matched
        self.unmatched += int(match.pf_valid.sum()) - n_matched
        self.matched_pt_gev += float(batch.pf_pt[matched].sum())
        self.total_pt_gev += float(batch.pf_pt[match.pf_valid].sum())
        self.l1_jets += int(match.l1_valid.sum())
        n_l1 = batch.l1_hw_pt.shape[1]
        flat = np.nonzero(matched)[0] * n_l1 + match.l1_index[matched]
        per_l1 = np.bincount(flat, minlength=matched.shape[0] * n_l1)
        per_l1 = per_l1[per_l1 > 0]
        self.matched_l1_jets += int(per_l1.size)
        self.multiplicity["1"] += int((per_l1 == 1).sum())
        self.multiplicity["2"] += int((per_l1 == 2).sum())
        self.multiplicity["3+"] += int((per_l1 >= 3).sum())

    def summary(self) -> dict:
        """Return the counts with the matched fractions, as written to the report."""
        total = self.matched + self.unmatched
        return {
            "matched": self.matched,
            "unmatched": self.unmatched,
            "matched_fraction": self.matched / total if total else 0.0,
            "matched_pt_fraction": (
                self.matched_pt_gev / self.total_pt_gev if self.total_pt_gev else 0.0
            ),
            "matched_pt_gev": self.matched_pt_gev,
            "total_pt_gev": self.total_pt_gev,
            "l1_jets": self.l1_jets,
            "matched_l1_jets": self.matched_l1_jets,
            "multiplicity": dict(self.multiplicity),
        }


def jet_batch(first_event: int, objects: dict[str, ObjectArrays]) -> JetBatch:
    """Build a :class:`JetBatch` from the mapped L1 and PF jets of one reader batch."""
    l1, pf = objects["l1_jet"], objects["pf_jet"]
    return JetBatch(
        first_event=first_event,
        l1_count=l1.count,
        l1_hw_pt=l1.values["hwPt"],
        l1_hw_eta=l1.values["hwEta"],
        l1_hw_phi=l1.values["hwPhi"],
        pf_count=pf.count,
        pf_pt=pf.values["pt"],
        pf_eta=pf.values["eta"],
        pf_phi=pf.values["phi"],
    )


def _write_jet_outputs(
    settings: JetIngestSettings, output_path: Path, matches_path: Path | None
) -> Callable:
    def write(
        batches: Iterator[tuple[InputPlan, int, dict[str, ObjectArrays]]],
    ) -> dict:
        counts = {name: MatchingCounts() for name in SELECTIONS}
        per_file: dict[str, dict] = {}
        offset = events = rows = dropped = 0
        current = None
        with contextlib.ExitStack() as stack:
            table_staging = stack.enter_context(atomic_path(output_path))
            table_writer = stack.enter_context(
                pq.ParquetWriter(
                    table_staging,
                    JET_TABLE_SCHEMA,
                    compression="zstd",
                    use_dictionary=False,
                )
            )
            match_writer = None
            if matches_path is not None:
                match_staging = stack.enter_context(atomic_path(matches_path))
                match_writer = stack.enter_context(
                    pq.ParquetWriter(
                        match_staging,
                        JET_MATCH_SCHEMA,
                        compression="zstd",
                        use_dictionary=False,
                    )
                )
            for plan, start, objects in batches:
                if plan is not current:
                    if current is not None:
                        offset += current.events
                    current = plan
                batch = jet_batch(offset + start, objects)
                geometry = batch_geometry(batch)
                written = None
                for name, abs_eta_max in SELECTIONS.items():
                    match = match_batch(batch, abs_eta_max, geometry)
                    counts[name].add(batch, match)
                    if abs_eta_max == settings.abs_eta_max:
                        written = match
                if written is None:
                    written = match_batch(batch, settings.abs_eta_max, geometry)
                table = matched_l1_table(batch, written)
                table_writer.write_table(table)
                if match_writer is not None:
                    match_writer.write_table(match_records(batch, written))
                n_events = batch.l1_count.size
                file_counts = per_file.setdefault(
                    str(plan.source.path),
                    {"file": str(plan.source.path), "events": 0, "table_rows": 0},
                )
                file_counts["events"] += n_events
                file_counts["table_rows"] += table.num_rows
                if file_counts["events"] == plan.events:
                    logger.info(
                        "%s: %d events, %d matched L1 jets",
                        file_counts["file"],
                        file_counts["events"],
                        file_counts["table_rows"],
                    )
                events += n_events
                rows += table.num_rows
                dropped += objects["l1_jet"].dropped + objects["pf_jet"].dropped
        return {
            "counts": counts,
            "events": events,
            "rows": rows,
            "dropped": dropped,
            "files": list(per_file.values()),
        }

    return write


def ingest_jets(
    settings: JetIngestSettings,
    inputs: Path | str | Sequence[Path | str],
    output_path: Path,
    matches_path: Path | None = None,
    report_path: Path | None = None,
    *,
    column_map: ColumnMap | None = None,
    input_format: str | None = None,
    tree: str | None = None,
    skip_bad_files: bool = False,
) -> dict:
    """Match the jets of every input and write the jet table, the match records and the report.

    Args:
        settings: batch size and the optional abs(eta) selection of the written table.
        inputs: raw jet event files or glob patterns.
        output_path: jet table, one row per matched L1 jet (:data:`JET_TABLE_COLUMNS`).
        matches_path: match records, one row per matched PF jet (:data:`JET_MATCH_COLUMNS`).
        report_path: matching statistics JSON with keys ``no_cut`` and ``abs_eta_lt_3``.
        column_map: names of the L1 and PF jet columns; the project's raw layout by default.
        input_format, tree, skip_bad_files: as for :func:`l1recal.data.ingest.plan_inputs`.

    Returns:
        The report: Table-5 counts per selection with the multiplicity of
        matches per L1 jet, events and rows written, per-file counts and
        skipped files. Outputs appear only when every input was read.
    """
    column_map = column_map or default_column_map()
    plans, skipped = plan_inputs(
        inputs, column_map, ["l1_jet", "pf_jet"], input_format, tree, skip_bad_files
    )
    result = stream_inputs(
        plans,
        skipped,
        _write_jet_outputs(settings, output_path, matches_path),
        settings.batch_rows,
        skip_bad_files,
        "ingest jets",
    )
    report = {
        **{name: value.summary() for name, value in result["counts"].items()},
        "match_dr": JET_MATCH_DR,
        "table_abs_eta_max": settings.abs_eta_max,
        "events": result["events"],
        "table_rows": result["rows"],
        "objects_past_slots": result["dropped"],
        "column_map": column_map.name,
        "files": result["files"],
        "skipped_files": skipped,
    }
    for name in SELECTIONS:
        logger.info(
            "%s: %d of %d PF jets matched (%.2f %%, %.2f %% of PF pT)",
            name,
            report[name]["matched"],
            report[name]["matched"] + report[name]["unmatched"],
            100 * report[name]["matched_fraction"],
            100 * report[name]["matched_pt_fraction"],
        )
    if report_path is not None:
        write_json(report_path, report)
    return report
