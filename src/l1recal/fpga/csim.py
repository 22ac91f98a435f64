"""C simulation of the firmware: bit-accurate fixed-point emulation on the test split.

hls4ml compiles the generated C++ (ap_fixed arithmetic, as synthesised) into a
shared library with g++, and ``predict`` runs it. The emulation takes the
min-max scaled inputs and returns scaled targets, so the bundle's scalers are
applied around it: physical inputs -> scaled -> firmware -> inverse target
scaling -> physical corrections -> the task's RMSE.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from l1recal.config import HlsSettings
from l1recal.data.preprocess import load_split
from l1recal.fpga.convert import FirmwareSource, compile_graph, convert, load_source
from l1recal.fpga.estimate import estimate_resources
from l1recal.fpga.precision import parse_fixed
from l1recal.tasks import Task

logger = logging.getLogger(__name__)

_SAMPLE_SEED = 0


def load_test_split(data_dir: Path, max_rows: int = 0) -> pd.DataFrame:
    """Return the test split, or a seeded random subset of ``max_rows`` rows (0 keeps all)."""
    test = load_split(data_dir, "test")
    if 0 < max_rows < len(test):
        rows = np.sort(
            np.random.default_rng(_SAMPLE_SEED).choice(
                len(test), max_rows, replace=False
            )
        )
        test = test.iloc[rows].reset_index(drop=True)
    return test


def emulate(graph: Any, x_scaled: np.ndarray) -> np.ndarray:
    """Run the compiled fixed-point emulation on scaled inputs (n, d); returns (n, t) float64."""
    outputs = graph.predict(np.ascontiguousarray(x_scaled, dtype=np.float64))
    outputs = np.asarray(outputs, dtype=np.float64)
    return outputs.reshape(len(x_scaled), -1)


def compare_fixed_to_float(
    task: Task,
    frame: pd.DataFrame,
    source: FirmwareSource,
    float_scaled: np.ndarray,
    fixed_scaled: np.ndarray,
) -> dict:
    """Return the physical RMSE of float and fixed-point predictions and their deviation.

    Returns:
        ``{"float": {metric: rmse}, "fixed": {metric: rmse},
        "relative_loss": {metric: (fixed - float) / float},
        "max_abs_deviation": max |fixed - float| over rows and targets, in
        scaled target units (the firmware's output), and
        "max_abs_deviation_physical": {target: max |fixed - float|} in the
        target's physical unit}``.
    """
    target_scaler = source.recalibrator.target_scaler
    float_rmse = task.rmse(frame, target_scaler.inverse(float_scaled))
    fixed_rmse = task.rmse(frame, target_scaler.inverse(fixed_scaled))
    deviation = np.abs(fixed_scaled - float_scaled)
    physical = deviation * np.abs(target_scaler.scale)
    return {
        "float": float_rmse,
        "fixed": fixed_rmse,
        "relative_loss": {
            metric: (fixed_rmse[metric] - float_rmse[metric]) / float_rmse[metric]
            for metric in task.metrics
        },
        "max_abs_deviation": float(deviation.max()) if deviation.size else 0.0,
        "max_abs_deviation_physical": {
            target: float(physical[:, index].max()) if physical.size else 0.0
            for index, target in enumerate(task.targets)
        },
    }


def emulate_source(
    source: FirmwareSource,
    settings: HlsSettings,
    x_scaled: np.ndarray,
    work_dir: Path,
    precision: str | None = None,
) -> tuple[np.ndarray, Any]:
    """Convert, compile and run the emulation of one model at one precision.

    Returns:
        The scaled fixed-point predictions (n, t) and the hls4ml graph.
    """
    graph = convert(source, settings, work_dir, precision)
    compile_graph(graph)
    return emulate(graph, x_scaled), graph


def csim_model(
    source: FirmwareSource,
    frame: pd.DataFrame,
    task: Task,
    settings: HlsSettings,
    work_dir: Path,
) -> dict:
    """Return the C-simulation record of one model at ``settings.precision``.

    The record follows the ``reports/hls/<kind>_csim.json`` contract (precision,
    float, fixed, max_abs_deviation, relative_loss) and adds the family, the
    test rows, the per-target physical deviation and the operation estimate.
    """
    x_scaled = source.recalibrator.input_scaler.transform(
        frame[list(task.inputs)].to_numpy()
    )
    float_scaled = np.asarray(source.recalibrator.predict_scaled(x_scaled), np.float64)
    fixed_scaled, graph = emulate_source(source, settings, x_scaled, work_dir)
    record = {
        "family": source.family,
        "precision": str(parse_fixed(settings.precision)),
        **compare_fixed_to_float(task, frame, source, float_scaled, fixed_scaled),
        "test_rows": len(frame),
        "estimate": estimate_resources(graph, settings.reuse_factor),
    }
    logger.info(
        "%s at %s: float %s, fixed %s",
        source.name,
        record["precision"],
        _format_metrics(record["float"]),
        _format_metrics(record["fixed"]),
    )
    return record


def _format_metrics(values: dict[str, float]) -> str:
    return ", ".join(f"{key} {value:.4f}" for key, value in values.items())


def precision_scan(
    source: FirmwareSource,
    frame: pd.DataFrame,
    task: Task,
    settings: HlsSettings,
    work_dir: Path,
) -> dict:
    """Emulate one model at every width of ``settings.scan_widths``.

    Every type is ``ap_fixed<W, settings.scan_integer_bits>``; weights still widen
    in integer bits where they would overflow.

    Returns:
        ``{"model", "family", "integer_bits", "tolerance", "float": {metric: rmse},
        "points": [{"width", "precision", "fixed", "relative_loss",
        "max_abs_deviation"}], "narrowest_safe_width": W or None}``, where the
        narrowest safe width is the smallest W from which every wider scanned
        width keeps each metric's relative loss at or below the tolerance.
    """
    x_scaled = source.recalibrator.input_scaler.transform(
        frame[list(task.inputs)].to_numpy()
    )
    float_scaled = np.asarray(source.recalibrator.predict_scaled(x_scaled), np.float64)
    points = []
    float_rmse: dict[str, float] = {}
    for width in sorted(settings.scan_widths):
        precision = f"ap_fixed<{width},{settings.scan_integer_bits}>"
        fixed_scaled, _ = emulate_source(
            source, settings, x_scaled, work_dir / f"w{width}", precision
        )
        comparison = compare_fixed_to_float(
            task, frame, source, float_scaled, fixed_scaled
        )
        float_rmse = comparison["float"]
        points.append(
            {
                "width": width,
                "precision": precision,
                "fixed": comparison["fixed"],
                "relative_loss": comparison["relative_loss"],
                "max_abs_deviation": comparison["max_abs_deviation"],
            }
        )
        logger.info(
            "scan %s %s: relative loss %s",
            source.name,
            precision,
            _format_metrics(comparison["relative_loss"]),
        )
    return {
        "model": source.name,
        "family": source.family,
        "integer_bits": settings.scan_integer_bits,
        "tolerance": settings.scan_tolerance,
        "test_rows": len(frame),
        "float": float_rmse,
        "points": points,
        "narrowest_safe_width": narrowest_safe_width(points, settings.scan_tolerance),
    }


def narrowest_safe_width(points: list[dict], tolerance: float) -> int | None:
    """Return the smallest width from which all wider points stay within ``tolerance``, or None."""
    safe = None
    for point in sorted(points, key=lambda p: p["width"], reverse=True):
        if max(point["relative_loss"].values()) > tolerance:
            break
        safe = point["width"]
    return safe


def plot_scan(scan: dict, path: Path) -> None:
    """Draw relative RMSE loss per metric versus total width, with the tolerance, into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from l1recal.atomic import atomic_path

    figure, axes = plt.subplots(figsize=(6, 4))
    if scan.get("points"):
        widths = [point["width"] for point in scan["points"]]
        for metric in scan["float"]:
            losses = [point["relative_loss"][metric] for point in scan["points"]]
            axes.plot(widths, losses, marker="o", label=metric)
        axes.axhline(scan["tolerance"], color="grey", linestyle="--", label="tolerance")
        # symlog: a negative loss (fixed better than float) stays visible.
        axes.set_yscale("symlog", linthresh=1e-4)
        axes.set_xlabel(f"total width W of ap_fixed<W,{scan['integer_bits']}> (bits)")
        axes.set_ylabel("relative RMSE loss (fixed - float) / float")
        axes.set_title(f"{scan['model']}: fixed-point emulation")
        axes.legend()
    else:
        axes.text(0.5, 0.5, scan.get("message", "no scan"), ha="center", va="center")
        axes.set_axis_off()
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=120)
    plt.close(figure)


def format_csim_table(report: dict, task: Task) -> str:
    """Return a Markdown table comparing the firmware of every model side by side."""
    header = (
        "| model | family | precision | "
        + " | ".join(f"{metric} float | {metric} fixed" for metric in task.metrics)
        + " | max deviation (scaled) | multiplications | DSP (upper bound) | table lookups |"
    )
    columns = 3 + 2 * len(task.metrics) + 4
    lines = [header, "|" + "---|" * 3 + "---:|" * (columns - 3)]
    for name, record in report.items():
        estimate = record["estimate"]
        metrics = " | ".join(
            f"{record['float'][m]:.4f} | {record['fixed'][m]:.4f}" for m in task.metrics
        )
        lines.append(
            f"| {name} | {record['family']} | {record['precision']} | {metrics} | "
            f"{record['max_abs_deviation']:.3g} | {estimate['multiplications']} | "
            f"{estimate['dsp_upper_bound']} | {estimate['table_lookups']} |"
        )
    return (
        f"Fixed-point C simulation on the {task.name} test split; resources are "
        "operation-count estimates (no vendor synthesis).\n\n" + "\n".join(lines) + "\n"
    )


def best_network(report: dict, baseline: dict[str, float]) -> str | None:
    """Return the network with the lowest mean float RMSE relative to the L1 baseline, or None."""
    scores = {
        name: float(np.mean([record["float"][m] / baseline[m] for m in baseline]))
        for name, record in report.items()
        if record["family"] == "network"
    }
    return min(scores, key=scores.__getitem__) if scores else None


def run_hls_csim(
    settings: HlsSettings,
    data_dir: Path,
    model_dirs: list[Path],
    report_path: Path,
    scan_path: Path,
    plot_path: Path,
    table_path: Path,
    task: Task,
) -> dict:
    """Emulate every bundle under ``model_dirs`` and scan the precision of the best network.

    Writes the C-simulation report (model name -> record of :func:`csim_model`),
    the scan JSON and PNG of :func:`precision_scan`, and a Markdown table.
    The scan emulates the first ``settings.scan_test_rows`` of the emulated rows.

    Raises:
        ModelError: when a bundle was trained for another task.
        HlsError: when conversion or compilation fails.
    """
    from l1recal.atomic import write_json, write_text
    from l1recal.errors import ModelError
    from l1recal.models.bundle import list_bundles

    frame = load_test_split(data_dir, settings.max_test_rows)
    report: dict[str, dict] = {}
    sources: dict[str, FirmwareSource] = {}
    with tempfile.TemporaryDirectory(prefix="l1recal-hls-") as work:
        for models_dir in model_dirs:
            for bundle_dir in list_bundles(models_dir):
                source = load_source(bundle_dir)
                bundle_task = source.recalibrator.card.get("task", "muon")
                if bundle_task != task.name:
                    raise ModelError(
                        f"{bundle_dir}: model was trained for task {bundle_task!r}, not {task.name!r}"
                    )
                sources[source.name] = source
                report[source.name] = csim_model(
                    source, frame, task, settings, Path(work) / source.name
                )
        best = best_network(report, task.rmse(frame, None))
        if best is None:
            scan = {
                "model": None,
                "points": [],
                "message": f"no network bundle under {', '.join(map(str, model_dirs))}; nothing to scan",
            }
        else:
            scan_frame = frame
            if 0 < settings.scan_test_rows < len(frame):
                scan_frame = frame.iloc[: settings.scan_test_rows].reset_index(
                    drop=True
                )
            scan = precision_scan(
                sources[best], scan_frame, task, settings, Path(work) / f"scan_{best}"
            )
    write_json(report_path, report)
    write_json(scan_path, scan)
    plot_scan(scan, plot_path)
    write_text(table_path, format_csim_table(report, task))
    return report
