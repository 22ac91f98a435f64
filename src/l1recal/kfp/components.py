"""One Kubeflow container component per pipeline stage.

Each component returns a ``dsl.ContainerSpec`` whose command is ``l1recal
<stage>``, the sub-command that the DVC stage of the same name runs. Inputs and
outputs are typed KFP artifacts; a component reads an input artifact's local
``path`` and writes each output at its ``path``. The stage commands create the
parent folders of their outputs (``l1recal.atomic.atomic_path``), so no
component needs a shell wrapper.

The image in each spec is a default. ``l1recal.kfp.pipeline`` sets the image of
every task from the :class:`ImageSet` given at compile time.
"""

# NOTE: no `from __future__ import annotations`: KFP reads the component
# functions' annotations as objects, and strings break its type checks.
from dataclasses import dataclass

from kfp import dsl
from kfp.dsl import (
    HTML,
    Artifact,
    Dataset,
    Input,
    Markdown,
    Metrics,
    Model,
    Output,
    OutputPath,
)

#: Raw event files inside the fetched ``data/raw`` folder, by task.
RAW_EVENTS_FILE = {"muon": "muon_events.parquet", "jet": "jet_events.parquet"}
NOISE_FLOOR_FILE = "noise_floor.json"
#: Champion registry inside the model store (``<kind>/champion.json``, ``<kind>/bundle/``).
CHAMPIONS_DIR = "champions"


@dataclass(frozen=True)
class ImageSet:
    """Container images of the pipeline's tasks (built from ``images/``).

    Attributes:
        cpu: project on a slim Python base (``images/cpu.Dockerfile``).
        training: CUDA TensorFlow, torch and falkon (``images/training.Dockerfile``).
        fpga_tools: hls4ml and g++; the vendor tool is mounted, not baked in
            (``images/fpga-tools.Dockerfile``).
        serving: BentoML service (``images/serving.Dockerfile``).
    """

    cpu: str
    training: str
    fpga_tools: str
    serving: str

    @classmethod
    def from_registry(cls, registry: str, tag: str) -> "ImageSet":
        """Name the four images ``<registry>/l1recal-<kind>:<tag>``."""
        prefix = registry.rstrip("/")
        return cls(
            cpu=f"{prefix}/l1recal-cpu:{tag}",
            training=f"{prefix}/l1recal-training:{tag}",
            fpga_tools=f"{prefix}/l1recal-fpga-tools:{tag}",
            serving=f"{prefix}/l1recal-serving:{tag}",
        )


DEFAULT_REGISTRY = "ghcr.io/l1recal"
DEFAULT_TAG = "0.1.0"
DEFAULT_IMAGES = ImageSet.from_registry(DEFAULT_REGISTRY, DEFAULT_TAG)


@dsl.container_component
def register_data(
    repo_url: str,
    data_revision: str,
    dvc_remote: str,
    landing_dir: str,
    revision: OutputPath(str),
):
    """Register new ZeroBias files from the landing folder as a new DVC data version.

    Outputs the git commit that records the new data version, or the resolved
    ``data_revision`` when the landing folder has no new files (or is empty).
    """
    return dsl.ContainerSpec(
        image=DEFAULT_IMAGES.cpu,
        command=["l1recal", "kfp", "register-data"],
        args=[
            "--repo",
            repo_url,
            "--rev",
            data_revision,
            "--remote",
            dvc_remote,
            "--landing",
            landing_dir,
            "--revision-out",
            revision,
        ],
    )


@dsl.container_component
def fetch_data(
    repo_url: str,
    data_revision: str,
    dvc_remote: str,
    raw: Output[Dataset],
    params_base: Output[Artifact],
    data_version: OutputPath(str),
):
    """Fetch ``data/raw`` and ``params.yaml`` at a git revision of the project's repository, with DVC."""
    return dsl.ContainerSpec(
        image=DEFAULT_IMAGES.cpu,
        command=["l1recal", "kfp", "fetch-data"],
        args=[
            "--repo",
            repo_url,
            "--rev",
            data_revision,
            "--remote",
            dvc_remote,
            "--data-out",
            raw.path,
            "--params-out",
            params_base.path,
            "--data-version-out",
            data_version,
        ],
    )


