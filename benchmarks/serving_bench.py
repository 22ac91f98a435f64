"""Serving throughput and latency of the muon endpoint under a bounded load on loopback.

Trains a 4 x 128 network (preset 4) for one epoch on a small simulated
sample, because throughput does not depend on training quality. It packages
the network into a temporary BentoML home, starts ``bentoml serve`` on
127.0.0.1 and sends a fixed number of requests with an async httpx client. It
prints, per batch size, muons per second, p50 / p99 latency and the error
count. It also prints the same model's in-process throughput
(``predict_muons`` on a loaded bundle), measured in the same run.

Usage: ``.venv/bin/python benchmarks/serving_bench.py [--requests-1 N] [--requests-1024 N]``
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from l1recal.config import (
    IngestSettings,
    NetworkTrainSettings,
    PreprocessSettings,
    SimulateSettings,
)
from l1recal.data.ingest import run_ingest
from l1recal.data.preprocess import run_preprocess
from l1recal.models.bundle import load_bundle
from l1recal.models.train import run_train_network
from l1recal.serving.package import bundle_digest
from l1recal.serving.predict import predict_muons
from l1recal.serving.store import direct_network_call
from l1recal.simulation.stage import MUON_EVENTS_FILE, run_simulate

REPO_ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _sample(n: int, seed: int) -> dict[str, list[int]]:
    rng = np.random.default_rng(seed)
    return {
        "hwPtL1": rng.integers(12, 90, n).tolist(),
        "hwEtaL1": rng.integers(-220, 221, n).tolist(),
        "hwPhiL1": rng.integers(0, 576, n).tolist(),
        "hwSignL1": rng.integers(0, 2, n).tolist(),
    }


def _train(work: Path) -> Path:
    raw = work / "raw"
    run_simulate(
        SimulateSettings(n_events=20_000, noise_floor_muons=100_000, seed=5), raw
    )
    run_ingest(IngestSettings(), raw / MUON_EVENTS_FILE, work / "muons.parquet")
    run_preprocess(PreprocessSettings(), work / "muons.parquet", work / "splits")
    run_train_network(
        NetworkTrainSettings(presets=[4], max_epochs=1, patience=1),
        work / "splits",
        work / "network",
    )
    return work / "network" / "nn_id4"


def _env(home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "BENTOML_HOME": str(home),
        "BENTOML_DO_NOT_TRACK": "True",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }


def _package(bundle: Path, work: Path) -> None:
    approved = work / "approved.json"
    approved.write_text(
        json.dumps(
            {
                "muon": {
                    "approved": True,
                    "model": "nn_id4",
                    "bundle": str(bundle),
                    "message": "benchmark",
                    "bundle_sha256": bundle_digest(bundle),
                }
            }
        )
    )
    subprocess.run(
        [
            str(BIN / "l1recal"),
            "package",
            str(approved),
            "--export-dir",
            str(work / "exports"),
            "--record",
            str(work / "package.json"),
        ],
        env=_env(work / "home"),
        check=True,
        capture_output=True,
    )


def _start_server(work: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
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
        env=_env(work / "home"),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"bentoml serve exited:\n{(work / 'server.log').read_text()}"
            )
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise RuntimeError("server not ready within 180 s")


async def _load(url: str, route: str, bodies: list[dict], concurrency: int) -> dict:
    latencies: list[float] = []
    errors = 0
    queue: asyncio.Queue[dict] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)

    async def worker(http: httpx.AsyncClient) -> None:
        nonlocal errors
        while not queue.empty():
            body = queue.get_nowait()
            start = time.perf_counter()
            response = await http.post(route, json=body)
            latencies.append(time.perf_counter() - start)
            if response.status_code != 200:
                errors += 1

    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        start = time.perf_counter()
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return {"latencies": np.asarray(latencies), "errors": errors, "wall": wall}


def _in_process(bundle: Path, batch: int, repeats: int, direct: bool) -> float:
    recalibrator = load_bundle(bundle)
    if direct:
        recalibrator = dataclasses.replace(
            recalibrator, predict_scaled=direct_network_call(bundle)
        )
    sample = {key: np.asarray(value) for key, value in _sample(batch, 9).items()}
    predict_muons(recalibrator, sample)
    start = time.perf_counter()
    for _ in range(repeats):
        predict_muons(recalibrator, sample)
    return batch * repeats / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--requests-1", type=int, default=1000, help="Requests of one muon."
    )
    parser.add_argument(
        "--requests-1024", type=int, default=200, help="Requests of 1,024 muons."
    )
    parser.add_argument(
        "--concurrency", type=int, default=8, help="Concurrent connections."
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="l1recal-serving-bench-") as folder:
        work = Path(folder)
        bundle = _train(work)
        _package(bundle, work)
        process, url = _start_server(work)
        try:
            cases = [
                ("/predict/muon", 1, args.requests_1, lambda i: _sample(1, i)),
                (
                    "/predict/muon/adaptive",
                    1,
                    args.requests_1,
                    lambda i: {
                        "muons": [
                            dict(
                                zip(
                                    _sample(1, i),
                                    (v[0] for v in _sample(1, i).values()),
                                    strict=True,
                                )
                            )
                        ]
                    },
                ),
                ("/predict/muon", 1024, args.requests_1024, lambda i: _sample(1024, i)),
            ]
            print(
                "| endpoint | muons / request | requests | concurrency | muons / s | p50 (ms) | p99 (ms) | errors |"
            )
            print("|---|---:|---:|---:|---:|---:|---:|---:|")
            for route, batch, count, make in cases:
                bodies = [make(i) for i in range(count)]
                asyncio.run(
                    _load(url, route, bodies[: args.concurrency], args.concurrency)
                )
                result = asyncio.run(_load(url, route, bodies, args.concurrency))
                latencies = result["latencies"] * 1000
                print(
                    f"| {route} | {batch} | {count} | {args.concurrency} | "
                    f"{batch * count / result['wall']:,.0f} | {np.percentile(latencies, 50):.1f} | "
                    f"{np.percentile(latencies, 99):.1f} | {result['errors']} |"
                )
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
        for direct, label in (
            (True, "direct Keras call, as served"),
            (False, "Model.predict"),
        ):
            for batch, repeats in ((1, 300), (1024, 100)):
                rate = _in_process(bundle, batch, repeats, direct)
                print(
                    f"in-process predict_muons ({label}), batch {batch}: {rate:,.0f} muons / s"
                )


if __name__ == "__main__":
    main()
