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
from l1recal.evaluation.evaluate import BASELINE, NOISE_FLOOR
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


def baseline_ratio(
    metrics: dict[str, float], baseline: dict[str, float], names: list[str]
) -> float:
    """Return the mean over metrics of the model's RMSE divided by the L1 baseline's."""
    return sum(metrics[m] / baseline[m] for m in names) / len(names)


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


def find_bundle(models_root: Path, kind: str, name: str) -> Path | None:
    """Return ``<models_root>/<kind>/<family>/<name>`` when it holds a model card, else None."""
    matches = sorted((models_root / kind).glob(f"*/{name}/{MODEL_CARD_FILE}"))
    return matches[0].parent if matches else None


def load_champion_record(champion_dir: Path, kind: str) -> dict[str, Any] | None:
    """Return the stored champion record of ``kind``, or None when there is no champion yet.

    Raises:
        InputFileError: when the record exists but is not valid JSON.
    """
    path = champion_dir / kind / CHAMPION_RECORD
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise InputFileError(
            f"{path}: invalid champion record ({error}); restore it or delete "
            f"{path.parent} to start without a champion"
        ) from error


def score_champion(
    record: dict[str, Any], champion_dir: Path, kind: str, data_dir: Path | None
) -> Champion:
    """Score the champion's bundle on the current test split in ``data_dir``.

    Without a test split, the metrics stored at promotion are used and the
    result is marked as not re-scored.

    Raises:
        ModelError: when the champion's bundle is missing or of another task.
    """
    bundle_dir = champion_dir / kind / CHAMPION_BUNDLE
    if data_dir is None or not data_dir.exists():
        logger.warning(
            "%s: no test split given, comparing with the champion's stored metrics",
            kind,
        )
        return Champion(record, dict(record.get("metrics", {})), rescored=False)

    from l1recal.data.preprocess import load_split
    from l1recal.models.bundle import load_bundle
    from l1recal.tasks import get_task

    if not (bundle_dir / MODEL_CARD_FILE).exists():
        raise ModelError(
            f"{bundle_dir}: champion bundle missing although {CHAMPION_RECORD} exists; "
            f"restore it or delete {bundle_dir.parent} to start without a champion"
        )
    model = load_bundle(bundle_dir)
    task = get_task(kind)
    if model.card.get("task", "muon") != kind:
        raise ModelError(
            f"{bundle_dir}: champion was trained for task {model.card.get('task')!r}, not {kind!r}"
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


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise InputFileError(f"{path}: invalid JSON ({error})") from error


def approve_kind(
    kind: str,
    metrics_path: Path,
    settings: ApproveSettings,
    models_root: Path,
    champion_dir: Path | None,
    data_dir: Path | None,
    fixed_point_path: Path | None,
) -> dict[str, Any]:
    """Return the ``approved.json`` entry of one kind."""
    entry: dict[str, Any] = {
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
    if not metrics_path.exists():
        entry["detail"] = f"no {kind} evaluation: {metrics_path} not found"
        return entry

    metrics_doc = _read_json(metrics_path)
    if BASELINE not in metrics_doc:
        raise InputFileError(
            f"{metrics_path}: no {BASELINE!r} entry; write it with 'l1recal evaluate'"
        )
    record = load_champion_record(champion_dir, kind) if champion_dir else None
    champion = (
        score_champion(record, champion_dir, kind, data_dir)
        if record is not None and champion_dir is not None
        else None
    )
    fixed_point = None
    if fixed_point_path is not None and fixed_point_path.exists():
        fixed_point = _read_json(fixed_point_path)

    # A model without a bundle cannot be served, so it is rejected before the gate.
    bundles = {
        name: find_bundle(models_root, kind, name)
        for name in candidate_names(metrics_doc)
    }
    missing = {name for name, path in bundles.items() if path is None}
    gated = {key: value for key, value in metrics_doc.items() if key not in missing}
    decision = decide(gated, settings, champion, fixed_point)
    rejections = {
        name: [f"no bundle under {models_root / kind}/<family>/{name}"]
        for name in missing
    }
    rejections.update(decision["rejections"])

    entry["rejections"] = rejections
    entry["champion"] = _champion_summary(champion)
    entry["ranking"] = decision["ranking"]
    entry["champion_compared"] = champion is not None
    if decision["model"] is None:
        entry["detail"] = f"every {kind} model was rejected" + (
            f"; champion {record.get('model')} stays" if record else ""
        )
        return entry

    name = decision["model"]
    bundle = bundles[name]
    card = json.loads((bundle / MODEL_CARD_FILE).read_text())
    digest = bundle_digest(bundle)
    unchanged = record is not None and record.get("bundle_sha256") == digest
    entry.update(
        approved=True,
        model=name,
        bundle=str(bundle),
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


def promote(entry: dict[str, Any], kind: str, champion_dir: Path) -> None:
    """Make an approved model the champion: copy its bundle and write its record, atomically."""
    if not entry["approved"]:
        return
    current = load_champion_record(champion_dir, kind)
    if current is not None and current.get("bundle_sha256") == entry["bundle_sha256"]:
        return
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


def run_approve(
    settings: ApproveSettings,
    metrics_paths: dict[str, Path],
    output_path: Path,
    models_root: Path = Path("models"),
    champion_dir: Path | None = None,
    data_dirs: dict[str, Path] | None = None,
    fixed_point_dir: Path | None = None,
    promote_approved: bool = False,
) -> dict[str, Any]:
    """Decide per kind, write ``approved.json`` and, with ``promote_approved``, update the champions.

    Args:
        settings: margins and tolerances.
        metrics_paths: evaluation metrics JSON per kind; a missing file means no
            model of that kind is approved.
        output_path: the ``approved.json`` to write.
        models_root: folder holding ``<kind>/<family>/<name>/`` bundles.
        champion_dir: registry folder of the champions; None for no champion.
        data_dirs: pre-processed split folder per kind, to re-score the champion.
        fixed_point_dir: folder of ``<kind>_csim.json`` fixed-point results, if any.
        promote_approved: copy each newly approved model into ``champion_dir``.

    Returns:
        The document written to ``output_path``.
    """
    document: dict[str, Any] = {}
    for kind in KINDS:
        fixed_point_path = (
            fixed_point_dir / f"{kind}_csim.json" if fixed_point_dir else None
        )
        document[kind] = approve_kind(
            kind,
            metrics_paths[kind],
            settings,
            models_root,
            champion_dir,
            (data_dirs or {}).get(kind),
            fixed_point_path,
        )
        logger.info("%s: %s", kind, document[kind]["message"])
    write_json(output_path, document)
    if promote_approved and champion_dir is not None:
        for kind in KINDS:
            promote(document[kind], kind, champion_dir)
    return document
