"""Kubernetes manifests: ``kubectl kustomize`` of the base and each overlay, checked offline.

Every rendered resource is validated against the Kubernetes OpenAPI schemas
with kubernetes-validate (strict: unknown fields fail), then the serving
Deployment's probes, resources and security context are checked field by
field. Nothing here contacts a cluster.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from conftest import REPO_ROOT
from l1recal.kfp import pipeline

K8S = REPO_ROOT / "k8s"
TARGETS = ["base", "overlays/dev", "overlays/prod"]
#: Oldest Kubernetes release the manifests are checked against.
KUBERNETES_VERSION = "1.30.0"


def _kustomize_major() -> int | None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    result = subprocess.run(
        [kubectl, "version", "--client", "-o", "json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    try:
        version = json.loads(result.stdout).get("kustomizeVersion", "")
    except json.JSONDecodeError:
        return None
    match = re.match(r"v(\d+)", version)
    return int(match.group(1)) if match else None


pytestmark = pytest.mark.skipif(
    (_kustomize_major() or 0) < 4,
    reason="needs kubectl with kustomize v4 or later (labels and patches fields); "
    "Debian's kubernetes-client 1.20 bundles kustomize v2",
)


@pytest.fixture(scope="module", params=TARGETS)
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict]]:
    result = subprocess.run(
        ["kubectl", "kustomize", str(K8S / request.param)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, (
        f"kustomize build of {request.param} failed: {result.stderr}"
    )
    return request.param, [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _find(resources: list[dict], kind: str, name: str) -> dict:
    matches = [
        r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name
    ]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def test_resources_match_openapi_schemas(rendered):
    target, resources = rendered
    for resource in resources:
        try:
            kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(
                f"{target}: {resource['kind']}/{resource['metadata']['name']}: {error.message}"
            )


def test_expected_kinds_present(rendered):
    _, resources = rendered
    kinds = {resource["kind"] for resource in resources}
    assert kinds >= {
        "Namespace",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "PersistentVolumeClaim",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
    }
    for resource in resources:
        if resource["kind"] != "Namespace":
            assert resource["metadata"]["namespace"] == "l1recal"


def test_serving_probes_and_resources(rendered):
    _, resources = rendered
    pod = _find(resources, "Deployment", "l1recal-serving")["spec"]["template"]["spec"]
    serving = next(c for c in pod["containers"] if c["name"] == "serving")
    assert serving["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert serving["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for container in pod["containers"] + pod.get("initContainers", []):
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][bound]), (
                f"{container['name']} lacks {bound}"
            )


def test_serving_security_context(rendered):
    _, resources = rendered
    pod = _find(resources, "Deployment", "l1recal-serving")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    for container in pod["containers"] + pod.get("initContainers", []):
        context = container["securityContext"]
        assert context["runAsNonRoot"] is True, container["name"]
        assert context["readOnlyRootFilesystem"] is True, container["name"]
        assert context["allowPrivilegeEscalation"] is False, container["name"]
        assert context["capabilities"]["drop"] == ["ALL"], container["name"]


def test_pipeline_volumes_and_secrets_declared(rendered):
    _, resources = rendered
    for claim in (
        pipeline.LANDING_PVC,
        pipeline.MODEL_STORE_PVC,
        pipeline.FPGA_TOOLS_PVC,
    ):
        _find(resources, "PersistentVolumeClaim", claim)
    role = _find(resources, "Role", "l1recal-pipeline-runner")
    secret_rule = next(
        rule for rule in role["rules"] if rule["resources"] == ["secrets"]
    )
    assert set(secret_rule["resourceNames"]) == {
        pipeline.DVC_SECRET,
        pipeline.GIT_SECRET,
    }
    assert secret_rule["verbs"] == ["get"]
    assert not [r for r in resources if r["kind"] == "Secret"], (
        "credentials in the repo"
    )


def test_network_policy_denies_by_default(rendered):
    _, resources = rendered
    deny = _find(resources, "NetworkPolicy", "l1recal-serving-default-deny")
    assert deny["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in deny["spec"]
    assert "egress" not in deny["spec"]


def test_overlays_change_replicas():
    replicas = {}
    for target in ("overlays/dev", "overlays/prod"):
        output = subprocess.run(
            ["kubectl", "kustomize", str(K8S / target)],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout
        resources = [doc for doc in yaml.safe_load_all(output) if doc]
        replicas[target] = _find(resources, "Deployment", "l1recal-serving")["spec"][
            "replicas"
        ]
    assert replicas == {"overlays/dev": 1, "overlays/prod": 3}


def test_manifest_yaml_files_parse():
    for path in sorted(Path(K8S).rglob("*.yaml")):
        documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
        assert documents, f"{path} is empty"
