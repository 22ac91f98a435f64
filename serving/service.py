"""BentoML service of the approved L1 muon and jet re-calibration models.

Run from the repository root with the approved models in the BentoML model
store (``l1recal package``, or ``bentoml models import`` of its exports)::

    BENTOML_DO_NOT_TRACK=true bentoml serve serving.service:L1Recal --host 127.0.0.1 --port 3000

Endpoints (all POST, JSON bodies):

* ``/predict/muon``: a batch of muons as uGMT hardware integers, as arrays or
  records. It returns the L1 values in physical units and the re-calibrated
  pT, eta and phi of every muon.
* ``/predict/jet``: a batch of jets as calo-layer-2 integers; returns the
  calibrated pT.
* ``/predict/muon/adaptive``, ``/predict/jet/adaptive``: small requests
  (usually one object) that BentoML's adaptive batcher merges into one model
  call.
* ``/models``: tag, labels and metadata of the loaded models.

``/livez``, ``/readyz`` (200 only when the models are loaded) and ``/metrics``
(Prometheus) are BentoML's. Settings come from the ``serving`` section of the
parameter file named by the environment variable ``L1RECAL_PARAMS``, or the
defaults of :class:`l1recal.config.ServingSettings` when it is unset.

The service loads only the models of its own store that carry the label
``approved=true``. No request names a model, a tag or a file: requests carry
integers only, and only ``application/json`` bodies are accepted.
"""

from __future__ import annotations

import logging
import os
from typing import Annotated, Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import bentoml
import pydantic
from bentoml.exceptions import ServiceUnavailable
from pydantic import Field

from l1recal.config import ServingSettings, load_section
from l1recal.errors import L1RecalError
from l1recal.serving import KINDS
from l1recal.serving.guard import RequestGuard, should_log_rejection
from l1recal.serving.predict import predict_jets, predict_muons
from l1recal.serving.requests import (
    JET_COLUMNS,
    MUON_COLUMNS,
    JetPrediction,
    JetPredictions,
    JetRecord,
    MuonPrediction,
    MuonPredictions,
    MuonRecord,
    batch_request_models,
    records_to_arrays,
)
from l1recal.serving.store import ServedModel, load_approved_model

logger = logging.getLogger("l1recal.serving.service")


def configure_logging() -> None:
    """Send the l1recal loggers' records to stderr; BentoML configures only its own loggers."""
    package_logger = logging.getLogger("l1recal")
    if package_logger.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(
        logging.Formatter(
            "%(asctime)s [%(levelname)s] [%(name)s] %(message)s",
            datefmt="%Y-%m-%dT%H:%M:%S%z",
        )
    )
    package_logger.addHandler(handler)
    package_logger.setLevel(os.environ.get("L1RECAL_LOG_LEVEL", "INFO").upper())
    package_logger.propagate = False


