"""The evaluation report: one self-contained HTML file and a Markdown summary.

The HTML file embeds every figure as a base64 PNG and its style sheet inline,
and loads nothing else (no scripts, fonts or network resources), so it opens
offline and as a Kubeflow HTML artifact. The Markdown summary contains the
same tables and links the PNG files by relative path.

Tables:

* RMSE on the test split: the L1 baseline, every model, the simulator's noise
  floor (simulated data only) and the study's published L1 figures.
* Cost per inference: the study's approximate operation count, the exact count
  of the saved model, and the measured CPU throughput with its ratio to the
  40 MHz bunch-crossing rate.
"""

from __future__ import annotations

import base64
import datetime
import html
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from l1recal.evaluation.evaluate import BASELINE, NOISE_FLOOR
from l1recal.evaluation.figures import FigureRecord
from l1recal.schema import STUDY_GMT_RMSE, STUDY_JET_RMSE, STUDY_MODEL_RMSE

_METRIC_LABELS = {"phi": "phi (rad)", "eta": "eta", "pt_rel": "pT / pT_reco"}
_JET_METRIC_LABELS = {"pt_rel": "pT / pT_PF"}
_CSS = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.3em; margin-top: 2em; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #bbb; padding: 0.3em 0.7em; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
tr.reference td { color: #666; font-style: italic; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.9em; color: #444; }
p.meta { color: #555; font-size: 0.9em; }
"""


@dataclass
class ReportInputs:
    """Everything one report shows.

    Attributes:
        task: ``muon`` or ``jet``.
        metrics: the metrics JSON: ``gmt``, one entry per model, and ``noise_floor``
            for simulated data.
        costs: per model, ``operations`` (from :mod:`opcounts`) and, when measured,
            ``throughput`` (from :mod:`throughput`).
        figures: the figures, in order.
        best_model: the model with the lowest mean RMSE ratio to L1, or None.
        data_version: DVC hash of the raw data, or None.
        code_version: package version and commit.
        metric_names: the task's metric names, in table order.
    """

    task: str
    metrics: dict[str, dict[str, Any]]
    costs: dict[str, dict[str, Any]]
    figures: list[FigureRecord]
    best_model: str | None
    data_version: str | None
    code_version: str
    metric_names: tuple[str, ...]
    generated: str = field(
        default_factory=lambda: datetime.datetime.now(datetime.UTC).isoformat(
            timespec="seconds"
        )
    )


def _labels(task: str) -> dict[str, str]:
    return _JET_METRIC_LABELS if task == "jet" else _METRIC_LABELS


def _objects(task: str) -> str:
    return "jets" if task == "jet" else "muons"


def rmse_rows(inputs: ReportInputs) -> list[tuple[str, list[str], bool]]:
    """Return the RMSE table rows: (label, formatted values, is a reference row)."""
    rows = []
    for name, values in inputs.metrics.items():
        if name == NOISE_FLOOR:
            continue
        if name == BASELINE:
            label = (
                "L1 (GMT, uncorrected)" if inputs.task == "muon" else "L1 (uncorrected)"
            )
        else:
            label = f"{name} (best)" if name == inputs.best_model else name
        rows.append((label, [f"{values[m]:.4f}" for m in inputs.metric_names], False))
    if NOISE_FLOOR in inputs.metrics:
        floor = inputs.metrics[NOISE_FLOOR]
        rows.append(
            (
                "noise floor (simulation truth)",
                [f"{floor[m]:.4f}" for m in inputs.metric_names],
                True,
            )
        )
    if inputs.task == "muon":
        rows.append(
            (
                "study: L1 (GMT)",
                [f"{STUDY_GMT_RMSE[m]:.3f}" for m in inputs.metric_names],
                True,
            )
        )
        for name, values in STUDY_MODEL_RMSE.items():
            rows.append(
                (
                    f"study: {name}",
                    [f"{values[m]:.3f}" for m in inputs.metric_names],
                    True,
                )
            )
    else:
        rows.append(("study: L1", [f"{STUDY_JET_RMSE['l1']:.3f}"], True))
        rows.append(("study: NN ID 6", [f"{STUDY_JET_RMSE['nn_id6']:.2f}"], True))
    return rows


COST_HEADER = (
    "model",
    "family",
    "study formula",
    "multiplications",
    "additions",
    "exp",
    "other non-linear",
    "exact total",
    "{objects}/s, 1 thread",
    "{objects}/s, all threads",
    "all threads / 40 MHz",
)


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def cost_rows(inputs: ReportInputs) -> list[list[str]]:
    """Return the cost table rows, one per model, formatted."""
    rows = []
    for name, cost in inputs.costs.items():
        operations = cost["operations"]
        exact = operations["exact"]
        speed = cost.get("throughput") or {}
        threads = speed.get("threads")
        ratio = speed.get("ratio_to_40mhz_all_threads")
        rows.append(
            [
                name,
                operations["family"],
                f"{operations['study_formula']:,}",
                f"{exact['multiplications']:,}",
                f"{exact['additions']:,}",
                f"{exact['exponentials']:,}",
                f"{exact['nonlinear']:,}",
                f"{exact['total']:,}",
                _rate(speed.get("rows_per_s_1_thread")),
                _rate(speed.get("rows_per_s_all_threads"))
                + (f" ({threads})" if threads else ""),
                "-" if ratio is None else f"{ratio:.2e}",
            ]
        )
    return rows


def _cost_header(task: str) -> list[str]:
    return [column.format(objects=_objects(task)) for column in COST_HEADER]


def _test_rows(inputs: ReportInputs) -> int | None:
    return inputs.metrics.get(BASELINE, {}).get("test_rows")


COST_NOTE = (
    "Exact counts are for one input row with BatchNorm folded into the Dense layers; "
    "the affine input and target scalers fold into the first and last layers of a "
    "network and cost d + t multiplications and additions more for Falkon. The study "
    "formula is Hn (d + Nl Hn + t) for networks and M t for Falkon. Throughput is "
    "measured on this machine's CPU through the serving prediction path, in batches."
)


def render_markdown(inputs: ReportInputs, markdown_path: Path) -> str:
    """Return the Markdown summary; figure links are relative to ``markdown_path``'s folder."""
    labels = _labels(inputs.task)
    lines = [
        f"# l1recal evaluation: {inputs.task}",
        "",
        f"Test split: {_test_rows(inputs)} {_objects(inputs.task)}. Data version: "
        f"{inputs.data_version or 'unknown'}. Code version: {inputs.code_version}. "
        f"Generated {inputs.generated}.",
        "",
        "## RMSE on the test split",
        "",
        "| model | " + " | ".join(labels[m] for m in inputs.metric_names) + " |",
        "|---|" + "---:|" * len(inputs.metric_names),
    ]
    for label, values, reference in rmse_rows(inputs):
        label = f"*{label}*" if reference else label
        lines.append(f"| {label} | " + " | ".join(values) + " |")
    if inputs.best_model:
        lines += [
            "",
            f"Best model (lowest mean RMSE ratio to L1): **{inputs.best_model}**.",
        ]
    if inputs.costs:
        header = _cost_header(inputs.task)
        lines += [
            "",
            "## Cost per inference",
            "",
            "| " + " | ".join(header) + " |",
            "|---|---|" + "---:|" * (len(header) - 2),
        ]
        lines += ["| " + " | ".join(row) + " |" for row in cost_rows(inputs)]
        lines += ["", COST_NOTE]
    if inputs.figures:
        lines += ["", "## Figures", ""]
        for record in inputs.figures:
            relative = os.path.relpath(record.path, markdown_path.parent)
            lines.append(
                f"* [{record.title}]({Path(relative).as_posix()}): {record.caption}"
            )
    return "\n".join(lines) + "\n"


def _html_table(header: list[str], rows: list[tuple[list[str], bool]]) -> str:
    parts = [
        "<table>",
        "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>",
    ]
    for cells, reference in rows:
        css = ' class="reference"' if reference else ""
        tds = [f"<td>{html.escape(cells[0])}</td>"]
        tds += [f'<td class="number">{html.escape(cell)}</td>' for cell in cells[1:]]
        parts.append(f"<tr{css}>" + "".join(tds) + "</tr>")
    parts.append("</table>")
    return "\n".join(parts)


def _embedded_figure(record: FigureRecord) -> str:
    encoded = base64.b64encode(record.path.read_bytes()).decode("ascii")
    return (
        f'<figure id="fig-{html.escape(record.name)}">'
        f'<img alt="{html.escape(record.title)}" src="data:image/png;base64,{encoded}">'
        f"<figcaption><b>{html.escape(record.title)}.</b> {html.escape(record.caption)}</figcaption>"
        "</figure>"
    )


def render_html(inputs: ReportInputs) -> str:
    """Return the self-contained HTML report."""
    labels = _labels(inputs.task)
    title = f"l1recal evaluation: {inputs.task}"
    body = [
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="meta">Test split: {_test_rows(inputs)} {_objects(inputs.task)}. '
        f"Data version: {html.escape(str(inputs.data_version or 'unknown'))}. "
        f"Code version: {html.escape(inputs.code_version)}. Generated {html.escape(inputs.generated)}.</p>",
        "<h2>RMSE on the test split</h2>",
        _html_table(
            ["model", *[labels[m] for m in inputs.metric_names]],
            [
                ([label, *values], reference)
                for label, values, reference in rmse_rows(inputs)
            ],
        ),
    ]
    if inputs.best_model:
        body.append(
            f"<p>Best model (lowest mean RMSE ratio to L1): <b>{html.escape(inputs.best_model)}</b>.</p>"
        )
    if inputs.costs:
        body += [
            "<h2>Cost per inference</h2>",
            _html_table(
                _cost_header(inputs.task), [(row, False) for row in cost_rows(inputs)]
            ),
            f"<p>{html.escape(COST_NOTE)}</p>",
        ]
    if inputs.figures:
        body.append("<h2>Figures</h2>")
        body += [_embedded_figure(record) for record in inputs.figures]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n"
        # An empty icon keeps the browser from requesting favicon.ico.
        '<link rel="icon" href="data:,">\n'
        f"<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )
