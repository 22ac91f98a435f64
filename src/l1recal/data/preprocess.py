"""The ``preprocess`` stage: the study's six pre-processing steps for muons.

1. drop duplicate rows; 2. hardware integers to physical units; 3. keep
pT_min < pT(L1) < pT_max; 4. shift phiVtxReco from [-pi, pi) to [0, 2 pi);
5. random train / validation / test split; 6. fit the min-max input scaler and
the standard target scaler on the training split only.

The split tables keep physical values and the targets unscaled; the scalers are
written beside them and applied by each model, so evaluation and serving work
in physical units.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from l1recal.atomic import atomic_path
from l1recal.config import PreprocessSettings
from l1recal.data.parquet_input import check_columns, open_parquet
from l1recal.errors import InputFileError
from l1recal.models.scalers import AffineScaler
from l1recal.schema import (
    MUON_INPUTS,
    MUON_L1_FEATURES,
    MUON_OFFLINE,
    MUON_TABLE_COLUMNS,
    MUON_TARGETS,
)
from l1recal.units import (
    muon_eta,
    muon_phi_rad,
    muon_pt_gev,
    wrap_delta_phi,
    wrap_phi_positive,
)

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
SCALERS_FILE = "scalers.json"
SUMMARY_FILE = "summary.json"


def drop_duplicates(table: pd.DataFrame) -> pd.DataFrame:
    """Step 1: drop rows equal in every column, keeping the first."""
    return table.drop_duplicates(ignore_index=True)


def to_physical(table: pd.DataFrame) -> pd.DataFrame:
    """Steps 2 and 4: L1 integers to GeV and rad, offline phi to [0, 2 pi), and the corrections.

    Returns:
        Columns of :data:`MUON_INPUTS`, :data:`MUON_OFFLINE` and :data:`MUON_TARGETS`.
    """
    physical = pd.DataFrame(
        {
            "ptL1": muon_pt_gev(table["hwPtL1"].to_numpy()),
            "etaL1": muon_eta(table["hwEtaL1"].to_numpy()),
            "phiL1": muon_phi_rad(table["hwPhiL1"].to_numpy()),
            "signL1": table["hwSignL1"].to_numpy().astype(np.float64),
            "ptReco": table["ptReco"].to_numpy(dtype=np.float64),
            "etaVtxReco": table["etaVtxReco"].to_numpy(dtype=np.float64),
            "phiVtxReco": wrap_phi_positive(
                table["phiVtxReco"].to_numpy(dtype=np.float64)
            ),
        }
    )
    physical["dPt"] = physical["ptL1"] - physical["ptReco"]
    physical["dEta"] = physical["etaL1"] - physical["etaVtxReco"]
    physical["dPhi"] = wrap_delta_phi(physical["phiL1"] - physical["phiVtxReco"])
    return physical


def select_pt_window(
    table: pd.DataFrame, pt_min_gev: float, pt_max_gev: float
) -> pd.DataFrame:
    """Step 3: keep rows with pt_min < ptL1 < pt_max (GeV)."""
    keep = (table["ptL1"] > pt_min_gev) & (table["ptL1"] < pt_max_gev)
    return table.loc[keep].reset_index(drop=True)


def split_rows(
    n_rows: int, fractions: tuple[float, float, float], seed: int
) -> dict[str, np.ndarray]:
    """Step 5: a seeded random partition of row indices into the three splits.

    The train and validation sizes are rounded down; the test split takes the rest.
    """
    order = np.random.default_rng(seed).permutation(n_rows)
    n_train = int(fractions[0] * n_rows)
    n_val = int(fractions[1] * n_rows)
    return {
        "train": np.sort(order[:n_train]),
        "val": np.sort(order[n_train : n_train + n_val]),
        "test": np.sort(order[n_train + n_val :]),
    }


def fit_scalers(
    train: pd.DataFrame,
    inputs: tuple[str, ...] = MUON_INPUTS,
    targets: tuple[str, ...] = MUON_TARGETS,
) -> dict[str, AffineScaler]:
    """Step 6: the min-max input scaler and the standard target scaler, from the training split."""
    return {
        "inputs": AffineScaler.min_max(inputs, train[list(inputs)].to_numpy()),
        "targets": AffineScaler.standard(targets, train[list(targets)].to_numpy()),
    }


def write_splits(
    physical: pd.DataFrame,
    settings: PreprocessSettings,
    output_dir: Path,
    counts: dict[str, int],
    inputs: tuple[str, ...],
    targets: tuple[str, ...],
) -> dict[str, int]:
    """Steps 5 and 6, then write the split folder atomically; returns ``counts`` with the split sizes.

    The folder contains ``train.parquet``, ``val.parquet``, ``test.parquet``,
    ``scalers.json`` (fitted on the training split) and ``summary.json``.
    """
    indices = split_rows(len(physical), settings.split, settings.seed)
    splits = {
        name: physical.iloc[rows].reset_index(drop=True)
        for name, rows in indices.items()
    }
    scalers = fit_scalers(splits["train"], inputs, targets)
    counts = {**counts, **{name: len(frame) for name, frame in splits.items()}}

    with atomic_path(output_dir, is_dir=True) as staging:
        for name, frame in splits.items():
            frame.to_parquet(
                staging / f"{name}.parquet", index=False, compression="zstd"
            )
        payload = {key: scaler.to_dict() for key, scaler in scalers.items()}
        (staging / SCALERS_FILE).write_text(json.dumps(payload, indent=2) + "\n")
        (staging / SUMMARY_FILE).write_text(json.dumps(counts, indent=2) + "\n")
    return counts


def run_preprocess(
    settings: PreprocessSettings, input_path: Path, output_dir: Path
) -> dict:
    """Pre-process the flattened muon table into ``output_dir``.

    Writes ``train.parquet``, ``val.parquet``, ``test.parquet`` (physical
    values and targets), ``scalers.json`` and ``summary.json`` (row counts
    after each step), replacing the folder atomically.
    """
    parquet = open_parquet(input_path)
    check_columns(input_path, parquet.schema_arrow, MUON_L1_FEATURES, MUON_OFFLINE)
    table = parquet.read(columns=list(MUON_TABLE_COLUMNS)).to_pandas()
    counts = {"input": len(table)}

    table = drop_duplicates(table)
    counts["after_duplicates"] = len(table)
    physical = select_pt_window(
        to_physical(table), settings.pt_min_gev, settings.pt_max_gev
    )
    counts["after_pt_window"] = len(physical)
    if len(physical) < 10:
        raise InputFileError(
            f"{input_path}: only {len(physical)} muons inside {settings.pt_min_gev} < pT < "
            f"{settings.pt_max_gev} GeV; need at least 10 to split into train, validation and test"
        )

    counts = write_splits(
        physical, settings, output_dir, counts, MUON_INPUTS, MUON_TARGETS
    )
    logger.info("pre-processed %s: %s", input_path, counts)
    return counts


def load_split(directory: Path, name: str) -> pd.DataFrame:
    """Read one split written by :func:`run_preprocess`."""
    path = directory / f"{name}.parquet"
    if not path.exists():
        raise InputFileError(f"{path}: split not found; run 'l1recal preprocess' first")
    return pd.read_parquet(path)


def load_scalers(directory: Path) -> dict[str, AffineScaler]:
    """Read the scalers written by :func:`run_preprocess`."""
    path = directory / SCALERS_FILE
    if not path.exists():
        raise InputFileError(
            f"{path}: scalers not found; run 'l1recal preprocess' first"
        )
    payload = json.loads(path.read_text())
    return {key: AffineScaler.from_dict(value) for key, value in payload.items()}
