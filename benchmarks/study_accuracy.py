"""Accuracy of the study's model set on a simulated sample of the study's size.

Simulates enough ZeroBias events for about 1.3 M muons inside the pT window,
runs ingest, preprocess, the networks of Table 6 IDs 4 and 6 and the four
Falkon presets, and prints the RMSE table with the noise floor beside it,
plus each model's distance to the floor.

    python benchmarks/study_accuracy.py --work /tmp/l1recal-study [--events 2900000]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from l1recal.config import (
    EvaluateSettings,
    FalkonModelSettings,
    FalkonTrainSettings,
    IngestSettings,
    NetworkTrainSettings,
    PreprocessSettings,
    SimulateSettings,
)
from l1recal.data.ingest import run_ingest
from l1recal.data.preprocess import run_preprocess
from l1recal.evaluation.evaluate import run_evaluate
from l1recal.models.train import run_train_falkon, run_train_network
from l1recal.simulation.stage import MUON_EVENTS_FILE, NOISE_FLOOR_FILE, run_simulate

FALKON_PRESETS = (
    "gaussian_m500",
    "gaussian_m100",
    "linear_m100",
    "polynomial_m100_deg5",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--work",
        type=Path,
        required=True,
        help="Scratch folder for data, models, reports.",
    )
    parser.add_argument(
        "--events", type=int, default=2_900_000, help="Simulated events."
    )
    parser.add_argument(
        "--batch-size", type=int, default=8192, choices=(256, 512, 8192)
    )
    parser.add_argument("--max-epochs", type=int, default=200)
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    work = arguments.work
    seconds: dict[str, float] = {}

    def timed(label, function, *args):
        start = time.perf_counter()
        result = function(*args)
        seconds[label] = round(time.perf_counter() - start, 1)
        return result

    if not (work / "raw" / MUON_EVENTS_FILE).exists():
        timed(
            "simulate",
            run_simulate,
            SimulateSettings(n_events=arguments.events, jet_events=0),
            work / "raw",
        )
    timed(
        "ingest",
        run_ingest,
        IngestSettings(),
        work / "raw" / MUON_EVENTS_FILE,
        work / "muons.parquet",
    )
    counts = timed(
        "preprocess",
        run_preprocess,
        PreprocessSettings(),
        work / "muons.parquet",
        work / "splits",
    )
    network = NetworkTrainSettings(
        presets=[4, 6],
        batch_size=arguments.batch_size,
        max_epochs=arguments.max_epochs,
        patience=10,
    )
    timed(
        "train_network",
        run_train_network,
        network,
        work / "splits",
        work / "models" / "network",
    )
    falkon = FalkonTrainSettings(
        models=[FalkonModelSettings(preset=name) for name in FALKON_PRESETS]
    )
    timed(
        "train_falkon",
        run_train_falkon,
        falkon,
        work / "splits",
        work / "models" / "falkon",
    )
    results = run_evaluate(
        EvaluateSettings(),
        work / "splits",
        [work / "models" / "network", work / "models" / "falkon"],
        work / "metrics.json",
        work / "rmse.md",
        work / "raw" / NOISE_FLOOR_FILE,
    )

    floor = results["noise_floor"]
    print(f"rows: {counts}")
    print(f"stage seconds: {seconds}")
    print("| model | phi | eta | pT/pT_reco | phi / floor | eta / floor | pT / floor |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, values in results.items():
        ratios = " | ".join(
            f"{values[m] / floor[m]:.3f}" for m in ("phi", "eta", "pt_rel")
        )
        print(
            f"| {name} | {values['phi']:.4f} | {values['eta']:.4f} | {values['pt_rel']:.4f} | {ratios} |"
        )
    (work / "summary.json").write_text(
        json.dumps({"rows": counts, "seconds": seconds, "rmse": results}, indent=2)
    )


if __name__ == "__main__":
    main()
