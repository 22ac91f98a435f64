"""Run a compiled pipeline's container commands on this machine, in dependency order.

The runner reads the pipeline YAML that ``kfp.compiler`` wrote (the
PipelineSpec IR), walks its DAG and the sub-DAGs of its conditions, fills each
executor's command placeholders with local paths and values, and runs the
command as a subprocess. Images, resources and Kubernetes settings are ignored;
every command runs with the current environment's ``l1recal``. Output
artifacts are written under ``<workdir>/<task>/<output name>``.

Supported placeholders: input and output artifact paths, input parameter
values, output parameter files, the executor output file, and the
``Concat`` and ``IfPresent`` structures. Supported trigger conditions:
``inputs.parameter_values['name'] == value`` terms joined with ``&&`` or
``||``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any

import yaml

from l1recal.errors import ConfigError, L1RecalError

logger = logging.getLogger(__name__)

_PLACEHOLDER = re.compile(
    r"\{\{\$\.(inputs|outputs)\.(parameters|artifacts)\['([^']+)'\](?:\.(path|output_file|uri))?\}\}"
)
#: Path of the executor output file (output metadata) of a task.
EXECUTOR_OUTPUT_PLACEHOLDER = "{{$.outputs.output_file}}"
_CONDITION_VALUE = re.compile(r"inputs\.parameter_values\['([^']+)'\]")


class LocalRunError(L1RecalError):
    """A task of a locally executed pipeline failed."""


@dataclass
class TaskResult:
    """Outcome of one task: its DAG name, display name, command and status."""

    name: str
    display_name: str
    command: list[str] = field(default_factory=list)
    status: str = "pending"


@dataclass
class _Scope:
    parameters: dict[str, Any]
    artifacts: dict[str, Path]


class LocalRunner:
    """Executes a compiled pipeline.

    Args:
        package: compiled pipeline YAML.
        workdir: folder for every task's outputs.
        arguments: pipeline parameter values; unset ones take the defaults
            compiled into the pipeline.
        env: extra environment variables of every command.
    """

    def __init__(
        self,
        package: Path,
        workdir: Path,
        arguments: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        documents = list(yaml.safe_load_all(package.read_text()))
        self.spec = documents[0]
        self.workdir = workdir.resolve()
        self.arguments = arguments or {}
        self.env_overrides = env or {}
        self.results: list[TaskResult] = []
        self._parameter_outputs: dict[str, dict[str, Any]] = {}
        self._artifact_outputs: dict[str, dict[str, Path]] = {}

    def run(self) -> list[TaskResult]:
        """Run every task whose conditions hold; raise LocalRunError on the first failure."""
        definitions = (
            self.spec["root"].get("inputDefinitions", {}).get("parameters", {})
        )
        unknown = sorted(set(self.arguments) - set(definitions))
        if unknown:
            raise ConfigError(
                f"unknown pipeline parameters {unknown}; valid: {', '.join(sorted(definitions))}"
            )
        parameters = {
            name: self.arguments.get(name, definition.get("defaultValue"))
            for name, definition in definitions.items()
        }
        self._run_dag(self.spec["root"]["dag"], _Scope(parameters, {}))
        return self.results

    def _run_dag(self, dag: dict, scope: _Scope) -> None:
        tasks = dag.get("tasks", {})
        order = TopologicalSorter(
            {name: set(task.get("dependentTasks", [])) for name, task in tasks.items()}
        ).static_order()
        for name in order:
            self._run_task(name, tasks[name], scope)

    def _run_task(self, name: str, task: dict, scope: _Scope) -> None:
        display = task.get("taskInfo", {}).get("name", name)
        result = TaskResult(name=name, display_name=display)
        self.results.append(result)
        inputs = self._resolve_inputs(task.get("inputs", {}), scope)
        if any(
            not isinstance(inputs.artifacts.get(key), Path)
            for key in task.get("inputs", {}).get("artifacts", {})
        ):
            result.status = "skipped: an upstream task was skipped"
            return
        condition = task.get("triggerPolicy", {}).get("condition")
        if condition and not _evaluate_condition(condition, inputs.parameters):
            result.status = "skipped: condition false"
            logger.info("skipped %s: %s is false", display, condition)
            return
        component = self.spec["components"][task["componentRef"]["name"]]
        if "dag" in component:
            self._run_dag(component["dag"], inputs)
            result.status = "done"
            return
        self._execute(name, result, component, inputs)

    def _resolve_inputs(self, inputs: dict, scope: _Scope) -> _Scope:
        parameters: dict[str, Any] = {}
        for key, source in inputs.get("parameters", {}).items():
            if "componentInputParameter" in source:
                parameters[key] = scope.parameters.get(
                    source["componentInputParameter"]
                )
            elif "runtimeValue" in source:
                parameters[key] = source["runtimeValue"]["constant"]
            elif "taskOutputParameter" in source:
                producer = source["taskOutputParameter"]
                parameters[key] = self._parameter_outputs.get(
                    producer["producerTask"], {}
                ).get(producer["outputParameterKey"])
            else:
                raise ConfigError(f"unsupported parameter source {source}")
        artifacts: dict[str, Path] = {}
        for key, source in inputs.get("artifacts", {}).items():
            if "componentInputArtifact" in source:
                artifacts[key] = scope.artifacts.get(source["componentInputArtifact"])
            elif "taskOutputArtifact" in source:
                producer = source["taskOutputArtifact"]
                artifacts[key] = self._artifact_outputs.get(
                    producer["producerTask"], {}
                ).get(producer["outputArtifactKey"])
            else:
                raise ConfigError(f"unsupported artifact source {source}")
        return _Scope(parameters, artifacts)

    def _execute(
        self, name: str, result: TaskResult, component: dict, inputs: _Scope
    ) -> None:
        executor = self.spec["deploymentSpec"]["executors"][component["executorLabel"]]
        container = executor["container"]
        outputs = component.get("outputDefinitions", {})
        task_dir = self.workdir / name
        artifact_paths = {key: task_dir / key for key in outputs.get("artifacts", {})}
        parameter_files = {
            key: task_dir / "parameters" / key for key in outputs.get("parameters", {})
        }
        for path in parameter_files.values():
            path.parent.mkdir(parents=True, exist_ok=True)
        task_dir.mkdir(parents=True, exist_ok=True)

        context = _Context(
            inputs, artifact_paths, parameter_files, task_dir / "executor_output.json"
        )
        command = _build_command(container, context)
        result.command = command

        logger.info("running %s: %s", result.display_name, " ".join(command))
        completed = subprocess.run(
            command,
            env=self._task_env(container),
            # A container starts in its image's folder, not in a checkout:
            # run in the task's folder, so no stray data.dvc or params.yaml is read.
            cwd=task_dir,
            capture_output=True,
            text=True,
            check=False,
        )
        (task_dir / "log.txt").write_text(completed.stdout + completed.stderr)

        if completed.returncode != 0:
            result.status = f"failed (exit {completed.returncode})"
            tail = "\n".join((completed.stderr or completed.stdout).splitlines()[-15:])
            raise LocalRunError(
                f"task {result.display_name!r} failed (exit {completed.returncode}): "
                f"{' '.join(command)}\n{tail}"
            )

        self._artifact_outputs[name] = artifact_paths
        self._parameter_outputs[name] = {
            key: _read_parameter(path, outputs["parameters"][key]["parameterType"])
            for key, path in parameter_files.items()
        }
        result.status = "done"

    def _task_env(self, container: dict) -> dict[str, str]:
        """Return the environment of one command: the task's own variables, then ``env``."""
        environment = dict(os.environ)
        for variable in container.get("env", []):
            environment[variable["name"]] = variable["value"]
        environment.update(self.env_overrides)
        # The task's PATH names the container's folders; this environment's
        # l1recal must still come first.
        bin_dir = str(Path(sys.executable).parent)
        environment["PATH"] = f"{bin_dir}{os.pathsep}{environment.get('PATH', '')}"
        return environment


