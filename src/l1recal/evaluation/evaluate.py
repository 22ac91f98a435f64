"""The ``evaluate`` stage: test-split RMSE of every trained model and the L1 baseline."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from l1recal.atomic import write_json, write_text
from l1recal.config import EvaluateSettings
from l1recal.data.preprocess import load_split
from l1recal.errors import ModelError
from l1recal.models.bundle import list_bundles, load_bundle
from l1recal.schema import STUDY_GMT_RMSE, STUDY_JET_RMSE
from l1recal.tasks import MUON, Task

logger = logging.getLogger(__name__)

#: Key of the uncorrected L1 values in the metrics JSON.
BASELINE = "gmt"
NOISE_FLOOR = "noise_floor"
_LABELS = {"phi": "phi (rad)", "eta": "eta", "pt_rel": "pT / pT_reco"}
_JET_LABELS = {"pt_rel": "pT / pT_PF"}


def evaluate_models(
    data_dir: Path,
    model_dirs: list[Path],
    settings: EvaluateSettings,
    task: Task = MUON,
) -> dict[str, dict]:
    """Return RMSE per metric on the test split for the baseline and every bundle in ``model_dirs``.

    Raises:
        ModelError: when a bundle was trained for another task.
    """
    test = load_split(data_dir, "test")
    results: dict[str, dict] = {BASELINE: task.rmse(test, None)}
    inputs = test[list(task.inputs)].to_numpy()
    for models_dir in model_dirs:
        for bundle_dir in list_bundles(models_dir):
            model = load_bundle(bundle_dir)
            bundle_task = model.card.get("task", "muon")
            if bundle_task != task.name:
                raise ModelError(
                    f"{bundle_dir}: model was trained for task {bundle_task!r}, not {task.name!r}"
                )
            results[model.name] = task.rmse(test, model.predict(inputs))
            logger.info("%s: %s", model.name, results[model.name])
    for values in results.values():
        values["test_rows"] = len(test)
    return results


def format_table(
    results: dict[str, dict], noise_floor: dict | None, task: Task = MUON
) -> str:
    """Return a Markdown table in the form of the study's RMSE table."""
    labels = _JET_LABELS if task.name == "jet" else _LABELS
    header = "| model | " + " | ".join(labels[m] for m in task.metrics) + " |"
    lines = [header, "|---|" + "---:|" * len(task.metrics)]
    for name, values in results.items():
        label = "L1 (uncorrected)" if name == BASELINE else name
        if name == BASELINE and task.name == "muon":
            label = "L1 (GMT, uncorrected)"
        lines.append(
            f"| {label} | "
            + " | ".join(f"{values[m]:.4f}" for m in task.metrics)
            + " |"
        )
    if noise_floor is not None:
        lines.append(
            "| noise floor (simulation truth) | "
            + " | ".join(f"{noise_floor[m]:.4f}" for m in task.metrics)
            + " |"
        )
    if task.name == "muon":
        lines.append(
            "| study: L1 (GMT) | "
            + " | ".join(f"{STUDY_GMT_RMSE[m]:.3f}" for m in task.metrics)
            + " |"
        )
    else:
        lines.append(f"| study: L1 | {STUDY_JET_RMSE['l1']:.3f} |")
    test_rows = next(iter(results.values()))["test_rows"]
    objects = "muons" if task.name == "muon" else "jets"
    return (
        f"RMSE on the {task.name} test split ({test_rows} {objects})\n\n"
        + "\n".join(lines)
        + "\n"
    )


def run_evaluate(
    settings: EvaluateSettings,
    data_dir: Path,
    model_dirs: list[Path],
    metrics_path: Path,
    table_path: Path,
    noise_floor_path: Path | None = None,
    task: Task = MUON,
) -> dict[str, dict]:
    """Evaluate, then write the metrics JSON and the Markdown table.

    The metrics JSON maps each model name, ``gmt`` (the L1 baseline) and, for
    simulated data, ``noise_floor`` to ``{metric: RMSE, "test_rows": n}``.
    """
    results = evaluate_models(data_dir, model_dirs, settings, task)
    noise_floor = None
    written = results
    if noise_floor_path is not None and noise_floor_path.exists():
        noise_floor = json.loads(noise_floor_path.read_text())
        written = {**results, NOISE_FLOOR: {m: noise_floor[m] for m in task.metrics}}
    write_json(metrics_path, written)
    write_text(table_path, format_table(results, noise_floor, task))
    return written
