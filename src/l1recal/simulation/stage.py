"""The ``simulate`` stage: write the default ZeroBias input and its noise floor."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from l1recal.atomic import atomic_path
from l1recal.config import SimulateSettings
from l1recal.simulation.events import simulate_event_batch
from l1recal.simulation.jets import simulate_jet_event_batch
from l1recal.simulation.noise_floor import estimate_noise_floor

logger = logging.getLogger(__name__)

MUON_EVENTS_FILE = "muon_events.parquet"
NOISE_FLOOR_FILE = "noise_floor.json"
JET_EVENTS_FILE = "jet_events.parquet"

# Events per generated batch and parquet row group. Fixed, not a setting: the
# random stream, and so the bytes written, depend on it.
_BATCH_EVENTS = 100_000
# Offset of the noise-floor sample's seed, so it never repeats the data's stream.
_FLOOR_SEED_OFFSET = 1_000_003
# Offset of the jet events' seed: the jet set is a second, independent ZeroBias sample.
_JET_SEED_OFFSET = 2_000_029


def run_simulate(settings: SimulateSettings, output_dir: Path) -> None:
    """Write ``muon_events.parquet``, ``noise_floor.json`` and ``jet_events.parquet`` into ``output_dir``.

    The jet file is left out when ``settings.jet_events`` is 0.

    The folder is replaced as a whole, atomically. For one seed, settings and
    pyarrow version the parquet bytes are identical run to run.
    """
    rng = np.random.default_rng(settings.seed)
    with atomic_path(output_dir, is_dir=True) as staging:
        _write_batches(
            staging / MUON_EVENTS_FILE,
            settings.n_events,
            lambda n: simulate_event_batch(rng, n, settings.physics),
            "simulate",
        )
        logger.info(
            "wrote %d events to %s", settings.n_events, output_dir / MUON_EVENTS_FILE
        )

        if settings.jet_events > 0:
            _write_jet_events(settings, staging / JET_EVENTS_FILE)
            logger.info(
                "wrote %d jet events to %s",
                settings.jet_events,
                output_dir / JET_EVENTS_FILE,
            )

        floor = estimate_noise_floor(
            settings.physics,
            settings.noise_floor_muons,
            settings.seed + _FLOOR_SEED_OFFSET,
            settings.floor_pt_window_gev,
        )
        floor["pt_window_gev"] = list(settings.floor_pt_window_gev)
        (staging / NOISE_FLOOR_FILE).write_text(json.dumps(floor, indent=2) + "\n")
        logger.info(
            "noise floor: phi %.4f rad, eta %.4f, pT/pT_reco %.4f (from %d muons)",
            floor["phi"],
            floor["eta"],
            floor["pt_rel"],
            floor["muons"],
        )


def _write_jet_events(settings: SimulateSettings, path: Path) -> None:
    rng = np.random.default_rng(settings.seed + _JET_SEED_OFFSET)
    _write_batches(
        path,
        settings.jet_events,
        lambda n: simulate_jet_event_batch(rng, n, settings.jet_physics),
        "simulate jets",
    )


def _write_batches(
    path: Path, n_events: int, make_batch: Callable[[int], pa.Table], description: str
) -> None:
    """Write ``n_events`` events to one parquet file, one row group per generated batch."""
    writer = None
    try:
        with tqdm(
            total=n_events, unit="event", desc=description, disable=None
        ) as progress:
            for start in range(0, n_events, _BATCH_EVENTS):
                batch = make_batch(min(_BATCH_EVENTS, n_events - start))
                if writer is None:
                    writer = pq.ParquetWriter(path, batch.schema, compression="zstd")
                writer.write_table(batch)
                progress.update(batch.num_rows)
    finally:
        if writer is not None:
            writer.close()
