"""The jet ``preprocess`` stage: the jet table to train / validation / test splits.

1. drop duplicate rows; 2. L1 integers to physical units (pT in GeV, eta, phi
in rad [0, 2 pi)) and the target dPt = ptL1 - ptPF; 3. keep
pt_min < pT(L1) < pt_max; 4. seeded random split; 5. min-max input scaler and
standard target scaler fitted on the training split only.

The output folder has the format of the muon splits
(:mod:`l1recal.data.preprocess`), with the jet columns of
:data:`l1recal.schema.JET_INPUTS`, ``JET_OFFLINE`` and ``JET_TARGETS``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from l1recal.config import JetPreprocessSettings
from l1recal.data.parquet_input import check_columns, open_parquet
from l1recal.data.preprocess import write_splits
from l1recal.errors import InputFileError
from l1recal.schema import JET_INPUTS, JET_TABLE_COLUMNS, JET_TARGETS
from l1recal.units import jet_eta, jet_phi_rad, jet_pt_gev

logger = logging.getLogger(__name__)

_HARDWARE = ("hwPt", "hwEta", "hwPhi")


def jet_to_physical(table: pd.DataFrame) -> pd.DataFrame:
    """Convert the jet table to physical inputs, the summed PF pT and dPt (GeV).

    Returns:
        Columns ``event``, ``l1Index``, ``nMatchedPF``, then :data:`JET_INPUTS`,
        :data:`JET_OFFLINE` and :data:`JET_TARGETS`.
    """
    physical = pd.DataFrame(
        {
            "event": table["event"].to_numpy(),
            "l1Index": table["l1Index"].to_numpy(),
            "nMatchedPF": table["nMatchedPF"].to_numpy(),
            "ptL1": jet_pt_gev(table["hwPt"].to_numpy()),
            "etaL1": jet_eta(table["hwEta"].to_numpy()),
            "phiL1": jet_phi_rad(table["hwPhi"].to_numpy()),
            "ptPF": table["ptPF"].to_numpy(dtype=np.float64),
        }
    )
    physical["dPt"] = physical["ptL1"] - physical["ptPF"]
    return physical


def run_jet_preprocess(
    settings: JetPreprocessSettings, input_path: Path, output_dir: Path
) -> dict:
    """Pre-process the jet table into ``output_dir``.

    Writes ``train.parquet``, ``val.parquet``, ``test.parquet``,
    ``scalers.json`` and ``summary.json`` (row counts after each step),
    replacing the folder atomically.

    Raises:
        InputFileError: when the table is missing or lacks a column, has a
            non-positive ptPF, or leaves fewer than 10 jets after the pT window.
    """
    parquet = open_parquet(input_path)
    check_columns(
        input_path,
        parquet.schema_arrow,
        ("event", "l1Index", "nMatchedPF", *_HARDWARE),
        ("ptPF",),
    )
    table = parquet.read(columns=list(JET_TABLE_COLUMNS)).to_pandas()
    counts = {"input": len(table)}

    table = table.drop_duplicates(ignore_index=True)
    counts["after_duplicates"] = len(table)
    if (table["ptPF"] <= 0).any():
        row = int(np.flatnonzero(table["ptPF"].to_numpy() <= 0)[0])
        raise InputFileError(
            f"{input_path}: column ptPF is {table['ptPF'].iloc[row]} in row {row}, expected "
            "a positive summed PF pT; rebuild the table with 'l1recal ingest --task jet'"
        )
    physical = jet_to_physical(table)
    keep = (physical["ptL1"] > settings.pt_min_gev) & (
        physical["ptL1"] < settings.pt_max_gev
    )
    physical = physical.loc[keep].reset_index(drop=True)
    counts["after_pt_window"] = len(physical)
    if len(physical) < 10:
        raise InputFileError(
            f"{input_path}: only {len(physical)} jets inside {settings.pt_min_gev} < pT < "
            f"{settings.pt_max_gev} GeV; need at least 10 to split into train, validation and test"
        )

    counts = write_splits(
        physical, settings, output_dir, counts, JET_INPUTS, JET_TARGETS
    )
    logger.info("pre-processed %s: %s", input_path, counts)
    return counts