@dataclass
class _Context:
    inputs: _Scope
    artifact_paths: dict[str, Path]
    parameter_files: dict[str, Path]
    executor_output: Path


def _build_command(container: dict, context: _Context) -> list[str]:
    command = [_expand(item, context) for item in container.get("command", [])]
    for item in container.get("args", []):
        command.extend(_expand_arg(item, context))
    return command


def _render(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _expand(text: str, context: _Context) -> str:
    def substitute(match: re.Match) -> str:
        direction, kind, key, attribute = match.groups()
        if direction == "inputs" and kind == "parameters":
            return _render(context.inputs.parameters[key])
        if direction == "inputs":
            return str(context.inputs.artifacts[key])
        if kind == "artifacts":
            return str(context.artifact_paths[key])
        if attribute == "output_file":
            return str(context.parameter_files[key])
        raise ConfigError(f"unsupported placeholder {match.group(0)}")

    text = text.replace(EXECUTOR_OUTPUT_PLACEHOLDER, str(context.executor_output))
    return _PLACEHOLDER.sub(substitute, text)


def _expand_arg(item: str, context: _Context) -> list[str]:
    """Expand one argument; ``IfPresent`` may give zero or several, ``Concat`` one."""
    if item.startswith('{"Concat"') or item.startswith('{"IfPresent"'):
        structure = json.loads(item)
        return _expand_structure(structure, context)
    return [_expand(item, context)]


def _expand_structure(structure: Any, context: _Context) -> list[str]:
    if isinstance(structure, str):
        return _expand_arg(structure, context)
    if "Concat" in structure:
        return [
            "".join(
                "".join(_expand_structure(part, context))
                for part in structure["Concat"]
            )
        ]
    if "IfPresent" in structure:
        branch = structure["IfPresent"]
        name = branch["InputName"]
        present = (
            context.inputs.parameters.get(name) is not None
            or context.inputs.artifacts.get(name) is not None
        )
        chosen = branch.get("Then" if present else "Else", [])
        chosen = chosen if isinstance(chosen, list) else [chosen]
        return [value for part in chosen for value in _expand_structure(part, context)]
    raise ConfigError(f"unsupported placeholder structure {structure}")


def _read_parameter(path: Path, parameter_type: str) -> Any:
    if not path.exists():
        raise LocalRunError(
            f"{path}: the task wrote no value for this output parameter"
        )
    text = path.read_text()
    if parameter_type == "STRING":
        return text
    return json.loads(text)


def _evaluate_condition(condition: str, parameters: dict[str, Any]) -> bool:
    """Evaluate a KFP trigger condition (a small subset of CEL) on resolved parameters."""
    python = _CONDITION_VALUE.sub(
        lambda match: repr(parameters.get(match.group(1))), condition
    )
    python = python.replace("&&", " and ").replace("||", " or ")
    python = re.sub(r"\btrue\b", "True", python)
    python = re.sub(r"\bfalse\b", "False", python)
    try:
        # Only literals remain after the substitutions above.
        return bool(eval(python, {"__builtins__": {}}))
    except SyntaxError as error:
        raise ConfigError(f"unsupported trigger condition {condition!r}") from error


def write_summary(results: list[TaskResult], destination: Path) -> None:
    """Write the task results as JSON, in execution order."""
    destination.write_text(
        json.dumps(
            [
                {
                    "task": result.name,
                    "display_name": result.display_name,
                    "status": result.status,
                    "command": result.command,
                }
                for result in results
            ],
            indent=2,
        )
        + "\n"
    )
