"""The BentoML service as a real `bentoml serve` process on loopback, with models trained here.

One server starts per module, with its own BentoML home that contains a small muon
network and a small jet Falkon model. They reach it the way a pipeline step
passes them on: `l1recal package` into a first store and exports them, and
`bentoml models import` loads the exports into the server's store.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml
from numpy.testing import assert_allclose

from conftest import REPO_ROOT
from l1recal.config import (
    FalkonModelSettings,
    FalkonTrainSettings,
    NetworkTrainSettings,
)
from l1recal.models.bundle import load_bundle
from l1recal.models.scalers import AffineScaler
from l1recal.models.train import run_train_falkon, run_train_network
from l1recal.schema import JET_INPUTS, JET_TARGETS
from l1recal.serving.package import bundle_digest
from l1recal.serving.predict import predict_jets, predict_muons
from l1recal.tasks import JET

BIN = Path(sys.executable).parent
MAX_BATCH = 64
READY_TIMEOUT_S = 180
#: Generated requests per endpoint and generation mode in the schemathesis fuzz test.
FUZZ_EXAMPLES = 25


def _env(home: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "BENTOML_HOME": str(home),
        "BENTOML_DO_NOT_TRACK": "True",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        **extra,
    }


def _run(
    command: list[str], env: dict[str, str], check: bool = True
) -> subprocess.CompletedProcess:
    result = subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False
    )
    if check:
        assert result.returncode == 0, (
            f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"
        )
    return result


def _jet_splits(folder: Path, seed: int = 3) -> Path:
    """Write train / val / test jet splits with a known response and their scalers."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    frames = {}
    for name, rows in (("train", 3000), ("val", 800), ("test", 800)):
        pt_pf = 20.0 + rng.exponential(30.0, rows)
        eta = rng.uniform(-4.5, 4.5, rows)
        phi = rng.uniform(0.0, 2 * np.pi, rows)
        pt_l1 = pt_pf * (0.7 + 0.05 * np.abs(eta)) + rng.normal(0.0, 4.0, rows)
        frames[name] = pd.DataFrame(
            {
                "ptL1": pt_l1,
                "etaL1": eta,
                "phiL1": phi,
                "ptPF": pt_pf,
                "dPt": pt_l1 - pt_pf,
            }
        )
        frames[name].to_parquet(folder / f"{name}.parquet", index=False)
    train = frames["train"]
    scalers = {
        "inputs": AffineScaler.min_max(JET_INPUTS, train[list(JET_INPUTS)].to_numpy()),
        "targets": AffineScaler.standard(
            JET_TARGETS, train[list(JET_TARGETS)].to_numpy()
        ),
    }
    (folder / "scalers.json").write_text(
        json.dumps({key: scaler.to_dict() for key, scaler in scalers.items()})
    )
    return folder


def _approval(name: str, bundle: Path, **overrides) -> dict:
    entry = {
        "approved": True,
        "model": name,
        "bundle": str(bundle),
        "family": json.loads((bundle / "model_card.json").read_text())["family"],
        "metrics": {"pt_rel": 0.2},
        "replaced_champion": None,
        "data_version": "test-data",
        "code_version": "test-code",
        "rejections": {},
        "message": f"{name} approved",
        "bundle_sha256": bundle_digest(bundle),
    }
    return {**entry, **overrides}


