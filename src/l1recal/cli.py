"""The ``l1recal`` command line: one sub-command per pipeline stage.

Each sub-command shares its name with the DVC stage (and the Kubeflow
component) that runs it, reads its settings from its section of
``params.yaml`` and takes its input and output paths as arguments.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from l1recal.errors import L1RecalError

logger = logging.getLogger("l1recal")

app = typer.Typer(
    help="Re-calibrate CMS Level-1 trigger muons and jets with neural networks and Falkon kernel models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
train_app = typer.Typer(
    help="Train models on the pre-processed splits.", no_args_is_help=True
)
app.add_typer(train_app, name="train")

from l1recal.kfp.cli import kfp_app, retrain  # noqa: E402 (light: typer only)

app.add_typer(kfp_app, name="kfp")
app.command("retrain")(retrain)

from l1recal.fpga.cli import hls_app  # noqa: E402 (light: typer only)

app.add_typer(hls_app, name="hls")

from l1recal.kfp.cli import kfp_app, retrain  # noqa: E402 (light: typer only)

app.add_typer(kfp_app, name="kfp")
app.command("retrain")(retrain)

ParamsOption = Annotated[
    Path, typer.Option("--params", help="Parameter file with one section per stage.")
]
TaskOption = Annotated[
    str, typer.Option("--task", help="Re-calibration task: muon or jet.")
]
DEFAULT_PARAMS = Path("params.yaml")


def stage_section(stage: str, task: str) -> str:
    """Return the ``params.yaml`` section of a stage: ``train_network`` for muons, ``jet_train_network`` for jets."""
    return stage if task == "muon" else f"{task}_{stage}"


@app.callback()
def configure(
    log_level: Annotated[
        str, typer.Option(help="Logging level: DEBUG, INFO, WARNING or ERROR.")
    ] = "INFO",
) -> None:
    """Configure logging for every sub-command."""
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    for noisy in ("tensorflow", "absl", "h5py", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@app.command()
def simulate(
    output_dir: Annotated[
        Path,
        typer.Argument(
            help="Folder for muon_events.parquet, jet_events.parquet and noise_floor.json."
        ),
    ] = Path("data/raw"),
    params: ParamsOption = DEFAULT_PARAMS,
    events: Annotated[
        int | None, typer.Option(help="Override simulate.n_events.")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Override simulate.seed.")] = None,
    jet_events: Annotated[
        int | None,
        typer.Option(help="Override simulate.jet_events (0 writes no jet file)."),
    ] = None,
) -> None:
    """Write simulated ZeroBias muon events in the raw layout, and their noise floor."""
    from l1recal.config import SimulateSettings, load_section
    from l1recal.simulation.stage import run_simulate

    settings = load_section(params, "simulate", SimulateSettings)
    overrides = {
        key: value
        for key, value in (
            ("n_events", events),
            ("seed", seed),
            ("jet_events", jet_events),
        )
        if value is not None
    }
    if overrides:
        settings = settings.model_copy(update=overrides)
    run_simulate(settings, output_dir)


@app.command()
def ingest(
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="Raw event files or glob patterns (parquet, ROOT, HDF5, CSV)."
        ),
    ],
    output_path: Annotated[
        Path,
        typer.Argument(
            help="Table to write (parquet): one row per matched muon, or per matched L1 jet."
        ),
    ],
    stats: Annotated[
        Path | None,
        typer.Option(
            help="Write counts as JSON here: per-file muon counts, or the jet matching report."
        ),
    ] = None,
    matches: Annotated[
        Path | None,
        typer.Option(help="Jets: write one row per matched PF jet (parquet) here."),
    ] = None,
    column_map: Annotated[
        str | None,
        typer.Option(
            help="Column map YAML, or a shipped map name (default, l1ntuple, nanoaod)."
        ),
    ] = None,
    input_format: Annotated[
        str | None,
        typer.Option(
            "--format", help="Reader for every input: parquet, root, hdf5 or csv (default: by extension)."
        ),
    ] = None,
    tree: Annotated[
        str | None,
        typer.Option(help="ROOT tree (or HDF5 group) to read, overriding the column map."),
    ] = None,
    skip_bad_files: Annotated[
        bool,
        typer.Option(
            help="Skip and report inputs that fail to read, instead of stopping without output."
        ),
    ] = False,
    params: ParamsOption = DEFAULT_PARAMS,
    task: TaskOption = "muon",
) -> None:
    """Flatten raw events: one row per matched muon, or dR-match jets (--task jet)."""
    from l1recal.config import IngestSettings, JetIngestSettings, load_section
    from l1recal.data.column_map import load_column_map
    from l1recal.tasks import get_task

    get_task(task)
    options = {
        "column_map": load_column_map(column_map) if column_map else None,
        "input_format": input_format,
        "tree": tree,
        "skip_bad_files": skip_bad_files,
    }
    if task == "jet":
        from l1recal.data.jets import ingest_jets

        settings = load_section(params, stage_section("ingest", task), JetIngestSettings)
        ingest_jets(settings, inputs, output_path, matches, stats, **options)
        return
    from l1recal.data.ingest import run_ingest

    run_ingest(
        load_section(params, "ingest", IngestSettings),
        inputs,
        output_path,
        stats,
        **options,
    )


@app.command()
def validate(
    inputs: Annotated[
        list[Path],
        typer.Argument(
            help="Parquet file(s) to validate: one for raw-muon, muon-table and raw-jet; "
            "the jet table and its match records, in that order, for jet-table."
        ),
    ],
    kind: Annotated[
        str,
        typer.Option(
            "--kind", help="Table kind: raw-muon, muon-table, raw-jet or jet-table."
        ),
    ],
    output_dir: Annotated[
        Path,
        typer.Option(
            help="Folder for <kind>.json, <kind>.md and <kind>_data_docs.tar.gz."
        ),
    ] = Path("reports/validation"),
    column_map: Annotated[
        str | None,
        typer.Option(
            help="Raw kinds: column map YAML, or a shipped map name, naming the raw "
            "columns (flat parquet layouts without transforms)."
        ),
    ] = None,
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Check a table with its Great Expectations suites; exit 1 and list the failures when one fails."""
    # Great Expectations logs every registered API at INFO while it is imported.
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    from l1recal.config import JetValidateSettings, load_section
    from l1recal.data.column_map import load_column_map
    from l1recal.validation.runner import DataValidationError, get_kind, run_validate

    # This module pins its own logger to INFO and logs a line per context.
    logging.getLogger("great_expectations.data_context.types.base").setLevel(
        logging.WARNING
    )
    spec = get_kind(kind)
    section = "jet_validate" if spec.settings is JetValidateSettings else "validate"
    try:
        run_validate(
            load_section(params, section, spec.settings),
            kind,
            inputs,
            output_dir,
            load_column_map(column_map) if column_map else None,
        )
    except DataValidationError as error:
        typer.echo(error.failures, err=True)
        raise


