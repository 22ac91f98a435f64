"""The compiled pipeline's container commands, run here in dependency order, and the retraining loop.

A small git and DVC repository with a local DVC remote replaces the
project's repository. A new simulated batch in a landing folder plays the
part of newly arrived ZeroBias data.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from conftest import REPO_ROOT
from l1recal.config import SimulateSettings
from l1recal.errors import InputFileError
from l1recal.kfp.client import DEFAULT_PIPELINE_FILE
from l1recal.kfp.local_run import LocalRunner
from l1recal.kfp.retrain import MANIFEST_FILE, register_batches, retrain_local
from l1recal.simulation.stage import MUON_EVENTS_FILE, run_simulate

SMALL_PARAMS = {
    "simulate": {"n_events": 6_000, "noise_floor_muons": 50_000, "jet_events": 8_000},
    "train_network": {"max_epochs": 3, "patience": 2, "batch_size": 256},
    "train_falkon": {
        "models": [{"name": "falkon_gaussian_m30", "centres": 30, "sigma": 0.5}]
    },
    "jet_train_network": {"max_epochs": 3, "patience": 2, "batch_size": 256},
    "jet_train_falkon": {
        "models": [{"name": "falkon_gaussian_m30", "centres": 30, "sigma": 0.5}]
    },
    "evaluate": {"throughput_rows": 2_000, "throughput_seconds": 0.05},
    "jet_evaluate": {"throughput_rows": 2_000, "throughput_seconds": 0.05},
    "hls": {"scan_widths": [16], "max_test_rows": 300},
}
#: Approval settings a tiny training run can pass: the point here is the
#: pipeline's path through packaging and roll-out, not model quality.
LENIENT_APPROVAL = {
    "baseline_margins": {"phi": 0.0, "eta": 0.0, "pt_rel": 0.0},
    "fixed_point_tolerance": 10.0,
}


def _git(*args: str, cwd: Path) -> str:
    result = subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@localhost", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def _dvc(*args: str, cwd: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "dvc", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "DVC_NO_ANALYTICS": "1"},
    )


@pytest.fixture(scope="module")
def project_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder with a project checkout and its DVC remote, built once per module."""
    root = tmp_path_factory.mktemp("template")
    _build_project(root)
    return root


def _make_project(template: Path, root: Path) -> Path:
    """Copy the template project into ``root``; return the checkout.

    The DVC remote's path in ``.dvc/config`` is absolute, so the copies share
    the template's remote, which only ever gains content-addressed files.
    """
    shutil.copytree(template / "checkout", root / "checkout", symlinks=True)
    return root / "checkout"