@pytest.fixture(scope="module")
def bundles(
    small_splits: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """A 3 x 32 muon network (2 epochs) and a jet Falkon model with 20 centres."""
    work = tmp_path_factory.mktemp("serving-models")
    run_train_network(
        NetworkTrainSettings(presets=[6], max_epochs=2, patience=1, batch_size=256),
        small_splits,
        work / "muon" / "network",
    )
    run_train_falkon(
        FalkonTrainSettings(
            models=[FalkonModelSettings(name="falkon_jet_m20", centres=20, sigma=0.5)]
        ),
        _jet_splits(work / "jet_splits"),
        work / "jet" / "falkon",
        JET,
    )
    return {
        "muon": work / "muon" / "network" / "nn_id6",
        "jet": work / "jet" / "falkon" / "falkon_jet_m20",
    }


@pytest.fixture(scope="module")
def packaged(
    bundles: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict:
    """Run `l1recal package` into a first store; return its record and the export folder."""
    work = tmp_path_factory.mktemp("package")
    approved = work / "approved.json"
    approved.write_text(
        json.dumps(
            {
                "muon": _approval("nn_id6", bundles["muon"]),
                "jet": _approval("falkon_jet_m20", bundles["jet"]),
            }
        )
    )
    record = work / "package.json"
    _run(
        [
            str(BIN / "l1recal"),
            "package",
            str(approved),
            "--export-dir",
            str(work / "exports"),
            "--record",
            str(record),
        ],
        _env(work / "home"),
    )
    return {"record": json.loads(record.read_text()), "exports": work / "exports"}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(packaged: dict, tmp_path_factory: pytest.TempPathFactory):
    """URL and log file of a `bentoml serve` process whose store contains the imported exports."""
    work = tmp_path_factory.mktemp("server")
    home = work / "home"
    for export in sorted(packaged["exports"].glob("*.bentomodel")):
        _run([str(BIN / "bentoml"), "models", "import", str(export)], _env(home))
    params = work / "params.yaml"
    params.write_text(
        yaml.safe_dump(
            {"serving": {"max_batch_size": MAX_BATCH, "adaptive_max_batch_size": 32}}
        )
    )
    port = _free_port()
    log = (work / "server.log").open("w")
    process = subprocess.Popen(
        [
            str(BIN / "bentoml"),
            "serve",
            "serving.service:L1Recal",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--working-dir",
            str(REPO_ROOT),
        ],
        cwd=REPO_ROOT,
        env=_env(home, L1RECAL_PARAMS=str(params)),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + READY_TIMEOUT_S
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"bentoml serve exited early:\n{(work / 'server.log').read_text()}"
                )
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"server not ready in {READY_TIMEOUT_S} s:\n{(work / 'server.log').read_text()}"
                )
            time.sleep(0.5)
        yield {"url": url, "log": work / "server.log"}
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


@pytest.fixture(scope="module")
def client(server: dict):
    with httpx.Client(base_url=server["url"], timeout=30) as http:
        yield http


def _muon_sample(n: int, seed: int = 1) -> dict[str, list[int]]:
    rng = np.random.default_rng(seed)
    return {
        "hwPtL1": rng.integers(12, 90, n).tolist(),
        "hwEtaL1": rng.integers(-220, 221, n).tolist(),
        "hwPhiL1": rng.integers(0, 576, n).tolist(),
        "hwSignL1": rng.integers(0, 2, n).tolist(),
    }


def _jet_sample(n: int, seed: int = 2) -> dict[str, list[int]]:
    rng = np.random.default_rng(seed)
    return {
        "hwPt": rng.integers(40, 400, n).tolist(),
        "hwEta": rng.integers(-100, 101, n).tolist(),
        "hwPhi": rng.integers(0, 144, n).tolist(),
    }


def _as_arrays(sample: dict[str, list[int]]) -> dict[str, np.ndarray]:
    return {key: np.asarray(values, dtype=np.int64) for key, values in sample.items()}


def _as_records(sample: dict[str, list[int]]) -> list[dict[str, int]]:
    keys = list(sample)
    return [
        dict(zip(keys, row, strict=True)) for row in zip(*sample.values(), strict=True)
    ]


# Packaging.


def test_package_record_names_tags(packaged, bundles):
    record = packaged["record"]
    assert record["muon"]["approved"] is True
    assert record["muon"]["tag"].startswith("l1recal-muon:nn_id6-")
    assert record["jet"]["tag"].startswith("l1recal-jet:falkon_jet_m20-")
    assert record["muon"]["bundle_sha256"] == bundle_digest(bundles["muon"])
    assert record["muon"]["labels"]["approved"] == "true"
    assert record["muon"]["labels"]["data_version"] == "test-data"
    assert record["muon"]["labels"]["preset"] == "id6"
    assert record["jet"]["labels"]["family"] == "falkon"
    for kind, name in (("muon", "l1recal-muon"), ("jet", "l1recal-jet")):
        assert (packaged["exports"] / f"{name}.bentomodel").is_file(), kind


def test_package_skips_unapproved_kind(bundles, tmp_path):
    approved = tmp_path / "approved.json"
    approved.write_text(
        json.dumps(
            {
                "muon": _approval("nn_id6", bundles["muon"]),
                "jet": {
                    "approved": False,
                    "model": None,
                    "bundle": None,
                    "message": "no jet model passed",
                },
            }
        )
    )
    home = tmp_path / "home"
    _run(
        [
            str(BIN / "l1recal"),
            "package",
            str(approved),
            "--export-dir",
            str(tmp_path / "out"),
            "--record",
            str(tmp_path / "record.json"),
        ],
        _env(home),
    )
    record = json.loads((tmp_path / "record.json").read_text())
    assert record["jet"] == {"approved": False, "message": "no jet model passed"}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "l1recal-muon.bentomodel"
    ]
    listing = _run(
        [str(BIN / "bentoml"), "models", "list", "-o", "json"], _env(home)
    ).stdout
    assert [entry["tag"].split(":")[0] for entry in json.loads(listing)] == [
        "l1recal-muon"
    ]


