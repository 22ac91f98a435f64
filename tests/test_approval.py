"""The approval gate: the decision table, the approved.json contract and the champion registry."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from l1recal.config import ApproveSettings
from l1recal.evaluation.approval import (
    CHAMPION_BUNDLE,
    CHAMPION_RECORD,
    NO_MODEL_MESSAGE,
    Champion,
    decide,
    run_approve,
)
from l1recal.models.bundle import save_falkon, write_card, write_scalers
from l1recal.models.falkon import FalkonSolution
from l1recal.models.kernels import Kernel
from l1recal.models.scalers import AffineScaler
from l1recal.schema import MUON_INPUTS, MUON_TARGETS

SETTINGS = ApproveSettings(
    baseline_margins={"phi": 0.10, "eta": 0.01, "pt_rel": 0.10},
    champion_tolerance=0.02,
    fixed_point_tolerance=0.05,
)
BASELINE = {"phi": 0.48, "eta": 0.032, "pt_rel": 0.53, "test_rows": 1000}
GOOD = {"phi": 0.17, "eta": 0.030, "pt_rel": 0.21, "test_rows": 1000}
BETTER = {"phi": 0.16, "eta": 0.030, "pt_rel": 0.20, "test_rows": 1000}
ETA_AT_BASELINE = {"phi": 0.17, "eta": 0.032, "pt_rel": 0.21, "test_rows": 1000}


def _champion(metrics: dict[str, float]) -> Champion:
    return Champion({"model": "old_champion"}, metrics, rescored=True)


def _csim(loss: float) -> dict:
    return {
        "precision": "ap_fixed<16,6>",
        "relative_loss": {"phi": 0.0, "eta": 0.0, "pt_rel": loss},
    }


# (case, models, champion metrics or None, fixed-point results or None,
#  expected model, expected rejected models, a phrase of the first rejection reason)
CASES = [
    (
        "beats everything",
        {"nn": GOOD},
        {"phi": 0.18, "eta": 0.031, "pt_rel": 0.25},
        None,
        "nn",
        {},
    ),
    ("no champion yet", {"nn": GOOD}, None, None, "nn", {}),
    (
        "loses to champion",
        {"nn": GOOD},
        {"phi": 0.15, "eta": 0.030, "pt_rel": 0.20},
        None,
        None,
        {"nn": "worse than champion old_champion"},
    ),
    (
        "worse than baseline on one target",
        {"nn": ETA_AT_BASELINE},
        None,
        None,
        None,
        {"nn": "eta RMSE 0.032 does not beat the L1 baseline"},
    ),
    (
        "fixed-point loss too large",
        {"nn": GOOD},
        None,
        {"nn": _csim(0.08)},
        None,
        {"nn": "fixed-point emulation (ap_fixed<16,6>) loses 8.0% on pt_rel"},
    ),
    ("fixed-point loss small", {"nn": GOOD}, None, {"nn": _csim(0.01)}, "nn", {}),
    (
        "best of two passing",
        {"nn": GOOD, "falkon": BETTER},
        None,
        None,
        "falkon",
        {"nn": "passed every check, but falkon ranks higher"},
    ),
    (
        "within champion tolerance",
        {"nn": GOOD},
        {"phi": 0.168, "eta": 0.0298, "pt_rel": 0.207},
        None,
        "nn",
        {},
    ),
]


@pytest.mark.parametrize(
    ("models", "champion", "fixed_point", "expected", "rejected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_gate_decision(models, champion, fixed_point, expected, rejected):
    document = {
        "gmt": BASELINE,
        **models,
        "noise_floor": {"phi": 0.15, "eta": 0.03, "pt_rel": 0.16},
    }
    decision = decide(
        document,
        SETTINGS,
        _champion(champion) if champion else None,
        fixed_point,
    )
    assert decision["model"] == expected
    assert set(decision["rejections"]) == set(rejected)
    for name, phrase in rejected.items():
        assert phrase in decision["rejections"][name][0]
    assert "noise_floor" not in decision["rejections"]


def test_gate_lists_every_failed_metric():
    worse = {"phi": 0.47, "eta": 0.033, "pt_rel": 0.60, "test_rows": 1000}
    decision = decide({"gmt": BASELINE, "bad": worse}, SETTINGS)
    assert len(decision["rejections"]["bad"]) == 3


def test_required_fixed_point_rejects_missing_result():
    settings = SETTINGS.model_copy(update={"require_fixed_point": True})
    decision = decide({"gmt": BASELINE, "nn": GOOD}, settings, None, {})
    assert decision["model"] is None
    assert "no fixed-point emulation result" in decision["rejections"]["nn"][0]


def test_margin_outside_range_rejected():
    with pytest.raises(ValueError, match=r"baseline_margins.phi must be in \[0, 1\)"):
        ApproveSettings(baseline_margins={"phi": 1.5})


# The registry end to end: real Falkon bundles, a test split, two approval runs.


def _write_falkon_bundle(directory: Path, name: str, scale: float) -> None:
    rng = np.random.default_rng(0)
    directory.mkdir(parents=True)
    save_falkon(
        directory,
        FalkonSolution(
            Kernel("gaussian", sigma=0.5),
            rng.uniform(size=(3, 4)),
            scale * rng.normal(size=(3, 3)),
        ),
    )
    write_scalers(
        directory,
        {
            "inputs": AffineScaler(MUON_INPUTS, np.zeros(4), np.ones(4)),
            "targets": AffineScaler(MUON_TARGETS, np.zeros(3), np.ones(3)),
        },
    )
    write_card(
        directory,
        {
            "name": name,
            "family": "falkon",
            "task": "muon",
            "kernel": {"name": "gaussian", "sigma": 0.5},
        },
    )


@pytest.fixture
def registry_setup(tmp_path: Path, small_splits: Path):
    models = tmp_path / "models"
    _write_falkon_bundle(models / "muon" / "falkon" / "falkon_a", "falkon_a", 0.0)
    metrics = tmp_path / "muon_metrics.json"
    metrics.write_text(json.dumps({"gmt": BASELINE, "falkon_a": GOOD}))
    return tmp_path, models, metrics


def test_approve_writes_contract_and_promotes(registry_setup, small_splits):
    work, models, metrics = registry_setup
    champions = work / "registry"
    output = work / "approved.json"
    document = run_approve(
        SETTINGS,
        {"muon": metrics, "jet": work / "jet_metrics.json"},
        output,
        champion_dir=champions,
        data_dirs={"muon": small_splits},
        fixed_point_paths={"muon": work / "hls" / "muon_csim.json"},
        promote_approved=True,
        models_root=models,
    )

    written = json.loads(output.read_text())
    assert written == json.loads(json.dumps(document))
    muon = written["muon"]
    for key in (
        "approved",
        "model",
        "bundle",
        "family",
        "metrics",
        "replaced_champion",
        "data_version",
        "code_version",
        "rejections",
        "message",
    ):
        assert key in muon, key

    assert muon["approved"] is True
    assert muon["model"] == "falkon_a"
    assert muon["family"] == "falkon"
    assert muon["replaced_champion"] is None
    assert muon["message"] == "falkon_a approved; no previous champion"

    assert written["jet"]["approved"] is False
    assert written["jet"]["message"] == NO_MODEL_MESSAGE
    assert written["jet"]["model"] is None

    assert (champions / "muon" / CHAMPION_RECORD).exists()
    assert (champions / "muon" / CHAMPION_BUNDLE / "falkon.npz").exists()


def test_champion_rescored_on_current_split(registry_setup, small_splits):
    work, models, metrics = registry_setup
    champions = work / "registry"
    paths = {"muon": metrics, "jet": work / "jet_metrics.json"}
    run_approve(
        SETTINGS,
        paths,
        work / "first.json",
        champion_dir=champions,
        data_dirs={"muon": small_splits},
        promote_approved=True,
        models_root=models,
    )

    # The champion has zero coefficients: it predicts no correction, so on the
    # current test split it scores exactly the L1 baseline of that split.
    from l1recal.data.preprocess import load_split
    from l1recal.tasks import MUON

    expected = MUON.rmse(load_split(small_splits, "test"), None)
    second = run_approve(
        SETTINGS,
        paths,
        work / "second.json",
        champion_dir=champions,
        data_dirs={"muon": small_splits},
        promote_approved=True,
        models_root=models,
    )["muon"]
    assert second["champion"]["rescored_on_current_test"] is True
    for metric, value in expected.items():
        assert second["champion"]["metrics"][metric] == pytest.approx(value)
    assert second["message"] == "falkon_a approved; it is the current champion"
    assert second["replaced_champion"] is None


def test_nothing_passes_keeps_champion(registry_setup, small_splits):
    work, models, metrics = registry_setup
    champions = work / "registry"
    paths = {"muon": metrics, "jet": work / "jet_metrics.json"}
    run_approve(
        SETTINGS,
        paths,
        work / "first.json",
        champion_dir=champions,
        data_dirs={"muon": small_splits},
        promote_approved=True,
        models_root=models,
    )
    record_before = (champions / "muon" / CHAMPION_RECORD).read_text()

    shutil.rmtree(models / "muon" / "falkon" / "falkon_a")
    _write_falkon_bundle(models / "muon" / "falkon" / "falkon_b", "falkon_b", 1.0)
    metrics.write_text(json.dumps({"gmt": BASELINE, "falkon_b": ETA_AT_BASELINE}))
    document = run_approve(
        SETTINGS,
        paths,
        work / "second.json",
        champion_dir=champions,
        data_dirs={"muon": small_splits},
        promote_approved=True,
        models_root=models,
    )
    assert document["muon"]["approved"] is False
    assert document["muon"]["message"] == NO_MODEL_MESSAGE
    assert "falkon_b" in document["muon"]["rejections"]
    assert (champions / "muon" / CHAMPION_RECORD).read_text() == record_before


def test_model_without_bundle_rejected(registry_setup):
    work, models, metrics = registry_setup
    metrics.write_text(json.dumps({"gmt": BASELINE, "falkon_a": GOOD, "ghost": BETTER}))
    document = run_approve(
        SETTINGS,
        {"muon": metrics, "jet": work / "none.json"},
        work / "approved.json",
        models_root=models,
    )
    assert document["muon"]["model"] == "falkon_a"
    assert "no muon bundle named ghost in" in document["muon"]["rejections"]["ghost"][0]


def test_served_champion_file_compared_on_stored_metrics(registry_setup):
    work, models, metrics = registry_setup
    served = work / "served_approved.json"
    strong = {"phi": 0.15, "eta": 0.029, "pt_rel": 0.18, "test_rows": 900}
    served.write_text(
        json.dumps(
            {"muon": {"approved": True, "model": "served_nn", "metrics": strong}}
        )
    )
    document = run_approve(
        SETTINGS,
        {"muon": metrics, "jet": work / "none.json"},
        work / "approved.json",
        models_root=models,
        champion_file=served,
    )
    muon = document["muon"]
    assert muon["approved"] is False
    assert muon["champion"]["model"] == "served_nn"
    assert muon["champion"]["rescored_on_current_test"] is False
    assert "worse than champion served_nn" in muon["rejections"]["falkon_a"][0]


def test_approve_cli_exits_zero_when_nothing_passes(tmp_path: Path):
    from typer.testing import CliRunner

    from l1recal.cli import app

    metrics = tmp_path / "muon_metrics.json"
    metrics.write_text(json.dumps({"gmt": BASELINE, "nn": ETA_AT_BASELINE}))
    output = tmp_path / "approved.json"
    params = tmp_path / "params.yaml"
    params.write_text("")
    result = CliRunner().invoke(
        app,
        [
            "approve",
            "--muon-metrics",
            str(metrics),
            "--jet-metrics",
            str(tmp_path / "jet_metrics.json"),
            "--models-root",
            str(tmp_path / "models"),
            "--output",
            str(output),
            "--params",
            str(params),
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(output.read_text())["muon"]["message"] == NO_MODEL_MESSAGE


@pytest.mark.parametrize(("matches", "rescored"), [(True, True), (False, False)])
def test_served_champion_bundle_must_match(
    registry_setup, small_splits, matches, rescored
):
    from l1recal.evaluation.approval import bundle_digest

    work, models, metrics = registry_setup
    bundle = models / "muon" / "falkon" / "falkon_a"
    served = work / "served_approved.json"
    record = {
        "approved": True,
        "model": "falkon_a",
        "bundle": str(bundle),
        "bundle_sha256": bundle_digest(bundle) if matches else "0" * 64,
        "metrics": GOOD,
    }
    served.write_text(json.dumps({"muon": record}))
    document = run_approve(
        SETTINGS,
        {"muon": metrics, "jet": work / "none.json"},
        work / "approved.json",
        data_dirs={"muon": small_splits},
        models_root=models,
        champion_file=served,
    )
    assert document["muon"]["champion"]["rescored_on_current_test"] is rescored