@app.command()
def preprocess(
    input_path: Annotated[
        Path,
        typer.Argument(help="Flattened muon or jet table (parquet) from 'ingest'."),
    ],
    output_dir: Annotated[
        Path, typer.Argument(help="Folder for the train/val/test splits and scalers.")
    ],
    params: ParamsOption = DEFAULT_PARAMS,
    task: TaskOption = "muon",
) -> None:
    """Apply the pre-processing steps and split into train, validation and test."""
    from l1recal.config import JetPreprocessSettings, PreprocessSettings, load_section
    from l1recal.data.preprocess import run_preprocess
    from l1recal.tasks import get_task

    get_task(task)
    if task == "jet":
        from l1recal.data.jet_preprocess import run_jet_preprocess

        section = stage_section("preprocess", task)
        run_jet_preprocess(
            load_section(params, section, JetPreprocessSettings), input_path, output_dir
        )
        return
    run_preprocess(
        load_section(params, "preprocess", PreprocessSettings), input_path, output_dir
    )


@train_app.command("network")
def train_network(
    data_dir: Annotated[Path, typer.Argument(help="Folder of pre-processed splits.")],
    output_dir: Annotated[
        Path, typer.Argument(help="Folder for one bundle per network preset.")
    ],
    params: ParamsOption = DEFAULT_PARAMS,
    task: TaskOption = "muon",
) -> None:
    """Train the TensorFlow networks listed in train_network.presets."""
    from l1recal.config import NetworkTrainSettings, load_section
    from l1recal.models.train import run_train_network
    from l1recal.tasks import get_task

    section = stage_section("train_network", task)
    run_train_network(
        load_section(params, section, NetworkTrainSettings),
        data_dir,
        output_dir,
        get_task(task),
    )