def test_package_relative_paths(bundles, tmp_path):
    """The DVC stage passes relative paths, and a relative BENTOML_HOME."""
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "approved.json").write_text(
        json.dumps({"jet": _approval("falkon_jet_m20", bundles["jet"])})
    )
    command = [
        str(BIN / "l1recal"),
        "package",
        "reports/approved.json",
        "--export-dir",
        "models/bentoml",
        "--record",
        "reports/package.json",
        "--params",
        str(REPO_ROOT / "params.yaml"),
    ]
    env = _env(Path("models/bentoml-store"))
    for _ in range(2):
        result = subprocess.run(
            command, cwd=tmp_path, env=env, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stderr
    assert "reusing it" in result.stderr
    assert (tmp_path / "models" / "bentoml" / "l1recal-jet.bentomodel").is_file()
    assert (tmp_path / "models" / "bentoml-store" / "models" / "l1recal-jet").is_dir()
    record = json.loads((tmp_path / "reports" / "package.json").read_text())
    assert record["muon"] == {
        "approved": False,
        "message": "no muon entry in reports/approved.json",
    }


def test_package_rejects_changed_bundle(bundles, tmp_path):
    approved = tmp_path / "approved.json"
    approved.write_text(
        json.dumps(
            {"muon": _approval("nn_id6", bundles["muon"], bundle_sha256="0" * 64)}
        )
    )
    result = _run(
        [
            str(BIN / "l1recal"),
            "package",
            str(approved),
            "--record",
            str(tmp_path / "r.json"),
            "--export-dir",
            str(tmp_path / "out"),
        ],
        _env(tmp_path / "home"),
        check=False,
    )
    assert result.returncode == 1
    assert "bundle changed after approval" in result.stderr
    assert not (tmp_path / "r.json").exists()


def test_package_rejects_wrong_task(bundles, tmp_path):
    approved = tmp_path / "approved.json"
    approved.write_text(json.dumps({"jet": _approval("nn_id6", bundles["muon"])}))
    result = _run(
        [
            str(BIN / "l1recal"),
            "package",
            str(approved),
            "--record",
            str(tmp_path / "r.json"),
        ],
        _env(tmp_path / "home"),
        check=False,
    )
    assert result.returncode == 1
    assert "trained for task 'muon', but" in result.stderr


def test_unlabelled_model_not_loaded(bundles, tmp_path):
    script = (
        "import shutil, bentoml\n"
        "from l1recal.serving.store import load_approved_model\n"
        "with bentoml.models.create('l1recal-muon:manual', labels={'approved': 'false'}) as m:\n"
        f"    shutil.copytree({str(bundles['muon'])!r}, m.path, dirs_exist_ok=True)\n"
        "load_approved_model('muon')\n"
    )
    result = _run([sys.executable, "-c", script], _env(tmp_path / "home"), check=False)
    assert result.returncode == 1
    assert "lacks the label approved=true" in result.stderr


# Health, metrics, model info.


def test_health_endpoints(client):
    assert client.get("/livez").status_code == 200
    assert client.get("/readyz").status_code == 200
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert "bentoml_service_request" in metrics.text


def test_model_info_lists_both(client, packaged):
    info = client.post("/models", json={}).json()
    assert info["muon"]["tag"] == packaged["record"]["muon"]["tag"]
    assert info["jet"]["tag"] == packaged["record"]["jet"]["tag"]
    assert info["muon"]["labels"]["approved"] == "true"
    assert info["muon"]["metadata"]["data_version"] == "test-data"
    assert info["muon"]["metadata"]["metrics"] == {"pt_rel": 0.2}
    assert info["jet"]["family"] == "falkon"


def test_startup_logged(server, client):
    client.post("/models", json={})
    log = server["log"].read_text()
    assert "model loaded: kind=muon" in log
    assert "service started: loaded=jet,muon" in log


# Predictions against in-process predictions of the same bundles.


def _check_muons(answer: dict, expected: dict[str, np.ndarray]) -> None:
    for key in ("ptL1", "etaL1", "phiL1"):
        assert_allclose(answer[key], expected[key], rtol=0, atol=1e-12, err_msg=key)
    assert answer["charge"] == expected["charge"].tolist()
    for key in ("pt", "eta", "phi"):
        assert_allclose(answer[key], expected[key], rtol=1e-5, atol=1e-6, err_msg=key)


def test_muon_arrays_match_in_process(client, bundles):
    sample = _muon_sample(MAX_BATCH)
    response = client.post("/predict/muon", json=sample)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["model"].startswith("l1recal-muon:nn_id6-")
    expected = predict_muons(load_bundle(bundles["muon"]), _as_arrays(sample))
    _check_muons(answer, expected)
    assert all(0 <= phi < 2 * np.pi for phi in answer["phi"])


def test_muon_records_match_arrays(client):
    sample = _muon_sample(20, seed=4)
    by_arrays = client.post("/predict/muon", json=sample).json()
    by_records = client.post(
        "/predict/muon", json={"muons": _as_records(sample)}
    ).json()
    assert by_records == by_arrays


def test_muon_phi_wraps_into_range(client):
    sample = {
        "hwPtL1": [40, 40],
        "hwEtaL1": [0, 0],
        "hwPhiL1": [1023, 447],
        "hwSignL1": [0, 0],
    }
    answer = client.post("/predict/muon", json=sample).json()
    assert answer["phiL1"][0] == pytest.approx(answer["phiL1"][1], abs=1e-12)
    assert answer["phi"][0] == pytest.approx(answer["phi"][1], abs=1e-6)


def test_jet_matches_in_process(client, bundles):
    sample = _jet_sample(MAX_BATCH)
    response = client.post("/predict/jet", json=sample)
    assert response.status_code == 200, response.text
    answer = response.json()
    expected = predict_jets(load_bundle(bundles["jet"]), _as_arrays(sample))
    assert_allclose(answer["ptL1"], expected["ptL1"], rtol=0, atol=1e-12)
    assert_allclose(answer["pt"], expected["pt"], rtol=1e-9, atol=1e-9)
    records = client.post("/predict/jet", json={"jets": _as_records(sample)}).json()
    assert records == answer


def test_adaptive_muons_match_batch(server, client):
    sample = _muon_sample(24, seed=6)
    records = _as_records(sample)
    batch = client.post("/predict/muon", json=sample).json()

    async def send_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server["url"], timeout=30) as http:
            return await asyncio.gather(
                *(
                    http.post("/predict/muon/adaptive", json={"muons": [r]})
                    for r in records
                )
            )

    responses = asyncio.run(send_all())
    assert [r.status_code for r in responses] == [200] * len(records)
    for index, response in enumerate(responses):
        (muon,) = response.json()
        assert muon["charge"] == batch["charge"][index]
        for key in ("pt", "eta", "phi"):
            assert muon[key] == pytest.approx(batch[key][index], rel=1e-5, abs=1e-6), (
                key
            )


