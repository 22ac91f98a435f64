"""Per-target sample weights that make the training loss match the evaluation metric.

The pT correction is trained on dPt = pT_L1 - pT_offline, but scored as the
relative residual (pT - pT_offline) / pT_offline. Weighting the squared error
of the pT column by 1 / pT_offline^2 makes the two identical:
sum_i (p_i - y_i)^2 / y_i^2 is the squared relative residual. The best constant
prediction inside a bin of L1 values is then E[1/y] / E[1/y^2] instead of E[y].
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from l1recal.tasks import Task


def pt_target_weights(frame: pd.DataFrame, task: Task, mode: str) -> np.ndarray | None:
    """Return weights (n, targets) for ``mode`` "relative", or None for "none".

    The pT column (the first target) gets 1 / pT_offline^2 scaled to mean 1 on
    this split; every other column gets 1.
    """
    if mode == "none":
        return None
    inverse_square = 1.0 / frame[task.offline_pt].to_numpy(dtype=np.float64) ** 2
    weights = np.ones((len(frame), len(task.targets)))
    weights[:, 0] = inverse_square / inverse_square.mean()
    return weights
