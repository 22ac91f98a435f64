"""The pipeline's own steps: fetch a data version, build the parameter file, read the approval, roll out.

These run inside the pipeline's containers as ``l1recal kfp <step>``; the stage
work itself (ingest, training, ...) stays in the stage commands.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from l1recal import config
from l1recal.atomic import atomic_path, write_json, write_text
from l1recal.errors import ConfigError, InputFileError, L1RecalError

logger = logging.getLogger(__name__)


class RolloutError(L1RecalError):
    """The serving Deployment could not be restarted after a roll-out."""


RAW_PATH = "data/raw"
PARAMS_FILE = "params.yaml"
DATA_DVC_FILE = "data.dvc"
#: Champion record in the model store: the approval entry of each served kind.
CHAMPION_FILE = "approved.json"
#: Champion registry read by ``l1recal approve --champion-dir``.
CHAMPIONS_DIR = "champions"
#: One JSON line per roll-out: what was served from when, trained on which data.
HISTORY_FILE = "history.jsonl"
DEPLOYMENT_ANNOTATION = "l1recal.io/served-data-version"

#: ``l1recal kfp params`` option -> (params.yaml section, key).
LIST_OVERRIDES = {
    "network_presets": ("train_network", "presets"),
    "falkon_models": ("train_falkon", "models"),
    "jet_network_presets": ("jet_train_network", "presets"),
    "jet_falkon_models": ("jet_train_falkon", "models"),
}
#: Section -> settings class name in ``l1recal.config``, validated when it exists.
SECTION_SETTINGS = {
    "train_network": "NetworkTrainSettings",
    "train_falkon": "FalkonTrainSettings",
    "jet_train_network": "NetworkTrainSettings",
    "jet_train_falkon": "FalkonTrainSettings",
    "approve": "ApproveSettings",
}


def fetch_data(
    repo_url: str,
    revision: str,
    remote: str | None,
    data_out: Path,
    params_out: Path,
    data_version_out: Path,
) -> str:
    """Download ``data/raw`` and ``params.yaml`` of a repository revision with DVC.

    Args:
        repo_url: git URL or local path of the project repository.
        revision: branch, tag or commit.
        remote: DVC remote name, or None for the repository's default remote.
        data_out: folder to write the raw data into (replaced if present).
        params_out: file to write ``params.yaml`` into.
        data_version_out: file to write the data version into: the hash DVC
            records for ``data/raw`` in ``data.dvc`` at that revision.

    Returns:
        The data version.

    Raises:
        InputFileError: when the repository, the revision or the data cannot be fetched.
    """
    from dvc.exceptions import DvcException
    from dvc.repo import Repo
    from dvc.scm import SCMError

    logger.info("fetching %s at %s from %s", RAW_PATH, revision, repo_url)
    try:
        with Repo.open(url=repo_url, rev=revision, remote=remote or None) as repo:
            commit = repo.scm.get_rev()
            params_text = repo.fs.read_text(repo.fs.join(repo.root_dir, PARAMS_FILE))
            data_dvc = yaml.safe_load(
                repo.fs.read_text(repo.fs.join(repo.root_dir, DATA_DVC_FILE))
            )
        with atomic_path(data_out, is_dir=True) as staging:
            Repo.get(
                repo_url,
                RAW_PATH,
                out=str(staging / "raw"),
                rev=commit,
                remote=remote or None,
            )
            for item in (staging / "raw").iterdir():
                item.rename(staging / item.name)
            (staging / "raw").rmdir()
    except (DvcException, SCMError, FileNotFoundError) as error:
        raise InputFileError(
            f"{repo_url}@{revision}: cannot fetch {RAW_PATH} with DVC: {error}; "
            "check the repository URL, the revision and the DVC remote credentials "
            "(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY for S3)"
        ) from error
    version = str(data_dvc["outs"][0]["md5"])
    write_text(params_out, params_text)
    write_text(data_version_out, version)
    logger.info("fetched data version %s (commit %s)", version, commit[:12])
    return version


def build_params(
    base: Path,
    output: Path,
    list_overrides: dict[str, list],
    approve_settings: dict[str, Any],
) -> dict[str, Any]:
    """Write ``params.yaml`` with the pipeline's UI parameters applied.

    Args:
        base: the repository's ``params.yaml`` at the trained revision.
        output: file to write.
        list_overrides: option name of ``LIST_OVERRIDES`` -> list; an empty
            list keeps the base file's value.
        approve_settings: keys merged into the ``approve`` section.

    Returns:
        The written document.

    Raises:
        ConfigError: when the base file is invalid or an override fails the
            stage's settings validation.
    """
    try:
        document = yaml.safe_load(base.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{base}: cannot read the parameter file: {error}") from error
    if not isinstance(document, dict):
        raise ConfigError(f"{base}: expected a mapping of stage sections")
    changed: set[str] = set()
    for option, values in list_overrides.items():
        if not values:
            continue
        section, key = LIST_OVERRIDES[option]
        document.setdefault(section, {})[key] = values
        changed.add(section)
    if approve_settings:
        document["approve"] = {**(document.get("approve") or {}), **approve_settings}
        changed.add("approve")
    for section in sorted(changed):
        settings_class = getattr(config, SECTION_SETTINGS[section], None)
        if settings_class is None:
            logger.warning(
                "no settings class for section %s; written unvalidated", section
            )
            continue
        try:
            settings_class.model_validate(document[section])
        except ValueError as error:
            raise ConfigError(
                f"pipeline parameter for {section} is invalid: {error}"
            ) from error
    write_text(output, yaml.safe_dump(document, sort_keys=False))
    logger.info(
        "wrote %s (overridden: %s)", output, ", ".join(sorted(changed)) or "none"
    )
    return document


def parse_json_option(name: str, text: str, expected: type) -> Any:
    """Parse a JSON list or object given on the command line, raising ConfigError on a mismatch."""
    try:
        value = json.loads(text) if text.strip() else expected()
    except json.JSONDecodeError as error:
        raise ConfigError(f"--{name}: invalid JSON {text!r}: {error}") from error
    if not isinstance(value, expected):
        raise ConfigError(
            f"--{name}: expected a JSON {expected.__name__}, got {text!r}"
        )
    return value


def read_approval(approved: Path) -> dict[str, Any]:
    """Read ``approved.json``, raising InputFileError when it is missing or invalid."""
    try:
        document = json.loads(approved.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise InputFileError(
            f"{approved}: cannot read the approval record: {error}; run 'l1recal approve' first"
        ) from error
    if not isinstance(document, dict):
        raise InputFileError(
            f"{approved}: expected an object keyed by kind (muon, jet)"
        )
    return document


def approved_kinds(approval: dict[str, Any]) -> list[str]:
    """Return the kinds (muon, jet) for which the approval record chose a model."""
    return [
        kind
        for kind, entry in approval.items()
        if isinstance(entry, dict) and entry.get("approved") is True
    ]


def write_approval_flag(approved: Path, output: Path) -> bool:
    """Write ``true`` when any kind has an approved model, else ``false``; return the flag."""
    kinds = approved_kinds(read_approval(approved))
    write_text(output, "true" if kinds else "false")
    logger.info("approved kinds: %s", ", ".join(kinds) or "none")
    return bool(kinds)


def roll_out(
    bentomodels: Path,
    approved: Path,
    model_store: Path,
    record: Path,
    deployment: str | None,
    namespace: str,
    data_version: str | None = None,
) -> dict[str, Any]:
    """Publish the packaged models to the serving model store and restart serving.

    Copies the ``.bentomodel`` files into ``<model_store>/<kind>/`` and
    replaces the entry of each approved kind in ``<model_store>/approved.json``.
    It promotes the approved bundle into the champion registry
    ``<model_store>/champions``, which the next run's approval gate compares
    against. It appends one line per kind to ``<model_store>/history.jsonl``,
    so the data version of every served model stays on record. Kinds without an
    approved model keep their champion. Inside a cluster it then patches the
    serving Deployment's pod template, which makes Kubernetes replace the pods
    one by one; outside one (no ``KUBERNETES_SERVICE_HOST``) it skips that step
    and logs that it did.

    Args:
        bentomodels: folder of ``.bentomodel`` files written by ``l1recal package``.
        approved: the run's ``approved.json``.
        model_store: folder the serving pods load their models from.
        record: JSON file to write with what was rolled out.
        deployment: serving Deployment to restart; empty or None to skip.
        namespace: namespace of the Deployment.
        data_version: data version of the run, recorded where the approval
            entry has none. Model cards take theirs from ``data.dvc`` in the
            working folder, which pipeline containers do not have.

    Returns:
        The written record.
    """
    from l1recal.evaluation.approval import promote

    approval = read_approval(approved)
    kinds = approved_kinds(approval)
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    champions_path = model_store / CHAMPION_FILE
    champions = (
        json.loads(champions_path.read_text()) if champions_path.exists() else {}
    )
    entries = []
    for kind in kinds:
        entry = dict(approval[kind])
        entry["data_version"] = entry.get("data_version") or data_version
        files = sorted(bentomodels.glob(f"*{kind}*.bentomodel"))
        with atomic_path(model_store / kind, is_dir=True) as staging:
            for file in files:
                shutil.copy2(file, staging / file.name)
        champions[kind] = entry
        promote(entry, kind, model_store / CHAMPIONS_DIR)
        entries.append(
            {
                "time": now,
                "kind": kind,
                "model": entry.get("model"),
                "data_version": entry["data_version"],
                "code_version": entry.get("code_version"),
                "files": [file.name for file in files],
            }
        )
    write_json(champions_path, champions)
    with (model_store / HISTORY_FILE).open("a") as history:
        for entry in entries:
            history.write(json.dumps(entry) + "\n")
    restarted = _restart_deployment(deployment, namespace, entries)
    payload = {"time": now, "rolled_out": entries, "restarted": restarted}
    write_json(record, payload)
    return payload


def _restart_deployment(
    deployment: str | None, namespace: str, entries: list[dict[str, Any]]
) -> bool:
    if not deployment or not entries:
        return False
    if "KUBERNETES_SERVICE_HOST" not in os.environ:
        logger.warning(
            "not inside a Kubernetes pod; skipped the restart of deployment %s/%s",
            namespace,
            deployment,
        )
        return False
    from kubernetes import client
    from kubernetes import config as kube_config

    kube_config.load_incluster_config()
    versions = ",".join(f"{entry['kind']}={entry['data_version']}" for entry in entries)
    patch = {
        "spec": {
            "template": {"metadata": {"annotations": {DEPLOYMENT_ANNOTATION: versions}}}
        }
    }
    try:
        client.AppsV1Api().patch_namespaced_deployment(deployment, namespace, patch)
    except client.ApiException as error:
        raise RolloutError(
            f"cannot restart deployment {namespace}/{deployment}: {error.status} {error.reason}; "
            "check that it exists and that the run's service account may patch it "
            "(k8s/base/rbac.yaml)"
        ) from error
    logger.info("restarted deployment %s/%s (%s)", namespace, deployment, versions)
    return True


def resolve_revision(repo_url: str, revision: str) -> str:
    """Return the commit that ``revision`` names in a repository."""
    from dvc.repo import Repo

    with Repo.open(url=repo_url, rev=revision, uninitialized=True) as repo:
        return repo.scm.get_rev()


def temporary_clone(repo_url: str, revision: str) -> Path:
    """Clone a repository at a revision into a new temporary folder and return it."""
    import subprocess

    target = Path(tempfile.mkdtemp(prefix="l1recal-register-"))
    subprocess.run(
        ["git", "clone", "--quiet", repo_url, str(target)], check=True, timeout=600
    )
    subprocess.run(
        ["git", "checkout", "--quiet", revision], cwd=target, check=True, timeout=60
    )
    return target