def test_adaptive_jets_match_batch(client):
    sample = _jet_sample(3, seed=8)
    batch = client.post("/predict/jet", json=sample).json()
    response = client.post("/predict/jet/adaptive", json={"jets": _as_records(sample)})
    assert response.status_code == 200, response.text
    assert [jet["pt"] for jet in response.json()] == pytest.approx(
        batch["pt"], rel=1e-9
    )


# Bad requests: 4xx with a message naming the problem.

GOOD = {
    "hwPtL1": [20, 30],
    "hwEtaL1": [5, -5],
    "hwPhiL1": [10, 500],
    "hwSignL1": [0, 1],
}

BAD_MUON_BODIES = [
    (
        "pt_above_range",
        {**GOOD, "hwPtL1": [20, 512]},
        ["hwPtL1", 1],
        "hwPtL1 = 512 is outside the allowed range 0..511",
    ),
    (
        "eta_below_range",
        {**GOOD, "hwEtaL1": [-257, 0]},
        ["hwEtaL1", 0],
        "hwEtaL1 = -257 is outside the allowed range -256..255",
    ),
    (
        "phi_above_range",
        {**GOOD, "hwPhiL1": [0, 1024]},
        ["hwPhiL1", 1],
        "hwPhiL1 = 1024 is outside the allowed range 0..1023",
    ),
    (
        "sign_not_bit",
        {**GOOD, "hwSignL1": [2, 0]},
        ["hwSignL1", 0],
        "hwSignL1 = 2 is outside the allowed range 0..1",
    ),
    ("float_value", {**GOOD, "hwPtL1": [20.5, 30]}, ["hwPtL1", 0], "valid integer"),
    ("integral_float", {**GOOD, "hwPtL1": [20.0, 30]}, ["hwPtL1", 0], "valid integer"),
    ("string_value", {**GOOD, "hwPtL1": ["20", 30]}, ["hwPtL1", 0], "valid integer"),
    (
        "boolean_value",
        {**GOOD, "hwSignL1": [True, 0]},
        ["hwSignL1", 0],
        "valid integer",
    ),
    ("null_value", {**GOOD, "hwEtaL1": [None, 0]}, ["hwEtaL1", 0], "valid integer"),
    ("huge_integer", {**GOOD, "hwPtL1": [10**30, 1]}, ["hwPtL1", 0], ""),
    (
        "ragged_arrays",
        {**GOOD, "hwEtaL1": [5]},
        [],
        "arrays must have equal lengths, got hwPtL1: 2, hwEtaL1: 1",
    ),
    (
        "missing_array",
        {k: v for k, v in GOOD.items() if k != "hwSignL1"},
        [],
        "missing array(s) hwSignL1",
    ),
    ("empty_arrays", {key: [] for key in GOOD}, ["hwPtL1"], "at least 1 item"),
    ("empty_body", {}, [], "the request contains no objects"),
    ("empty_records", {"muons": []}, ["muons"], "at least 1 item"),
    (
        "oversized_batch",
        {key: [1] * (MAX_BATCH + 1) for key in GOOD},
        ["hwPtL1"],
        f"at most {MAX_BATCH} items",
    ),
    (
        "both_forms",
        {**GOOD, "muons": [{"hwPtL1": 1, "hwEtaL1": 0, "hwPhiL1": 0, "hwSignL1": 0}]},
        [],
        "not both",
    ),
    (
        "record_out_of_range",
        {
            "muons": [
                {"hwPtL1": 1, "hwEtaL1": 0, "hwPhiL1": 0, "hwSignL1": 0},
                {"hwPtL1": 1, "hwEtaL1": 300, "hwPhiL1": 0, "hwSignL1": 0},
            ]
        },
        ["muons", 1, "hwEtaL1"],
        "hwEtaL1 = 300",
    ),
    (
        "record_missing_field",
        {"muons": [{"hwPtL1": 1, "hwEtaL1": 0, "hwPhiL1": 0}]},
        ["muons", 0, "hwSignL1"],
        "Field required",
    ),
    (
        "unknown_field",
        {**GOOD, "model": "/etc/passwd"},
        ["model"],
        "Extra inputs are not permitted",
    ),
    ("not_an_array", {**GOOD, "hwPtL1": 20}, ["hwPtL1"], "valid array"),
    ("top_level_list", [GOOD], [], "Input should be an object"),
]


