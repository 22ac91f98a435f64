"""Keras networks of the study: Nl blocks of Dense(Hn) + BatchNorm + ReLU, then a linear output.

Presets are the study's Table 6 IDs (there is no ID 5). TensorFlow is imported
inside the functions so that the CLI and the data stages start without it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from l1recal.errors import ConfigError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class NetworkPreset:
    """One network configuration.

    Attributes:
        preset_id: the study's model ID.
        loss: ``mse`` or ``logcosh``.
        l2: L2 kernel regularisation factor of the hidden Dense layers, 0 for none.
        layers: number Nl of hidden blocks.
        units: width Hn of each hidden Dense layer.
    """

    preset_id: int
    loss: Literal["mse", "logcosh"]
    l2: float
    layers: int
    units: int

    @property
    def name(self) -> str:
        """Model name used in reports and bundle folders, e.g. ``nn_id4``."""
        return f"nn_id{self.preset_id}"


NETWORK_PRESETS: dict[int, NetworkPreset] = {
    preset.preset_id: preset
    for preset in (
        NetworkPreset(1, "mse", 0.0, 4, 128),
        NetworkPreset(2, "mse", 1e-5, 4, 128),
        NetworkPreset(3, "logcosh", 0.0, 4, 128),
        NetworkPreset(4, "logcosh", 1e-5, 4, 128),
        NetworkPreset(6, "mse", 0.0, 3, 32),
        NetworkPreset(7, "mse", 1e-5, 3, 32),
        NetworkPreset(8, "logcosh", 0.0, 3, 32),
        NetworkPreset(9, "logcosh", 1e-5, 3, 32),
    )
}


def get_preset(preset_id: int) -> NetworkPreset:
    """Return a preset by ID, raising :class:`ConfigError` with the valid IDs otherwise."""
    try:
        return NETWORK_PRESETS[preset_id]
    except KeyError:
        valid = ", ".join(str(key) for key in NETWORK_PRESETS)
        raise ConfigError(
            f"unknown network preset ID {preset_id} in train_network.presets; valid IDs: {valid}"
        ) from None


def build_network(preset: NetworkPreset, n_inputs: int, n_outputs: int) -> Any:
    """Build and compile the Keras model of ``preset`` (Adam with default settings)."""
    import keras

    regulariser = keras.regularizers.L2(preset.l2) if preset.l2 > 0 else None
    layers: list[Any] = [keras.Input(shape=(n_inputs,), name="l1_inputs")]
    for index in range(preset.layers):
        layers += [
            keras.layers.Dense(
                preset.units, kernel_regularizer=regulariser, name=f"dense_{index}"
            ),
            keras.layers.BatchNormalization(name=f"batchnorm_{index}"),
            keras.layers.ReLU(name=f"relu_{index}"),
        ]
    layers.append(keras.layers.Dense(n_outputs, name="corrections"))
    model = keras.Sequential(layers, name=preset.name)
    loss = (
        keras.losses.LogCosh()
        if preset.loss == "logcosh"
        else keras.losses.MeanSquaredError()
    )
    model.compile(optimizer=keras.optimizers.Adam(), loss=loss)
    return model


class _EpochLogger:
    """Keras callback factory that logs one line per epoch."""

    @staticmethod
    def create(name: str) -> Any:
        import keras

        class EpochLogger(keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
                logs = logs or {}
                logger.info(
                    "%s epoch %d: loss %.5f, val_loss %.5f",
                    name,
                    epoch + 1,
                    logs.get("loss"),
                    logs.get("val_loss"),
                )

        return EpochLogger()


@dataclass
class TrainingRecord:
    """Record of one training run, for the model card."""

    epochs_run: int
    best_epoch: int
    best_val_loss: float
    seconds: float
    history: dict[str, list[float]]


def weighted_loss(loss: str, n_targets: int) -> Any:
    """Return a Keras loss that weights each target column per sample.

    It expects ``y_true`` of shape (n, 2 t): the t targets followed by their t
    weights, and averages weight * loss(prediction - target) over the columns.
    """
    import keras

    @keras.saving.register_keras_serializable(package="l1recal")
    class WeightedTargetLoss(keras.losses.Loss):
        def __init__(
            self, base: str = loss, targets: int = n_targets, **kwargs: Any
        ) -> None:
            super().__init__(name=f"weighted_{base}", **kwargs)
            self.base = base
            self.targets = targets

        def call(self, y_true: Any, y_pred: Any) -> Any:
            ops = keras.ops
            error = y_pred - y_true[:, : self.targets]
            if self.base == "logcosh":
                # log(cosh(e)) = e + softplus(-2 e) - log 2, stable for large |e|.
                per_element = error + ops.softplus(-2.0 * error) - np.log(2.0)
            else:
                per_element = ops.square(error)
            return ops.mean(per_element * y_true[:, self.targets :], axis=-1)

        def get_config(self) -> dict:
            return {**super().get_config(), "base": self.base, "targets": self.targets}

    return WeightedTargetLoss()


def train_network(
    preset: NetworkPreset,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    batch_size: int,
    max_epochs: int,
    patience: int,
    seed: int,
    w_train: np.ndarray | None = None,
    w_val: np.ndarray | None = None,
) -> tuple[Any, TrainingRecord]:
    """Train ``preset`` with early stopping on the validation loss, restoring the best weights.

    Args:
        x_train, x_val: scaled inputs, (n, d) float32.
        y_train, y_val: scaled targets, (n, t) float32.
        w_train, w_val: optional per-target loss weights, (n, t); both or neither.

    Returns:
        The trained Keras model and its training record.
    """
    import keras

    keras.utils.set_random_seed(seed)
    model = build_network(preset, x_train.shape[1], y_train.shape[1])
    if w_train is not None and w_val is not None:
        model.compile(
            optimizer=keras.optimizers.Adam(),
            loss=weighted_loss(preset.loss, y_train.shape[1]),
        )
        y_train = np.concatenate([y_train, w_train], axis=1)
        y_val = np.concatenate([y_val, w_val], axis=1)
    stopping = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=patience, restore_best_weights=True
    )
    start = time.perf_counter()
    history = model.fit(
        x_train.astype(np.float32),
        y_train.astype(np.float32),
        validation_data=(x_val.astype(np.float32), y_val.astype(np.float32)),
        batch_size=batch_size,
        epochs=max_epochs,
        shuffle=True,
        verbose=0,
        callbacks=[stopping, _EpochLogger.create(preset.name)],
    )
    seconds = time.perf_counter() - start
    val_loss = [float(v) for v in history.history["val_loss"]]
    best_epoch = int(np.argmin(val_loss))
    record = TrainingRecord(
        epochs_run=len(val_loss),
        best_epoch=best_epoch + 1,
        best_val_loss=val_loss[best_epoch],
        seconds=seconds,
        history={
            key: [float(v) for v in values] for key, values in history.history.items()
        },
    )
    return model, record


def preset_card(preset: NetworkPreset) -> dict:
    """Return the preset's settings for the model card."""
    return asdict(preset)
