"""End to end: the real DVC pipeline on a small simulated sample, in a temporary copy of the repo."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO_ROOT

SMALL_PARAMS = {
    "simulate": {
        "n_events": 15_000,
        "noise_floor_muons": 100_000,
        "jet_events": 20_000,
    },
    "train_network": {"max_epochs": 8, "patience": 3, "batch_size": 256},
    "train_falkon": {
        "models": [
            {
                "name": "falkon_gaussian_m50",
                "centres": 50,
                "sigma": 0.5,
                "penalty": 1e-6,
            }
        ]
    },
    "jet_train_network": {"max_epochs": 8, "patience": 3, "batch_size": 256},
    "jet_train_falkon": {
        "models": [{"name": "falkon_gaussian_m50", "centres": 50, "sigma": 0.5}]
    },
    "tune": {
        "base": {"name": "tune_base", "centres": 20, "max_iterations": 10},
        "sweeps": [
            {"parameter": "sigma", "values": [0.3, 1.0]},
            {"parameter": "penalty", "values": [1e-6, 1e-4]},
            {"parameter": "centres", "values": [10, 20]},
        ],
    },
}


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    env["DVC_NO_ANALYTICS"] = "1"
    result = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, (
        f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"
    )
    return result


@pytest.fixture(scope="module")
def pipeline_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("repo")
    for name in ("dvc.yaml", "data.dvc", ".dvcignore", "params.yaml"):
        shutil.copy2(REPO_ROOT / name, work / name)
    shutil.copytree(
        REPO_ROOT / ".dvc", work / ".dvc", ignore=shutil.ignore_patterns("cache", "tmp")
    )
    shutil.copytree(
        REPO_ROOT / "src", work / "src", ignore=shutil.ignore_patterns("__pycache__")
    )
    params = yaml.safe_load((work / "params.yaml").read_text())
    for section, values in SMALL_PARAMS.items():
        params[section].update(values)
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    _run(["git", "init", "-q"], work)
    _run(["l1recal", "simulate", "data/raw"], work)
    _run(["dvc", "commit", "-f", "-q", "data.dvc"], work)
    return work


def test_repro_runs_every_stage(pipeline_copy):
    result = _run(["dvc", "repro"], pipeline_copy)
    muon_stages = {
        "ingest",
        "preprocess",
        "train_network",
        "train_falkon",
        "tune",
        "evaluate",
    }
    for stage in muon_stages:
        assert f"Running stage '{stage}'" in result.stdout
    jet_stages = {
        "jet_ingest",
        "jet_preprocess",
        "jet_train_network",
        "jet_train_falkon",
        "jet_evaluate",
    }
    for stage in jet_stages:
        assert f"Running stage '{stage}'" in result.stdout
    lock = yaml.safe_load((pipeline_copy / "dvc.lock").read_text())
    assert set(lock["stages"]) >= muon_stages
    assert set(lock["stages"]) >= jet_stages


def test_jet_models_beat_l1_baseline(pipeline_copy):
    metrics = json.loads((pipeline_copy / "reports" / "jet_metrics.json").read_text())
    baseline = metrics["gmt"]["pt_rel"]
    for model in ("nn_id6", "falkon_gaussian_m50"):
        assert metrics[model]["pt_rel"] < baseline, model
    matching = json.loads((pipeline_copy / "reports" / "jet_matching.json").read_text())
    central = matching["abs_eta_lt_3"]["matched_fraction"]
    assert matching["no_cut"]["matched_fraction"] > 0
    assert matching["no_cut"]["matched_fraction"] < central


def test_models_beat_l1_baseline(pipeline_copy):
    metrics = json.loads((pipeline_copy / "reports" / "muon_metrics.json").read_text())
    baseline = metrics["gmt"]
    for model in ("nn_id4", "falkon_gaussian_m50"):
        assert metrics[model]["phi"] < baseline["phi"], model
        assert metrics[model]["pt_rel"] < baseline["pt_rel"], model
    assert metrics["noise_floor"]["phi"] < baseline["phi"]
    table = (pipeline_copy / "reports" / "muon_rmse.md").read_text()
    assert "| nn_id4 |" in table
    assert "| L1 (GMT, uncorrected) |" in table


def test_model_card_records_data_version(pipeline_copy):
    card = json.loads(
        (
            pipeline_copy / "models" / "muon" / "network" / "nn_id4" / "model_card.json"
        ).read_text()
    )
    recorded = yaml.safe_load((pipeline_copy / "data.dvc").read_text())["outs"][0][
        "md5"
    ]
    assert card["data_version"] == recorded


def test_second_repro_runs_nothing(pipeline_copy):
    result = _run(["dvc", "repro"], pipeline_copy)
    assert "Running stage" not in result.stdout
    assert "Data and pipelines are up to date." in result.stdout


def test_metrics_show_lists_models(pipeline_copy):
    result = _run(["dvc", "metrics", "show", "--json"], pipeline_copy)
    assert "falkon_gaussian_m50" in result.stdout