@pytest.mark.parametrize(
    ("body", "loc", "fragment"),
    [case[1:] for case in BAD_MUON_BODIES],
    ids=[case[0] for case in BAD_MUON_BODIES],
)
def test_bad_muon_request_400(client, body, loc, fragment):
    response = client.post("/predict/muon", json=body)
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert any(item["loc"][: len(loc)] == loc for item in detail), detail
    assert any(fragment in item["msg"] for item in detail), detail


def test_bad_jet_request_400(client):
    response = client.post(
        "/predict/jet", json={"hwPt": [1, 2048], "hwEta": [0, 0], "hwPhi": [0, 0]}
    )
    assert response.status_code == 400
    (item,) = response.json()["detail"]
    assert item["loc"] == ["hwPt", 1]
    assert "hwPt = 2048 is outside the allowed range 0..2047" in item["msg"]


def test_rejected_request_logs_one_line(server, client):
    response = client.post(
        "/predict/jet", json={"hwPt": [2049], "hwEta": [0], "hwPhi": [0]}
    )
    assert response.status_code == 400
    log = server["log"].read_text()
    # Earlier tests of this module also sent invalid bodies; after the first
    # ten rejections only every hundredth is logged, so check them all.
    lines = [line for line in log.splitlines() if "request rejected: path=" in line]
    validation = [line for line in lines if "status=400" in line]
    assert validation, log[-2000:]
    assert all("WARNING" in line for line in validation)
    assert "Traceback" not in log
    assert "Exception on /predict" not in log


