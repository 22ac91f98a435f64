"""Tests of the hls4ml firmware: conversion, fixed-point C simulation, synthesis skip and reports.

The default run compiles two tiny models with g++ (a 4-8-3 network with
BatchNorm and a Gaussian Falkon model with M=4 centres), each at 18 and 16
bits. The precision scan and the full C-simulation stage are marked slow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from l1recal.config import HlsSettings
from l1recal.data.preprocess import load_scalers, load_split
from l1recal.errors import ConfigError
from l1recal.fpga.convert import (
    HlsError,
    build_hls_config,
    convert,
    graph_layer_classes,
    load_source,
)
from l1recal.fpga.csim import (
    csim_model,
    load_test_split,
    narrowest_safe_width,
    run_hls_csim,
)
from l1recal.fpga.falkon_keras import falkon_to_keras
from l1recal.fpga.precision import integer_bits_for, parse_fixed, widen_to_fit
from l1recal.fpga.synth import (
    SynthesisSkippedError,
    parse_synthesis_report,
    run_hls_synth,
)
from l1recal.models.bundle import KERAS_FILE, save_falkon, write_card, write_scalers
from l1recal.models.falkon import Falkon, FalkonSolution, predict_solution
from l1recal.models.kernels import Kernel
from l1recal.tasks import MUON

#: Largest |fixed - float| of the 18-bit emulation, in scaled target units
#: (targets have unit standard deviation, so this is 5 % of one standard deviation).
TOLERANCE_18_BITS = 0.05
#: Largest relative RMSE loss (fixed - float) / float per metric at 16 bits.
LOSS_BOUND_16_BITS = 0.05
TEST_ROWS = 2000


def _train_inputs(splits: Path) -> tuple[dict, np.ndarray, np.ndarray]:
    scalers = load_scalers(splits)
    train = load_split(splits, "train")
    x = scalers["inputs"].transform(train[list(MUON.inputs)].to_numpy())
    y = scalers["targets"].transform(train[list(MUON.targets)].to_numpy())
    return scalers, x, y


@pytest.fixture(scope="module")
def network_bundle(
    small_splits: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A trained 4-8-3 network (Dense, BatchNorm, ReLU, Dense) bundle."""
    import keras

    scalers, x, y = _train_inputs(small_splits)
    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [
            keras.Input(shape=(4,), name="l1_inputs"),
            keras.layers.Dense(8, name="dense_0"),
            keras.layers.BatchNormalization(name="batchnorm_0"),
            keras.layers.ReLU(name="relu_0"),
            keras.layers.Dense(3, name="corrections"),
        ],
        name="nn_tiny",
    )
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    model.fit(
        x.astype(np.float32), y.astype(np.float32), epochs=4, batch_size=256, verbose=0
    )
    bundle = tmp_path_factory.mktemp("models") / "network" / "nn_tiny"
    bundle.mkdir(parents=True)
    model.save(bundle / KERAS_FILE)
    write_scalers(bundle, scalers)
    write_card(bundle, {"name": "nn_tiny", "family": "network", "task": "muon"})
    return bundle


