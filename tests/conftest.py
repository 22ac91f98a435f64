"""Shared fixtures: a small simulated sample taken through ingest and preprocess."""

from __future__ import annotations

from pathlib import Path

import pytest

from l1recal.config import IngestSettings, PreprocessSettings, SimulateSettings
from l1recal.data.ingest import run_ingest
from l1recal.data.preprocess import run_preprocess
from l1recal.simulation.stage import MUON_EVENTS_FILE, run_simulate

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def small_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder with 20,000 simulated events and a noise floor from 200,000 muons."""
    folder = tmp_path_factory.mktemp("raw") / "raw"
    run_simulate(
        SimulateSettings(n_events=20_000, noise_floor_muons=200_000, seed=5), folder
    )
    return folder


@pytest.fixture(scope="session")
def small_splits(small_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Pre-processed splits of ``small_raw``."""
    work = tmp_path_factory.mktemp("work")
    table = work / "muons.parquet"
    run_ingest(IngestSettings(), small_raw / MUON_EVENTS_FILE, table)
    run_preprocess(PreprocessSettings(), table, work / "splits")
    return work / "splits"
