"""The ``package`` stage: approved bundles into the BentoML model store.

``reports/approved.json`` (written by the approval gate) names, per kind, the
approved bundle or states that no model was approved. For every approved kind
this stage imports the bundle folder into the BentoML model store as
``l1recal-muon`` or ``l1recal-jet``, with labels and metadata that record the
approval (model, family, preset, data and code version, test metrics). It can
also export each imported model as a ``.bentomodel`` file, which is how a later
step with its own store (an image build, another pipeline step) receives it:
``bentoml models import FILE``.

A kind that was not approved is skipped and nothing of it enters the store. The
model version is the model name and a hash of the bundle's files, so packaging
the same bundle twice reuses the stored model.

BentoML is imported inside the functions, so the CLI starts without it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from l1recal.atomic import atomic_path, write_json
from l1recal.config import PackageSettings
from l1recal.errors import InputFileError, ModelError
from l1recal.models.bundle import FALKON_FILE, KERAS_FILE, MODEL_CARD_FILE, SCALERS_FILE
from l1recal.serving import APPROVED_LABEL, KINDS, MODEL_NAMES

logger = logging.getLogger(__name__)

#: File name of each kind's export inside the export folder.
EXPORT_FILES = {kind: f"{name}.bentomodel" for kind, name in MODEL_NAMES.items()}
_WEIGHTS_FILES = {"network": KERAS_FILE, "falkon": FALKON_FILE}
_TAG_VERSION_MAX = 63


class ApprovalEntry(BaseModel):
    """One kind's decision in ``approved.json``; unknown keys are kept, not rejected."""

    model_config = ConfigDict(extra="allow")

    approved: bool
    model: str | None = None
    bundle: str | None = None
    family: str | None = None
    metrics: dict[str, Any] | None = None
    bundle_sha256: str | None = None
    replaced_champion: dict[str, Any] | None = None
    data_version: str | None = None
    code_version: str | None = None
    message: str = ""


def read_approvals(path: Path) -> dict[str, ApprovalEntry | None]:
    """Read ``approved.json`` into one entry per kind (None where the kind is absent).

    Raises:
        InputFileError: when the file is missing, not JSON, or an entry is malformed.
    """
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError as error:
        raise InputFileError(
            f"{path}: approval record not found; run 'l1recal approve' first"
        ) from error
    except json.JSONDecodeError as error:
        raise InputFileError(f"{path}: invalid JSON: {error}") from error
    if not isinstance(document, dict):
        raise InputFileError(
            f"{path}: expected an object with keys {', '.join(KINDS)}, "
            f"got {type(document).__name__}"
        )
    entries: dict[str, ApprovalEntry | None] = {}
    for kind in KINDS:
        raw = document.get(kind)
        if raw is None:
            entries[kind] = None
            continue
        try:
            entries[kind] = ApprovalEntry.model_validate(raw)
        except ValidationError as error:
            problems = "; ".join(
                f"{kind}.{'.'.join(str(p) for p in item['loc'])}: {item['msg']}"
                for item in error.errors()
            )
            raise InputFileError(
                f"{path}: invalid approval entry: {problems}"
            ) from error
    return entries


