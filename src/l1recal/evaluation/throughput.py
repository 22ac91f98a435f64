"""Batched CPU inference throughput of saved models, on one thread and on all threads.

TensorFlow fixes its thread pools when it first runs an operation, so the
one-thread measurement runs in a fresh Python process limited to one thread.
The all-thread measurement runs in the calling process, which uses every
core unless its environment limits the threads (``OMP_NUM_THREADS``,
``TF_NUM_INTRAOP_THREADS``). Each measurement loads every bundle, predicts
one warm-up batch, then repeats full batches through
:meth:`Recalibrator.predict` (scaling, model, inverse scaling: the path that
serving uses) until the minimum wall time has passed. Inputs are drawn
uniformly inside each input scaler's training range, so no data is needed.

Throughput is objects (muons or jets) per second of wall time. Its ratio to
the 40 MHz LHC bunch-crossing rate is the fraction of one object per crossing
that one process keeps up with.

Run by hand: ``python -m l1recal.evaluation.throughput --threads 1 BUNDLE...``
prints one JSON object, rows per second by bundle folder.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from l1recal.models.bundle import KERAS_FILE

logger = logging.getLogger(__name__)

#: LHC bunch-crossing rate, Hz.
BUNCH_CROSSING_RATE_HZ = 40.0e6
#: Fewest timed batches per model, whatever the minimum wall time.
MIN_REPEATS = 3
#: Wall-time limit, in s, of one measurement process.
PROCESS_TIMEOUT_S = 600


def available_threads() -> int:
    """Return the number of CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _thread_environment(threads: int) -> dict[str, str]:
    return {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "OPENBLAS_NUM_THREADS": str(threads),
        "TF_NUM_INTRAOP_THREADS": str(threads),
        "TF_NUM_INTEROP_THREADS": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "CUDA_VISIBLE_DEVICES": "",
    }


def _limit_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    # TensorFlow reads TF_NUM_INTRAOP_THREADS when it starts; set it too in
    # case TensorFlow started before this call.
    if "tensorflow" in sys.modules:
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError as error:
            # TensorFlow already ran an operation in this process.
            logger.warning("could not limit TensorFlow threads: %s", error)


def time_bundle(
    bundle_dir: Path, rows: int, min_seconds: float, seed: int = 0
) -> float:
    """Return the rows per second of repeated ``rows``-row batches through one bundle."""
    from l1recal.models.bundle import load_bundle

    model = load_bundle(bundle_dir)
    scaler = model.input_scaler
    uniform = np.random.default_rng(seed).uniform(size=(rows, len(scaler.offset)))
    inputs = scaler.offset + uniform * scaler.scale
    model.predict(inputs)  # warm-up: graph tracing, allocations

    repeats = 0
    start = time.perf_counter()
    elapsed = 0.0
    while repeats < MIN_REPEATS or elapsed < min_seconds:
        model.predict(inputs)
        repeats += 1
        elapsed = time.perf_counter() - start
    return rows * repeats / elapsed


def measure_in_process(
    bundle_dirs: list[Path], threads: int | None, rows: int, min_seconds: float
) -> dict[str, float]:
    """Time every bundle in this process; rows per second by bundle folder (as given).

    Args:
        bundle_dirs: model bundle folders.
        threads: limit this process to that many threads first; None keeps
            the process's thread settings.
        rows: rows per batch.
        min_seconds: minimum timed wall time per model, s.
    """
    from l1recal.models.bundle import load_bundle

    if threads is not None:
        _limit_threads(threads)
    rates = {}
    for bundle_dir in bundle_dirs:
        name = load_bundle(bundle_dir).name
        rates[str(bundle_dir)] = time_bundle(bundle_dir, rows, min_seconds)
        logger.info(
            "%s: %.3g rows/s (threads: %s)",
            name,
            rates[str(bundle_dir)],
            threads or "all",
        )
    return rates


def measure_subprocess(
    bundle_dirs: list[Path], threads: int, rows: int, min_seconds: float
) -> dict[str, float]:
    """Time every bundle in a fresh Python process limited to ``threads`` threads.

    Raises:
        RuntimeError: when the measurement process fails.
    """
    command = [
        sys.executable,
        "-m",
        "l1recal.evaluation.throughput",
        "--threads",
        str(threads),
        "--rows",
        str(rows),
        "--seconds",
        str(min_seconds),
        *[str(path) for path in bundle_dirs],
    ]
    result = subprocess.run(
        command,
        env=_thread_environment(threads),
        capture_output=True,
        text=True,
        check=False,
        timeout=PROCESS_TIMEOUT_S,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"throughput measurement on {threads} thread(s) failed "
            f"(exit {result.returncode}): {result.stderr.strip()[-2000:]}"
        )
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure_throughput(
    bundles: dict[str, Path], rows: int, min_seconds: float
) -> dict[str, dict[str, Any]]:
    """Measure every bundle on one thread and on all available threads.

    Args:
        bundles: model bundle folder by model name.
        rows: rows per batch.
        min_seconds: minimum timed wall time per model and thread count, s.

    Returns:
        Per model name: ``rows_per_s_1_thread``, ``rows_per_s_all_threads``,
        ``threads`` (the count of "all"), ``batch_rows`` and the ratios of both
        rates to the 40 MHz bunch-crossing rate.
    """
    if not bundles:
        return {}
    folders = list(bundles.values())
    threads = available_threads()
    single = measure_subprocess(folders, 1, rows, min_seconds)
    every = (
        single if threads == 1 else measure_in_process(folders, None, rows, min_seconds)
    )
    results = {}
    for name, folder in bundles.items():
        one, all_threads = single[str(folder)], every[str(folder)]
        results[name] = {
            "rows_per_s_1_thread": one,
            "rows_per_s_all_threads": all_threads,
            "threads": threads,
            "batch_rows": rows,
            "ratio_to_40mhz_1_thread": one / BUNCH_CROSSING_RATE_HZ,
            "ratio_to_40mhz_all_threads": all_threads / BUNCH_CROSSING_RATE_HZ,
        }
    return results


def main(argv: list[str] | None = None) -> None:
    """Time bundles in this process and print rows per second by bundle folder as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundles", nargs="+", type=Path, help="model bundle folders")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads to use")
    parser.add_argument("--rows", type=int, default=65_536, help="rows per batch")
    parser.add_argument(
        "--seconds",
        type=float,
        default=0.5,
        help="minimum timed wall time per model, s",
    )
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if any((bundle / KERAS_FILE).exists() for bundle in arguments.bundles):
        # Start TensorFlow here so that its thread pools can still be sized.
        import tensorflow  # noqa: F401
    rates = measure_in_process(
        arguments.bundles, arguments.threads, arguments.rows, arguments.seconds
    )
    sys.stdout.write(json.dumps(rates) + "\n")


if __name__ == "__main__":
    main()
