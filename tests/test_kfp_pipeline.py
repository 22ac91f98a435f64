"""The compiled Kubeflow pipeline: golden copy, task graph, scheduling, commands, and the kfp CLI."""

from __future__ import annotations

import http.server
import importlib.util
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import ClassVar

import pytest
import typer
import yaml

# typer 0.29 vendors click as typer._click; its UsageError covers unknown
# options, extra arguments and missing required ones.
from typer._click.exceptions import UsageError

from conftest import REPO_ROOT
from l1recal.cli import app
from l1recal.kfp import components, pipeline, steps
from l1recal.kfp.client import (
    DEFAULT_PIPELINE_FILE,
    Endpoint,
    compile_pipeline,
    run,
    schedule,
)
from l1recal.kfp.local_run import _PLACEHOLDER

GOLDEN = REPO_ROOT / DEFAULT_PIPELINE_FILE


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_pipeline(tmp_path_factory.mktemp("kfp") / "pipeline.yaml")


@pytest.fixture(scope="module")
def spec(compiled: Path) -> dict:
    return next(iter(yaml.safe_load_all(compiled.read_text())))


@pytest.fixture(scope="module")
def platform(compiled: Path) -> dict:
    documents = list(yaml.safe_load_all(compiled.read_text()))
    return documents[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def _all_tasks(spec: dict) -> dict[str, tuple[dict, list[str]]]:
    """Return display name -> (task, names of the enclosing condition groups), over all DAGs."""
    found: dict[str, tuple[dict, list[str]]] = {}

    def walk(dag: dict, groups: list[str]) -> None:
        for name, task in dag.get("tasks", {}).items():
            component = spec["components"][task["componentRef"]["name"]]
            if "dag" in component:
                walk(component["dag"], [*groups, name])
            else:
                found[task["taskInfo"]["name"]] = (task, groups)

    walk(spec["root"]["dag"], [])
    return found


def _executor(spec: dict, task: dict) -> str:
    return spec["components"][task["componentRef"]["name"]]["executorLabel"]


def _upstream(spec: dict, display_name: str) -> set[str]:
    """Return the display names of every task the named task depends on, transitively."""
    tasks = spec["root"]["dag"]["tasks"]
    by_dag_name = {name: task["taskInfo"]["name"] for name, task in tasks.items()}
    start = next(
        name for name, task in tasks.items() if task["taskInfo"]["name"] == display_name
    )
    seen: set[str] = set()
    pending = list(tasks[start].get("dependentTasks", []))
    while pending:
        name = pending.pop()
        if name not in seen:
            seen.add(name)
            pending.extend(tasks[name].get("dependentTasks", []))
    return {by_dag_name[name] for name in seen}


def test_compiled_matches_golden(compiled: Path):
    assert GOLDEN.exists(), f"{GOLDEN} missing; run 'make pipeline'"
    assert compiled.read_text() == GOLDEN.read_text(), (
        f"{GOLDEN} is out of date; run 'make pipeline' and commit it"
    )


def test_training_branches_independent(spec: dict):
    for task in pipeline.READY_TASKS:
        network = f"{task} train network"
        falkon = f"{task} train falkon"
        assert falkon not in _upstream(spec, network)
        assert network not in _upstream(spec, falkon)
        assert f"{task} preprocess" in _upstream(spec, network)
        assert f"{task} preprocess" in _upstream(spec, falkon)


def test_training_tasks_on_gpu_pool(spec: dict, platform: dict):
    tasks = _all_tasks(spec)
    for task_name in pipeline.READY_TASKS:
        for family in ("network", "falkon"):
            task, _ = tasks[f"{task_name} train {family}"]
            label = _executor(spec, task)
            resources = spec["deploymentSpec"]["executors"][label]["container"][
                "resources"
            ]
            assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
            assert resources["accelerator"]["resourceCount"] == "1"
            kubernetes = platform[label]
            assert kubernetes["nodeSelector"]["labels"] == {"l1recal.io/pool": "gpu"}
            assert {
                "key": "nvidia.com/gpu",
                "operator": "Equal",
                "value": "present",
                "effect": "NoSchedule",
            } in kubernetes["tolerations"]


def test_synthesis_on_fpga_pool_with_tools(spec: dict, platform: dict):
    task, _ = _all_tasks(spec)["hls synth"]
    label = _executor(spec, task)
    kubernetes = platform[label]
    assert kubernetes["nodeSelector"]["labels"] == {"l1recal.io/pool": "fpga-tools"}
    assert kubernetes["tolerations"][0]["key"] == "l1recal.io/fpga-tools"
    mount = kubernetes["pvcMount"][0]
    assert mount["mountPath"] == pipeline.FPGA_TOOLS_MOUNT
    assert mount["pvcNameParameter"] == {
        "componentInputParameter": "pipelinechannel--fpga_tools_pvc"
    }
    environment = spec["deploymentSpec"]["executors"][label]["container"]["env"]
    assert {"name": "PATH", "value": pipeline.FPGA_TOOLS_PATH_ENV} in environment


def test_release_under_approval_condition(spec: dict):
    tasks = _all_tasks(spec)
    components = spec["components"]
    root = spec["root"]["dag"]["tasks"]
    for name in ("hls synth", "package", "roll out serving"):
        _, groups = tasks[name]
        assert groups, f"{name} runs outside any condition"
        gate = root[groups[0]]
        condition = gate["triggerPolicy"]["condition"]
        assert "approval-flag" in condition
        assert condition.endswith("== 'true'")
        assert "approval-flag" in gate["dependentTasks"]
    _, synth_groups = tasks["hls synth"]
    inner = components[f"comp-{synth_groups[1]}"] if len(synth_groups) > 1 else None
    assert inner is not None, "hls synth is not under the synthesise condition"
    synth_gate = components[f"comp-{synth_groups[0]}"]["dag"]["tasks"][synth_groups[1]]
    assert "synthesise" in synth_gate["triggerPolicy"]["condition"]


def test_every_task_has_resources(spec: dict):
    for name, (task, _) in _all_tasks(spec).items():
        container = spec["deploymentSpec"]["executors"][_executor(spec, task)][
            "container"
        ]
        resources = container.get("resources", {})
        for key in ("cpuRequest", "cpuLimit", "memoryRequest", "memoryLimit"):
            assert key in resources, f"{name} has no {key}"


def test_data_steps_not_cached(spec: dict):
    tasks = _all_tasks(spec)
    for name in ("fetch data", "register new data"):
        task, _ = tasks[name]
        assert task["cachingOptions"] == {}, f"{name} may be served from cache"
    training, _ = tasks["muon train network"]
    assert training["cachingOptions"] == {"enableCache": True}


def test_dvc_credentials_from_secret(spec: dict, platform: dict):
    tasks = _all_tasks(spec)
    with_secret = set()
    for name, (task, _) in tasks.items():
        for secret in platform.get(_executor(spec, task), {}).get("secretAsEnv", []):
            if secret["secretName"] == pipeline.DVC_SECRET:
                with_secret.add(name)
                variables = {item["envVar"] for item in secret["keyToEnv"]}
                assert variables == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert with_secret == {"fetch data", "register new data"}
    text = GOLDEN.read_text()
    assert "aws_secret_access_key:" not in text.lower()


def test_ui_parameters(spec: dict):
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    for name in (
        "data_revision",
        "network_presets",
        "falkon_models",
        "approve_settings",
        "synthesise",
    ):
        assert name in parameters
        assert parameters[name].get("description"), f"{name} has no description"
    assert parameters["synthesise"]["defaultValue"] is False


def _click_command(path: list[str]):
    command = typer.main.get_command(app)
    for name in path:
        assert hasattr(command, "commands"), (
            f"{' '.join(path)}: no sub-commands before {name}"
        )
        assert name in command.commands, (
            f"'l1recal {' '.join(path)}' is not a sub-command of the installed CLI"
        )
        command = command.commands[name]
    return command


def _sample_args(args: list[str], spec_inputs: dict) -> list[str]:
    """Replace placeholders by sample values; expand IfPresent as if every input were present."""
    samples = {
        "STRING": "muon",
        "LIST": "[]",
        "STRUCT": "{}",
        "BOOLEAN": "true",
        "NUMBER_INTEGER": "1",
    }
    parameters = spec_inputs.get("parameters", {})

    def expand(item) -> list[str]:
        if isinstance(item, dict) and "Concat" in item:
            return ["".join(part for piece in item["Concat"] for part in expand(piece))]
        if isinstance(item, dict) and "IfPresent" in item:
            then = item["IfPresent"].get("Then", [])
            then = then if isinstance(then, list) else [then]
            return [part for piece in then for part in expand(piece)]
        if isinstance(item, str) and item.startswith(('{"Concat"', '{"IfPresent"')):
            return expand(json.loads(item))

        def sample(match) -> str:
            direction, kind, key, _ = match.groups()
            if direction == "inputs" and kind == "parameters":
                return samples[parameters[key]["parameterType"]]
            return f"/tmp/artifact/{key}"

        return [_PLACEHOLDER.sub(sample, item)]

    return [part for item in args for part in expand(item)]


def test_container_commands_exist_in_cli(spec: dict):
    checked = 0
    for name, (task, _) in _all_tasks(spec).items():
        component = spec["components"][task["componentRef"]["name"]]
        container = spec["deploymentSpec"]["executors"][component["executorLabel"]][
            "container"
        ]
        command = container["command"]
        assert command[0] == "l1recal", (
            f"{name}: command {command} does not run l1recal"
        )
        click_command = _click_command(command[1:])
        args = _sample_args(
            container.get("args", []), component.get("inputDefinitions", {})
        )
        try:
            click_command.make_context(" ".join(command), args)
        except UsageError as error:
            pytest.fail(
                f"{name}: 'l1recal {' '.join(command[1:])}' rejects {args}: {error}"
            )
        checked += 1
    assert checked >= 12


def test_build_pipeline_rejects_unknown_stage():
    with pytest.raises(ValueError, match="unknown stages"):
        pipeline.build_pipeline(stages=("ingest", "deploy"))


def test_build_params_applies_overrides(tmp_path: Path):
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump({"train_network": {"presets": [4], "seed": 7}}))
    output = tmp_path / "params.yaml"
    steps.build_params(
        base,
        output,
        {"network_presets": [1, 6], "falkon_models": []},
        {"champion_tolerance": 0.02},
    )
    document = yaml.safe_load(output.read_text())
    assert document["train_network"] == {"presets": [1, 6], "seed": 7}
    assert "train_falkon" not in document
    assert document["approve"]["champion_tolerance"] == 0.02