@dsl.container_component
def make_params(
    params_base: Input[Artifact],
    network_presets: list,
    falkon_models: list,
    jet_network_presets: list,
    jet_falkon_models: list,
    approve_settings: dict,
    params: Output[Artifact],
):
    """Apply the pipeline's UI parameters to the fetched ``params.yaml``."""
    return dsl.ContainerSpec(
        image=DEFAULT_IMAGES.cpu,
        command=["l1recal", "kfp", "params"],
        args=[
            params_base.path,
            params.path,
            "--network-presets",
            network_presets,
            "--falkon-models",
            falkon_models,
            "--jet-network-presets",
            jet_network_presets,
            "--jet-falkon-models",
            jet_falkon_models,
            "--approve",
            approve_settings,
        ],
    )


@dsl.container_component
def ingest(
    raw: Input[Dataset],
    params: Input[Artifact],
    raw_file: str,
    table: Output[Dataset],
    stats: Output[Metrics],
):
    """Flatten raw muon events to one row per matched muon (``l1recal ingest``)."""
    return dsl.ContainerSpec(
        image=DEFAULT_IMAGES.cpu,
        command=["l1recal", "ingest"],
        args=[
            dsl.ConcatPlaceholder([raw.path, "/", raw_file]),
            table.path,
            "--stats",
            stats.path,
            "--params",
            params.path,
            "--task",
            "muon",
        ],
    )


@dsl.container_component
def jet_ingest(
    raw: Input[Dataset],
    params: Input[Artifact],
    raw_file: str,
    table: Output[Dataset],
    matches: Output[Dataset],
    stats: Output[Metrics],
):
    """Match PF jets to L1 jets by dR and write one row per matched L1 jet (``l1recal ingest --task jet``)."""
    return dsl.ContainerSpec(
        image=DEFAULT_IMAGES.cpu,
        command=["l1recal", "ingest"],
        args=[
            dsl.ConcatPlaceholder([raw.path, "/", raw_file]),
            table.path,
            "--matches",
            matches.path,
            "--stats",
            stats.path,
            "--params",
            params.path,
            "--task",
            "jet",
        ],
    )


@dsl.container_component
def validate(
    data: Input[Dataset],
    data_file: str,
    kind: str,
    params: Input[Artifact],
    report: Output[Artifact],
    matches: Input[Dataset] = None,
):
    """Check a raw file or a flattened table with its Great Expectations suites (``l1recal validate``).

    ``data_file`` names the file inside a folder artifact (the raw data); it is
    empty for a table artifact, which is the file itself. The report folder
    contains ``<kind>.json``, ``<kind>.md`` and the packed Data Docs. A failed
    expectation fails the task, so nothing downstream runs.
    """
    return dsl.ContainerSpec(
        image=DEFAULT_IMAGES.cpu,
        command=["l1recal", "validate"],
        args=[
            dsl.ConcatPlaceholder([data.path, data_file]),
            dsl.IfPresentPlaceholder(input_name="matches", then=[matches.path]),
            "--kind",
            kind,
            "--output-dir",
            report.path,
            "--params",
            params.path,
        ],
    )


@dsl.container_component
def preprocess(
    table: Input[Dataset],
    params: Input[Artifact],
    task: str,
    splits: Output[Dataset],
):
    """Select, transform and split the table into train, validation and test (``l1recal preprocess``)."""
    return dsl.ContainerSpec(
        image=DEFAULT_IMAGES.cpu,
        command=["l1recal", "preprocess"],
        args=[table.path, splits.path, "--params", params.path, "--task", task],
    )


@dsl.container_component
def train_network(
    splits: Input[Dataset],
    params: Input[Artifact],
    task: str,
    models: Output[Model],
):
    """Train one TensorFlow network per preset (``l1recal train network``)."""
    return dsl.ContainerSpec(
        image=DEFAULT_IMAGES.training,
        command=["l1recal", "train", "network"],
        args=[splits.path, models.path, "--params", params.path, "--task", task],
    )