class RejectedRequestFilter(logging.Filter):
    """Turn BentoML's traceback for a rejected request (HTTP 400) into one warning line.

    BentoML logs every pydantic ValidationError of a request body with its full
    traceback at ERROR. A client's invalid input is not a server error, so the
    record becomes the guard's ``request rejected`` warning, counted and
    rate-limited with the guard's own rejections.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, pydantic.ValidationError):
            return True
        count = RequestGuard.count_rejection()
        if not should_log_rejection(count):
            return False
        first = error.errors(include_url=False)[0] if error.error_count() else {}
        field = ".".join(str(part) for part in first.get("loc", ()))
        path = record.args[0] if record.args else "?"
        record.msg = "request rejected: path=%s status=400 error=%s rejections=%d"
        record.args = (path, f"{field}: {first.get('msg', '')}", count)
        record.exc_info = None
        record.exc_text = None
        record.levelno = logging.WARNING
        record.levelname = "WARNING"
        return True


configure_logging()
logging.getLogger("bentoml._internal.server.http_app").addFilter(
    RejectedRequestFilter()
)


def load_settings() -> ServingSettings:
    """Read the ``serving`` section of the file in L1RECAL_PARAMS, or return the defaults."""
    path = os.environ.get("L1RECAL_PARAMS")
    if not path:
        return ServingSettings()
    return load_section(path, "serving", ServingSettings)


SETTINGS = load_settings()
_REQUESTS = batch_request_models(SETTINGS.max_batch_size)
MuonBatch = _REQUESTS.muon
JetBatch = _REQUESTS.jet

AdaptiveMuons = Annotated[
    list[MuonRecord],
    Field(min_length=1, max_length=SETTINGS.adaptive_max_batch_size),
]
AdaptiveJets = Annotated[
    list[JetRecord],
    Field(min_length=1, max_length=SETTINGS.adaptive_max_batch_size),
]


@bentoml.service(
    name="l1recal",
    description="Re-calibration of CMS Level-1 trigger muons and jets.",
    workers=SETTINGS.workers,
    traffic={"timeout": 60},
)
class L1Recal:
    """The approved muon and jet models behind one HTTP service."""

    def __init__(self) -> None:
        self.models: dict[str, ServedModel] = {}
        self.load_errors: dict[str, str] = {}
        for kind in KINDS:
            try:
                model = load_approved_model(kind)
            except L1RecalError as error:
                logger.error("model load failed: kind=%s error=%s", kind, error)
                self.load_errors[kind] = str(error)
                continue
            except Exception as error:
                # Keras, torch and numpy raise many types for a damaged bundle;
                # any of them leaves the service running but not ready.
                logger.exception("model load failed: kind=%s error=%r", kind, error)
                self.load_errors[kind] = repr(error)
                continue
            if model is None:
                logger.warning(
                    "no approved model: kind=%s; its endpoints return 503", kind
                )
                continue
            self.models[kind] = model
        RequestGuard.loaded_kinds = frozenset(self.models)
        logger.info(
            "service started: loaded=%s failed=%s required=%s max_batch_size=%d "
            "adaptive_max_batch_size=%d",
            ",".join(sorted(self.models)) or "none",
            ",".join(sorted(self.load_errors)) or "none",
            ",".join(SETTINGS.required_kinds) or "stored",
            SETTINGS.max_batch_size,
            SETTINGS.adaptive_max_batch_size,
        )

    def __is_ready__(self) -> bool:
        """Report ready when no stored model failed to load and the required kinds are loaded."""
        if self.load_errors:
            return False
        if SETTINGS.required_kinds:
            return all(kind in self.models for kind in SETTINGS.required_kinds)
        return bool(self.models)

    def _model(self, kind: str) -> ServedModel:
        model = self.models.get(kind)
        if model is None:
            # RequestGuard rejects these requests with 503 and a message first;
            # this covers a request that reaches the method anyway.
            raise ServiceUnavailable(f"no approved {kind} model is loaded")
        return model

    @bentoml.api(route="/predict/muon")
    def predict_muon(self, request: MuonBatch, /) -> MuonPredictions:  # type: ignore[valid-type]
        """Re-calibrate a batch of L1 muons given as uGMT hardware integers."""
        model = self._model("muon")
        values = predict_muons(model.recalibrator, request.hardware_arrays())
        return MuonPredictions(
            model=model.tag, **{key: array.tolist() for key, array in values.items()}
        )

    @bentoml.api(route="/predict/jet")
    def predict_jet(self, request: JetBatch, /) -> JetPredictions:  # type: ignore[valid-type]
        """Calibrate the pT of a batch of L1 jets given as calo-layer-2 hardware integers."""
        model = self._model("jet")
        values = predict_jets(model.recalibrator, request.hardware_arrays())
        return JetPredictions(
            model=model.tag, **{key: array.tolist() for key, array in values.items()}
        )

    @bentoml.api(
        route="/predict/muon/adaptive",
        batchable=True,
        max_batch_size=SETTINGS.adaptive_max_batch_size,
        max_latency_ms=SETTINGS.adaptive_max_latency_ms,
    )
    def predict_muon_adaptive(self, muons: AdaptiveMuons) -> list[MuonPrediction]:
        """Re-calibrate muons of concurrent small requests, merged into one model call."""
        model = self._model("muon")
        values = predict_muons(
            model.recalibrator, records_to_arrays(muons, MUON_COLUMNS)
        )
        return [
            MuonPrediction(**row)
            for row in _rows(
                values, ("ptL1", "etaL1", "phiL1", "charge", "pt", "eta", "phi")
            )
        ]

    @bentoml.api(
        route="/predict/jet/adaptive",
        batchable=True,
        max_batch_size=SETTINGS.adaptive_max_batch_size,
        max_latency_ms=SETTINGS.adaptive_max_latency_ms,
    )
    def predict_jet_adaptive(self, jets: AdaptiveJets) -> list[JetPrediction]:
        """Calibrate jets of concurrent small requests, merged into one model call."""
        model = self._model("jet")
        values = predict_jets(model.recalibrator, records_to_arrays(jets, JET_COLUMNS))
        return [
            JetPrediction(**row)
            for row in _rows(values, ("ptL1", "etaL1", "phiL1", "pt"))
        ]

    @bentoml.api(route="/models")
    def model_info(self) -> dict[str, Any]:
        """Return, per kind, the loaded model's tag, labels and metadata, or null when none is loaded."""
        return {
            kind: self.models[kind].info if kind in self.models else None
            for kind in KINDS
        }


def _rows(values: dict[str, Any], keys: tuple[str, ...]) -> list[dict[str, Any]]:
    columns = [values[key].tolist() for key in keys]
    return [dict(zip(keys, row, strict=True)) for row in zip(*columns, strict=True)]


L1Recal.add_asgi_middleware(
    RequestGuard,
    max_body_bytes=RequestGuard.body_limit(SETTINGS.max_batch_size),
)
