"""The ``evaluate`` stage: test-split RMSE of every trained model and the L1 baseline.

Besides the metrics JSON and the RMSE table, the stage can write the cost of
every model: operation counts and CPU throughput. It can also write the
figures, the HTML report with its Markdown summary, and the same numbers as
Kubeflow Pipelines v2 UI outputs (see :class:`EvaluateOutputs`).
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

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


@dataclass
class Evaluation:
    """Scores and predictions of every model on the test split.

    Attributes:
        test: the test split.
        results: RMSE per metric and ``test_rows``, for ``gmt`` and every model.
        predictions: physical corrections (n, targets) per model name.
        bundles: bundle folder per model name.
    """

    test: pd.DataFrame
    results: dict[str, dict]
    predictions: dict[str, np.ndarray] = field(default_factory=dict)
    bundles: dict[str, Path] = field(default_factory=dict)


def evaluate_with_predictions(
    data_dir: Path, model_dirs: list[Path], task: Task = MUON
) -> Evaluation:
    """Score the baseline and every bundle in ``model_dirs`` on the test split, keeping predictions.

    Raises:
        ModelError: when a bundle was trained for another task.
    """
    test = load_split(data_dir, "test")
    evaluation = Evaluation(test, {BASELINE: task.rmse(test, None)})
    inputs = test[list(task.inputs)].to_numpy()
    for models_dir in model_dirs:
        for bundle_dir in list_bundles(models_dir):
            model = load_bundle(bundle_dir)
            bundle_task = model.card.get("task", "muon")
            if bundle_task != task.name:
                raise ModelError(
                    f"{bundle_dir}: model was trained for task {bundle_task!r}, not {task.name!r}"
                )
            corrections = model.predict(inputs)
            evaluation.predictions[model.name] = corrections
            evaluation.bundles[model.name] = bundle_dir
            evaluation.results[model.name] = task.rmse(test, corrections)
            logger.info("%s: %s", model.name, evaluation.results[model.name])
    for values in evaluation.results.values():
        values["test_rows"] = len(test)
    return evaluation


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
    return evaluate_with_predictions(data_dir, model_dirs, task).results


def baseline_ratio(
    metrics: dict[str, float],
    baseline: dict[str, float],
    names: list[str] | tuple[str, ...],
) -> float:
    """Return the mean over metrics of a model's RMSE divided by the L1 baseline's."""
    return sum(metrics[m] / baseline[m] for m in names) / len(names)


def best_model(results: dict[str, dict], task: Task = MUON) -> str | None:
    """Return the model with the lowest mean RMSE ratio to the L1 baseline, or None without models."""
    ratios = {
        name: baseline_ratio(values, results[BASELINE], task.metrics)
        for name, values in results.items()
        if name not in (BASELINE, NOISE_FLOOR)
    }
    return min(ratios, key=lambda name: (ratios[name], name)) if ratios else None


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


@dataclass(frozen=True)
class EvaluateOutputs:
    """Optional outputs of the evaluate stage; None skips one.

    Attributes:
        report_html: the self-contained HTML report.
        report_markdown: the Markdown summary.
        figures_dir: folder of the PNG figures; without it, figures for the
            HTML report are drawn in a temporary folder.
        costs: JSON of operation counts and throughput per model.
        tuning_dir: folder of tuning-curve PNG files to include, if it exists.
        figure_models: models that get residual figures besides the best one.
        kfp_metrics: file of a Kubeflow ``system.Metrics`` artifact: a flat
            JSON object of scalar metrics.
        kfp_executor_output: the Kubeflow v2 executor output file
            (``/tmp/kfp_outputs/output_metadata.json`` in a pipeline pod). The
            scalars become the metadata of the output artifact
            ``kfp_metrics_name``, and the Kubeflow UI shows that metadata.
        kfp_metrics_name: name of the component's Metrics output.
    """

    report_html: Path | None = None
    report_markdown: Path | None = None
    figures_dir: Path | None = None
    costs: Path | None = None
    tuning_dir: Path | None = None
    figure_models: tuple[str, ...] = ()
    kfp_metrics: Path | None = None
    kfp_executor_output: Path | None = None
    kfp_metrics_name: str = "metrics"

    def any_requested(self) -> bool:
        """Return True when at least one output is requested."""
        return any(
            path is not None
            for path in (
                self.report_html,
                self.report_markdown,
                self.figures_dir,
                self.costs,
                self.kfp_metrics,
                self.kfp_executor_output,
            )
        )


def run_evaluate(
    settings: EvaluateSettings,
    data_dir: Path,
    model_dirs: list[Path],
    metrics_path: Path,
    table_path: Path,
    noise_floor_path: Path | None = None,
    task: Task = MUON,
    outputs: EvaluateOutputs | None = None,
) -> dict[str, dict]:
    """Evaluate, then write the metrics JSON, the Markdown table and any requested ``outputs``.

    The metrics JSON maps each model name, ``gmt`` (the L1 baseline) and, for
    simulated data, ``noise_floor`` to ``{metric: RMSE, "test_rows": n}``.
    """
    evaluation = evaluate_with_predictions(data_dir, model_dirs, task)
    results = evaluation.results
    noise_floor = None
    written = results
    if noise_floor_path is not None and noise_floor_path.exists():
        noise_floor = json.loads(noise_floor_path.read_text())
        written = {**results, NOISE_FLOOR: {m: noise_floor[m] for m in task.metrics}}
    write_json(metrics_path, written)
    write_text(table_path, format_table(results, noise_floor, task))
    if outputs is not None and outputs.any_requested():
        write_outputs(settings, evaluation, written, task, outputs)
    return written


def model_costs(
    evaluation: Evaluation, settings: EvaluateSettings
) -> dict[str, dict[str, Any]]:
    """Return, per model, its operation counts and, unless disabled, its measured throughput."""
    from l1recal.evaluation.opcounts import count_bundle
    from l1recal.evaluation.throughput import measure_throughput

    costs = {
        name: {"operations": count_bundle(bundle)}
        for name, bundle in evaluation.bundles.items()
    }
    if settings.throughput_rows > 0 and costs:
        speeds = measure_throughput(
            evaluation.bundles,
            settings.throughput_rows,
            settings.throughput_seconds,
        )
        for name, speed in speeds.items():
            costs[name]["throughput"] = speed
    return costs


def kfp_scalars(
    metrics: dict[str, dict], costs: dict[str, dict[str, Any]], task: Task
) -> dict[str, float]:
    """Return the flat scalar metrics shown in the Kubeflow UI, e.g. ``muon_nn_id4_phi``."""
    scalars: dict[str, float] = {}
    for name, values in metrics.items():
        for metric in task.metrics:
            if metric in values:
                scalars[f"{task.name}_{name}_{metric}"] = float(values[metric])
    for name, cost in costs.items():
        scalars[f"{task.name}_{name}_ops_exact"] = float(
            cost["operations"]["exact"]["total"]
        )
        scalars[f"{task.name}_{name}_ops_study"] = float(
            cost["operations"]["study_formula"]
        )
        speed = cost.get("throughput")
        if speed:
            scalars[f"{task.name}_{name}_rows_per_s_1_thread"] = float(
                speed["rows_per_s_1_thread"]
            )
            scalars[f"{task.name}_{name}_rows_per_s_all_threads"] = float(
                speed["rows_per_s_all_threads"]
            )
    return scalars


def write_kfp_executor_output(
    path: Path, artifact: str, metadata: dict[str, float]
) -> None:
    """Merge ``metadata`` into the executor output file as the metadata of output ``artifact``.

    The Kubeflow v2 launcher reads this file after the command exits and copies
    each listed artifact's metadata into the metadata store. For a
    ``system.Metrics`` artifact the UI shows those scalars.
    """
    document: dict[str, Any] = {}
    if path.exists():
        document = json.loads(path.read_text() or "{}")
    artifacts = document.setdefault("artifacts", {})
    entry = artifacts.setdefault(artifact, {"artifacts": [{}]})
    entry["artifacts"][0].setdefault("metadata", {}).update(metadata)
    write_json(path, document)


def write_outputs(
    settings: EvaluateSettings,
    evaluation: Evaluation,
    metrics: dict[str, dict],
    task: Task,
    outputs: EvaluateOutputs,
) -> None:
    """Write the costs, figures, report and Kubeflow outputs requested in ``outputs``."""
    from l1recal.models.bundle import code_version, data_version

    start = time.perf_counter()
    costs = model_costs(evaluation, settings)
    logger.info(
        "operation counts and throughput of %d models: %.1f s",
        len(costs),
        time.perf_counter() - start,
    )
    if outputs.costs is not None:
        write_json(outputs.costs, costs)

    best = best_model(evaluation.results, task)
    if outputs.report_html or outputs.report_markdown or outputs.figures_dir:
        with tempfile.TemporaryDirectory(prefix="l1recal-figures-") as scratch:
            figures_dir = outputs.figures_dir or Path(scratch)
            start = time.perf_counter()
            figures = _draw_figures(
                settings, evaluation, metrics, task, outputs, best, figures_dir
            )
            logger.info("%d figures: %.1f s", len(figures), time.perf_counter() - start)
            _write_reports(
                evaluation,
                metrics,
                costs,
                figures,
                best,
                task,
                outputs,
                data_version(),
                code_version(),
            )

    if outputs.kfp_metrics is not None or outputs.kfp_executor_output is not None:
        scalars = kfp_scalars(metrics, costs, task)
        if outputs.kfp_metrics is not None:
            write_json(outputs.kfp_metrics, scalars)
        if outputs.kfp_executor_output is not None:
            write_kfp_executor_output(
                outputs.kfp_executor_output, outputs.kfp_metrics_name, scalars
            )


def _draw_figures(
    settings: EvaluateSettings,
    evaluation: Evaluation,
    metrics: dict[str, dict],
    task: Task,
    outputs: EvaluateOutputs,
    best: str | None,
    figures_dir: Path,
) -> list:
    from l1recal.evaluation.figures import tuning_figures, write_figures

    requested = [*settings.figure_models, *outputs.figure_models]
    unknown = [name for name in requested if name not in evaluation.predictions]
    if unknown:
        logger.warning("no model named %s; no figures drawn for it", ", ".join(unknown))
    models = [best] if best else []
    models += [
        name
        for name in requested
        if name in evaluation.predictions and name not in models
    ]
    figures = write_figures(
        figures_dir,
        task.name,
        evaluation.test,
        evaluation.predictions,
        models,
        settings.figure_rows,
        simulated=(
            NOISE_FLOOR in metrics if settings.simulated is None else settings.simulated
        ),
    )
    return figures + tuning_figures(outputs.tuning_dir)


def _write_reports(
    evaluation: Evaluation,
    metrics: dict[str, dict],
    costs: dict[str, dict[str, Any]],
    figures: list,
    best: str | None,
    task: Task,
    outputs: EvaluateOutputs,
    data_version: str | None,
    code_version: str,
) -> None:
    from l1recal.evaluation.report import ReportInputs, render_html, render_markdown

    inputs = ReportInputs(
        task=task.name,
        metrics=metrics,
        costs=costs,
        figures=figures,
        best_model=best,
        data_version=data_version,
        code_version=code_version,
        metric_names=task.metrics,
    )
    if outputs.report_html is not None:
        write_text(outputs.report_html, render_html(inputs))
    if outputs.report_markdown is not None:
        # Without a figures folder the PNG files are temporary, so the summary
        # lists no figure links.
        linked = inputs if outputs.figures_dir is not None else _without_figures(inputs)
        write_text(
            outputs.report_markdown, render_markdown(linked, outputs.report_markdown)
        )


def _without_figures(inputs: Any) -> Any:
    from dataclasses import replace

    return replace(inputs, figures=[])