@pytest.fixture(scope="module")
def falkon_bundle(small_splits: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Gaussian Falkon bundle with M=4 centres and a penalty that keeps its coefficients small."""
    scalers, x, y = _train_inputs(small_splits)
    kernel = Kernel("gaussian", sigma=0.5)
    model = Falkon(kernel, centres=4, penalty=1e-3, max_iterations=20, seed=2)
    model.fit(x, y)
    bundle = tmp_path_factory.mktemp("models") / "falkon" / "falkon_tiny"
    bundle.mkdir(parents=True)
    save_falkon(bundle, model.solution)
    write_scalers(bundle, scalers)
    write_card(
        bundle,
        {
            "name": "falkon_tiny",
            "family": "falkon",
            "task": "muon",
            "kernel": kernel.to_dict(),
        },
    )
    return bundle


# Fixed-point types and settings


def test_parse_fixed_type() -> None:
    fixed = parse_fixed("ap_fixed<16,6>")
    assert (fixed.width, fixed.integer, fixed.fractional) == (16, 6, 10)
    assert fixed.signed
    assert (
        str(parse_fixed("fixed<18,8,AP_RND,AP_SAT>")) == "ap_fixed<18,8,AP_RND,AP_SAT>"
    )
    assert not parse_fixed("ap_ufixed<8,1>").signed


@pytest.mark.parametrize(
    "text", ["float", "ap_fixed<16>", "ap_fixed<0,0>", "ap_fixed<65,6>"]
)
def test_parse_fixed_rejects(text: str) -> None:
    with pytest.raises(ConfigError, match="fixed-point type"):
        parse_fixed(text)


def test_widen_keeps_fraction_bits() -> None:
    base = parse_fixed("ap_fixed<16,6>")
    assert integer_bits_for(31.9) == 6
    assert integer_bits_for(32.0) == 7
    assert widen_to_fit(base, 20.0) == base
    widened = widen_to_fit(base, 40_000.0)
    assert widened.fractional == 10
    assert widened.integer == 17


def test_settings_reject_bad_types() -> None:
    with pytest.raises(ValueError, match="precision"):
        HlsSettings(precision="float")
    with pytest.raises(ValueError, match="unknown type key"):
        HlsSettings(layer_precision={"dense_0": {"output": "ap_fixed<16,6>"}})
    with pytest.raises(ValueError, match="scan_widths"):
        HlsSettings(scan_widths=[4], scan_integer_bits=6)


# Conversion


def test_batchnorm_folded_into_dense(network_bundle: Path, tmp_path: Path) -> None:
    source = load_source(network_bundle)
    config = build_hls_config(source.keras_model, HlsSettings())
    assert config["LayerName"]["dense_0"]["Precision"]["result"] == "auto"
    graph = convert(source, HlsSettings(), tmp_path / "project")
    classes = graph_layer_classes(graph)
    assert "BatchNormalization" not in classes
    assert classes.count("Dense") == 2


def test_model_granularity_keeps_batchnorm(
    network_bundle: Path, tmp_path: Path
) -> None:
    # The contrast that makes per-layer granularity necessary.
    import hls4ml

    model = load_source(network_bundle).keras_model
    config = hls4ml.utils.config_from_keras_model(
        model, granularity="model", backend="Vitis"
    )
    graph = hls4ml.converters.convert_from_keras_model(
        model, hls_config=config, output_dir=str(tmp_path / "model"), backend="Vitis"
    )
    assert "BatchNormalization" in graph_layer_classes(graph)


def test_unknown_layer_override_rejected(network_bundle: Path) -> None:
    source = load_source(network_bundle)
    settings = HlsSettings(layer_precision={"dense_9": {"result": "ap_fixed<18,8>"}})
    with pytest.raises(ConfigError, match="no layer 'dense_9'"):
        build_hls_config(source.keras_model, settings)


def test_falkon_weights_widened(falkon_bundle: Path) -> None:
    source = load_source(falkon_bundle)
    config = build_hls_config(
        source.keras_model, HlsSettings(), model_types=source.layer_types(16)
    )
    coefficients = source.solution.coefficients
    weight_type = parse_fixed(config["LayerName"]["corrections"]["Precision"]["weight"])
    assert weight_type.fractional == 10
    assert 2 ** (weight_type.integer - 1) > np.abs(coefficients).max()
    table_type = parse_fixed(config["LayerName"]["exp_minus_one"]["Precision"]["table"])
    assert table_type.integer == 1


@pytest.mark.parametrize(
    "kernel",
    [
        Kernel("gaussian", sigma=0.4),
        Kernel("linear", sigma=0.7, beta=0.5),
        Kernel("polynomial", alpha=0.8, beta=1.0, degree=5),
    ],
    ids=lambda kernel: kernel.name,
)
def test_falkon_keras_matches_kernel(kernel: Kernel) -> None:
    rng = np.random.default_rng(4)
    solution = FalkonSolution(kernel, rng.random((6, 4)), rng.normal(size=(6, 3)))
    x = rng.random((200, 4))
    model = falkon_to_keras(solution)
    expected = predict_solution(solution, x)
    actual = model.predict(x.astype(np.float32), verbose=0)
    scale = np.abs(expected).max()
    assert np.abs(actual - expected).max() <= 1e-4 * scale


def test_linear_falkon_is_one_dense(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    solution = FalkonSolution(
        Kernel("linear"), rng.random((5, 4)), rng.normal(size=(5, 3))
    )
    model = falkon_to_keras(solution)
    assert [type(layer).__name__ for layer in model.layers] == ["InputLayer", "Dense"]


# C simulation (g++)


@pytest.fixture(scope="module")
def test_frame(small_splits: Path):
    return load_test_split(small_splits, TEST_ROWS)


@pytest.mark.parametrize("bundle_fixture", ["network_bundle", "falkon_bundle"])
def test_csim_agrees_at_18_bits(
    bundle_fixture: str, request: pytest.FixtureRequest, test_frame, tmp_path: Path
) -> None:
    source = load_source(request.getfixturevalue(bundle_fixture))
    settings = HlsSettings(precision="ap_fixed<18,8>")
    record = csim_model(source, test_frame, MUON, settings, tmp_path / "project")
    assert record["precision"] == "ap_fixed<18,8>"
    assert record["test_rows"] == len(test_frame)
    assert record["max_abs_deviation"] <= TOLERANCE_18_BITS
    for metric in MUON.metrics:
        assert abs(record["relative_loss"][metric]) <= 0.01, metric


@pytest.mark.parametrize("bundle_fixture", ["network_bundle", "falkon_bundle"])
def test_csim_loss_bounded_at_16_bits(
    bundle_fixture: str, request: pytest.FixtureRequest, test_frame, tmp_path: Path
) -> None:
    source = load_source(request.getfixturevalue(bundle_fixture))
    record = csim_model(source, test_frame, MUON, HlsSettings(), tmp_path / "project")
    assert record["precision"] == "ap_fixed<16,6>"
    for metric in MUON.metrics:
        assert record["relative_loss"][metric] <= LOSS_BOUND_16_BITS, metric
    assert record["estimate"]["multiplications"] > 0
    assert "label" in record["estimate"]


def test_narrowest_safe_width() -> None:
    points = [
        {"width": 8, "relative_loss": {"phi": 0.3}},
        {"width": 10, "relative_loss": {"phi": 0.005}},
        {"width": 12, "relative_loss": {"phi": 0.02}},
        {"width": 14, "relative_loss": {"phi": 0.001}},
        {"width": 16, "relative_loss": {"phi": -0.001}},
    ]
    assert narrowest_safe_width(points, 0.01) == 14
    assert narrowest_safe_width(points, 0.5) == 8
    assert narrowest_safe_width(points[:3], 0.01) is None


@pytest.mark.slow
def test_csim_stage_writes_reports(
    network_bundle: Path, falkon_bundle: Path, small_splits: Path, tmp_path: Path
) -> None:
    settings = HlsSettings(max_test_rows=TEST_ROWS, scan_widths=[8, 12, 16, 20])
    paths = {
        name: tmp_path / name
        for name in ("csim.json", "scan.json", "scan.png", "csim.md")
    }
    run_hls_csim(
        settings,
        small_splits,
        [network_bundle.parent, falkon_bundle.parent],
        paths["csim.json"],
        paths["scan.json"],
        paths["scan.png"],
        paths["csim.md"],
        MUON,
    )
    report = json.loads(paths["csim.json"].read_text())
    assert set(report) == {"nn_tiny", "falkon_tiny"}
    for record in report.values():
        for key in (
            "precision",
            "float",
            "fixed",
            "max_abs_deviation",
            "relative_loss",
        ):
            assert key in record
    scan = json.loads(paths["scan.json"].read_text())
    assert scan["model"] == "nn_tiny"
    assert [point["width"] for point in scan["points"]] == [8, 12, 16, 20]
    losses = [max(point["relative_loss"].values()) for point in scan["points"]]
    assert losses[-1] < losses[0]
    assert scan["narrowest_safe_width"] is not None
    assert paths["scan.png"].read_bytes()[:4] == b"\x89PNG"
    assert "falkon_tiny" in paths["csim.md"].read_text()


# Synthesis


def _approved(tmp_path: Path, bundle: Path) -> Path:
    path = tmp_path / "approved.json"
    path.write_text(
        json.dumps(
            {
                "muon": {"approved": True, "model": bundle.name, "bundle": str(bundle)},
                "jet": {"approved": False, "model": None, "bundle": None},
            }
        )
    )
    return path


@pytest.fixture
def path_without_vendor_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Keep g++ and the venv reachable but no vitis-run or vivado_hls.
    folders = [
        folder
        for folder in os.environ.get("PATH", "").split(os.pathsep)
        if folder
        and not (Path(folder) / "vitis-run").exists()
        and not (Path(folder) / "vivado_hls").exists()
    ]
    monkeypatch.setenv("PATH", os.pathsep.join(folders))


def test_synth_skips_without_tool(
    network_bundle: Path, tmp_path: Path, path_without_vendor_tools: None
) -> None:
    metrics_path = tmp_path / "synth.json"
    metrics = run_hls_synth(
        HlsSettings(),
        _approved(tmp_path, network_bundle),
        tmp_path / "firmware",
        metrics_path,
    )
    assert json.loads(metrics_path.read_text()) == metrics
    muon = metrics["muon"]
    assert muon["synthesis"] == "skipped"
    assert muon["message"] == "synthesis skipped: vitis-run not found on PATH"
    assert muon["estimate"]["multiplications"] > 0
    assert metrics["jet"]["approved"] is False
    archive = tmp_path / "firmware" / "muon_nn_tiny.tar.gz"
    assert Path(muon["firmware"]) == archive
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert "muon_nn_tiny/project.tcl" in names
    assert "muon_nn_tiny/firmware/l1recal_firmware.cpp" in names


def test_synth_required_fails_without_tool(
    network_bundle: Path, tmp_path: Path, path_without_vendor_tools: None
) -> None:
    with pytest.raises(SynthesisSkippedError, match="vitis-run not found on PATH"):
        run_hls_synth(
            HlsSettings(),
            _approved(tmp_path, network_bundle),
            tmp_path / "firmware",
            tmp_path / "synth.json",
            require_synthesis=True,
        )
    assert (tmp_path / "synth.json").exists()


def test_synth_cli_exit_codes(
    network_bundle: Path, tmp_path: Path, path_without_vendor_tools: None
) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("hls:\n  precision: ap_fixed<16,6>\n")
    command = [
        sys.executable,
        "-m",
        "l1recal",
        "hls",
        "synth",
        "--approved",
        str(_approved(tmp_path, network_bundle)),
        "--firmware-dir",
        str(tmp_path / "firmware"),
        "--metrics",
        str(tmp_path / "synth.json"),
        "--params",
        str(params),
    ]
    skipped = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert skipped.returncode == 0, skipped.stderr
    assert "synthesis skipped: vitis-run not found on PATH" in skipped.stdout
    required = subprocess.run(
        [*command, "--require-synthesis"], capture_output=True, text=True, timeout=300
    )
    assert required.returncode == 1
    assert "--require-synthesis" in required.stderr


# Report parsing, on files in the Vitis HLS layout

_HLS_APP = """<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="com.autoesl.autopilot.project" name="{name}_prj" top="{name}" projectType="C/C++">
    <solutions>
        <solution name="solution1" status="active"/>
    </solutions>
</project>
"""

_CSYNTH_XML = """<?xml version="1.0" encoding="UTF-8"?>
<profile>
  <ReportVersion><Version>2024.1</Version></ReportVersion>
  <UserAssignments>
    <unit>ns</unit>
    <ProductFamily>virtexuplus</ProductFamily>
    <Part>xcvu13p-flga2577-2-e</Part>
    <TopModelName>{name}</TopModelName>
    <TargetClockPeriod>4.16</TargetClockPeriod>
    <ClockUncertainty>1.12</ClockUncertainty>
    <FlowTarget>vivado</FlowTarget>
  </UserAssignments>
  <PerformanceEstimates>
    <PipelineType>pipeline</PipelineType>
    <SummaryOfTimingAnalysis>
      <unit>ns</unit>
      <EstimatedClockPeriod>3.021</EstimatedClockPeriod>
    </SummaryOfTimingAnalysis>
    <SummaryOfOverallLatency>
      <unit>clock cycles</unit>
      <Best-caseLatency>9</Best-caseLatency>
      <Average-caseLatency>9</Average-caseLatency>
      <Worst-caseLatency>11</Worst-caseLatency>
      <Best-caseRealTimeLatency>37.440 ns</Best-caseRealTimeLatency>
      <Average-caseRealTimeLatency>37.440 ns</Average-caseRealTimeLatency>
      <Worst-caseRealTimeLatency>45.760 ns</Worst-caseRealTimeLatency>
      <Interval-min>1</Interval-min>
      <Interval-max>1</Interval-max>
    </SummaryOfOverallLatency>
  </PerformanceEstimates>
  <AreaEstimates>
    <Resources>
      <BRAM_18K>0</BRAM_18K>
      <DSP>48</DSP>
      <FF>3120</FF>
      <LUT>8640</LUT>
      <URAM>0</URAM>
    </Resources>
    <AvailableResources>
      <BRAM_18K>5376</BRAM_18K>
      <DSP>12288</DSP>
      <FF>3456000</FF>
      <LUT>1728000</LUT>
      <URAM>1280</URAM>
    </AvailableResources>
  </AreaEstimates>
</profile>
"""


def _write_vitis_reports(project: Path, name: str = "l1recal_firmware") -> None:
    project.mkdir(parents=True, exist_ok=True)
    (project / "project.tcl").write_text(
        f'variable project_name\nset project_name "{name}"\n'
        'variable backend\nset backend "vitis"\n'
    )
    solution = project / f"{name}_prj" / "solution1"
    (solution / "syn" / "report").mkdir(parents=True)
    (project / f"{name}_prj" / "hls.app").write_text(_HLS_APP.format(name=name))
    (solution / "syn" / "report" / f"{name}_csynth.xml").write_text(
        _CSYNTH_XML.format(name=name)
    )


def test_parse_vitis_csynth_report(tmp_path: Path) -> None:
    _write_vitis_reports(tmp_path / "project")
    metrics = parse_synthesis_report(tmp_path / "project", clock_period_ns=5.0)
    assert metrics["latency_cycles"] == {"best": 9, "worst": 11}
    assert metrics["latency_ns"]["worst"] == pytest.approx(11 * 4.16)
    assert metrics["initiation_interval"] == {"min": 1, "max": 1}
    assert metrics["target_clock_ns"] == pytest.approx(4.16)
    assert metrics["estimated_clock_ns"] == pytest.approx(3.021)
    assert metrics["resources"] == {
        "LUT": 8640,
        "FF": 3120,
        "DSP": 48,
        "BRAM_18K": 0,
        "URAM": 0,
    }
    assert metrics["available"]["DSP"] == 12288
    assert metrics["fraction"]["DSP"] == pytest.approx(48 / 12288)
    assert metrics["fraction"]["LUT"] == pytest.approx(8640 / 1728000)


def test_parse_report_missing_csynth(tmp_path: Path) -> None:
    _write_vitis_reports(tmp_path / "project")
    report = (
        tmp_path / "project" / "l1recal_firmware_prj" / "solution1" / "syn" / "report"
    )
    (report / "l1recal_firmware_csynth.xml").unlink()
    with pytest.raises(HlsError, match="C synthesis report not found"):
        parse_synthesis_report(tmp_path / "project", clock_period_ns=4.16)


def test_parse_report_not_a_project(tmp_path: Path) -> None:
    with pytest.raises(HlsError, match=r"no project\.tcl"):
        parse_synthesis_report(tmp_path, clock_period_ns=4.16)
