"""The ``tune`` stage: Falkon tuning curves, one setting varied with the others fixed.

For each sweep the stage fits one Falkon model per value on the training split
and writes the validation RMSE per metric (JSON) and the curve (PNG).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from l1recal.atomic import atomic_path
from l1recal.config import FalkonModelSettings, TuneSettings, TuneSweep
from l1recal.data.preprocess import load_scalers, load_split
from l1recal.models.falkon import Falkon
from l1recal.models.kernels import Kernel
from l1recal.models.weights import pt_target_weights
from l1recal.tasks import MUON, Task

logger = logging.getLogger(__name__)

_AXIS_LABELS = {
    "sigma": r"$\sigma$",
    "penalty": r"$\lambda$",
    "centres": "M (Nystrom centres)",
}


def _fit_and_score(
    settings: FalkonModelSettings,
    block_memory_mb: int,
    train: tuple[np.ndarray, np.ndarray, np.ndarray | None],
    validation,
    scalers,
    task: Task,
) -> dict[str, float]:
    kernel = Kernel(
        settings.kernel,
        sigma=settings.sigma,
        alpha=settings.alpha,
        beta=settings.beta,
        degree=settings.degree,
    )
    model = Falkon(
        kernel,
        settings.centres,
        settings.penalty,
        settings.max_iterations,
        settings.seed,
        block_memory_mb,
    )
    model.fit(*train)
    corrections = scalers["targets"].inverse(
        model.predict(scalers["inputs"].transform(validation[list(task.inputs)]))
    )
    return task.rmse(validation, corrections)


def sweep(
    settings: TuneSettings, curve: TuneSweep, data_dir: Path, task: Task = MUON
) -> list[dict[str, float]]:
    """Return one record per value of ``curve``: the value, each metric's validation RMSE, the fit time."""
    scalers = load_scalers(data_dir)
    train_frame = load_split(data_dir, "train")
    validation = load_split(data_dir, "val")
    x = scalers["inputs"].transform(train_frame[list(task.inputs)].to_numpy())
    y = scalers["targets"].transform(train_frame[list(task.targets)].to_numpy())
    train = (x, y, pt_target_weights(train_frame, task, settings.pt_weighting))

    records = []
    for value in curve.values:
        cast = int(value) if curve.parameter == "centres" else float(value)
        point = settings.base.model_copy(update={curve.parameter: cast})
        start = time.perf_counter()
        scores = _fit_and_score(
            point, settings.block_memory_mb, train, validation, scalers, task
        )
        records.append(
            {
                "value": cast,
                **scores,
                "fit_seconds": round(time.perf_counter() - start, 3),
            }
        )
        logger.info("tune %s = %g: %s", curve.parameter, cast, scores)
    return records


def plot_curve(records: list[dict], curve: TuneSweep, task: Task, path: Path) -> None:
    """Draw validation RMSE against the swept value, one panel per metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep

    plt.style.use(mplhep.style.CMS)
    figure, axes = plt.subplots(
        1, len(task.metrics), figsize=(6 * len(task.metrics), 5.5), squeeze=False
    )
    values = [record["value"] for record in records]
    for axis, metric in zip(axes[0], task.metrics, strict=True):
        axis.plot(values, [record[metric] for record in records], marker="o")
        axis.set_xscale("log")
        axis.set_xlabel(_AXIS_LABELS[curve.parameter])
        axis.set_ylabel(f"validation RMSE, {metric}")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def run_tune(
    settings: TuneSettings, data_dir: Path, output_dir: Path, task: Task = MUON
) -> dict[str, list]:
    """Run every sweep and write ``<parameter>.json`` and ``<parameter>.png`` into ``output_dir``."""
    results: dict[str, list] = {}
    with atomic_path(output_dir, is_dir=True) as staging:
        for curve in settings.sweeps:
            records = sweep(settings, curve, data_dir, task)
            fixed = settings.base.model_dump(
                exclude={curve.parameter, "name", "preset"}
            )
            payload = {
                "task": task.name,
                "parameter": curve.parameter,
                "fixed": fixed,
                "points": records,
            }
            (staging / f"{curve.parameter}.json").write_text(
                json.dumps(payload, indent=2) + "\n"
            )
            plot_curve(records, curve, task, staging / f"{curve.parameter}.png")
            results[curve.parameter] = records
    return results