def test_build_params_rejects_invalid_preset(tmp_path: Path):
    base = tmp_path / "base.yaml"
    base.write_text("train_network: {presets: [4]}\n")
    with pytest.raises(steps.ConfigError, match="train_network"):
        steps.build_params(base, tmp_path / "out.yaml", {"network_presets": ["x"]}, {})


def test_approval_flag(tmp_path: Path):
    approved = tmp_path / "approved.json"
    approved.write_text(
        json.dumps({"muon": {"approved": False}, "jet": {"approved": True}})
    )
    flag = tmp_path / "flag"
    assert steps.write_approval_flag(approved, flag)
    assert flag.read_text() == "true"
    approved.write_text(
        json.dumps({"muon": {"approved": False}, "jet": {"approved": False}})
    )
    assert not steps.write_approval_flag(approved, flag)
    assert flag.read_text() == "false"


def _l1recal(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("KFP_")
    }
    environment.update(env or {})
    return subprocess.run(
        [str(Path(sys.executable).parent / "l1recal"), *args],
        capture_output=True,
        text=True,
        check=False,
        env=environment,
        timeout=120,
    )


@pytest.mark.parametrize("command", ["upload", "run", "schedule"])
def test_kfp_command_without_endpoint(command: str):
    result = _l1recal("kfp", command, "--package", str(GOLDEN))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert (
        "no Kubeflow Pipelines endpoint: pass --host URL or set KFP_HOST"
        in result.stderr
    )


