"""``l1recal kfp``: compile, upload, run and schedule the pipeline, and the pipeline's own steps."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

logger = logging.getLogger(__name__)

kfp_app = typer.Typer(
    help="Kubeflow Pipelines: compile, upload, run and schedule the training pipeline.",
    no_args_is_help=True,
)

PackageOption = Annotated[
    Path, typer.Option("--package", help="Compiled pipeline YAML.")
]
HostOption = Annotated[
    str | None,
    typer.Option(
        "--host",
        help="Kubeflow Pipelines API URL; default $KFP_HOST.",
        show_default=False,
    ),
]
NamespaceOption = Annotated[
    str | None,
    typer.Option(
        "--namespace", help="Kubeflow namespace; default $KFP_NAMESPACE or kubeflow."
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token", help="Bearer token; default $KFP_TOKEN.", show_default=False
    ),
]
ArgumentOption = Annotated[
    list[str] | None,
    typer.Option(
        "--arg",
        help="Pipeline parameter NAME=VALUE (VALUE parsed as JSON when it is JSON); repeat for several.",
    ),
]
ServiceAccountOption = Annotated[
    str | None,
    typer.Option(
        "--service-account",
        help="Service account of the task pods, e.g. l1recal-pipeline-runner; default: the cluster's.",
    ),
]
ExperimentOption = Annotated[
    str, typer.Option("--experiment", help="Experiment the runs belong to.")
]


def _default_package() -> Path:
    from l1recal.kfp.client import DEFAULT_PIPELINE_FILE

    return DEFAULT_PIPELINE_FILE


def _parse_arguments(items: list[str] | None) -> dict:
    from l1recal.errors import ConfigError

    arguments = {}
    for item in items or []:
        name, separator, text = item.partition("=")
        if not separator or not name:
            raise ConfigError(f"--arg {item!r}: expected NAME=VALUE")
        try:
            arguments[name] = json.loads(text)
        except json.JSONDecodeError:
            arguments[name] = text
    return arguments


@kfp_app.command("compile")
def compile_command(
    output: Annotated[Path, typer.Argument(help="Pipeline YAML to write.")] = Path(
        "pipelines/l1recal-training.yaml"
    ),
    registry: Annotated[
        str | None,
        typer.Option(help="Image registry prefix, e.g. registry.example.org/l1recal."),
    ] = None,
    tag: Annotated[
        str | None, typer.Option(help="Image tag of all four images.")
    ] = None,
) -> None:
    """Compile the training pipeline to YAML."""
    from l1recal.kfp.client import compile_pipeline

    compile_pipeline(output, registry=registry, tag=tag)


@kfp_app.command("upload")
def upload_command(
    package: PackageOption = Path("pipelines/l1recal-training.yaml"),
    name: Annotated[
        str, typer.Option(help="Pipeline name in the UI.")
    ] = "l1recal-training",
    version: Annotated[
        str | None, typer.Option(help="Version name when the pipeline exists already.")
    ] = None,
    host: HostOption = None,
    namespace: NamespaceOption = None,
    token: TokenOption = None,
) -> None:
    """Upload the compiled pipeline (or a new version of it) to Kubeflow Pipelines."""
    from l1recal.kfp.client import Endpoint, upload

    pipeline_id = upload(
        Endpoint.resolve(host, namespace, token), package, name, version
    )
    typer.echo(pipeline_id)


@kfp_app.command("run")
def run_command(
    package: PackageOption = Path("pipelines/l1recal-training.yaml"),
    argument: ArgumentOption = None,
    experiment: ExperimentOption = "l1recal",
    run_name: Annotated[str | None, typer.Option(help="Name of the run.")] = None,
    service_account: ServiceAccountOption = None,
    host: HostOption = None,
    namespace: NamespaceOption = None,
    token: TokenOption = None,
) -> None:
    """Start one run of the compiled pipeline."""
    from l1recal.kfp.client import Endpoint, run

    run_id = run(
        Endpoint.resolve(host, namespace, token),
        package,
        _parse_arguments(argument),
        experiment,
        run_name,
        service_account,
    )
    typer.echo(run_id)


@kfp_app.command("schedule")
def schedule_command(
    cron: Annotated[
        str,
        typer.Option(
            help="KFP cron expression, six fields with seconds first, e.g. '0 0 3 * * *'."
        ),
    ] = "0 0 3 * * *",
    package: PackageOption = Path("pipelines/l1recal-training.yaml"),
    argument: ArgumentOption = None,
    experiment: ExperimentOption = "l1recal",
    job_name: Annotated[
        str, typer.Option(help="Name of the recurring run.")
    ] = "l1recal-retraining",
    service_account: ServiceAccountOption = None,
    host: HostOption = None,
    namespace: NamespaceOption = None,
    token: TokenOption = None,
) -> None:
    """Create the recurring retraining run (at most one run at a time)."""
    from l1recal.kfp.client import Endpoint, schedule, validate_cron

    validate_cron(cron)
    job_id = schedule(
        Endpoint.resolve(host, namespace, token),
        package,
        cron,
        _parse_arguments(argument),
        experiment,
        job_name,
        service_account,
    )
    typer.echo(job_id)


@kfp_app.command("local-run")
def local_run_command(
    workdir: Annotated[Path, typer.Argument(help="Folder for every task's outputs.")],
    package: PackageOption = Path("pipelines/l1recal-training.yaml"),
    argument: ArgumentOption = None,
) -> None:
    """Run the compiled pipeline's container commands here, in dependency order."""
    from l1recal.kfp.local_run import LocalRunner, write_summary

    runner = LocalRunner(package, workdir, _parse_arguments(argument))
    try:
        results = runner.run()
    finally:
        workdir.mkdir(parents=True, exist_ok=True)
        write_summary(runner.results, workdir / "summary.json")
    for result in results:
        typer.echo(f"{result.display_name}: {result.status}")


