"""The ``l1recal hls`` sub-commands: convert, csim and synth.

Only typer is imported here; hls4ml and TensorFlow load inside the commands.
All three read the ``hls`` section of ``params.yaml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

hls_app = typer.Typer(
    help="FPGA firmware of the models with hls4ml: conversion, C simulation, synthesis.",
    no_args_is_help=True,
)

ParamsOption = Annotated[
    Path, typer.Option("--params", help="Parameter file with one section per stage.")
]
SECTION = "hls"


def _settings(params: Path, precision: str | None = None):
    from l1recal.config import HlsSettings, load_section

    settings = load_section(params, SECTION, HlsSettings)
    if precision is not None:
        settings = HlsSettings.model_validate(
            {**settings.model_dump(), "precision": precision}
        )
    return settings


@hls_app.command("convert")
def convert_command(
    bundle: Annotated[
        Path, typer.Argument(help="Model bundle folder (network or Falkon).")
    ],
    output_dir: Annotated[Path, typer.Argument(help="Folder for the hls4ml project.")],
    precision: Annotated[
        str | None, typer.Option(help="Override hls.precision, e.g. 'ap_fixed<18,8>'.")
    ] = None,
    compile_library: Annotated[
        bool,
        typer.Option(
            "--compile/--no-compile", help="Also compile the C++ emulation with g++."
        ),
    ] = False,
    params: ParamsOption = Path("params.yaml"),
) -> None:
    """Write the hls4ml project of a bundle; it takes scaled inputs and returns scaled targets."""
    from l1recal.fpga.convert import (
        compile_graph,
        convert,
        graph_layer_classes,
        load_source,
        quiet_hls4ml,
    )

    settings = _settings(params, precision)
    graph = convert(load_source(bundle), settings, output_dir)
    if compile_library:
        compile_graph(graph)
    else:
        with quiet_hls4ml():
            graph.write()
    typer.echo(f"{output_dir}: {' -> '.join(graph_layer_classes(graph))}")


@hls_app.command("csim")
def csim_command(
    data_dir: Annotated[
        Path, typer.Argument(help="Folder of pre-processed splits (test.parquet).")
    ],
    models: Annotated[
        list[Path],
        typer.Option("--models", help="Folder of model bundles; repeat for several."),
    ],
    report: Annotated[Path, typer.Option(help="C-simulation JSON to write.")] = Path(
        "reports/hls/muon_csim.json"
    ),
    scan: Annotated[Path, typer.Option(help="Precision-scan JSON to write.")] = Path(
        "reports/hls/muon_scan.json"
    ),
    scan_plot: Annotated[
        Path, typer.Option(help="Precision-scan PNG to write.")
    ] = Path("reports/hls/muon_scan.png"),
    table: Annotated[
        Path, typer.Option(help="Markdown comparison table to write.")
    ] = Path("reports/hls/muon_csim.md"),
    task: Annotated[
        str, typer.Option("--task", help="Re-calibration task: muon or jet.")
    ] = "muon",
    params: ParamsOption = Path("params.yaml"),
) -> None:
    """Emulate every bundle at fixed point on the test split and scan the best network's precision."""
    from l1recal.fpga.csim import run_hls_csim
    from l1recal.tasks import get_task

    run_hls_csim(
        _settings(params),
        data_dir,
        models,
        report,
        scan,
        scan_plot,
        table,
        get_task(task),
    )
    typer.echo(table.read_text())


@hls_app.command("synth")
def synth_command(
    approved: Annotated[
        Path, typer.Option(help="approved.json from 'l1recal approve'.")
    ] = Path("reports/approved.json"),
    firmware_dir: Annotated[
        Path, typer.Option(help="Folder for one packed project per approved kind.")
    ] = Path("firmware"),
    metrics: Annotated[
        Path, typer.Option(help="Synthesis metrics JSON to write.")
    ] = Path("reports/hls/synth.json"),
    require_synthesis: Annotated[
        bool,
        typer.Option(help="Exit non-zero when the vendor tool is not on PATH."),
    ] = False,
    params: ParamsOption = Path("params.yaml"),
) -> None:
    """Synthesise the approved models with the vendor HLS tool, or record why it was skipped."""
    from l1recal.fpga.synth import run_hls_synth

    result = run_hls_synth(
        _settings(params), approved, firmware_dir, metrics, require_synthesis
    )
    for kind, entry in result.items():
        status = (
            entry.get("message") or f"synthesised, {entry.get('latency_cycles')} cycles"
        )
        typer.echo(f"{kind}: {status}")
