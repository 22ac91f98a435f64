"""Re-calibration tasks: which columns a model reads and predicts, and how it is scored.

The training and evaluation stages are shared by muons and jets; a task names
the columns of its pre-processed splits and its metric function.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from l1recal.errors import ConfigError
from l1recal.evaluation.metrics import jet_rmse, muon_rmse
from l1recal.schema import (
    JET_INPUTS,
    JET_METRICS,
    JET_TARGETS,
    MUON_INPUTS,
    MUON_METRICS,
    MUON_TARGETS,
)


@dataclass(frozen=True)
class Task:
    """One re-calibration problem.

    Attributes:
        name: ``muon`` or ``jet``.
        inputs: physical L1 input columns of the splits.
        targets: correction columns (L1 minus offline) of the splits.
        metrics: metric names returned by ``rmse``.
        offline_pt: offline pT column (GeV), the denominator of the relative pT residual.
        rmse: maps a split and predicted corrections (n, targets), or None for
            the uncorrected L1 baseline, to the RMSE per metric.
    """

    name: str
    inputs: tuple[str, ...]
    targets: tuple[str, ...]
    metrics: tuple[str, ...]
    offline_pt: str
    rmse: Callable[[pd.DataFrame, np.ndarray | None], dict[str, float]]


MUON = Task("muon", MUON_INPUTS, MUON_TARGETS, MUON_METRICS, "ptReco", muon_rmse)
JET = Task("jet", JET_INPUTS, JET_TARGETS, JET_METRICS, "ptPF", jet_rmse)
TASKS = {task.name: task for task in (MUON, JET)}


def get_task(name: str) -> Task:
    """Return a task by name, raising :class:`ConfigError` with the valid names otherwise."""
    try:
        return TASKS[name]
    except KeyError:
        raise ConfigError(
            f"unknown task {name!r}; valid tasks: {', '.join(TASKS)}"
        ) from None