@dsl.container_component
def train_falkon(
    splits: Input[Dataset],
    params: Input[Artifact],
    task: str,
    models: Output[Model],
):
    """Train the configured Falkon kernel models (``l1recal train falkon``)."""
    return dsl.ContainerSpec(
        image=DEFAULT_IMAGES.training,
        command=["l1recal", "train", "falkon"],
        args=[splits.path, models.path, "--params", params.path, "--task", task],
    )


@dsl.container_component
def evaluate(
    splits: Input[Dataset],
    network_models: Input[Model],
    falkon_models: Input[Model],
    params: Input[Artifact],
    task: str,
    metrics: Output[Metrics],
    ui_metrics: Output[Metrics],
    table: Output[Markdown],
    report: Output[HTML],
    summary: Output[Markdown],
    figures: Output[Artifact],
    costs: Output[Metrics],
    raw: Input[Dataset] = None,
):
    """Score every model and the L1 baseline on the test split and write the report (``l1recal evaluate``).

    ``metrics`` is the nested RMSE record that the approval gate reads;
    ``ui_metrics`` contains the same numbers as flat scalars, and the executor
    output file makes them the metadata that the Kubeflow UI shows. With
    ``raw`` given (simulated muons), the noise floor next to the raw events
    becomes a reference row.
    """
    return dsl.ContainerSpec(
        image=DEFAULT_IMAGES.cpu,
        command=["l1recal", "evaluate"],
        args=[
            splits.path,
            "--models",
            network_models.path,
            "--models",
            falkon_models.path,
            dsl.IfPresentPlaceholder(
                input_name="raw",
                then=[
                    "--noise-floor",
                    dsl.ConcatPlaceholder([raw.path, "/", NOISE_FLOOR_FILE]),
                ],
            ),
            "--metrics",
            metrics.path,
            "--table",
            table.path,
            "--report",
            report.path,
            "--summary",
            summary.path,
            "--figures",
            figures.path,
            "--costs",
            costs.path,
            "--kfp-metrics",
            ui_metrics.path,
            "--kfp-executor-output",
            dsl.PIPELINE_TASK_EXECUTOR_OUTPUT_PATH_PLACEHOLDER,
            "--kfp-metrics-name",
            "ui_metrics",
            "--params",
            params.path,
            "--task",
            task,
        ],
    )


@dsl.container_component
def hls_csim(
    splits: Input[Dataset],
    network_models: Input[Model],
    falkon_models: Input[Model],
    params: Input[Artifact],
    task: str,
    csim: Output[Metrics],
    scan: Output[Metrics],
    scan_plot: Output[Artifact],
    table: Output[Markdown],
):
    """Emulate every model at fixed point with hls4ml and g++ (``l1recal hls csim``)."""
    return dsl.ContainerSpec(
        image=DEFAULT_IMAGES.fpga_tools,
        command=["l1recal", "hls", "csim"],
        args=[
            splits.path,
            "--models",
            network_models.path,
            "--models",
            falkon_models.path,
            "--report",
            csim.path,
            "--scan",
            scan.path,
            "--scan-plot",
            scan_plot.path,
            "--table",
            table.path,
            "--params",
            params.path,
            "--task",
            task,
        ],
    )


def _optional(name: str, flag: str, artifact) -> dsl.IfPresentPlaceholder:
    return dsl.IfPresentPlaceholder(input_name=name, then=[flag, artifact.path])


