"""Compile the pipeline and talk to a Kubeflow Pipelines endpoint through ``kfp.Client``."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from l1recal.atomic import atomic_path
from l1recal.errors import L1RecalError

logger = logging.getLogger(__name__)

DEFAULT_PIPELINE_FILE = Path("pipelines/l1recal-training.yaml")
HOST_ENV = "KFP_HOST"
NAMESPACE_ENV = "KFP_NAMESPACE"
TOKEN_ENV = "KFP_TOKEN"
DEFAULT_EXPERIMENT = "l1recal"


class EndpointError(L1RecalError):
    """The Kubeflow Pipelines endpoint is not configured, not reachable, or rejected a request."""


@dataclass(frozen=True)
class Endpoint:
    """Endpoint and credentials of a Kubeflow Pipelines API.

    Attributes:
        host: API URL, e.g. ``https://kubeflow.example.org/pipeline``.
        namespace: Kubeflow profile namespace of the runs.
        token: bearer token, or None for an endpoint without authentication.
    """

    host: str
    namespace: str
    token: str | None

    @classmethod
    def resolve(
        cls, host: str | None, namespace: str | None, token: str | None
    ) -> Endpoint:
        """Take each setting from its flag, else from ``KFP_HOST`` / ``KFP_NAMESPACE`` / ``KFP_TOKEN``.

        Raises:
            EndpointError: when no host is given. ``kfp.Client`` would then
                fall back to the local kube config, which is never wanted here.
        """
        host = host or os.environ.get(HOST_ENV)
        if not host:
            raise EndpointError(
                f"no Kubeflow Pipelines endpoint: pass --host URL or set {HOST_ENV}"
            )
        return cls(
            host=host,
            namespace=namespace or os.environ.get(NAMESPACE_ENV) or "kubeflow",
            token=token or os.environ.get(TOKEN_ENV) or None,
        )


def compile_pipeline(
    output: Path,
    *,
    registry: str | None = None,
    tag: str | None = None,
    stages: tuple[str, ...] | None = None,
) -> Path:
    """Compile the training pipeline to YAML, atomically.

    Args:
        output: YAML file to write.
        registry: image registry prefix; the default names ``ghcr.io/l1recal``.
        tag: image tag; the default is the package version of the images.
        stages: stages to wire in; default ``pipeline.READY_STAGES``.
    """
    from kfp import compiler

    from l1recal.kfp import components, pipeline

    images = components.ImageSet.from_registry(
        registry or components.DEFAULT_REGISTRY, tag or components.DEFAULT_TAG
    )
    function = pipeline.build_pipeline(
        images=images, stages=stages or pipeline.READY_STAGES
    )
    with atomic_path(output) as staging:
        # The compiler picks the format from the suffix, so keep ".yaml".
        target = staging.with_suffix(".yaml")
        compiler.Compiler().compile(function, str(target))
        target.replace(staging)
    logger.info("wrote %s", output)
    return output


def _client(endpoint: Endpoint):
    import kfp

    try:
        return kfp.Client(
            host=endpoint.host,
            namespace=endpoint.namespace,
            existing_token=endpoint.token,
        )
    except Exception as error:  # kfp raises many kinds; report them as one.
        raise EndpointError(
            f"cannot connect to Kubeflow Pipelines at {endpoint.host}: {error}"
        ) from error


def _call(endpoint: Endpoint, action: str, function, *args, **kwargs) -> Any:
    try:
        return function(*args, **kwargs)
    except Exception as error:  # urllib3, kfp_server_api and kfp errors alike.
        raise EndpointError(
            f"{action} failed at {endpoint.host} (namespace {endpoint.namespace}): "
            f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}; "
            "check --host, --namespace and --token"
        ) from error


def _require_package(package: Path) -> None:
    if not package.is_file():
        raise EndpointError(
            f"{package}: compiled pipeline not found; run 'l1recal kfp compile' first"
        )


def upload(endpoint: Endpoint, package: Path, name: str, version: str | None) -> str:
    """Upload the compiled pipeline, or a new version of it; return the pipeline ID."""
    _require_package(package)
    client = _client(endpoint)
    pipeline_id = _call(
        endpoint, "looking up the pipeline", client.get_pipeline_id, name
    )
    if pipeline_id is None:
        result = _call(
            endpoint,
            "upload",
            client.upload_pipeline,
            str(package),
            pipeline_name=name,
            namespace=endpoint.namespace,
        )
        pipeline_id = result.pipeline_id
    else:
        _call(
            endpoint,
            "upload of a pipeline version",
            client.upload_pipeline_version,
            str(package),
            pipeline_version_name=version or package.stem,
            pipeline_id=pipeline_id,
        )
    logger.info("pipeline %s has ID %s", name, pipeline_id)
    return pipeline_id


def run(
    endpoint: Endpoint,
    package: Path,
    arguments: dict[str, Any],
    experiment: str,
    run_name: str | None,
    service_account: str | None = None,
) -> str:
    """Start one run of the compiled pipeline; return the run ID.

    ``service_account`` is the Kubernetes service account of the task pods,
    e.g. ``l1recal-pipeline-runner`` of ``k8s/``; None keeps the cluster's default.
    """
    _require_package(package)
    client = _client(endpoint)
    result = _call(
        endpoint,
        "run creation",
        client.create_run_from_pipeline_package,
        str(package),
        arguments=arguments,
        run_name=run_name,
        experiment_name=experiment,
        namespace=endpoint.namespace,
        service_account=service_account,
    )
    logger.info("started run %s", result.run_id)
    return result.run_id


def validate_cron(cron: str) -> str:
    """Check a KFP cron expression: six fields, seconds first.

    Raises:
        EndpointError: with the expected form when the field count is wrong.
    """
    fields = cron.split()
    if len(fields) != 6:
        raise EndpointError(
            f"--cron {cron!r}: Kubeflow Pipelines cron expressions have six fields, "
            "seconds first ('second minute hour day-of-month month day-of-week'), "
            f"got {len(fields)}; e.g. '0 0 3 * * *' for 03:00 every day"
        )
    return cron


def schedule(
    endpoint: Endpoint,
    package: Path,
    cron: str,
    arguments: dict[str, Any],
    experiment: str,
    job_name: str,
    service_account: str | None = None,
) -> str:
    """Create the recurring retraining run, at most one run at a time; return its ID."""
    validate_cron(cron)
    _require_package(package)
    client = _client(endpoint)
    experiment_id = _call(
        endpoint,
        "experiment creation",
        client.create_experiment,
        experiment,
        namespace=endpoint.namespace,
    ).experiment_id
    job = _call(
        endpoint,
        "recurring run creation",
        client.create_recurring_run,
        experiment_id=experiment_id,
        job_name=job_name,
        cron_expression=cron,
        max_concurrency=1,
        no_catchup=True,
        params=arguments,
        pipeline_package_path=str(package),
        service_account=service_account,
    )
    logger.info("created recurring run %s (%s)", job.recurring_run_id, cron)
    return job.recurring_run_id