@train_app.command("falkon")
def train_falkon(
    data_dir: Annotated[Path, typer.Argument(help="Folder of pre-processed splits.")],
    output_dir: Annotated[
        Path, typer.Argument(help="Folder for one bundle per Falkon model.")
    ],
    params: ParamsOption = DEFAULT_PARAMS,
    task: TaskOption = "muon",
) -> None:
    """Train the Falkon kernel models listed in train_falkon.models."""
    from l1recal.config import FalkonTrainSettings, load_section
    from l1recal.models.train import run_train_falkon
    from l1recal.tasks import get_task

    section = stage_section("train_falkon", task)
    run_train_falkon(
        load_section(params, section, FalkonTrainSettings),
        data_dir,
        output_dir,
        get_task(task),
    )


@app.command()
def tune(
    data_dir: Annotated[Path, typer.Argument(help="Folder of pre-processed splits.")],
    output_dir: Annotated[Path, typer.Argument(help="Folder for one JSON and one PNG per sweep.")],
    params: ParamsOption = DEFAULT_PARAMS,
    task: TaskOption = "muon",
) -> None:
    """Draw Falkon tuning curves: validation RMSE against sigma, lambda or M."""
    from l1recal.config import TuneSettings, load_section
    from l1recal.models.tune import run_tune
    from l1recal.tasks import get_task

    run_tune(load_section(params, stage_section("tune", task), TuneSettings), data_dir, output_dir, get_task(task))


@app.command()
def evaluate(
    data_dir: Annotated[Path, typer.Argument(help="Folder of pre-processed splits.")],
    models: Annotated[
        list[Path],
        typer.Option("--models", help="Folder of model bundles; repeat for several."),
    ],
    metrics: Annotated[Path, typer.Option(help="Metrics JSON to write.")] = Path(
        "reports/muon_metrics.json"
    ),
    table: Annotated[Path, typer.Option(help="Markdown RMSE table to write.")] = Path(
        "reports/muon_rmse.md"
    ),
    noise_floor: Annotated[
        Path | None, typer.Option(help="noise_floor.json of simulated data.")
    ] = None,
    report: Annotated[
        Path | None, typer.Option(help="Self-contained HTML report to write.")
    ] = None,
    summary: Annotated[
        Path | None, typer.Option(help="Markdown summary of the report to write.")
    ] = None,
    figures: Annotated[
        Path | None, typer.Option(help="Folder for the PNG figures.")
    ] = None,
    costs: Annotated[
        Path | None,
        typer.Option(help="JSON of operation counts and CPU throughput per model to write."),
    ] = None,
    tuning_dir: Annotated[
        Path | None,
        typer.Option(help="Folder of tuning-curve PNG files to include in the report."),
    ] = None,
    figure_model: Annotated[
        list[str] | None,
        typer.Option(help="Also draw the residual figures of this model; repeat for several."),
    ] = None,
    kfp_metrics: Annotated[
        Path | None,
        typer.Option(help="Kubeflow Metrics artifact file: flat JSON of scalar metrics."),
    ] = None,
    kfp_executor_output: Annotated[
        Path | None,
        typer.Option(
            help="Kubeflow v2 executor output file (/tmp/kfp_outputs/output_metadata.json); "
            "the scalars become the metadata of the --kfp-metrics-name output."
        ),
    ] = None,
    kfp_metrics_name: Annotated[
        str, typer.Option(help="Name of the component's Metrics output.")
    ] = "metrics",
    params: ParamsOption = DEFAULT_PARAMS,
    task: TaskOption = "muon",
) -> None:
    """Compute the test-split RMSE of every model and of the L1 baseline; optionally the report."""
    from l1recal.config import EvaluateSettings, load_section
    from l1recal.evaluation.evaluate import EvaluateOutputs, run_evaluate
    from l1recal.tasks import get_task

    outputs = EvaluateOutputs(
        report_html=report,
        report_markdown=summary,
        figures_dir=figures,
        costs=costs,
        tuning_dir=tuning_dir,
        figure_models=tuple(figure_model or ()),
        kfp_metrics=kfp_metrics,
        kfp_executor_output=kfp_executor_output,
        kfp_metrics_name=kfp_metrics_name,
    )
    run_evaluate(
        load_section(params, stage_section("evaluate", task), EvaluateSettings),
        data_dir,
        models,
        metrics,
        table,
        noise_floor,
        get_task(task),
        outputs,
    )
    typer.echo(table.read_text())