def _build_project(root: Path) -> Path:
    """Create a project checkout with simulated raw data pushed to a local DVC remote."""
    checkout = root / "checkout"
    checkout.mkdir()
    _git("init", "--quiet", "--initial-branch", "main", cwd=checkout)
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    for section, values in SMALL_PARAMS.items():
        params.setdefault(section, {}).update(values)
    (checkout / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run_simulate(
        SimulateSettings(
            n_events=6_000, noise_floor_muons=50_000, jet_events=8_000, seed=3
        ),
        checkout / "data" / "raw",
    )
    (checkout / "data" / ".gitignore").write_text("/raw\n")
    _dvc("init", "--quiet", cwd=checkout)
    _dvc("remote", "add", "--default", "local", str(root / "dvc-remote"), cwd=checkout)
    (checkout / "data.dvc").write_text("outs:\n- path: data/raw\n")
    _dvc("commit", "--force", "--quiet", "data.dvc", cwd=checkout)
    _dvc("push", "--quiet", cwd=checkout)
    _git("add", "--all", cwd=checkout)
    _git("commit", "--quiet", "-m", "Add the simulated raw data", cwd=checkout)
    return checkout


def _landing_batch(landing: Path, seed: int) -> Path:
    """Simulate a new batch of raw muon events and drop it into the landing folder."""
    staging = landing.parent / f"batch-{seed}"
    run_simulate(
        SimulateSettings(n_events=2_000, noise_floor_muons=1_000, seed=seed), staging
    )
    landing.mkdir(exist_ok=True)
    target = landing / f"muon_events_batch{seed}.parquet"
    shutil.move(staging / MUON_EVENTS_FILE, target)
    return target


def _data_md5(checkout_or_bare: Path, revision: str) -> str:
    text = _git("show", f"{revision}:data.dvc", cwd=checkout_or_bare)
    return yaml.safe_load(text)["outs"][0]["md5"]


def test_register_batches_appends_and_commits(project_template: Path, tmp_path: Path):
    checkout = _make_project(project_template, tmp_path)
    before = pq.ParquetFile(checkout / "data/raw" / MUON_EVENTS_FILE).metadata.num_rows
    old_md5 = _data_md5(checkout, "HEAD")
    landing = tmp_path / "landing"
    batch = _landing_batch(landing, seed=41)
    added = pq.ParquetFile(batch).metadata.num_rows

    commit = register_batches(checkout, landing)

    assert commit == _git("rev-parse", "HEAD", cwd=checkout)
    after = pq.ParquetFile(checkout / "data/raw" / MUON_EVENTS_FILE).metadata.num_rows
    assert after == before + added
    assert _data_md5(checkout, "HEAD") != old_md5
    manifest = json.loads((landing / MANIFEST_FILE).read_text())
    assert manifest[batch.name]["commit"] == commit
    assert register_batches(checkout, landing) is None, "a file was registered twice"


def test_register_batches_rejects_other_schema(project_template: Path, tmp_path: Path):
    checkout = _make_project(project_template, tmp_path)
    landing = tmp_path / "landing"
    landing.mkdir()
    table = pq.read_table(checkout / "data/raw" / MUON_EVENTS_FILE).drop_columns(
        ["hwPtL1_0"]
    )
    pq.write_table(table, landing / "muon_events_bad.parquet")
    with pytest.raises(InputFileError, match="schema differs"):
        register_batches(checkout, landing)
    assert _git("status", "--porcelain", "--untracked-files=no", cwd=checkout) == ""


def test_retrain_local_records_history(project_template: Path, tmp_path: Path):
    checkout = _make_project(project_template, tmp_path)
    landing = tmp_path / "landing"
    _landing_batch(landing, seed=42)
    entry = retrain_local(checkout, landing, repro=False)
    assert entry["new_data"] is True
    assert entry["data_commit"] == _git("rev-parse", "HEAD", cwd=checkout)
    history = (checkout / "reports/retrain_history.jsonl").read_text().splitlines()
    assert json.loads(history[-1])["data_commit"] == entry["data_commit"]
    second = retrain_local(checkout, landing, repro=False)
    assert second["new_data"] is False


@pytest.mark.slow
def test_compiled_pipeline_runs_end_to_end(project_template: Path, tmp_path: Path):
    checkout = _make_project(project_template, tmp_path)
    origin = tmp_path / "origin.git"
    _git("clone", "--quiet", "--bare", str(checkout), str(origin), cwd=tmp_path)
    first_md5 = _data_md5(origin, "main")
    landing = tmp_path / "landing"
    batch = _landing_batch(landing, seed=43)
    store = tmp_path / "model-store"
    environment = {
        "BENTOML_HOME": str(tmp_path / "bentoml"),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    os.environ.pop("KUBERNETES_SERVICE_HOST", None)

    runner = LocalRunner(
        REPO_ROOT / DEFAULT_PIPELINE_FILE,
        tmp_path / "run",
        {
            "repo_url": str(origin),
            "data_revision": "main",
            "landing_dir": str(landing),
            "approve_settings": LENIENT_APPROVAL,
            "model_store": str(store),
        },
        env=environment,
    )
    results = {result.display_name: result.status for result in runner.run()}

    assert results.pop("synthesis-requested") == "skipped: condition false"
    assert "hls synth" not in results
    assert all(status == "done" for status in results.values()), results
    for name in (
        "fetch data",
        "muon train network",
        "approve",
        "package",
        "roll out serving",
    ):
        assert name in results

    # Registration made a new data version on the repository's main branch.
    new_md5 = _data_md5(origin, "main")
    assert new_md5 != first_md5
    assert json.loads((landing / MANIFEST_FILE).read_text())[batch.name]
    data_version = (tmp_path / "run/fetch-data/parameters/data_version").read_text()
    assert data_version == new_md5

    # Serving got the approved model, and the record names its data version.
    assert (store / "muon" / "l1recal-muon.bentomodel").is_file()
    champion = json.loads((store / "champions/muon/champion.json").read_text())
    assert champion["data_version"] == data_version
    history = [
        json.loads(line) for line in (store / "history.jsonl").read_text().splitlines()
    ]
    served = {entry["kind"]: entry for entry in history}
    assert "muon" in served
    for entry in history:
        assert entry["data_version"] == data_version, entry
