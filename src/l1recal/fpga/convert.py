"""Conversion of a model bundle into an hls4ml project.

The firmware computes what the bundle's ``predict_scaled`` computes: it takes
the min-max scaled inputs (n, d) and returns the standard-scaled targets
(n, t). The scalers of ``scalers.json`` are applied outside the firmware, in
the software around it (and around the emulation in :mod:`l1recal.fpga.csim`).

The hls4ml configuration has per-layer ("name") granularity. Dense results stay
'auto': hls4ml 1.3 folds a BatchNorm into the preceding Dense only when that
Dense's result type is 'auto', and with model granularity the BatchNorm stays
a separate layer of its own, less precise, arithmetic. Weights and biases get
the default type, widened in integer bits where a value would overflow it.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from l1recal.config import HlsSettings
from l1recal.errors import ConfigError, L1RecalError
from l1recal.fpga.falkon_keras import falkon_layer_types, falkon_to_keras
from l1recal.fpga.precision import FixedType, parse_fixed, widen_to_fit
from l1recal.models.bundle import FALKON_FILE, KERAS_FILE, Recalibrator, load_bundle
from l1recal.models.falkon import FalkonSolution
from l1recal.models.kernels import Kernel

logger = logging.getLogger(__name__)

PROJECT_NAME = "l1recal_firmware"


class HlsError(L1RecalError):
    """An hls4ml conversion, compilation or synthesis step failed."""


@dataclass
class FirmwareSource:
    """A bundle prepared for conversion.

    Attributes:
        bundle_dir: the bundle folder.
        recalibrator: the loaded bundle (float reference and scalers).
        keras_model: Keras graph of the firmware, scaled inputs to scaled targets.
        solution: the Falkon centres and coefficients, None for networks.
    """

    bundle_dir: Path
    recalibrator: Recalibrator
    keras_model: Any
    solution: FalkonSolution | None = field(default=None)

    @property
    def name(self) -> str:
        """Model name from the model card."""
        return self.recalibrator.name

    @property
    def family(self) -> str:
        """``network`` or ``falkon``."""
        return str(self.recalibrator.card["family"])

    def layer_types(self, width: int) -> dict[str, dict[str, str]]:
        """Return the per-layer types the model family needs at total width ``width``."""
        if self.family == "falkon":
            return falkon_layer_types(self.keras_model, width)
        return {}


def load_source(bundle_dir: Path) -> FirmwareSource:
    """Load a bundle and its Keras graph for hls4ml.

    Raises:
        ModelError: when the bundle is incomplete or its kernel has no firmware form.
    """
    recalibrator = load_bundle(bundle_dir)
    family = recalibrator.card["family"]
    if family == "network":
        import keras

        model = keras.saving.load_model(bundle_dir / KERAS_FILE, compile=False)
        return FirmwareSource(bundle_dir, recalibrator, model)
    arrays = np.load(bundle_dir / FALKON_FILE)
    solution = FalkonSolution(
        Kernel(**recalibrator.card["kernel"]), arrays["centres"], arrays["coefficients"]
    )
    model = falkon_to_keras(solution, name=_keras_name(recalibrator.name))
    return FirmwareSource(bundle_dir, recalibrator, model, solution)


def _keras_name(name: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in name)


def folded_dense_weights(model: Any) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Return, per Dense layer followed by a BatchNorm, the weights after folding the BatchNorm in.

    The folded weights are w * s and bias (b - mean) * s + beta with
    s = gamma / sqrt(variance + epsilon), as hls4ml computes them; they size
    the fixed-point weight types.
    """
    import keras

    folded = {}
    layers = list(model.layers)
    for dense, norm in itertools.pairwise(layers):
        if not isinstance(dense, keras.layers.Dense) or not isinstance(
            norm, keras.layers.BatchNormalization
        ):
            continue
        if norm.input is not dense.output:
            continue
        weight, bias = _dense_weights(dense)
        mean = np.asarray(norm.moving_mean)
        variance = np.asarray(norm.moving_variance)
        gamma = np.asarray(norm.gamma) if norm.scale else np.ones_like(mean)
        beta = np.asarray(norm.beta) if norm.center else np.zeros_like(mean)
        scale = gamma / np.sqrt(variance + norm.epsilon)
        folded[dense.name] = (weight * scale, (bias - mean) * scale + beta)
    return folded


def _max_abs(values: np.ndarray) -> float:
    return float(np.max(np.abs(values))) if values.size else 0.0


