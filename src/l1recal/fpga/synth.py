"""HLS synthesis of the approved models and the parsing of its reports.

``run_hls_synth`` converts the approved model of each kind into an hls4ml
project. When the vendor tool is on PATH (``vitis-run`` for the Vitis
backend, ``vivado_hls`` for Vivado), it runs hls4ml's ``build()`` (C
synthesis). Either way it packs the project folder into
``<firmware_dir>/<kind>_<model>.tar.gz``. Without the tool, the metrics
record "synthesis skipped: vitis-run not found on PATH" and carry the
operation-count estimate instead.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from l1recal.config import HlsSettings
from l1recal.errors import InputFileError
from l1recal.fpga.convert import HlsError, convert, load_source, quiet_hls4ml
from l1recal.fpga.estimate import estimate_resources
from l1recal.fpga.precision import parse_fixed

logger = logging.getLogger(__name__)

VENDOR_TOOLS = {"Vitis": "vitis-run", "Vivado": "vivado_hls"}
RESOURCES = ("LUT", "FF", "DSP", "BRAM_18K", "URAM")


class SynthesisSkippedError(HlsError):
    """Synthesis was required but the vendor tool is not on PATH."""


def vendor_tool(backend: str) -> str:
    """Return the command that synthesises for ``backend``."""
    return VENDOR_TOOLS[backend]


def skip_message(backend: str) -> str:
    """Return the message recorded when the vendor tool of ``backend`` is missing."""
    return f"synthesis skipped: {vendor_tool(backend)} not found on PATH"


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if value.is_integer() else value


def synthesis_metrics(report: dict, clock_period_ns: float) -> dict:
    """Turn the ``CSynthesisReport`` of hls4ml's ``parse_vivado_report`` into metrics.

    Args:
        report: the dictionary returned by ``hls4ml.report.parse_vivado_report``.
        clock_period_ns: target clock period, used when the report lacks one.

    Returns:
        ``{"latency_cycles": {"best", "worst"}, "latency_ns": {"best", "worst"},
        "initiation_interval": {"min", "max"}, "target_clock_ns",
        "estimated_clock_ns", "resources": {LUT, FF, DSP, BRAM_18K, URAM},
        "available": {...}, "fraction": {resource: used / available}}``; latency
        in ns is cycles times the target clock period.

    Raises:
        HlsError: when the report has no C synthesis section.
    """
    synth = report.get("CSynthesisReport") if report else None
    if not synth:
        raise HlsError(
            "C synthesis report not found: no <project>_csynth.xml under the "
            "solution's syn/report folder; check the build log"
        )
    clock = _number(synth.get("TargetClockPeriod")) or clock_period_ns
    best = _number(synth.get("BestLatency"))
    worst = _number(synth.get("WorstLatency"))
    resources = {name: _number(synth.get(name)) for name in RESOURCES if name in synth}
    available = {
        name: _number(synth.get(f"Available{name}"))
        for name in RESOURCES
        if f"Available{name}" in synth
    }
    fraction = {
        name: resources[name] / available[name]
        for name in resources
        if available.get(name) and resources[name] is not None
    }
    return {
        "latency_cycles": {"best": best, "worst": worst},
        "latency_ns": {
            "best": None if best is None else best * clock,
            "worst": None if worst is None else worst * clock,
        },
        "initiation_interval": {
            "min": _number(synth.get("IntervalMin")),
            "max": _number(synth.get("IntervalMax")),
        },
        "target_clock_ns": clock,
        "estimated_clock_ns": _number(synth.get("EstimatedClockPeriod")),
        "resources": resources,
        "available": available,
        "fraction": fraction,
    }


def parse_synthesis_report(project_dir: Path, clock_period_ns: float) -> dict:
    """Parse the C synthesis report of an hls4ml project folder with hls4ml's reader.

    The reader (``hls4ml.report.parse_vivado_report``) reads ``project.tcl``,
    the solution list in ``<project>_prj/hls.app`` (``vivado_hls.app`` for
    Vivado HLS) and ``<project>_prj/<solution>/syn/report/<project>_csynth.xml``;
    Vitis and Vivado HLS write the same layout.

    Raises:
        HlsError: when the folder has no readable synthesis report.
    """
    from hls4ml.report import parse_vivado_report

    if not (project_dir / "project.tcl").is_file():
        raise HlsError(f"{project_dir}: no project.tcl; not an hls4ml project folder")
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            report = parse_vivado_report(str(project_dir))
    except (OSError, IndexError, AttributeError, ValueError) as error:
        raise HlsError(
            f"{project_dir}: unreadable synthesis report: {error}"
        ) from error
    for line in buffer.getvalue().splitlines():
        logger.debug("hls4ml report: %s", line)
    try:
        return synthesis_metrics(report or {}, clock_period_ns)
    except HlsError as error:
        raise HlsError(f"{project_dir}: {error}") from None


def pack_project(project_dir: Path, archive: Path) -> None:
    """Pack an hls4ml project folder into a gzip tar archive, atomically."""
    from l1recal.atomic import atomic_path

    with atomic_path(archive) as temporary, tarfile.open(temporary, "w:gz") as tar:
        tar.add(project_dir, arcname=archive.name.removesuffix(".tar.gz"))


def read_approved(path: Path) -> dict:
    """Read ``reports/approved.json``.

    Raises:
        InputFileError: when the file is missing or not a JSON object.
    """
    try:
        payload = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputFileError(
            f"{path}: approval record not found; run 'l1recal approve' first"
        ) from None
    except json.JSONDecodeError as error:
        raise InputFileError(f"{path}: invalid JSON: {error}") from error
    if not isinstance(payload, dict):
        raise InputFileError(
            f"{path}: expected a JSON object keyed by task (muon, jet)"
        )
    return payload


def synthesise_kind(
    kind: str,
    decision: dict,
    settings: HlsSettings,
    firmware_dir: Path,
    work_dir: Path,
    tool_found: bool,
) -> dict:
    """Convert, synthesise (when ``tool_found``) and pack the approved model of one kind.

    Returns:
        The kind's entry of the synthesis metrics JSON.
    """
    bundle_dir = Path(decision["bundle"])
    source = load_source(bundle_dir)
    project_dir = work_dir / kind
    graph = convert(source, settings, project_dir)
    with quiet_hls4ml():
        graph.write()
    entry: dict[str, Any] = {
        "model": source.name,
        "family": source.family,
        "bundle": str(bundle_dir),
        "backend": settings.backend,
        "part": settings.part,
        "clock_period_ns": settings.clock_period_ns,
        "precision": str(parse_fixed(settings.precision)),
        "reuse_factor": settings.reuse_factor,
        "strategy": settings.strategy,
        "io_type": settings.io_type,
        "estimate": estimate_resources(graph, settings.reuse_factor),
    }
    if tool_found:
        logger.info(
            "%s: synthesising %s with %s",
            kind,
            source.name,
            vendor_tool(settings.backend),
        )
        try:
            graph.build(csim=False, synth=True, cosim=False, export=False, vsynth=False)
        except Exception as error:  # hls4ml raises bare Exception when the build fails
            raise HlsError(
                f"{project_dir}: synthesis of {source.name} failed: {error}; see "
                "build_stdout.log in the project"
            ) from error
        entry["synthesis"] = "done"
        entry.update(parse_synthesis_report(project_dir, settings.clock_period_ns))
    else:
        entry["synthesis"] = "skipped"
        entry["message"] = skip_message(settings.backend)
        logger.warning("%s: %s", kind, entry["message"])
    archive = firmware_dir / f"{kind}_{source.name}.tar.gz"
    pack_project(project_dir, archive)
    entry["firmware"] = str(archive)
    return entry


def run_hls_synth(
    settings: HlsSettings,
    approved_path: Path,
    firmware_dir: Path,
    metrics_path: Path,
    require_synthesis: bool = False,
) -> dict:
    """Synthesise the approved model of every kind in ``approved.json`` and write the metrics.

    ``firmware_dir`` is replaced as a whole and contains one packed project per
    approved kind. A kind without an approved model gets
    ``{"approved": false, "message": ...}``.

    Raises:
        SynthesisSkippedError: when ``require_synthesis`` is set and the vendor
            tool is missing (the outputs are written first).
        HlsError: when conversion or synthesis fails.
    """
    from l1recal.atomic import atomic_path, write_json

    approved = read_approved(approved_path)
    tool_found = shutil.which(vendor_tool(settings.backend)) is not None
    metrics: dict[str, dict] = {}
    with (
        atomic_path(firmware_dir, is_dir=True) as firmware,
        tempfile.TemporaryDirectory(prefix="l1recal-synth-") as work,
    ):
        for kind, decision in approved.items():
            if not isinstance(decision, dict) or not decision.get("approved"):
                metrics[kind] = {
                    "approved": False,
                    "message": f"no approved {kind} model; nothing to synthesise",
                }
                continue
            entry = synthesise_kind(
                kind, decision, settings, firmware, Path(work), tool_found
            )
            # The archive was packed into the temporary folder that replaces firmware_dir.
            entry["firmware"] = str(firmware_dir / Path(entry["firmware"]).name)
            metrics[kind] = {"approved": True, **entry}
    write_json(metrics_path, metrics)
    if require_synthesis and not tool_found:
        raise SynthesisSkippedError(
            f"{skip_message(settings.backend)}, and --require-synthesis was given; "
            f"install Vitis HLS or drop --require-synthesis"
        )
    return metrics
