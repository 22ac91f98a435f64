"""Training cost: Falkon fit time and peak memory, network seconds per epoch.

Each configuration runs in its own subprocess on inputs that another
subprocess simulated once and saved. The parent stays small because Linux
starts a forked child's ru_maxrss at the parent's, so each child's peak
resident memory is that of loading the arrays and fitting. Inputs are simulated muons inside the pT
window, scaled as the pipeline scales them.

    python benchmarks/train_bench.py [--rows 870000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np


def _training_arrays(rows: int) -> tuple[np.ndarray, np.ndarray]:
    from l1recal.config import MuonPhysics
    from l1recal.data.preprocess import select_pt_window, to_physical
    from l1recal.models.scalers import AffineScaler
    from l1recal.schema import MUON_INPUTS, MUON_TARGETS
    from l1recal.simulation.muons import simulate_muons

    sample = simulate_muons(np.random.default_rng(1), int(rows * 3.2), MuonPhysics())
    import pandas as pd

    table = pd.DataFrame(
        {
            "hwPtL1": sample.hw_pt,
            "hwEtaL1": sample.hw_eta,
            "hwPhiL1": sample.hw_phi,
            "hwSignL1": sample.hw_sign,
            "ptReco": sample.pt_reco,
            "etaVtxReco": sample.eta_vtx,
            "phiVtxReco": sample.phi_vtx,
        }
    )
    physical = select_pt_window(to_physical(table), 5.5, 45.0).iloc[:rows]
    x = AffineScaler.min_max(MUON_INPUTS, physical[list(MUON_INPUTS)].to_numpy())
    y = AffineScaler.standard(MUON_TARGETS, physical[list(MUON_TARGETS)].to_numpy())
    return (
        x.transform(physical[list(MUON_INPUTS)].to_numpy()),
        y.transform(physical[list(MUON_TARGETS)].to_numpy()),
    )


def run_one(kind: str, arrays: str, size: int, batch: int) -> dict:
    """Run one configuration in this process on the saved arrays; returns its timing and memory."""
    loaded = np.load(arrays)
    x, y = loaded["x"], loaded["y"]
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if kind == "falkon":
        from l1recal.models.falkon import Falkon
        from l1recal.models.kernels import Kernel

        start = time.perf_counter()
        Falkon(
            Kernel("gaussian", sigma=0.5), size, 1e-6, max_iterations=30, seed=0
        ).fit(x, y)
        result = {
            "fit_seconds": round(time.perf_counter() - start, 2),
            "cg_iterations": 30,
        }
    else:
        from l1recal.models.network import NetworkPreset, build_network

        preset = NetworkPreset(
            0, "logcosh", 1e-5, *((4, 128) if size == 128 else (3, 32))
        )
        model = build_network(preset, 4, 3)
        model.fit(
            x[:batch], y[:batch], batch_size=batch, epochs=1, verbose=0
        )  # build and trace
        start = time.perf_counter()
        model.fit(x, y, batch_size=batch, epochs=2, verbose=0)
        result = {"seconds_per_epoch": round((time.perf_counter() - start) / 2, 2)}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        **result,
        "peak_rss_mb": round(peak / 1024),
        "rss_before_fit_mb": round(base_rss / 1024),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows",
        type=int,
        default=870_000,
        help="Training rows (the study's train split).",
    )
    parser.add_argument(
        "--one",
        nargs=4,
        metavar=("KIND", "ARRAYS", "SIZE", "BATCH"),
        help=argparse.SUPPRESS,
    )
    parser.add_argument("--make-arrays", metavar="PATH", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.make_arrays:
        x, y = _training_arrays(arguments.rows)
        np.savez(arguments.make_arrays, x=x, y=y)
        return
    if arguments.one:
        kind, arrays, size, batch = arguments.one
        print(json.dumps(run_one(kind, arrays, int(size), int(batch))))
        return

    scratch = tempfile.mkdtemp(prefix="l1recal-train-bench-")
    arrays = f"{scratch}/arrays.npz"
    subprocess.run(
        [
            sys.executable,
            __file__,
            "--rows",
            str(arguments.rows),
            "--make-arrays",
            arrays,
        ],
        check=True,
    )

    configurations = [("falkon", 100, 0), ("falkon", 500, 0)]
    configurations += [
        ("network", width, batch) for width in (128, 32) for batch in (512, 8192)
    ]
    print("| configuration | rows | result |\n|---|---:|---|")
    for kind, size, batch in configurations:
        command = [
            sys.executable,
            __file__,
            "--rows",
            str(arguments.rows),
            "--one",
            kind,
            arrays,
            str(size),
            str(batch),
        ]
        output = (
            subprocess.run(command, capture_output=True, text=True, check=True)
            .stdout.strip()
            .splitlines()[-1]
        )
        label = (
            f"Falkon Gaussian M={size}"
            if kind == "falkon"
            else f"network {'4 x 128' if size == 128 else '3 x 32'}, batch {batch}"
        )
        print(f"| {label} | {arguments.rows} | {output} |", flush=True)


if __name__ == "__main__":
    main()