def test_adaptive_rejects_out_of_range(client):
    body = {"muons": [{"hwPtL1": 600, "hwEtaL1": 0, "hwPhiL1": 0, "hwSignL1": 0}]}
    response = client.post("/predict/muon/adaptive", json=body)
    assert response.status_code == 400
    assert "hwPtL1 = 600" in response.text


def test_malformed_json_400(client):
    response = client.post(
        "/predict/muon",
        content=b'{"hwPtL1": [1, 2',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert "Invalid JSON" in response.text


@pytest.mark.parametrize(
    "media_type",
    [
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
        "application/vnd.bentoml+pickle",
        "text/plain",
    ],
)
def test_non_json_media_type_415(client, media_type):
    response = client.post(
        "/predict/muon", content=b"hwPtL1=1", headers={"content-type": media_type}
    )
    assert response.status_code == 415
    assert "send the request body as application/json" in response.json()["error"]


def test_oversized_body_413(client):
    padding = " " * (64 * 1024 + 256 * MAX_BATCH)
    body = json.dumps(GOOD) + padding
    response = client.post(
        "/predict/muon",
        content=body.encode(),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413
    assert "split the batch" in response.json()["error"]


# Fuzzing from the service's own OpenAPI document.


@pytest.fixture(scope="module")
def openapi_schema(server: dict):
    import schemathesis

    return schemathesis.openapi.from_url(f"{server['url']}/docs.json")


def _fuzz_operation(operation, mode, max_examples: int) -> list[str]:
    """Send generated requests of one mode to one operation; return a line per 5xx response."""
    from hypothesis import HealthCheck, given, settings

    failures: list[str] = []

    @settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def fuzz(case) -> None:
        response = case.call(timeout=30)
        if response.status_code >= 500:
            failures.append(
                f"{operation.method.upper()} {operation.path} ({mode}): {response.status_code} "
                f"for body {str(case.body)[:200]}: {response.text[:200]}"
            )

    fuzz()
    return failures


def test_fuzz_no_server_errors(openapi_schema):
    from schemathesis import GenerationMode

    failures: list[str] = []
    fuzzed = []
    for result in openapi_schema.get_all_operations():
        operation = result.ok()
        if operation.path.startswith(("/predict", "/models")):
            fuzzed.append(operation.path)
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                failures += _fuzz_operation(operation, mode, FUZZ_EXAMPLES)
    assert sorted(fuzzed) == [
        "/models",
        "/predict/jet",
        "/predict/jet/adaptive",
        "/predict/muon",
        "/predict/muon/adaptive",
    ]
    assert failures == []


def test_bentoml_build_offline(packaged, tmp_path):
    home = tmp_path / "home"
    for export in sorted(packaged["exports"].glob("*.bentomodel")):
        _run([str(BIN / "bentoml"), "models", "import", str(export)], _env(home))
    _run(
        [str(BIN / "bentoml"), "build", "-f", "serving/bentofile.yaml", "."],
        _env(home),
    )
    listing = _run([str(BIN / "bentoml"), "list", "-o", "json"], _env(home)).stdout
    (bento,) = json.loads(listing)
    assert bento["tag"].startswith("l1recal:")
    bento_dir = home / "bentos" / "l1recal" / bento["tag"].split(":")[1]
    assert (bento_dir / "src" / "serving" / "service.py").is_file()
    assert (bento_dir / "src" / "l1recal" / "serving" / "requests.py").is_file()
    # A bento references its models by tag; export and containerize copy them from the store.
    info = yaml.safe_load((bento_dir / "bento.yaml").read_text())
    tags = sorted(model["tag"] for model in info["models"])
    assert tags == sorted(
        [packaged["record"]["jet"]["tag"], packaged["record"]["muon"]["tag"]]
    )


# The request guard on its own, in front of a stand-in ASGI app: the service
# above has both kinds loaded, so the unloaded-kind path is checked here.


async def _echo_app(scope, receive, send) -> None:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def _guarded_post(path: str, body: bytes, media_type: str = "application/json"):
    from l1recal.serving.guard import RequestGuard

    async def post() -> httpx.Response:
        transport = httpx.ASGITransport(app=RequestGuard(_echo_app, max_body_bytes=100))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://guard"
        ) as http:
            return await http.post(
                path, content=body, headers={"content-type": media_type}
            )

    return asyncio.run(post())


def test_guard_unloaded_kind_503(monkeypatch):
    from l1recal.serving.guard import RequestGuard

    monkeypatch.setattr(RequestGuard, "loaded_kinds", frozenset({"jet"}))
    response = _guarded_post("/predict/muon/adaptive", b"{}")
    assert response.status_code == 503
    assert response.json()["error"].startswith("no approved muon model is loaded")
    assert _guarded_post("/predict/jet", b"{}").status_code == 200


def test_guard_passes_body_through(monkeypatch):
    from l1recal.serving.guard import RequestGuard

    monkeypatch.setattr(RequestGuard, "loaded_kinds", None)
    response = _guarded_post("/predict/muon", b'{"hwPtL1": [1]}')
    assert response.status_code == 200
    assert response.content == b'{"hwPtL1": [1]}'


def test_guard_body_limit_413():
    response = _guarded_post("/models", b"x" * 101)
    assert response.status_code == 413
    assert "exceeds 100 bytes" in response.json()["error"]
    assert _guarded_post("/models", b"x" * 100).status_code == 200


def test_guard_ignores_other_routes():
    response = _guarded_post("/livez", b"x" * 500, media_type="text/plain")
    assert response.status_code == 200
