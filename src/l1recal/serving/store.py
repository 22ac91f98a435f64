"""Loading the approved models from the BentoML model store, for the service.

The service loads the latest ``l1recal-muon`` and ``l1recal-jet`` of the store
it runs with (``BENTOML_HOME``, or the models of a built bento). A stored model
without the label ``approved=true`` is rejected with :class:`ModelError`, so a
model that bypassed ``l1recal package`` is never served.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from l1recal.errors import ModelError
from l1recal.models.bundle import KERAS_FILE, Recalibrator, load_bundle
from l1recal.serving import APPROVED_LABEL, MODEL_NAMES
from l1recal.serving.predict import check_model_inputs

logger = logging.getLogger(__name__)


@dataclass
class ServedModel:
    """An approved model loaded for serving.

    Attributes:
        kind: ``muon`` or ``jet``.
        tag: the BentoML model tag.
        recalibrator: the loaded bundle.
        info: labels, metadata and creation time, as returned by the model-info endpoint.
    """

    kind: str
    tag: str
    recalibrator: Recalibrator
    info: dict[str, Any] = field(default_factory=dict)


def direct_network_call(bundle_dir: Path) -> Callable[[np.ndarray], np.ndarray]:
    """Return a predictor of scaled targets (n, t) from scaled inputs (n, k) that calls the Keras model directly.

    ``keras.Model.predict`` builds a tf.data pipeline on every call, which
    costs far more than the network itself for the small batches a service
    receives; a direct call in inference mode computes the same outputs.
    """
    import keras

    model = keras.saving.load_model(bundle_dir / KERAS_FILE, compile=False)

    def predict_scaled(x: np.ndarray) -> np.ndarray:
        return np.asarray(model(x.astype(np.float32), training=False))

    return predict_scaled


def load_approved_model(kind: str) -> ServedModel | None:
    """Load the latest stored model of ``kind``.

    Returns:
        The loaded model, or None when the store contains no model of that kind.

    Raises:
        ModelError: when the stored model is not labelled approved, is not a
            bundle of ``kind``, or fails to load.
    """
    import bentoml
    from bentoml.exceptions import NotFound

    name = MODEL_NAMES[kind]
    try:
        stored = bentoml.models.get(f"{name}:latest")
    except NotFound:
        return None
    tag = str(stored.tag)
    labels = dict(stored.info.labels)
    if labels.get(APPROVED_LABEL) != "true":
        raise ModelError(
            f"{tag}: stored model lacks the label {APPROVED_LABEL}=true; only models "
            "imported by 'l1recal package' from an approval record are served"
        )
    start = time.perf_counter()
    recalibrator = load_bundle(Path(stored.path))
    if recalibrator.card.get("family") == "network":
        recalibrator = dataclasses.replace(
            recalibrator, predict_scaled=direct_network_call(Path(stored.path))
        )
    task = recalibrator.card.get("task", "muon")
    if task != kind:
        raise ModelError(f"{tag}: bundle was trained for task {task!r}, not {kind!r}")
    check_model_inputs(recalibrator, kind)
    info = {
        "tag": tag,
        "model": recalibrator.name,
        "family": recalibrator.card.get("family"),
        "labels": labels,
        "metadata": dict(stored.info.metadata),
        "created": stored.info.creation_time.isoformat(),
    }
    logger.info(
        "model loaded: kind=%s tag=%s family=%s seconds=%.2f",
        kind,
        tag,
        info["family"],
        time.perf_counter() - start,
    )
    return ServedModel(kind, tag, recalibrator, info)