@kfp_app.command("register-data")
def register_data_command(
    repo: Annotated[
        str, typer.Option("--repo", help="Git URL or path of the project repository.")
    ],
    rev: Annotated[
        str, typer.Option("--rev", help="Branch, tag or commit to start from.")
    ],
    revision_out: Annotated[
        Path, typer.Option(help="File to write the commit to train on.")
    ],
    remote: Annotated[
        str, typer.Option(help="DVC remote name; empty for the default.")
    ] = "",
    landing: Annotated[
        str, typer.Option(help="Folder of newly landed event files; empty to skip.")
    ] = "",
) -> None:
    """Register landed event files as a new data version (pipeline step)."""
    from l1recal.kfp.retrain import register_data_step

    register_data_step(repo, rev, remote or None, landing, revision_out)


@kfp_app.command("fetch-data")
def fetch_data_command(
    repo: Annotated[
        str, typer.Option("--repo", help="Git URL or path of the project repository.")
    ],
    rev: Annotated[str, typer.Option("--rev", help="Branch, tag or commit.")],
    data_out: Annotated[Path, typer.Option(help="Folder to write data/raw into.")],
    params_out: Annotated[Path, typer.Option(help="File to write params.yaml into.")],
    data_version_out: Annotated[
        Path, typer.Option(help="File to write the data version into.")
    ],
    remote: Annotated[
        str, typer.Option(help="DVC remote name; empty for the default.")
    ] = "",
) -> None:
    """Fetch data/raw and params.yaml at a revision with DVC (pipeline step)."""
    from l1recal.kfp.steps import fetch_data

    fetch_data(repo, rev, remote or None, data_out, params_out, data_version_out)


@kfp_app.command("params")
def params_command(
    base: Annotated[Path, typer.Argument(help="params.yaml of the trained revision.")],
    output: Annotated[Path, typer.Argument(help="params.yaml to write.")],
    network_presets: Annotated[
        str,
        typer.Option(help="JSON list of muon network preset IDs; [] keeps the file's."),
    ] = "[]",
    falkon_models: Annotated[
        str,
        typer.Option(
            help="JSON list of muon Falkon model settings; [] keeps the file's."
        ),
    ] = "[]",
    jet_network_presets: Annotated[
        str,
        typer.Option(help="JSON list of jet network preset IDs; [] keeps the file's."),
    ] = "[]",
    jet_falkon_models: Annotated[
        str,
        typer.Option(
            help="JSON list of jet Falkon model settings; [] keeps the file's."
        ),
    ] = "[]",
    approve: Annotated[
        str, typer.Option(help="JSON object merged into the approve section.")
    ] = "{}",
) -> None:
    """Apply the pipeline's UI parameters to params.yaml (pipeline step)."""
    from l1recal.kfp.steps import build_params, parse_json_option

    lists = {
        "network_presets": parse_json_option("network-presets", network_presets, list),
        "falkon_models": parse_json_option("falkon-models", falkon_models, list),
        "jet_network_presets": parse_json_option(
            "jet-network-presets", jet_network_presets, list
        ),
        "jet_falkon_models": parse_json_option(
            "jet-falkon-models", jet_falkon_models, list
        ),
    }
    build_params(base, output, lists, parse_json_option("approve", approve, dict))


@kfp_app.command("approval-flag")
def approval_flag_command(
    approved: Annotated[
        Path, typer.Argument(help="approved.json of the approval gate.")
    ],
    output: Annotated[Path, typer.Option(help="File to write true or false into.")],
) -> None:
    """Write true when the approval gate chose a model, else false (pipeline step)."""
    from l1recal.kfp.steps import write_approval_flag

    write_approval_flag(approved, output)


@kfp_app.command("roll-out")
def roll_out_command(
    bentomodels: Annotated[Path, typer.Argument(help="Folder of .bentomodel files.")],
    approved: Annotated[
        Path, typer.Argument(help="approved.json of the approval gate.")
    ],
    model_store: Annotated[
        Path, typer.Option(help="Model store folder of the serving pods.")
    ],
    record: Annotated[
        Path, typer.Option(help="JSON file recording what was rolled out.")
    ],
    deployment: Annotated[
        str, typer.Option(help="Serving Deployment to restart; empty to skip.")
    ] = "",
    namespace: Annotated[
        str, typer.Option(help="Namespace of the Deployment.")
    ] = "l1recal",
    data_version: Annotated[
        str,
        typer.Option(help="Data version the models were trained on (from fetch-data)."),
    ] = "",
) -> None:
    """Publish the packaged models to the model store and restart serving (pipeline step)."""
    from l1recal.kfp.steps import roll_out

    roll_out(
        bentomodels,
        approved,
        model_store,
        record,
        deployment or None,
        namespace,
        data_version or None,
    )


def retrain(
    landing: Annotated[Path, typer.Argument(help="Folder where new event files land.")],
    repo: Annotated[Path, typer.Option(help="Project checkout (git and DVC).")] = Path(
        "."
    ),
    repro: Annotated[
        bool, typer.Option(help="Run 'dvc repro' after registering new data.")
    ] = True,
) -> None:
    """Register new ZeroBias files as a data version, retrain with dvc repro, record the outcome."""
    from l1recal.kfp.retrain import retrain_local

    entry = retrain_local(repo, landing, repro=repro)
    typer.echo(json.dumps(entry, indent=2))
