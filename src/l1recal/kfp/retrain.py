"""Retraining on new ZeroBias data: register landed files as a new DVC data version.

New raw event files land in a landing folder, named ``muon_events*.parquet``
or ``jet_events*.parquet``. Registration appends their events to
``data/raw/<kind>_events.parquet`` (the schemas must match), records the new
content hash in ``data.dvc`` (``dvc commit``) and commits ``data.dvc``, so the commit
names the data version. The landing folder keeps a manifest of registered
files, so a file is registered once.

On a cluster the pipeline's ``register_data`` step does this in a fresh clone
and pushes data and commit; ``l1recal retrain`` does it in the local checkout
and then runs ``dvc repro``, whose approval stage compares the challengers
with the champion.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from l1recal.atomic import atomic_path, write_json, write_text
from l1recal.errors import InputFileError
from l1recal.kfp.steps import (
    DATA_DVC_FILE,
    RAW_PATH,
    resolve_revision,
    temporary_clone,
)

logger = logging.getLogger(__name__)

MANIFEST_FILE = ".registered.json"
KINDS = ("muon", "jet")
#: One JSON line per local retraining run, next to the stage reports.
HISTORY_FILE = Path("reports/retrain_history.jsonl")
APPROVED_FILE = Path("reports/approved.json")


def new_batches(landing: Path) -> list[Path]:
    """Return the landed event files not yet registered, in name order."""
    if not landing.is_dir():
        raise InputFileError(
            f"{landing}: landing folder not found; create it or pass the folder new files land in"
        )
    registered = _read_manifest(landing)
    return [
        path
        for path in sorted(landing.glob("*_events*.parquet"))
        if path.name not in registered and path.name.split("_", 1)[0] in KINDS
    ]


def _read_manifest(landing: Path) -> dict[str, dict]:
    manifest = landing / MANIFEST_FILE
    return json.loads(manifest.read_text()) if manifest.exists() else {}


def append_events(raw_dir: Path, batches: list[Path]) -> dict[str, int]:
    """Append the rows of each landed file to the raw event file of its kind.

    Returns:
        Rows appended per raw file name.

    Raises:
        InputFileError: when a landed file's schema differs from the raw file's.
    """
    appended: dict[str, int] = {}
    for kind in KINDS:
        files = [path for path in batches if path.name.startswith(f"{kind}_")]
        if not files:
            continue
        target = raw_dir / f"{kind}_events.parquet"
        sources = ([target] if target.exists() else []) + files
        schema = pq.read_schema(sources[0])
        for source in sources[1:]:
            other = pq.read_schema(source)
            if not other.equals(schema):
                raise InputFileError(
                    f"{source}: schema differs from {sources[0]}; landed files must "
                    f"have the raw layout of docs/data-format.md ({schema.names})"
                )
        with (
            atomic_path(target) as staging,
            pq.ParquetWriter(staging, schema, compression="zstd") as writer,
        ):
            for source in sources:
                for batch in pq.ParquetFile(source).iter_batches():
                    writer.write_batch(batch)
        appended[target.name] = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    return appended


def _run(command: list[str], cwd: Path) -> str:
    logger.info("running %s", " ".join(command))
    result = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, check=False, timeout=3600
    )
    if result.returncode != 0:
        raise InputFileError(
            f"{' '.join(command)} failed in {cwd} (exit {result.returncode}): "
            f"{result.stderr.strip() or result.stdout.strip()}"
        )
    return result.stdout.strip()


def _dvc(*args: str) -> list[str]:
    return [sys.executable, "-m", "dvc", *args]


def register_batches(
    repo_dir: Path, landing: Path, *, remote: str | None = None, push: bool = False
) -> str | None:
    """Register the new files of a landing folder as a new data version of a checkout.

    Args:
        repo_dir: git and DVC checkout of the project.
        landing: folder where new event files land.
        remote: DVC remote to push to (with ``push``); None for the default.
        push: push the data to the DVC remote and the commit to git's origin.

    Returns:
        The new commit, or None when there was nothing new.
    """
    batches = new_batches(landing)
    if not batches:
        logger.info("no new files in %s", landing)
        return None
    appended = append_events(repo_dir / RAW_PATH, batches)
    _run(_dvc("commit", "--force", "--quiet", DATA_DVC_FILE), repo_dir)
    _run(["git", "add", "data.dvc"], repo_dir)
    names = ", ".join(path.name for path in batches)
    _run(
        [
            "git",
            "-c",
            "user.name=l1recal",
            "-c",
            "user.email=l1recal@localhost",
            "commit",
            "--quiet",
            "-m",
            "Register new ZeroBias data",
            "-m",
            f"Appended {appended} from {names}.",
        ],
        repo_dir,
    )
    commit = _run(["git", "rev-parse", "HEAD"], repo_dir)
    if push:
        _run(_dvc("push", *(["-r", remote] if remote else []), RAW_PATH), repo_dir)
        _push_commit(repo_dir)
    manifest = _read_manifest(landing)
    for path in batches:
        manifest[path.name] = {"size": path.stat().st_size, "commit": commit}
    write_json(landing / MANIFEST_FILE, manifest)
    logger.info("registered %s as data commit %s", names, commit[:12])
    return commit


def _push_commit(repo_dir: Path) -> None:
    command = ["git"]
    token = os.environ.get("GIT_TOKEN")
    if token:
        command += ["-c", f"http.extraHeader=Authorization: Bearer {token}"]
    branch = _run(["git", "rev-parse", "--abbrev-ref", "HEAD"], repo_dir)
    target = "HEAD" if branch == "HEAD" else f"HEAD:{branch}"
    _run([*command, "push", "--quiet", "origin", target], repo_dir)


def register_data_step(
    repo_url: str,
    revision: str,
    remote: str | None,
    landing: str,
    revision_out: Path,
) -> str:
    """Run the pipeline's registration step and write the revision to train on.

    With an empty ``landing`` or no new files, the output is ``revision``
    resolved to its commit. Otherwise the files are registered in a fresh
    clone, data and commit are pushed, and the output is the new commit.
    """
    commit = None
    if landing:
        landing_dir = Path(landing)
        if new_batches(landing_dir):
            clone = temporary_clone(repo_url, revision)
            _run(_dvc("pull", *(["-r", remote] if remote else []), RAW_PATH), clone)
            commit = register_batches(clone, landing_dir, remote=remote, push=True)
    if commit is None:
        commit = resolve_revision(repo_url, revision)
    write_text(revision_out, commit)
    return commit


def retrain_local(repo_dir: Path, landing: Path, *, repro: bool = True) -> dict:
    """Run the local retraining loop: register new files, ``dvc repro``, record the outcome.

    Args:
        repo_dir: the project checkout (``dvc.yaml``, ``data.dvc``).
        landing: folder where new event files land.
        repro: run ``dvc repro`` after registration.

    Returns:
        The history entry appended to ``reports/retrain_history.jsonl``.
    """
    commit = register_batches(repo_dir, landing)
    entry: dict = {
        "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "data_commit": commit,
        "new_data": commit is not None,
    }
    if commit is not None and repro:
        _run(_dvc("repro"), repo_dir)
    approved = repo_dir / APPROVED_FILE
    if approved.exists():
        approval = json.loads(approved.read_text())
        entry["approved"] = {
            kind: {
                "approved": item.get("approved"),
                "model": item.get("model"),
                "data_version": item.get("data_version"),
            }
            for kind, item in approval.items()
            if isinstance(item, dict)
        }
    history = repo_dir / HISTORY_FILE
    history.parent.mkdir(parents=True, exist_ok=True)
    with history.open("a") as stream:
        stream.write(json.dumps(entry) + "\n")
    return entry
