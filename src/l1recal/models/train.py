"""The ``train`` stages: networks and Falkon models on the pre-processed muon splits.

Both read the same split folder and write one bundle per model under their own
output folder, so the two families share no output and can run side by side.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from l1recal.atomic import atomic_path
from l1recal.config import FalkonTrainSettings, NetworkTrainSettings
from l1recal.data.preprocess import load_scalers, load_split
from l1recal.models.bundle import KERAS_FILE, save_falkon, write_card, write_scalers
from l1recal.models.falkon import (
    Falkon,
    default_device,
    falkon_library_available,
    fit_with_falkon_library,
    predict_solution,
)
from l1recal.models.kernels import Kernel
from l1recal.models.network import get_preset, preset_card, train_network
from l1recal.models.scalers import AffineScaler
from l1recal.models.weights import pt_target_weights
from l1recal.tasks import MUON, Task

logger = logging.getLogger(__name__)


def _scaled_split(
    data_dir: Path,
    name: str,
    scalers: dict[str, AffineScaler],
    task: Task,
    pt_weighting: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Return scaled inputs (n, d), scaled targets (n, t) and the loss weights of one split."""
    frame = load_split(data_dir, name)
    x = scalers["inputs"].transform(frame[list(task.inputs)].to_numpy())
    y = scalers["targets"].transform(frame[list(task.targets)].to_numpy())
    return x, y, pt_target_weights(frame, task, pt_weighting)


def run_train_network(
    settings: NetworkTrainSettings, data_dir: Path, output_dir: Path, task: Task = MUON
) -> list[str]:
    """Train every preset in ``settings.presets``; one bundle per preset under ``output_dir``.

    Returns:
        The model names written.
    """
    presets = [get_preset(preset_id) for preset_id in settings.presets]
    scalers = load_scalers(data_dir)
    x_train, y_train, w_train = _scaled_split(
        data_dir, "train", scalers, task, settings.pt_weighting
    )
    x_val, y_val, w_val = _scaled_split(
        data_dir, "val", scalers, task, settings.pt_weighting
    )

    with atomic_path(output_dir, is_dir=True) as staging:
        for preset in presets:
            logger.info(
                "training %s on %d rows (batch %d)",
                preset.name,
                len(x_train),
                settings.batch_size,
            )
            model, record = train_network(
                preset,
                x_train,
                y_train,
                x_val,
                y_val,
                settings.batch_size,
                settings.max_epochs,
                settings.patience,
                settings.seed,
                w_train,
                w_val,
            )
            bundle = staging / preset.name
            bundle.mkdir()
            model.save(bundle / KERAS_FILE)
            write_scalers(bundle, scalers)
            write_card(
                bundle,
                {
                    "name": preset.name,
                    "family": "network",
                    "task": task.name,
                    "preset": preset_card(preset),
                    "batch_size": settings.batch_size,
                    "pt_weighting": settings.pt_weighting,
                    "seed": settings.seed,
                    "epochs_run": record.epochs_run,
                    "best_epoch": record.best_epoch,
                    "best_val_loss": record.best_val_loss,
                    "training_seconds": round(record.seconds, 2),
                    "train_rows": len(x_train),
                    "history": record.history,
                },
            )
            logger.info(
                "%s: best val_loss %.5f at epoch %d of %d (%.1f s)",
                preset.name,
                record.best_val_loss,
                record.best_epoch,
                record.epochs_run,
                record.seconds,
            )
    return [get_preset(preset_id).name for preset_id in settings.presets]


def run_train_falkon(
    settings: FalkonTrainSettings, data_dir: Path, output_dir: Path, task: Task = MUON
) -> list[str]:
    """Train every Falkon model in ``settings.models``; one bundle per model under ``output_dir``."""
    scalers = load_scalers(data_dir)
    x_train, y_train, w_train = _scaled_split(
        data_dir, "train", scalers, task, settings.pt_weighting
    )
    x_val, y_val, w_val = _scaled_split(
        data_dir, "val", scalers, task, settings.pt_weighting
    )
    # The falkon package's solver has no per-target weights; with weighting on, the built-in one runs.
    use_library = falkon_library_available() and w_train is None

    with atomic_path(output_dir, is_dir=True) as staging:
        for model_settings in settings.models:
            kernel = Kernel(
                model_settings.kernel,
                sigma=model_settings.sigma,
                alpha=model_settings.alpha,
                beta=model_settings.beta,
                degree=model_settings.degree,
            )
            logger.info(
                "training %s: %s kernel, M=%d, lambda=%g on %d rows (%s, %s)",
                model_settings.name,
                kernel.name,
                model_settings.centres,
                model_settings.penalty,
                len(x_train),
                default_device(),
                "falkon package" if use_library else "built-in solver",
            )
            start = time.perf_counter()
            residuals: list[float] = []
            if use_library:
                solution = fit_with_falkon_library(
                    kernel,
                    model_settings.centres,
                    model_settings.penalty,
                    model_settings.max_iterations,
                    model_settings.seed,
                    x_train,
                    y_train,
                )
            else:
                estimator = Falkon(
                    kernel,
                    model_settings.centres,
                    model_settings.penalty,
                    model_settings.max_iterations,
                    model_settings.seed,
                    settings.block_memory_mb,
                    cache_memory_mb=settings.kernel_cache_mb,
                ).fit(x_train, y_train, w_train)
                solution = estimator.solution
                residuals = estimator.residuals
            seconds = time.perf_counter() - start

            # The validation loss uses the training weights, as the network's val_loss does.
            val_weights = 1.0 if w_val is None else w_val
            val_mse = float(
                np.mean(val_weights * (predict_solution(solution, x_val) - y_val) ** 2)
            )
            bundle = staging / model_settings.name
            bundle.mkdir()
            save_falkon(bundle, solution)
            write_scalers(bundle, scalers)
            write_card(
                bundle,
                {
                    "name": model_settings.name,
                    "family": "falkon",
                    "task": task.name,
                    "kernel": kernel.to_dict(),
                    "settings": model_settings.model_dump(),
                    "solver": "falkon package" if use_library else "l1recal built-in",
                    "pt_weighting": settings.pt_weighting,
                    "training_seconds": round(seconds, 2),
                    "train_rows": len(x_train),
                    "val_mse_scaled": val_mse,
                    "cg_relative_residuals": residuals,
                },
            )
            logger.info(
                "%s: validation MSE (scaled) %.5f (%.1f s)",
                model_settings.name,
                val_mse,
                seconds,
            )
    return [model.name for model in settings.models]