def build_hls_config(
    model: Any,
    settings: HlsSettings,
    precision: str | None = None,
    model_types: dict[str, dict[str, str]] | None = None,
) -> dict:
    """Return the hls4ml configuration (per-layer granularity) of ``model``.

    Types are set in three layers, later ones winning: the defaults described in
    the module docstring, ``model_types`` (needs of the model family), then
    ``settings.layer_precision``.

    Args:
        model: Keras model.
        settings: the ``hls`` settings.
        precision: default type, e.g. ``ap_fixed<16,6>``; None uses ``settings.precision``.
        model_types: layer name -> {type key: type}.

    Raises:
        ConfigError: when ``settings.layer_precision`` names a layer the model lacks.
    """
    import hls4ml

    default = parse_fixed(precision or settings.precision)
    with quiet_hls4ml():
        config = hls4ml.utils.config_from_keras_model(
            model,
            granularity="name",
            backend=settings.backend,
            default_precision=str(default),
            default_reuse_factor=settings.reuse_factor,
        )
    config["Model"]["Strategy"] = settings.strategy
    keras_layers = {layer.name: layer for layer in model.layers}
    folded = folded_dense_weights(model)
    for name, layer_config in config["LayerName"].items():
        types = layer_config.setdefault("Precision", {})
        layer = keras_layers.get(name)
        _set_default_types(layer, types, default, folded.get(name))
        if "TableSize" in layer_config:
            layer_config["TableSize"] = settings.elu_table_size
    for source in (model_types or {}, settings.layer_precision):
        for name, types in source.items():
            if name not in config["LayerName"]:
                raise ConfigError(
                    f"hls.layer_precision: model {model.name!r} has no layer {name!r}; "
                    f"its layers are {', '.join(config['LayerName'])}"
                )
            config["LayerName"][name].setdefault("Precision", {}).update(types)
    return config


def _set_default_types(
    layer: Any,
    types: dict[str, str],
    default: FixedType,
    folded: tuple[np.ndarray, np.ndarray] | None,
) -> None:
    kind = type(layer).__name__ if layer is not None else "InputLayer"
    if kind == "Dense":
        weight, bias = folded if folded is not None else _dense_weights(layer)
        types["weight"] = str(widen_to_fit(default, _max_abs(weight)))
        types["bias"] = str(widen_to_fit(default, _max_abs(bias)))
        return
    if kind == "BatchNormalization":
        # These types matter only when the BatchNorm could not be folded.
        gamma = np.asarray(layer.gamma) if layer.scale else 1.0
        scale = gamma / np.sqrt(np.asarray(layer.moving_variance) + layer.epsilon)
        beta = np.asarray(layer.beta) if layer.center else 0.0
        shift = beta - np.asarray(layer.moving_mean) * scale
        types["scale"] = str(widen_to_fit(default, _max_abs(np.atleast_1d(scale))))
        types["bias"] = str(widen_to_fit(default, _max_abs(np.atleast_1d(shift))))
    if "result" in types:
        types["result"] = str(default)


def _dense_weights(layer: Any) -> tuple[np.ndarray, np.ndarray]:
    values = [np.asarray(v) for v in layer.get_weights()]
    bias = values[1] if len(values) > 1 else np.zeros(values[0].shape[-1])
    return values[0], bias


@contextlib.contextmanager
def quiet_hls4ml() -> Iterator[None]:
    """Send what hls4ml prints on stdout to this module's log at DEBUG level."""
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            yield
    finally:
        for line in buffer.getvalue().splitlines():
            logger.debug("hls4ml: %s", line)


def convert(
    source: FirmwareSource,
    settings: HlsSettings,
    output_dir: Path,
    precision: str | None = None,
    project_name: str = PROJECT_NAME,
) -> Any:
    """Convert a loaded bundle into an hls4ml ``ModelGraph`` whose project lives in ``output_dir``.

    The project files are written by ``graph.write()`` or ``graph.compile()``.

    Raises:
        HlsError: when hls4ml rejects the model.
    """
    import hls4ml

    width = parse_fixed(precision or settings.precision).width
    config = build_hls_config(
        source.keras_model, settings, precision, source.layer_types(width)
    )
    try:
        with quiet_hls4ml():
            graph = hls4ml.converters.convert_from_keras_model(
                source.keras_model,
                hls_config=config,
                output_dir=str(output_dir),
                project_name=project_name,
                backend=settings.backend,
                part=settings.part,
                clock_period=settings.clock_period_ns,
                io_type=settings.io_type,
            )
    except Exception as error:  # hls4ml raises bare Exception for unsupported layers
        raise HlsError(
            f"{source.bundle_dir}: hls4ml conversion failed: {error}"
        ) from error
    remaining = [
        layer.name
        for layer in graph.get_layers()
        if layer.class_name == "BatchNormalization"
    ]
    if remaining:
        logger.warning(
            "%s: BatchNorm layers %s were not folded into their Dense layers; "
            "leave those Dense result types 'auto' in hls.layer_precision",
            source.name,
            ", ".join(remaining),
        )
    return graph


def compile_graph(graph: Any) -> None:
    """Write the project and compile its C++ emulation library with g++.

    Raises:
        HlsError: when the compiler fails; the message names the project folder.
    """
    try:
        with quiet_hls4ml():
            graph.compile()
    except Exception as error:  # hls4ml raises bare Exception when build_lib.sh fails
        raise HlsError(
            f"{graph.config.get_output_dir()}: C++ compilation of the hls4ml project failed "
            f"({error}); check that g++ is on PATH"
        ) from error


def graph_layer_classes(graph: Any) -> list[str]:
    """Return the hls4ml layer classes of a converted graph, in order."""
    return [layer.class_name for layer in graph.get_layers()]
