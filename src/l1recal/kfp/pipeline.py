"""The Kubeflow training pipeline: fetch, ingest, ..., train, evaluate, approve, synthesise, package, roll out.

``build_pipeline`` returns the ``@dsl.pipeline`` function for a set of images
and stages. Only stages in ``stages`` are wired in, so the compiled pipeline
never names an ``l1recal`` sub-command that the installed CLI lacks
(``READY_STAGES`` lists those that exist today).

Node pools, volumes and secrets the pipeline expects (see ``k8s/README.md``):

* GPU pool: label ``l1recal.io/pool=gpu``, taint ``nvidia.com/gpu=present:NoSchedule``.
* FPGA-tools pool: label ``l1recal.io/pool=fpga-tools``, taint
  ``l1recal.io/fpga-tools=present:NoSchedule``; the vendor tools on the PVC
  ``l1recal-fpga-tools``, mounted at ``/opt/xilinx``.
* Secret ``l1recal-dvc-remote`` with the DVC remote's S3 keys, read as
  environment variables by the data steps only.
* PVCs ``l1recal-landing`` (new ZeroBias files) and ``l1recal-model-store``
  (served models and the record of what was served).
"""

# NOTE: no `from __future__ import annotations`: KFP reads the pipeline
# function's annotations as objects, and strings break its type checks.
from collections.abc import Callable, Collection
from dataclasses import dataclass

from kfp import dsl, kubernetes
from kfp.dsl.pipeline_channel import PipelineChannel
from kfp.dsl.pipeline_task import PipelineTask

from l1recal.kfp import components as c
from l1recal.kfp.components import DEFAULT_IMAGES, ImageSet

PIPELINE_NAME = "l1recal-training"

GPU_POOL = ("l1recal.io/pool", "gpu")
GPU_TAINT = ("nvidia.com/gpu", "present")
FPGA_POOL = ("l1recal.io/pool", "fpga-tools")
FPGA_TAINT = ("l1recal.io/fpga-tools", "present")
GPU_ACCELERATOR = "nvidia.com/gpu"

DVC_SECRET = "l1recal-dvc-remote"
#: Secret key -> environment variable. The S3 client of DVC (s3fs, botocore)
#: reads these variables; nothing is written into the image or the repo.
DVC_SECRET_ENV = {
    "AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY",
}
GIT_SECRET = "l1recal-git"
GIT_SECRET_ENV = {"token": "GIT_TOKEN"}

FPGA_TOOLS_PVC = "l1recal-fpga-tools"
#: Mount point of the vendor tools; ``bin/`` below it must hold ``vitis-run``
#: (Vitis backend) or ``vivado_hls`` (Vivado backend).
FPGA_TOOLS_MOUNT = "/opt/xilinx"
FPGA_TOOLS_PATH_ENV = f"{FPGA_TOOLS_MOUNT}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
LANDING_PVC = "l1recal-landing"
LANDING_MOUNT = "/mnt/landing"
MODEL_STORE_PVC = "l1recal-model-store"
MODEL_STORE_MOUNT = "/mnt/model-store"

DEFAULT_REPO = "https://github.com/l1recal/l1recal.git"

#: Stages wired into the pipeline: those whose ``l1recal`` sub-command exists.
ALL_STAGES = (
    "register_data",
    "ingest",
    "validate",
    "preprocess",
    "train_network",
    "train_falkon",
    "evaluate",
    "hls_csim",
    "approve",
    "hls_synth",
    "package",
    "roll_out",
)
READY_STAGES = (
    "register_data",
    "ingest",
    "validate",
    "preprocess",
    "train_network",
    "train_falkon",
    "evaluate",
    "hls_csim",
    "approve",
    "hls_synth",
    "package",
    "roll_out",
)
TASKS = ("muon", "jet")
#: Tasks whose stage commands all exist (jets need ``ingest --task jet``).
READY_TASKS = ("muon", "jet")


@dataclass(frozen=True)
class Resources:
    """CPU (cores) and memory (Kubernetes quantity) request and limit of one task."""

    cpu_request: str
    cpu_limit: str
    memory_request: str
    memory_limit: str


SMALL = Resources("500m", "1", "1Gi", "2Gi")
MEDIUM = Resources("2", "4", "8Gi", "16Gi")
TRAINING = Resources("4", "8", "16Gi", "32Gi")
SYNTHESIS = Resources("8", "16", "32Gi", "64Gi")