def test_kfp_upload_unreachable_endpoint():
    # Port 9 (discard) on loopback: nothing listens, so the connection is refused.
    result = _l1recal(
        "kfp", "upload", "--package", str(GOLDEN), "--host", "http://127.0.0.1:9"
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "cannot connect to Kubeflow Pipelines at http://127.0.0.1:9" in result.stderr


def test_schedule_rejects_five_field_cron():
    result = _l1recal(
        "kfp", "schedule", "--cron", "0 3 * * *", "--host", "http://127.0.0.1:9"
    )
    assert result.returncode == 1
    assert "six fields, seconds first" in result.stderr
    assert "Traceback" not in result.stderr


def test_components_folder_reexports():
    spec = importlib.util.spec_from_file_location(
        "l1recal_components", REPO_ROOT / "components" / "l1recal_components.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name in module.__all__:
        assert getattr(module, name) is getattr(components, name)


class _KfpStub(http.server.BaseHTTPRequestHandler):
    """Loopback stand-in for the KFP v2beta1 REST API; records every request body."""

    requests: ClassVar[list[tuple[str, str, dict]]] = []

    def _reply(self, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.requests.append(("GET", self.path, {}))
        if "healthz" in self.path:
            self._reply({"multi_user": False})
        else:
            self._reply({})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
        self.requests.append(("POST", self.path, body))
        if self.path.endswith("/experiments"):
            self._reply(
                {
                    "experiment_id": "experiment-1",
                    "display_name": body.get("display_name"),
                }
            )
        elif self.path.endswith("/recurringruns"):
            self._reply({**body, "recurring_run_id": "recurring-1"})
        elif self.path.endswith("/runs"):
            self._reply({**body, "run_id": "run-1"})
        else:
            self._reply({})

    def log_message(self, format: str, *args) -> None:
        pass


@pytest.fixture
def kfp_stub():
    _KfpStub.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _KfpStub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _KfpStub.requests
    server.shutdown()
    server.server_close()


# kfp.Client warns on every construction that it needs a KFP 2 backend.
@pytest.mark.filterwarnings("ignore:This client only works:FutureWarning")
def test_schedule_request_body(kfp_stub):
    host, requests = kfp_stub
    endpoint = Endpoint(host=host, namespace="l1recal", token=None)
    job_id = schedule(
        endpoint,
        GOLDEN,
        "0 0 3 * * *",
        {"landing_dir": "/mnt/landing"},
        "l1recal",
        "l1recal-retraining",
    )
    assert job_id == "recurring-1"
    posted = [
        body for method, path, body in requests if path.endswith("/recurringruns")
    ]
    assert len(posted) == 1
    body = posted[0]
    assert body["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * *"
    assert int(body["max_concurrency"]) == 1
    assert body["no_catchup"] is True
    assert body["experiment_id"] == "experiment-1"
    assert body["runtime_config"]["parameters"] == {"landing_dir": "/mnt/landing"}
    # kfp 2.17 sends the pipeline and platform specs of the package together.
    package = body["pipeline_spec"]
    assert package["pipeline_spec"]["pipelineInfo"]["name"] == pipeline.PIPELINE_NAME
    assert "kubernetes" in package["platform_spec"]["platforms"]


# kfp.Client warns on every construction that it needs a KFP 2 backend.
@pytest.mark.filterwarnings("ignore:This client only works:FutureWarning")
def test_run_request_body(kfp_stub):
    host, requests = kfp_stub
    endpoint = Endpoint(host=host, namespace="l1recal", token="secret-token")
    run_id = run(
        endpoint,
        GOLDEN,
        {"data_revision": "v2"},
        "l1recal",
        "manual",
        service_account="l1recal-pipeline-runner",
    )
    assert run_id == "run-1"
    posted = [body for method, path, body in requests if path.endswith("/runs")]
    assert len(posted) == 1
    assert posted[0]["display_name"] == "manual"
    assert posted[0]["runtime_config"]["parameters"] == {"data_revision": "v2"}
    assert posted[0]["service_account"] == "l1recal-pipeline-runner"


def test_build_pipeline_without_release(tmp_path: Path):
    from kfp import compiler

    function = pipeline.build_pipeline(
        stages=("ingest", "preprocess", "train_network", "train_falkon", "evaluate"),
        tasks=("muon",),
    )
    package = tmp_path / "pipeline.yaml"
    compiler.Compiler().compile(function, str(package))
    names = set(_all_tasks(next(iter(yaml.safe_load_all(package.read_text())))))
    assert "muon evaluate" in names
    assert "approve" not in names
    assert "jet ingest" not in names


def test_build_pipeline_approve_needs_muon():
    with pytest.raises(ValueError, match="muon task"):
        pipeline.build_pipeline(tasks=("jet",))
