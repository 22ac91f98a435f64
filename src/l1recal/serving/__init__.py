"""Serving of the approved models with BentoML.

:mod:`l1recal.serving.package` imports the models that the approval gate chose
into the BentoML model store, :mod:`l1recal.serving.requests` defines and
validates the request and response bodies, and :mod:`l1recal.serving.predict`
turns a validated request into re-calibrated values. The BentoML service itself
is ``serving/service.py`` at the repository root.
"""

from __future__ import annotations

#: Object kinds served, in the order of ``reports/approved.json``.
KINDS = ("muon", "jet")

#: BentoML model-store name of each kind's approved model.
MODEL_NAMES = {"muon": "l1recal-muon", "jet": "l1recal-jet"}

#: Label every imported model carries; the service loads only models with it set to "true".
APPROVED_LABEL = "approved"
