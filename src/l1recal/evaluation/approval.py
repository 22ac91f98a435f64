"""The ``approve`` stage: decide per kind (muon, jet) which model may be served and synthesised.

A model passes when all of these hold:

1. it beats the L1 baseline on every metric: ``rmse < (1 - margin) * rmse_L1``;
2. when a champion exists, it is not worse than the champion on the same test
   split by more than the tolerance: ``rmse <= (1 + tolerance) * rmse_champion``;
3. when a fixed-point emulation result exists for it, the relative RMSE loss
   ``(fixed - float) / float`` is at most the fixed-point tolerance on every metric.

Among passing models the one with the lowest mean ratio of its RMSE to the L1
baseline's wins.

The champion is the model approved last time. It lives in a registry folder
(``--champion-dir``) that outlives the pipeline's outputs::

    <champion-dir>/<kind>/champion.json    record: name, family, metrics, versions, time
    <champion-dir>/<kind>/bundle/          copy of the champion's model bundle

The champion is re-scored on the current test split from its bundle, so the
comparison uses the same rows as the candidates. With ``promote`` the chosen
model replaces the champion, after ``approved.json`` is written.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from l1recal.atomic import atomic_path, write_json
from l1recal.config import ApproveSettings
from l1recal.errors import InputFileError, ModelError
from l1recal.evaluation.evaluate import BASELINE, NOISE_FLOOR, baseline_ratio
from l1recal.models.bundle import MODEL_CARD_FILE, code_version, data_version

logger = logging.getLogger(__name__)

KINDS = ("muon", "jet")
NO_MODEL_MESSAGE = "no model approved"
CHAMPION_RECORD = "champion.json"
CHAMPION_BUNDLE = "bundle"


@dataclass(frozen=True)
class Champion:
    """The currently approved model of one kind.

    Attributes:
        record: the stored ``champion.json``.
        metrics: RMSE per metric on the current test split (the record's
            metrics when the test split was not available).
        rescored: whether ``metrics`` were computed on the current test split.
    """

    record: dict[str, Any]
    metrics: dict[str, float]
    rescored: bool


def candidate_names(metrics_doc: dict[str, Any]) -> list[str]:
    """Return the model names of an evaluation's metrics JSON, without the baseline and noise floor."""
    return [
        name
        for name, values in metrics_doc.items()
        if name not in (BASELINE, NOISE_FLOOR) and isinstance(values, dict)
    ]


def metric_names(metrics_doc: dict[str, Any]) -> list[str]:
    """Return the metric names of the L1 baseline entry (``test_rows`` excluded)."""
    return [key for key in metrics_doc[BASELINE] if key != "test_rows"]


def check_baseline(
    metrics: dict[str, float],
    baseline: dict[str, float],
    settings: ApproveSettings,
    names: list[str],
) -> list[str]:
    """Return one reason per metric on which a model fails to beat the L1 baseline by its margin."""
    reasons = []
    for metric in names:
        margin = settings.baseline_margins.get(metric, 0.0)
        limit = (1.0 - margin) * baseline[metric]
        if not metrics[metric] < limit:
            reasons.append(
                f"{metric} RMSE {metrics[metric]:.4g} does not beat the L1 baseline "
                f"{baseline[metric]:.4g} by the {margin:.0%} margin (needs < {limit:.4g})"
            )
    return reasons


def check_champion(
    metrics: dict[str, float],
    champion: Champion,
    settings: ApproveSettings,
    names: list[str],
) -> list[str]:
    """Return one reason per metric on which a model is worse than the champion beyond the tolerance."""
    reasons = []
    champion_name = champion.record.get("model")
    for metric in names:
        if metric not in champion.metrics:
            continue
        limit = (1.0 + settings.champion_tolerance) * champion.metrics[metric]
        if metrics[metric] > limit:
            reasons.append(
                f"{metric} RMSE {metrics[metric]:.4g} is worse than champion "
                f"{champion_name} ({champion.metrics[metric]:.4g}) by more than the "
                f"{settings.champion_tolerance:.0%} tolerance (max {limit:.4g})"
            )
    return reasons


def check_fixed_point(
    result: dict[str, Any] | None, settings: ApproveSettings, names: list[str]
) -> list[str]:
    """Return the reasons a model's fixed-point emulation loses too much against float."""
    if result is None:
        if settings.require_fixed_point:
            return [
                "no fixed-point emulation result, and approve.require_fixed_point is set"
            ]
        return []
    reasons = []
    precision = result.get("precision", "fixed point")
    for metric in names:
        loss = result.get("relative_loss", {}).get(metric)
        if loss is not None and loss > settings.fixed_point_tolerance:
            reasons.append(
                f"fixed-point emulation ({precision}) loses {loss:.1%} on {metric} "
                f"against float, above the {settings.fixed_point_tolerance:.0%} tolerance"
            )
    return reasons