def bundle_digest(bundle: Path) -> str:
    """Return the SHA-256 (hex) of a bundle folder: every file's relative path and bytes, in sorted order.

    The approval gate hashes bundles the same way and records the hash as
    ``bundle_sha256``, so the two can be compared.
    """
    digest = hashlib.sha256()
    for file in sorted(p for p in bundle.rglob("*") if p.is_file()):
        digest.update(file.relative_to(bundle).as_posix().encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def tag_version(model: str, digest: str) -> str:
    """Return a BentoML tag version ``<model>-<first 12 hex of digest>``, lower-cased and sanitised."""
    stem = re.sub(r"[^a-z0-9_.-]+", "-", model.lower()).strip("-_.") or "model"
    stem = stem[: _TAG_VERSION_MAX - 13]
    return f"{stem}-{digest[:12]}"


def check_bundle(kind: str, entry: ApprovalEntry, source: Path) -> tuple[Path, dict]:
    """Check that an approved entry points at a complete bundle of its kind.

    Returns:
        The bundle folder and its model card.

    Raises:
        InputFileError: when the entry lacks the model name or bundle path.
        ModelError: when the bundle is missing, incomplete, or of another model or task.
    """
    if not entry.model or not entry.bundle:
        raise InputFileError(
            f"{source}: {kind}.approved is true but {kind}.model or {kind}.bundle is empty; "
            "an approved entry must name the model and its bundle folder"
        )
    bundle = Path(entry.bundle)
    card_path = bundle / MODEL_CARD_FILE
    if not card_path.is_file():
        raise ModelError(
            f"{bundle}: approved {kind} bundle not found (no {MODEL_CARD_FILE}); "
            "run the train stages or fix the bundle path in the approval record"
        )
    card = json.loads(card_path.read_text())
    if card.get("name") != entry.model:
        raise ModelError(
            f"{card_path}: bundle contains model {card.get('name')!r}, "
            f"but {source} approved {entry.model!r}"
        )
    task = card.get("task", "muon")
    if task != kind:
        raise ModelError(
            f"{card_path}: model {entry.model} was trained for task {task!r}, "
            f"but {source} approved it as the {kind} model"
        )
    family = card.get("family")
    weights = _WEIGHTS_FILES.get(family)
    if weights is None:
        raise ModelError(
            f"{card_path}: unknown model family {family!r}; expected 'network' or 'falkon'"
        )
    for name in (SCALERS_FILE, weights):
        if not (bundle / name).is_file():
            raise ModelError(f"{bundle}: bundle is incomplete, {name} is missing")
    return bundle, card


def _preset_label(card: dict) -> str:
    if card.get("family") == "network":
        preset = card.get("preset", {})
        return f"id{preset.get('preset_id')}"
    kernel = card.get("kernel", {})
    centres = card.get("settings", {}).get("centres")
    return f"{kernel.get('name', 'unknown')}-m{centres}"


def _without_nulls(value: Any) -> Any:
    """Drop None values from nested dicts and lists; BentoML metadata accepts no None."""
    if isinstance(value, dict):
        return {
            key: _without_nulls(item) for key, item in value.items() if item is not None
        }
    if isinstance(value, list | tuple):
        return [_without_nulls(item) for item in value if item is not None]
    return value


def model_labels_and_metadata(
    kind: str, entry: ApprovalEntry, card: dict, digest: str
) -> tuple[dict[str, str], dict[str, Any]]:
    """Return the BentoML labels (strings) and metadata recorded with an approved model."""
    data_version = entry.data_version or card.get("data_version") or "unknown"
    code_version = entry.code_version or card.get("code_version") or "unknown"
    labels = {
        APPROVED_LABEL: "true",
        "kind": kind,
        "model": str(entry.model),
        "family": str(card["family"]),
        "preset": _preset_label(card),
        "data_version": str(data_version),
        "code_version": str(code_version),
    }
    preset = card.get("preset") if card["family"] == "network" else card.get("settings")
    metadata = {
        "approved": True,
        "model": entry.model,
        "family": card["family"],
        "preset": preset or {},
        "data_version": data_version,
        "code_version": code_version,
        "metrics": entry.metrics or {},
        "replaced_champion": entry.replaced_champion or {},
        "approval_message": entry.message,
        "bundle_sha256": digest,
        "train_rows": card.get("train_rows", 0),
    }
    return labels, _without_nulls(json.loads(json.dumps(metadata)))


def import_bundle(
    kind: str, bundle: Path, version: str, labels: dict[str, str], metadata: dict
) -> str:
    """Copy a bundle into the BentoML model store; reuse the stored model if the tag exists.

    Returns:
        The model tag, e.g. ``l1recal-muon:nn_id4-0123456789ab``.
    """
    import bentoml
    from bentoml.exceptions import NotFound

    tag = f"{MODEL_NAMES[kind]}:{version}"
    try:
        existing = bentoml.models.get(tag)
    except NotFound:
        existing = None
    if existing is not None:
        logger.info(
            "%s already in the model store at %s; reusing it", tag, existing.path
        )
        return str(existing.tag)
    with bentoml.models.create(tag, labels=labels, metadata=metadata) as model:
        shutil.copytree(bundle, model.path, dirs_exist_ok=True)
    logger.info("imported %s from %s into the model store", tag, bundle)
    return tag


def file_sha256(path: Path) -> str:
    """Return the SHA-256 (hex) of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run_package(
    settings: PackageSettings,
    approved_path: Path,
    export_dir: Path | None,
    record_path: Path,
) -> dict[str, dict]:
    """Import the approved models into the BentoML model store and optionally export them.

    Args:
        settings: the ``package`` section.
        approved_path: ``reports/approved.json`` of the approval gate.
        export_dir: folder for one ``.bentomodel`` file per approved kind,
            replaced as a whole; None to skip exporting.
        record_path: JSON record of what was packaged, per kind.

    Returns:
        The record: per kind ``approved`` and, when approved, the model, tag,
        bundle hash and export file with its hash.
    """
    # BentoML sends usage events to its servers unless this is set.
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
    import bentoml

    entries = read_approvals(approved_path)
    record: dict[str, dict] = {}
    tags: dict[str, str] = {}
    for kind, entry in entries.items():
        if entry is None or not entry.approved:
            if entry is None:
                reason = f"no {kind} entry in {approved_path}"
            else:
                reason = entry.message or "not approved"
            logger.info("%s: no approved model, nothing packaged (%s)", kind, reason)
            record[kind] = {"approved": False, "message": reason}
            continue
        bundle, card = check_bundle(kind, entry, approved_path)
        digest = bundle_digest(bundle)
        if entry.bundle_sha256 is not None and entry.bundle_sha256 != digest:
            raise ModelError(
                f"{bundle}: bundle changed after approval (SHA-256 {digest[:12]}..., "
                f"{approved_path} approved {entry.bundle_sha256[:12]}...); re-run 'l1recal approve'"
            )
        labels, metadata = model_labels_and_metadata(kind, entry, card, digest)
        tag = import_bundle(
            kind, bundle, tag_version(str(entry.model), digest), labels, metadata
        )
        tags[kind] = tag
        record[kind] = {
            "approved": True,
            "model": entry.model,
            "family": card["family"],
            "tag": tag,
            "bundle": str(bundle),
            "bundle_sha256": digest,
            "labels": labels,
        }

    if export_dir is not None and settings.export:
        with atomic_path(export_dir, is_dir=True) as staging:
            for kind, tag in tags.items():
                target = staging / EXPORT_FILES[kind]
                # BentoML resolves a relative export path against the file-system root.
                bentoml.models.export_model(tag, str(target.resolve()))
                record[kind]["export"] = str(export_dir / EXPORT_FILES[kind])
                record[kind]["export_sha256"] = file_sha256(target)
                logger.info("exported %s to %s", tag, export_dir / EXPORT_FILES[kind])
    write_json(record_path, record)
    return record
