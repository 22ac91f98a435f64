"""The ``evaluate`` stage: test-split RMSE of every trained model and the L1 baseline."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from l1recal.atomic import write_json, write_text
from l1recal.config import EvaluateSettings
from l1recal.data.preprocess import load_split
from l1recal.evaluation.metrics import muon_rmse
from l1recal.models.bundle import list_bundles, load_bundle
from l1recal.schema import MUON_INPUTS, MUON_METRICS, STUDY_GMT_RMSE

logger = logging.getLogger(__name__)

BASELINE = "gmt"
NOISE_FLOOR = "noise_floor"
_LABELS = {"phi": "phi (rad)", "eta": "eta", "pt_rel": "pT / pT_reco"}


def evaluate_models(
    data_dir: Path, model_dirs: list[Path], settings: EvaluateSettings
) -> dict[str, dict]:
    """Return RMSE per metric on the test split for the baseline and every bundle in ``model_dirs``."""
    test = load_split(data_dir, "test")
    results: dict[str, dict] = {BASELINE: muon_rmse(test)}
    inputs = test[list(MUON_INPUTS)].to_numpy()
    for models_dir in model_dirs:
        for bundle_dir in list_bundles(models_dir):
            model = load_bundle(bundle_dir)
            corrections = model.predict(inputs)
            results[model.name] = muon_rmse(test, corrections)
            logger.info("%s: %s", model.name, results[model.name])
    for values in results.values():
        values["test_rows"] = len(test)
    return results


def format_table(results: dict[str, dict], noise_floor: dict | None) -> str:
    """Return a Markdown table in the form of the study's RMSE table."""
    header = "| model | " + " | ".join(_LABELS[m] for m in MUON_METRICS) + " |"
    lines = [header, "|---|" + "---:|" * len(MUON_METRICS)]
    for name, values in results.items():
        label = "L1 (GMT, uncorrected)" if name == BASELINE else name
        lines.append(
            f"| {label} | "
            + " | ".join(f"{values[m]:.4f}" for m in MUON_METRICS)
            + " |"
        )
    if noise_floor is not None:
        lines.append(
            "| noise floor (simulation truth) | "
            + " | ".join(f"{noise_floor[m]:.4f}" for m in MUON_METRICS)
            + " |"
        )
    lines.append(
        "| study: L1 (GMT) | "
        + " | ".join(f"{STUDY_GMT_RMSE[m]:.3f}" for m in MUON_METRICS)
        + " |"
    )
    test_rows = next(iter(results.values()))["test_rows"]
    return (
        f"RMSE on the muon test split ({test_rows} muons)\n\n" + "\n".join(lines) + "\n"
    )


def run_evaluate(
    settings: EvaluateSettings,
    data_dir: Path,
    model_dirs: list[Path],
    metrics_path: Path,
    table_path: Path,
    noise_floor_path: Path | None = None,
) -> dict[str, dict]:
    """Evaluate, then write the metrics JSON and the Markdown table."""
    results = evaluate_models(data_dir, model_dirs, settings)
    noise_floor = None
    if noise_floor_path is not None and noise_floor_path.exists():
        noise_floor = json.loads(noise_floor_path.read_text())
        results_with_floor = {
            **results,
            NOISE_FLOOR: {m: noise_floor[m] for m in MUON_METRICS},
        }
    else:
        results_with_floor = results
    write_json(metrics_path, results_with_floor)
    table = format_table(results, noise_floor)
    write_text(table_path, table)
    return results_with_floor