def _sized(task: PipelineTask, resources: Resources) -> PipelineTask:
    task.set_cpu_request(resources.cpu_request)
    task.set_cpu_limit(resources.cpu_limit)
    task.set_memory_request(resources.memory_request)
    task.set_memory_limit(resources.memory_limit)
    return task


def _on_gpu_pool(task: PipelineTask) -> PipelineTask:
    task.set_accelerator_type(GPU_ACCELERATOR)
    task.set_accelerator_limit(1)
    kubernetes.add_node_selector(task, *GPU_POOL)
    kubernetes.add_toleration(
        task,
        key=GPU_TAINT[0],
        operator="Equal",
        value=GPU_TAINT[1],
        effect="NoSchedule",
    )
    return task


def _on_fpga_pool(task: PipelineTask) -> PipelineTask:
    kubernetes.add_node_selector(task, *FPGA_POOL)
    kubernetes.add_toleration(
        task,
        key=FPGA_TAINT[0],
        operator="Equal",
        value=FPGA_TAINT[1],
        effect="NoSchedule",
    )
    return task


def _with_dvc_credentials(task: PipelineTask) -> PipelineTask:
    kubernetes.use_secret_as_env(task, DVC_SECRET, DVC_SECRET_ENV)
    return task


def _named(task: PipelineTask, name: str, image: str) -> PipelineTask:
    task.set_display_name(name)
    task.set_container_image(image)
    kubernetes.set_image_pull_policy(task, "IfNotPresent")
    return task


def build_pipeline(
    images: ImageSet = DEFAULT_IMAGES,
    stages: Collection[str] = READY_STAGES,
    tasks: Collection[str] = READY_TASKS,
) -> Callable:
    """Build the training pipeline function.

    Args:
        images: container image of each kind of task.
        stages: stages to wire in, a subset of ``ALL_STAGES``. Fetching the
            data and writing the parameters always run. ``approve`` needs
            ``evaluate`` and the muon branch; the approval flag and the
            steps after the gate run only with ``approve``.
        tasks: re-calibration tasks with a branch each, ``muon`` and/or ``jet``.

    Returns:
        The ``@dsl.pipeline`` function, ready for ``kfp.compiler.Compiler``.

    Raises:
        ValueError: on an unknown stage or task name.
    """
    unknown = sorted(set(stages) - set(ALL_STAGES))
    if unknown:
        raise ValueError(f"unknown stages {unknown}; valid: {', '.join(ALL_STAGES)}")
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        raise ValueError(f"unknown tasks {unknown}; valid: {', '.join(TASKS)}")
    stages = frozenset(stages)
    tasks = tuple(task for task in TASKS if task in tasks)
    if "approve" in stages and not ("evaluate" in stages and "muon" in tasks):
        raise ValueError("the approve stage needs the evaluate stage and the muon task")

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description=(
            "Re-calibrate CMS L1 muons and jets: fetch a DVC data version, train "
            "networks and Falkon models on GPUs, evaluate, approve against the "
            "serving champion, synthesise with hls4ml, package and roll out."
        ),
    )
    def training_pipeline(
        repo_url: str = DEFAULT_REPO,
        data_revision: str = "main",
        dvc_remote: str = "",
        landing_dir: str = "",
        network_presets: list = [],  # noqa: B006 (KFP needs a literal default)
        falkon_models: list = [],  # noqa: B006
        jet_network_presets: list = [],  # noqa: B006
        jet_falkon_models: list = [],  # noqa: B006
        approve_settings: dict = {},  # noqa: B006
        synthesise: bool = False,
        fpga_tools_pvc: str = FPGA_TOOLS_PVC,
        serving_deployment: str = "l1recal-serving",
        serving_namespace: str = "l1recal",
        model_store: str = MODEL_STORE_MOUNT,
    ):
        """Train, evaluate and approve L1 re-calibration models.

        Args:
            repo_url: git URL of the project repository (with ``data.dvc`` and
                ``params.yaml``).
            data_revision: git revision (branch, tag or commit) whose data
                version is trained on.
            dvc_remote: DVC remote name to fetch from; empty for the default.
            landing_dir: folder on the landing volume with new ZeroBias files
                to register as a new data version first; empty to skip.
            network_presets: network preset IDs for muons; empty keeps
                ``train_network.presets`` of ``params.yaml``.
            falkon_models: Falkon model settings (list of objects) for muons;
                empty keeps ``train_falkon.models``.
            jet_network_presets: network preset IDs for jets; empty keeps
                ``jet_train_network.presets``.
            jet_falkon_models: Falkon model settings for jets; empty keeps
                ``jet_train_falkon.models``.
            approve_settings: approval margins and tolerances, merged into the
                ``approve`` section; empty keeps it.
            synthesise: run hls4ml synthesis on the FPGA-tools pool for the
                approved models.
            fpga_tools_pvc: PersistentVolumeClaim holding the vendor tools,
                mounted at /opt/xilinx on the synthesis task.
            serving_deployment: serving Deployment restarted after roll-out.
            serving_namespace: namespace of the serving Deployment.
            model_store: path of the model store inside the task containers,
                where the model-store volume is mounted; change it only for
                local runs.
        """
        revision = data_revision
        if "register_data" in stages:
            register = _named(
                c.register_data(
                    repo_url=repo_url,
                    data_revision=data_revision,
                    dvc_remote=dvc_remote,
                    landing_dir=landing_dir,
                ),
                "register new data",
                images.cpu,
            )
            _sized(register, MEDIUM)
            register.set_caching_options(False)
            _with_dvc_credentials(register)
            kubernetes.use_secret_as_env(
                register, GIT_SECRET, GIT_SECRET_ENV, optional=True
            )
            kubernetes.mount_pvc(register, LANDING_PVC, LANDING_MOUNT)
            revision = register.outputs["revision"]

        fetch = _named(
            c.fetch_data(
                repo_url=repo_url, data_revision=revision, dvc_remote=dvc_remote
            ),
            "fetch data",
            images.cpu,
        )
        _sized(fetch, MEDIUM)
        # A branch name resolves to a new commit when data arrives, so the
        # cache key (the revision string) cannot tell; fetch every time.
        fetch.set_caching_options(False)
        _with_dvc_credentials(fetch)

        params = _sized(
            _named(
                c.make_params(
                    params_base=fetch.outputs["params_base"],
                    network_presets=network_presets,
                    falkon_models=falkon_models,
                    jet_network_presets=jet_network_presets,
                    jet_falkon_models=jet_falkon_models,
                    approve_settings=approve_settings,
                ),
                "parameters",
                images.cpu,
            ),
            SMALL,
        ).outputs["params"]

        branches = {
            task: _task_branch(task, fetch.outputs["raw"], params, images, stages)
            for task in tasks
        }
        if "approve" not in stages:
            return
        _approval_and_release(
            branches,
            params,
            images,
            stages,
            synthesise=synthesise,
            fpga_tools_pvc=fpga_tools_pvc,
            serving_deployment=serving_deployment,
            serving_namespace=serving_namespace,
            model_store=model_store,
            data_version=fetch.outputs["data_version"],
        )

    return training_pipeline


