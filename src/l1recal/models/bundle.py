"""Saved models: one folder per model with everything needed to use it alone.

A bundle folder contains ``model_card.json`` (family, settings, training record,
data and code version), ``scalers.json`` (input min-max and target standard
scalers) and the weights: ``model.keras`` for networks, ``falkon.npz``
(centres and coefficients) for Falkon models.

:class:`Recalibrator` loads any bundle and maps physical L1 inputs
(pT GeV, eta, phi rad, sign) to physical corrections (dpT GeV, deta, dphi rad).
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from l1recal import __version__
from l1recal.errors import ModelError
from l1recal.models.falkon import FalkonSolution, predict_solution
from l1recal.models.kernels import Kernel
from l1recal.models.scalers import AffineScaler

MODEL_CARD_FILE = "model_card.json"
SCALERS_FILE = "scalers.json"
KERAS_FILE = "model.keras"
FALKON_FILE = "falkon.npz"


def code_version() -> str:
    """Return the package version and, inside a git checkout, the commit."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{commit}"


def data_version(dvc_file: Path = Path("data.dvc")) -> str | None:
    """Return the content hash DVC records for the raw data, or None outside a DVC checkout."""
    try:
        document = yaml.safe_load(dvc_file.read_text())
        return str(document["outs"][0]["md5"])
    except (OSError, KeyError, IndexError, TypeError, yaml.YAMLError):
        return None


def write_scalers(directory: Path, scalers: dict[str, AffineScaler]) -> None:
    """Write the input and target scalers into a bundle folder."""
    (directory / SCALERS_FILE).write_text(
        json.dumps({key: scaler.to_dict() for key, scaler in scalers.items()}, indent=2)
        + "\n"
    )


def write_card(directory: Path, card: dict[str, Any]) -> None:
    """Write the model card, adding the code and data versions."""
    card = {**card, "code_version": code_version(), "data_version": data_version()}
    (directory / MODEL_CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")


def save_falkon(directory: Path, solution: FalkonSolution) -> None:
    """Write the centres and coefficients of a Falkon model."""
    np.savez(
        directory / FALKON_FILE,
        centres=solution.centres,
        coefficients=solution.coefficients,
    )


@dataclass
class Recalibrator:
    """A loaded bundle.

    Attributes:
        name: model name.
        card: the model card.
        input_scaler: min-max scaler of the four inputs.
        target_scaler: standard scaler of the three corrections.
        predict_scaled: maps scaled inputs (n, 4) to scaled targets (n, 3).
    """

    name: str
    card: dict[str, Any]
    input_scaler: AffineScaler
    target_scaler: AffineScaler
    predict_scaled: Any

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        """Return physical corrections (n, 3) for physical L1 inputs (n, 4)."""
        scaled = self.predict_scaled(self.input_scaler.transform(inputs))
        return self.target_scaler.inverse(np.asarray(scaled, dtype=np.float64))


def load_bundle(directory: Path) -> Recalibrator:
    """Load a model bundle of either family.

    Raises:
        ModelError: when the folder lacks a file or names an unknown family.
    """
    card_path = directory / MODEL_CARD_FILE
    if not card_path.exists():
        raise ModelError(
            f"{directory}: no {MODEL_CARD_FILE}; not a model bundle written by 'l1recal train'"
        )
    card = json.loads(card_path.read_text())
    scalers = json.loads((directory / SCALERS_FILE).read_text())
    input_scaler = AffineScaler.from_dict(scalers["inputs"])
    target_scaler = AffineScaler.from_dict(scalers["targets"])

    family = card.get("family")
    if family == "network":
        import keras

        # compile=False: inference needs no loss, and the weighted training loss is a custom class.
        model = keras.saving.load_model(directory / KERAS_FILE, compile=False)

        def predict_scaled(x: np.ndarray) -> np.ndarray:
            return model.predict(x.astype(np.float32), batch_size=65_536, verbose=0)

    elif family == "falkon":
        arrays = np.load(directory / FALKON_FILE)
        solution = FalkonSolution(
            Kernel(**card["kernel"]), arrays["centres"], arrays["coefficients"]
        )

        def predict_scaled(x: np.ndarray) -> np.ndarray:
            return predict_solution(solution, x)

    else:
        raise ModelError(
            f"{card_path}: unknown model family {family!r}; expected 'network' or 'falkon'"
        )
    return Recalibrator(card["name"], card, input_scaler, target_scaler, predict_scaled)


def list_bundles(models_dir: Path) -> list[Path]:
    """Return the bundle folders directly under ``models_dir``, sorted by name."""
    if not models_dir.is_dir():
        return []
    return sorted(
        path for path in models_dir.iterdir() if (path / MODEL_CARD_FILE).exists()
    )