@dsl.container_component
def approve(
    muon_metrics: Input[Metrics],
    muon_network_models: Input[Model],
    muon_falkon_models: Input[Model],
    muon_splits: Input[Dataset],
    params: Input[Artifact],
    model_store: str,
    approved: Output[Artifact],
    jet_metrics: Input[Metrics] = None,
    jet_network_models: Input[Model] = None,
    jet_falkon_models: Input[Model] = None,
    jet_splits: Input[Dataset] = None,
    muon_csim: Input[Metrics] = None,
    jet_csim: Input[Metrics] = None,
):
    """Choose per kind the model that may be served and synthesised (``l1recal approve``).

    The champion registry on the model store contains the served models; the
    gate scores them on the current test split and compares.
    """
    return dsl.ContainerSpec(
        image=DEFAULT_IMAGES.cpu,
        command=["l1recal", "approve"],
        args=[
            "--muon-metrics",
            muon_metrics.path,
            "--models",
            muon_network_models.path,
            "--models",
            muon_falkon_models.path,
            "--muon-data",
            muon_splits.path,
            _optional("jet_metrics", "--jet-metrics", jet_metrics),
            _optional("jet_network_models", "--models", jet_network_models),
            _optional("jet_falkon_models", "--models", jet_falkon_models),
            _optional("jet_splits", "--jet-data", jet_splits),
            _optional("muon_csim", "--muon-csim", muon_csim),
            _optional("jet_csim", "--jet-csim", jet_csim),
            "--champion-dir",
            dsl.ConcatPlaceholder([model_store, "/", CHAMPIONS_DIR]),
            "--output",
            approved.path,
            "--params",
            params.path,
        ],
    )


@dsl.container_component
def approval_flag(approved: Input[Artifact], flag: OutputPath(str)):
    """Write ``true`` when the approval gate chose at least one model, else ``false``."""
    return dsl.ContainerSpec(
        image=DEFAULT_IMAGES.cpu,
        command=["l1recal", "kfp", "approval-flag"],
        args=[approved.path, "--output", flag],
    )


@dsl.container_component
def hls_synth(
    approved: Input[Artifact],
    params: Input[Artifact],
    firmware: Output[Artifact],
    synthesis: Output[Metrics],
    muon_network_models: Input[Model] = None,
    muon_falkon_models: Input[Model] = None,
    jet_network_models: Input[Model] = None,
    jet_falkon_models: Input[Model] = None,
):
    """Synthesise the approved models with the vendor tool (``l1recal hls synth``).

    The vendor tool must be on ``PATH``; the pipeline mounts it from a volume.
    ``--require-synthesis`` makes a missing tool fail the task, because the
    task only runs when the user asked for synthesis. The model folders are
    inputs so that the bundles ``approved.json`` names are present.
    """
    return dsl.ContainerSpec(
        image=DEFAULT_IMAGES.fpga_tools,
        command=["l1recal", "hls", "synth"],
        args=[
            "--approved",
            approved.path,
            "--firmware-dir",
            firmware.path,
            "--metrics",
            synthesis.path,
            "--require-synthesis",
            "--params",
            params.path,
        ],
    )


@dsl.container_component
def package(
    approved: Input[Artifact],
    params: Input[Artifact],
    bentomodels: Output[Model],
    record: Output[Artifact],
    muon_network_models: Input[Model] = None,
    muon_falkon_models: Input[Model] = None,
    jet_network_models: Input[Model] = None,
    jet_falkon_models: Input[Model] = None,
):
    """Import the approved models into BentoML and export them as ``.bentomodel`` files (``l1recal package``).

    The model folders are inputs so that the bundles ``approved.json`` names
    are present in the task's container.
    """
    return dsl.ContainerSpec(
        image=DEFAULT_IMAGES.serving,
        command=["l1recal", "package"],
        args=[
            approved.path,
            "--export-dir",
            bentomodels.path,
            "--record",
            record.path,
            "--params",
            params.path,
        ],
    )


@dsl.container_component
def roll_out(
    bentomodels: Input[Model],
    approved: Input[Artifact],
    model_store: str,
    deployment: str,
    namespace: str,
    data_version: str,
    record: Output[Artifact],
    muon_network_models: Input[Model] = None,
    muon_falkon_models: Input[Model] = None,
    jet_network_models: Input[Model] = None,
    jet_falkon_models: Input[Model] = None,
):
    """Publish the packaged models, promote them to champions, restart serving (``l1recal kfp roll-out``).

    The model folders are inputs so that the bundles ``approved.json`` names
    are present in the task's container.
    """
    return dsl.ContainerSpec(
        image=DEFAULT_IMAGES.cpu,
        command=["l1recal", "kfp", "roll-out"],
        args=[
            bentomodels.path,
            approved.path,
            "--model-store",
            model_store,
            "--deployment",
            deployment,
            "--namespace",
            namespace,
            "--data-version",
            data_version,
            "--record",
            record.path,
        ],
    )