def decide(
    metrics_doc: dict[str, Any],
    settings: ApproveSettings,
    champion: Champion | None = None,
    fixed_point: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Apply the gate to every model of one evaluation.

    Args:
        metrics_doc: the evaluation's metrics JSON (``gmt`` plus one entry per model).
        settings: margins and tolerances.
        champion: the current champion, scored on the same test split, or None.
        fixed_point: the fixed-point emulation results by model name, or None.

    Returns:
        ``{"model": name | None, "metrics": {...} | None, "rejections": {name: [reason, ...]},
        "ranking": [[name, ratio], ...]}``; ``rejections`` also lists passing
        models that were not chosen.
    """
    baseline = metrics_doc[BASELINE]
    names = metric_names(metrics_doc)
    rejections: dict[str, list[str]] = {}
    passing: list[tuple[float, str]] = []
    for name in candidate_names(metrics_doc):
        metrics = metrics_doc[name]
        missing = [m for m in names if m not in metrics]
        if missing:
            rejections[name] = [f"metrics JSON lacks {', '.join(missing)}"]
            continue
        reasons = check_baseline(metrics, baseline, settings, names)
        if champion is not None:
            reasons += check_champion(metrics, champion, settings, names)
        reasons += check_fixed_point((fixed_point or {}).get(name), settings, names)
        if reasons:
            rejections[name] = reasons
        else:
            passing.append((baseline_ratio(metrics, baseline, names), name))

    passing.sort()
    chosen = passing[0][1] if passing else None
    for ratio, name in passing[1:]:
        rejections[name] = [
            f"passed every check, but {chosen} ranks higher (mean RMSE ratio to L1 "
            f"{passing[0][0]:.4f} against {ratio:.4f})"
        ]
    return {
        "model": chosen,
        "metrics": metrics_doc[chosen] if chosen else None,
        "rejections": rejections,
        "ranking": [[name, round(ratio, 6)] for ratio, name in passing],
    }


def bundle_digest(directory: Path) -> str:
    """Return the SHA-256 of every file of a bundle folder, names and contents, in sorted order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        digest.update(path.relative_to(directory).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def default_model_dirs(models_root: Path, kind: str) -> list[Path]:
    """Return the ``<models_root>/<kind>/<family>`` folders that exist, sorted."""
    return sorted(path for path in (models_root / kind).glob("*") if path.is_dir())


def find_bundle(model_dirs: list[Path], kind: str, name: str) -> Path | None:
    """Return the first ``<folder>/<name>`` bundle trained for ``kind``, or None."""
    for folder in model_dirs:
        card_path = folder / name / MODEL_CARD_FILE
        if card_path.exists():
            card = json.loads(card_path.read_text())
            if card.get("task", "muon") == kind:
                return card_path.parent
    return None


def load_champion_record(
    champion_dir: Path | None, kind: str, champion_file: Path | None = None
) -> dict[str, Any] | None:
    """Return the champion record of ``kind``, or None when there is no champion yet.

    The registry folder's ``<kind>/champion.json`` comes first. Otherwise
    ``champion_file`` is read as an ``approved.json``-like mapping of kind to
    entry, of which approved entries count as champions.

    Raises:
        InputFileError: when a record exists but is not valid JSON.
    """
    if champion_dir is not None:
        path = champion_dir / kind / CHAMPION_RECORD
        if path.exists():
            return _read_json(
                path, f"restore it or delete {path.parent} to start without a champion"
            )
    if champion_file is not None and champion_file.exists():
        entry = _read_json(champion_file, "restore it or delete it").get(kind)
        if isinstance(entry, dict) and entry.get("approved") and entry.get("model"):
            return entry
    return None


def score_champion(
    record: dict[str, Any],
    bundle_dir: Path | None,
    kind: str,
    data_dir: Path | None,
) -> Champion:
    """Score the champion's bundle on the current test split in ``data_dir``.

    Without a test split or a bundle, the metrics stored with the record are
    used and the result is marked as not re-scored.

    Raises:
        ModelError: when the champion's bundle was trained for another task.
    """
    usable_bundle = bundle_dir is not None and (bundle_dir / MODEL_CARD_FILE).exists()
    if data_dir is None or not data_dir.exists() or not usable_bundle:
        logger.warning(
            "%s: champion %s not re-scored (no test split or no bundle); "
            "comparing with its stored metrics",
            kind,
            record.get("model"),
        )
        stored = {
            key: value
            for key, value in (record.get("metrics") or {}).items()
            if key != "test_rows"
        }
        return Champion(record, stored, rescored=False)

    from l1recal.data.preprocess import load_split
    from l1recal.models.bundle import load_bundle
    from l1recal.tasks import get_task

    model = load_bundle(bundle_dir)
    task = get_task(kind)
    if model.card.get("task", "muon") != kind:
        raise ModelError(
            f"{bundle_dir}: champion was trained for task "
            f"{model.card.get('task')!r}, not {kind!r}"
        )
    test = load_split(data_dir, "test")
    metrics = task.rmse(test, model.predict(test[list(task.inputs)].to_numpy()))
    logger.info(
        "%s champion %s on the current test split: %s",
        kind,
        record.get("model"),
        metrics,
    )
    return Champion(record, metrics, rescored=True)


def _champion_bundle(
    record: dict[str, Any], champion_dir: Path | None, kind: str
) -> Path | None:
    if champion_dir is not None and (champion_dir / kind / CHAMPION_RECORD).exists():
        return champion_dir / kind / CHAMPION_BUNDLE
    bundle = Path(record["bundle"]) if record.get("bundle") else None
    if bundle is None or not (bundle / MODEL_CARD_FILE).exists():
        return None
    # The record's bundle path may since contain a newly trained model of the same
    # name, so it counts only when its contents still match the record.
    if record.get("bundle_sha256") != bundle_digest(bundle):
        logger.warning(
            "%s: %s no longer contains champion %s (SHA-256 differs); not re-scoring it",
            kind,
            bundle,
            record.get("model"),
        )
        return None
    return bundle


def _champion_summary(champion: Champion | None) -> dict[str, Any] | None:
    if champion is None:
        return None
    return {
        "model": champion.record.get("model"),
        "family": champion.record.get("family"),
        "bundle_sha256": champion.record.get("bundle_sha256"),
        "approved_at": champion.record.get("approved_at"),
        "metrics_at_approval": champion.record.get("metrics"),
        "metrics": champion.metrics,
        "rescored_on_current_test": champion.rescored,
    }


def _read_json(path: Path, fix: str = "write it again") -> dict[str, Any]:
    try:
        document = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise InputFileError(f"{path}: invalid JSON ({error}); {fix}") from error
    if not isinstance(document, dict):
        raise InputFileError(f"{path}: expected a JSON object; {fix}")
    return document


def _empty_entry() -> dict[str, Any]:
    return {
        "approved": False,
        "model": None,
        "bundle": None,
        "family": None,
        "metrics": None,
        "replaced_champion": None,
        "champion": None,
        "data_version": data_version(),
        "code_version": code_version(),
        "rejections": {},
        "message": NO_MODEL_MESSAGE,
    }


def approve_kind(
    kind: str,
    metrics_path: Path,
    settings: ApproveSettings,
    model_dirs: list[Path],
    champion_dir: Path | None = None,
    data_dir: Path | None = None,
    fixed_point_path: Path | None = None,
    champion_file: Path | None = None,
) -> dict[str, Any]:
    """Return the ``approved.json`` entry of one kind.

    Args:
        kind: ``muon`` or ``jet``.
        metrics_path: the evaluation's metrics JSON; when missing, nothing is approved.
        settings: margins and tolerances.
        model_dirs: folders holding ``<name>/`` bundles. A model without a
            bundle there is rejected; with no folder at all the bundle check is
            skipped and ``bundle`` stays null.
        champion_dir: registry folder of the champions, or None.
        data_dir: pre-processed splits, to re-score the champion on their test split.
        fixed_point_path: ``<kind>_csim.json`` of the fixed-point emulation, if any.
        champion_file: ``approved.json``-like record of the served champions, if any.
    """
    entry = _empty_entry()
    if not metrics_path.exists():
        entry["detail"] = f"no {kind} evaluation: {metrics_path} not found"
        return entry

    metrics_doc = _read_json(metrics_path, "run 'l1recal evaluate' again")
    if BASELINE not in metrics_doc:
        raise InputFileError(
            f"{metrics_path}: no {BASELINE!r} entry; write it with 'l1recal evaluate'"
        )
    record = load_champion_record(champion_dir, kind, champion_file)
    champion = None
    if record is not None:
        bundle_dir = _champion_bundle(record, champion_dir, kind)
        champion = score_champion(record, bundle_dir, kind, data_dir)
    fixed_point = None
    if fixed_point_path is not None and fixed_point_path.exists():
        fixed_point = _read_json(fixed_point_path, "run 'l1recal hls csim' again")

    # A model without a bundle cannot be served, so it is rejected before the gate.
    names = candidate_names(metrics_doc)
    check_bundles = any(folder.is_dir() for folder in model_dirs)
    if not check_bundles:
        logger.warning(
            "%s: no model folder found (%s); bundles are not checked",
            kind,
            ", ".join(str(folder) for folder in model_dirs) or "none given",
        )
    bundles = {name: find_bundle(model_dirs, kind, name) for name in names}
    missing = {name for name in names if check_bundles and bundles[name] is None}
    gated = {key: value for key, value in metrics_doc.items() if key not in missing}
    decision = decide(gated, settings, champion, fixed_point)
    searched = ", ".join(str(folder) for folder in model_dirs)
    rejections = {
        name: [f"no {kind} bundle named {name} in {searched}"]
        for name in sorted(missing)
    }
    rejections.update(decision["rejections"])
    entry.update(
        rejections=rejections,
        champion=_champion_summary(champion),
        ranking=decision["ranking"],
    )
    if decision["model"] is None:
        stays = f"; champion {record.get('model')} stays" if record else ""
        entry["detail"] = f"every {kind} model was rejected{stays}"
        return entry

    name = decision["model"]
    bundle = bundles[name]
    card = json.loads((bundle / MODEL_CARD_FILE).read_text()) if bundle else {}
    digest = bundle_digest(bundle) if bundle else None
    unchanged = record is not None and (
        (digest is not None and record.get("bundle_sha256") == digest)
        or (digest is None and record.get("model") == name)
    )
    entry.update(
        approved=True,
        model=name,
        bundle=str(bundle) if bundle else None,
        family=card.get("family"),
        metrics=decision["metrics"],
        bundle_sha256=digest,
        replaced_champion=None if unchanged else _champion_summary(champion),
        data_version=card.get("data_version") or entry["data_version"],
        code_version=card.get("code_version") or entry["code_version"],
    )
    if unchanged:
        entry["message"] = f"{name} approved; it is the current champion"
    elif champion is not None:
        entry["message"] = f"{name} approved; replaces champion {record.get('model')}"
    else:
        entry["message"] = f"{name} approved; no previous champion"
    return entry


def promote(entry: dict[str, Any], kind: str, champion_dir: Path) -> bool:
    """Make an approved model the champion: copy its bundle and write its record, atomically.

    Returns:
        True when the champion changed; False when nothing was approved, the
        approved model has no bundle, or it already is the champion.
    """
    if not entry["approved"] or entry["bundle"] is None:
        return False
    current = load_champion_record(champion_dir, kind)
    if current is not None and current.get("bundle_sha256") == entry["bundle_sha256"]:
        return False
    record = {
        "model": entry["model"],
        "family": entry["family"],
        "metrics": entry["metrics"],
        "bundle_sha256": entry["bundle_sha256"],
        "source_bundle": entry["bundle"],
        "data_version": entry["data_version"],
        "code_version": entry["code_version"],
        "approved_at": datetime.datetime.now(datetime.UTC).isoformat(
            timespec="seconds"
        ),
    }
    with atomic_path(champion_dir / kind, is_dir=True) as staging:
        shutil.copytree(entry["bundle"], staging / CHAMPION_BUNDLE)
        (staging / CHAMPION_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    logger.info(
        "%s: %s promoted to champion in %s", kind, entry["model"], champion_dir / kind
    )
    return True


def run_approve(
    settings: ApproveSettings,
    metrics_paths: dict[str, Path],
    output_path: Path,
    model_dirs: list[Path] | None = None,
    champion_dir: Path | None = None,
    data_dirs: dict[str, Path | None] | None = None,
    fixed_point_paths: dict[str, Path | None] | None = None,
    promote_approved: bool = False,
    champion_file: Path | None = None,
    models_root: Path = Path("models"),
) -> dict[str, Any]:
    """Decide per kind, write ``approved.json`` and, with ``promote_approved``, update the champions.

    Args:
        settings: margins and tolerances.
        metrics_paths: evaluation metrics JSON per kind; a missing file means no
            model of that kind is approved.
        output_path: the ``approved.json`` to write.
        model_dirs: folders holding ``<name>/`` bundles of any kind; None
            searches ``<models_root>/<kind>/<family>/``.
        champion_dir: registry folder of the champions; None for none.
        data_dirs: pre-processed split folder per kind, to re-score the champion.
        fixed_point_paths: ``<kind>_csim.json`` per kind, where it exists.
        promote_approved: copy each newly approved model into ``champion_dir``.
        champion_file: ``approved.json``-like record of the served champions,
            used for a kind the registry has no champion of.
        models_root: root of the default model folders.

    Returns:
        The document written to ``output_path``.
    """
    document: dict[str, Any] = {}
    for kind in KINDS:
        folders = (
            model_dirs
            if model_dirs is not None
            else default_model_dirs(models_root, kind)
        )
        document[kind] = approve_kind(
            kind,
            metrics_paths[kind],
            settings,
            folders,
            champion_dir,
            (data_dirs or {}).get(kind),
            (fixed_point_paths or {}).get(kind),
            champion_file,
        )
        logger.info("%s: %s", kind, document[kind]["message"])
    write_json(output_path, document)
    if promote_approved and champion_dir is not None:
        for kind in KINDS:
            promote(document[kind], kind, champion_dir)
    return document
