"""Ingest throughput and peak memory against a bare pyarrow read of the same columns.

For each event count, the script writes simulated raw muon events (the
project's default layout, zstd parquet, row groups of 100,000 events) once,
then runs in separate subprocesses, so that each peak resident memory
(VmHWM) is its own:

* ``read``: pyarrow reads the columns muon ingest needs, batch by batch,
  and converts each column to numpy, with nothing else;
* ``ingest``: ``l1recal.data.ingest.ingest_muons`` on the same file, with the
  ``ingest.batch_rows`` default;
* ``jet_ingest`` (with ``--jets``): ``ingest_jets`` on simulated jet events.

Each measurement runs ``--repeat`` times, alternating with the others; the
table reports the median wall and CPU times and the largest peak. Prints one
JSON line per run and a Markdown table at the end. Wall
time depends on what else runs on the machine; CPU time (user + system of the
measuring process) much less so.

    python benchmarks/ingest_bench.py [--events 1000000 10000000] [--jets 1000000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_BATCH_EVENTS = 100_000


def _write_muon_events(path: Path, n_events: int) -> None:
    import numpy as np
    import pyarrow.parquet as pq

    from l1recal.config import MuonPhysics
    from l1recal.simulation.events import simulate_event_batch

    rng = np.random.default_rng(123)
    writer = None
    for start in range(0, n_events, _BATCH_EVENTS):
        batch = simulate_event_batch(
            rng, min(_BATCH_EVENTS, n_events - start), MuonPhysics()
        )
        if writer is None:
            writer = pq.ParquetWriter(path, batch.schema, compression="zstd")
        writer.write_table(batch)
    writer.close()


def _write_jet_events(path: Path, n_events: int) -> None:
    import numpy as np
    import pyarrow.parquet as pq

    from l1recal.config import JetPhysics
    from l1recal.simulation.jets import simulate_jet_event_batch

    rng = np.random.default_rng(321)
    writer = None
    for start in range(0, n_events, _BATCH_EVENTS):
        batch = simulate_jet_event_batch(
            rng, min(_BATCH_EVENTS, n_events - start), JetPhysics()
        )
        if writer is None:
            writer = pq.ParquetWriter(path, batch.schema, compression="zstd")
        writer.write_table(batch)
    writer.close()


def _read_columns(path: str, columns: list[str], batch_rows: int) -> int:
    import pyarrow.parquet as pq

    events = 0
    for batch in pq.ParquetFile(path).iter_batches(
        batch_size=batch_rows, columns=columns
    ):
        for column in batch.columns:
            column.to_numpy(zero_copy_only=False)
        events += batch.num_rows
    return events


def _measure(kind: str, path: str, output: str) -> dict:
    """Run one measurement in this process; return events, seconds and peak RSS."""
    import logging

    logging.disable(logging.INFO)
    from l1recal.config import IngestSettings, JetIngestSettings
    from l1recal.schema import muon_ingest_columns, raw_jet_event_columns

    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_before = usage.ru_utime + usage.ru_stime
    start = time.perf_counter()
    if kind == "read":
        events = _read_columns(path, muon_ingest_columns(), IngestSettings().batch_rows)
    elif kind == "jet_read":
        columns = [c for c in raw_jet_event_columns() if "Mass" not in c]
        events = _read_columns(path, columns, JetIngestSettings().batch_rows)
    elif kind == "ingest":
        from l1recal.data.ingest import ingest_muons

        events = ingest_muons(IngestSettings(), path, Path(output))["events"]
    else:
        from l1recal.data.jets import ingest_jets

        events = ingest_jets(JetIngestSettings(), path, Path(output))["events"]
    seconds = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "events": events,
        "seconds": seconds,
        "cpu_seconds": usage.ru_utime + usage.ru_stime - cpu_before,
        "peak_rss_mib": _peak_rss_mib(),
    }


def _peak_rss_mib() -> float:
    """Return this process's resident-memory high-water mark (VmHWM) in MiB.

    ru_maxrss is not used because Linux carries it across exec from the parent,
    which contains the simulated events.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _run_child(kind: str, path: Path, output: Path) -> dict:
    result = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(path), str(output)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def _median_run(runs: list[dict]) -> dict:
    """Return the run of median wall time, with the median CPU time and the largest peak RSS."""
    by_wall = sorted(runs, key=lambda run: run["seconds"])
    median = dict(by_wall[len(by_wall) // 2])
    median["cpu_seconds"] = sorted(run["cpu_seconds"] for run in runs)[len(runs) // 2]
    median["peak_rss_mib"] = max(run["peak_rss_mib"] for run in runs)
    median["events_per_s"] = median["events"] / median["seconds"]
    return median


def main() -> None:
    """Parse arguments, write the inputs and print the measurements."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--events", type=int, nargs="*", default=[1_000_000, 10_000_000]
    )
    parser.add_argument(
        "--jets", type=int, nargs="*", default=[], help="Jet event counts."
    )
    parser.add_argument(
        "--workdir", type=Path, default=None, help="Folder for the inputs."
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="Runs per measurement; the median is reported.",
    )
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_measure(*args.child)))
        return

    rows = []
    with tempfile.TemporaryDirectory(dir=args.workdir) as folder:
        work = Path(folder)
        plan = [("muon", n, ("read", "ingest")) for n in args.events]
        plan += [("jet", n, ("jet_read", "jet_ingest")) for n in args.jets]
        for family, n_events, kinds in plan:
            source = work / f"{family}_events_{n_events}.parquet"
            start = time.perf_counter()
            (_write_muon_events if family == "muon" else _write_jet_events)(
                source, n_events
            )
            size_mib = source.stat().st_size / 2**20
            print(
                f"# wrote {n_events} {family} events ({size_mib:.0f} MiB) "
                f"in {time.perf_counter() - start:.0f} s",
                flush=True,
            )
            runs: dict[str, list[dict]] = {kind: [] for kind in kinds}
            for _ in range(args.repeat):
                for kind in kinds:
                    measured = _run_child(kind, source, work / "out.parquet")
                    measured.update(kind=kind, input_mib=round(size_mib))
                    print(json.dumps(measured), flush=True)
                    runs[kind].append(measured)
            for kind in kinds:
                rows.append(_median_run(runs[kind]))
            source.unlink()

    print(
        "\n| measurement | events | wall s | CPU s | events/s (wall) | events/s (CPU) "
        "| peak RSS (MiB) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['kind']} | {row['events']:,} | {row['seconds']:.1f} | "
            f"{row['cpu_seconds']:.1f} | {row['events_per_s']:,.0f} | "
            f"{row['events'] / row['cpu_seconds']:,.0f} | {row['peak_rss_mib']:.0f} |"
        )


if __name__ == "__main__":
    main()