def _task_branch(
    task: str,
    raw: PipelineChannel,
    params: PipelineChannel,
    images: ImageSet,
    stages: frozenset[str],
) -> dict[str, PipelineChannel]:
    """Wire ingest ... evaluate (and csim) of one task; return its artifacts by name."""
    raw_file = c.RAW_EVENTS_FILE[task]
    raw_check = None
    if "validate" in stages:
        raw_check = _named(
            c.validate(
                data=raw, data_file=f"/{raw_file}", kind=f"raw-{task}", params=params
            ),
            f"{task} validate raw",
            images.cpu,
        )
        _sized(raw_check, MEDIUM)

    component = c.jet_ingest if task == "jet" else c.ingest
    ingest = _named(
        component(raw=raw, params=params, raw_file=raw_file),
        f"{task} ingest",
        images.cpu,
    )
    _sized(ingest, MEDIUM)
    table = ingest.outputs["table"]
    # Validation writes no input of the next step; a failed check must still stop it.
    if raw_check is not None:
        ingest.after(raw_check)

    table_check = None
    if "validate" in stages:
        matches = {"matches": ingest.outputs["matches"]} if task == "jet" else {}
        table_check = _named(
            c.validate(
                data=table, data_file="", kind=f"{task}-table", params=params, **matches
            ),
            f"{task} validate table",
            images.cpu,
        )
        _sized(table_check, MEDIUM)

    prepare = _named(
        c.preprocess(table=table, params=params, task=task),
        f"{task} preprocess",
        images.cpu,
    )
    _sized(prepare, MEDIUM)
    if table_check is not None:
        prepare.after(table_check)
    splits = prepare.outputs["splits"]

    # The two trainers read only the splits, so they run side by side.
    network = _named(
        c.train_network(splits=splits, params=params, task=task),
        f"{task} train network",
        images.training,
    )
    _on_gpu_pool(_sized(network, TRAINING))
    falkon = _named(
        c.train_falkon(splits=splits, params=params, task=task),
        f"{task} train falkon",
        images.training,
    )
    _on_gpu_pool(_sized(falkon, TRAINING))

    artifacts = {
        "network_models": network.outputs["models"],
        "falkon_models": falkon.outputs["models"],
        "splits": splits,
    }
    if "evaluate" in stages:
        scores = _named(
            c.evaluate(
                splits=splits,
                network_models=network.outputs["models"],
                falkon_models=falkon.outputs["models"],
                params=params,
                task=task,
                # Only the muon simulation writes a noise floor.
                **({"raw": raw} if task == "muon" else {}),
            ),
            f"{task} evaluate",
            images.cpu,
        )
        _sized(scores, MEDIUM)
        artifacts["metrics"] = scores.outputs["metrics"]
    if "hls_csim" in stages:
        csim = _named(
            c.hls_csim(
                splits=splits,
                network_models=network.outputs["models"],
                falkon_models=falkon.outputs["models"],
                params=params,
                task=task,
            ),
            f"{task} hls csim",
            images.fpga_tools,
        )
        _sized(csim, MEDIUM)
        artifacts["csim"] = csim.outputs["csim"]
    return artifacts