@app.command()
def approve(
    muon_metrics: Annotated[
        Path,
        typer.Option(help="Muon metrics JSON from 'evaluate'; absent means no muon model."),
    ] = Path("reports/muon_metrics.json"),
    jet_metrics: Annotated[
        Path,
        typer.Option(help="Jet metrics JSON from 'evaluate --task jet'; may be absent."),
    ] = Path("reports/jet_metrics.json"),
    models: Annotated[
        list[Path] | None,
        typer.Option(
            "--models",
            help="Folder of model bundles; repeat for several. Default: every models-root/<kind>/<family>.",
        ),
    ] = None,
    models_root: Annotated[
        Path, typer.Option(help="Root of the default model folders <kind>/<family>/<name>.")
    ] = Path("models"),
    fixed_point_dir: Annotated[
        Path | None,
        typer.Option(help="Folder of <kind>_csim.json fixed-point emulation results."),
    ] = None,
    muon_csim: Annotated[
        Path | None,
        typer.Option(help="Muon fixed-point emulation JSON; overrides --fixed-point-dir."),
    ] = None,
    jet_csim: Annotated[
        Path | None,
        typer.Option(help="Jet fixed-point emulation JSON; overrides --fixed-point-dir."),
    ] = None,
    champion_dir: Annotated[
        Path | None,
        typer.Option(help="Registry folder of the champions (<kind>/champion.json, <kind>/bundle/)."),
    ] = None,
    champion: Annotated[
        Path | None,
        typer.Option(
            "--champion",
            help="approved.json-like record of the served champions, for kinds the registry lacks.",
        ),
    ] = None,
    muon_data: Annotated[
        Path | None,
        typer.Option(help="Muon split folder, to score the champion on the current test split."),
    ] = None,
    jet_data: Annotated[
        Path | None,
        typer.Option(help="Jet split folder, to score the champion on the current test split."),
    ] = None,
    output: Annotated[Path, typer.Option(help="approved.json to write.")] = Path(
        "reports/approved.json"
    ),
    promote: Annotated[
        bool,
        typer.Option(help="Copy each newly approved model into --champion-dir as the champion."),
    ] = False,
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Decide per kind which model may be served and synthesised; exit 0 even when none passes."""
    from l1recal.config import ApproveSettings, load_section
    from l1recal.evaluation.approval import run_approve

    fixed_point = {
        kind: explicit or (fixed_point_dir / f"{kind}_csim.json" if fixed_point_dir else None)
        for kind, explicit in (("muon", muon_csim), ("jet", jet_csim))
    }
    document = run_approve(
        load_section(params, "approve", ApproveSettings),
        {"muon": muon_metrics, "jet": jet_metrics},
        output,
        model_dirs=models or None,
        champion_dir=champion_dir,
        data_dirs={"muon": muon_data, "jet": jet_data},
        fixed_point_paths=fixed_point,
        promote_approved=promote,
        champion_file=champion,
        models_root=models_root,
    )
    for kind, entry in document.items():
        typer.echo(f"{kind}: {entry['message']}")


@app.command()
def package(
    approved: Annotated[
        Path, typer.Argument(help="approved.json of 'l1recal approve'.")
    ] = Path("reports/approved.json"),
    export_dir: Annotated[
        Path | None,
        typer.Option(help="Folder for one .bentomodel file per approved model; replaced whole."),
    ] = Path("models/bentoml"),
    record: Annotated[
        Path, typer.Option(help="JSON record of the packaged models to write.")
    ] = Path("reports/package.json"),
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Import the approved models into the BentoML model store (BENTOML_HOME) and export them."""
    from l1recal.config import PackageSettings, load_section
    from l1recal.serving.package import run_package

    result = run_package(
        load_section(params, "package", PackageSettings), approved, export_dir, record
    )
    for kind, entry in result.items():
        typer.echo(f"{kind}: {entry.get('tag') or 'not packaged, ' + entry['message']}")


def main() -> None:
    """Entry point: run the app, turning input errors into a one-line message and exit code 1."""
    try:
        app()
    except L1RecalError as error:
        logger.error("%s", error)
        sys.exit(1)