def _approval_and_release(
    branches: dict[str, dict[str, PipelineChannel]],
    params: PipelineChannel,
    images: ImageSet,
    stages: frozenset[str],
    *,
    synthesise: PipelineChannel,
    fpga_tools_pvc: PipelineChannel,
    serving_deployment: PipelineChannel,
    serving_namespace: PipelineChannel,
    model_store: PipelineChannel,
    data_version: PipelineChannel,
) -> None:
    """Wire the approval gate and, only when it approved a model, synthesis, packaging and roll-out."""
    muon = branches["muon"]
    jet = branches.get("jet", {})
    # Optional inputs stay unset when their branch or stage is not wired in.
    optional = {
        "jet_metrics": jet.get("metrics"),
        "jet_network_models": jet.get("network_models"),
        "jet_falkon_models": jet.get("falkon_models"),
        "jet_splits": jet.get("splits"),
        "muon_csim": muon.get("csim"),
        "jet_csim": jet.get("csim"),
    }
    gate = _named(
        c.approve(
            muon_metrics=muon["metrics"],
            muon_network_models=muon["network_models"],
            muon_falkon_models=muon["falkon_models"],
            muon_splits=muon["splits"],
            params=params,
            model_store=model_store,
            **{key: value for key, value in optional.items() if value is not None},
        ),
        "approve",
        images.cpu,
    )
    _sized(gate, SMALL)
    kubernetes.mount_pvc(gate, MODEL_STORE_PVC, MODEL_STORE_MOUNT)
    approved = gate.outputs["approved"]
    if not {"hls_synth", "package"} & stages:
        return
    flag = _sized(
        _named(c.approval_flag(approved=approved), "approval flag", images.cpu),
        SMALL,
    )

    # Steps after the gate read the bundles that approved.json names, so
    # the model folders travel with them as inputs.
    bundles = {
        f"{task}_{family}": artifacts[family]
        for task, artifacts in branches.items()
        for family in ("network_models", "falkon_models")
    }
    with dsl.If(flag.outputs["flag"] == "true", name="model-approved"):
        if "hls_synth" in stages:
            with dsl.If(synthesise == True, name="synthesis-requested"):  # noqa: E712
                synth = _named(
                    c.hls_synth(approved=approved, params=params, **bundles),
                    "hls synth",
                    images.fpga_tools,
                )
                _on_fpga_pool(_sized(synth, SYNTHESIS))
                kubernetes.mount_pvc(synth, fpga_tools_pvc, FPGA_TOOLS_MOUNT)
                synth.set_env_variable("PATH", FPGA_TOOLS_PATH_ENV)
        if "package" in stages:
            packaged = _named(
                c.package(approved=approved, params=params, **bundles),
                "package",
                images.serving,
            )
            _sized(packaged, SMALL)
            # BentoML writes its model store under BENTOML_HOME; keep it in
            # the pod's scratch space, not in the image.
            packaged.set_env_variable("BENTOML_HOME", "/tmp/bentoml")
            if "roll_out" in stages:
                release = _named(
                    c.roll_out(
                        bentomodels=packaged.outputs["bentomodels"],
                        approved=approved,
                        model_store=model_store,
                        deployment=serving_deployment,
                        namespace=serving_namespace,
                        data_version=data_version,
                        **bundles,
                    ),
                    "roll out serving",
                    images.cpu,
                )
                _sized(release, SMALL)
                kubernetes.mount_pvc(release, MODEL_STORE_PVC, MODEL_STORE_MOUNT)
