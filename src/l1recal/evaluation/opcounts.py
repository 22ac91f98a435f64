"""Operations per inference: the study's approximate formula and an exact count.

Exact counts are taken from the loaded model itself, for one input row:

* Networks: every BatchNormalization is folded into the Dense layer before it,
  as firmware does, so it costs nothing at inference. A Dense layer of
  ``n_in`` inputs and ``n_out`` units costs ``n_in * n_out`` multiplications and
  ``n_in * n_out`` additions (``n_in - 1`` per unit for the sum plus one for the
  bias). A ReLU costs one comparison per unit.
* Falkon, per centre: the Gaussian kernel costs ``d`` subtractions, ``d``
  squares, ``d - 1`` additions, one multiplication by ``-1 / (2 sigma^2)`` and one
  exponential. The linear kernel costs a dot product (``d`` multiplications,
  ``d - 1`` additions, with ``1 / sigma^2`` folded into the centres) and one
  addition of beta. The polynomial kernel costs a dot product, one
  multiplication by alpha, one addition of beta, and the power by repeated
  squaring. The weighted sum over ``M`` centres costs ``M * t`` multiplications
  and ``(M - 1) * t`` additions for ``t`` outputs.

Subtractions count as additions and comparisons as non-linear operations. The
input and target scalers are affine maps: for networks they fold into the
first and last Dense layers, for Falkon they cost ``d + t`` multiplications
and as many additions, reported separately as ``scaling``.

The study's approximate formula is ``Hn * (d + Nl * Hn + t)`` per row for ``Nl``
hidden layers of ``Hn`` units (66,432 for 4 x 128, 3,296 for 3 x 32 with d = 4,
t = 3) and ``M * t`` per row for Falkon (300 for M = 100), without the kernel.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from l1recal.errors import ModelError
from l1recal.models.bundle import FALKON_FILE, KERAS_FILE, MODEL_CARD_FILE
from l1recal.models.kernels import Kernel


@dataclass(frozen=True)
class OpCount:
    """Arithmetic operations of one inference on one input row.

    Attributes:
        multiplications: multiplications, squares included.
        additions: additions and subtractions.
        exponentials: evaluations of exp.
        nonlinear: other non-linear operations (ReLU comparisons, other activations).
    """

    multiplications: int = 0
    additions: int = 0
    exponentials: int = 0
    nonlinear: int = 0

    @property
    def total(self) -> int:
        """Sum of all operations."""
        return (
            self.multiplications + self.additions + self.exponentials + self.nonlinear
        )

    def __add__(self, other: OpCount) -> OpCount:
        return OpCount(
            self.multiplications + other.multiplications,
            self.additions + other.additions,
            self.exponentials + other.exponentials,
            self.nonlinear + other.nonlinear,
        )

    def to_dict(self) -> dict[str, int]:
        """Return the counts and their total as a JSON-serialisable mapping."""
        return {**asdict(self), "total": self.total}


@dataclass(frozen=True)
class FoldedDense:
    """A Dense layer with any following BatchNormalization folded in.

    Attributes:
        kernel: weights (n_in, n_out).
        bias: bias (n_out,).
        activation: ``linear``, ``relu`` or the name of another activation.
    """

    kernel: np.ndarray
    bias: np.ndarray
    activation: str


def _activation_name(layer: Any) -> str:
    activation = getattr(layer, "activation", None)
    if activation is None:
        return "linear"
    return getattr(activation, "__name__", str(activation))


def fold_batchnorm(model: Any) -> list[FoldedDense]:
    """Fold every BatchNormalization of a Keras Sequential model into the Dense layer before it.

    A BatchNormalization computes ``gamma * (z - mean) / sqrt(var + eps) + beta``
    on the Dense output ``z = x W + b``. With ``s = gamma / sqrt(var + eps)`` the
    pair is one Dense layer with weights ``W * s`` and bias ``(b - mean) * s + beta``.

    Args:
        model: a Keras model whose layers are Dense, BatchNormalization, ReLU,
            Activation, Dropout or InputLayer, in sequence.

    Returns:
        The folded Dense layers in order; evaluating them reproduces the model's
        inference output.

    Raises:
        ModelError: on a layer type the count does not know, or a
            BatchNormalization that does not follow a Dense layer.
    """
    folded: list[FoldedDense] = []
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "Dense":
            kernel, bias = _dense_weights(layer)
            folded.append(FoldedDense(kernel, bias, _activation_name(layer)))
        elif kind == "BatchNormalization":
            if not folded or folded[-1].activation != "linear":
                raise ModelError(
                    f"layer {layer.name}: BatchNormalization must follow a Dense layer "
                    "without activation to be folded"
                )
            folded[-1] = _fold_one(folded[-1], layer)
        elif kind in ("ReLU", "Activation"):
            if not folded or folded[-1].activation != "linear":
                raise ModelError(
                    f"layer {layer.name}: activation must follow a Dense layer without activation"
                )
            name = "relu" if kind == "ReLU" else _activation_name(layer)
            previous = folded[-1]
            folded[-1] = FoldedDense(previous.kernel, previous.bias, name)
        elif kind in ("InputLayer", "Dropout"):
            continue
        else:
            raise ModelError(
                f"layer {layer.name}: cannot count operations of a {kind} layer; "
                "supported: Dense, BatchNormalization, ReLU, Activation, Dropout"
            )
    return folded


def _dense_weights(layer: Any) -> tuple[np.ndarray, np.ndarray]:
    weights = layer.get_weights()
    kernel = np.asarray(weights[0], dtype=np.float64)
    if len(weights) > 1:
        bias = np.asarray(weights[1], dtype=np.float64)
    else:
        bias = np.zeros(kernel.shape[1])
    return kernel, bias


def _fold_one(dense: FoldedDense, batchnorm: Any) -> FoldedDense:
    config = batchnorm.get_config()
    weights = iter(batchnorm.get_weights())
    units = dense.kernel.shape[1]
    gamma = np.asarray(next(weights)) if config.get("scale", True) else np.ones(units)
    beta = np.asarray(next(weights)) if config.get("center", True) else np.zeros(units)
    mean = np.asarray(next(weights))
    variance = np.asarray(next(weights))
    scale = gamma / np.sqrt(variance + config["epsilon"])
    return FoldedDense(
        dense.kernel * scale[None, :], (dense.bias - mean) * scale + beta, "linear"
    )


def evaluate_folded(layers: list[FoldedDense], x: np.ndarray) -> np.ndarray:
    """Evaluate folded layers on scaled inputs ``x`` (n, d); returns (n, t) in float64.

    Raises:
        ModelError: on an activation other than linear or ReLU.
    """
    output = np.asarray(x, dtype=np.float64)
    for layer in layers:
        output = output @ layer.kernel + layer.bias
        if layer.activation == "relu":
            output = np.maximum(output, 0.0)
        elif layer.activation != "linear":
            raise ModelError(f"cannot evaluate activation {layer.activation!r}")
    return output


def network_opcount(layers: list[FoldedDense]) -> OpCount:
    """Count the operations of folded Dense layers for one input row."""
    total = OpCount()
    for layer in layers:
        n_in, n_out = layer.kernel.shape
        total += OpCount(multiplications=n_in * n_out, additions=n_in * n_out)
        if layer.activation != "linear":
            total += OpCount(nonlinear=n_out)
    return total


def network_study_formula(
    n_inputs: int, layers: int, units: int, n_outputs: int
) -> int:
    """Return the study's approximate count ``Hn * (d + Nl * Hn + t)`` for one row."""
    return units * (n_inputs + layers * units + n_outputs)


def power_multiplications(degree: int) -> int:
    """Return the multiplications of x**degree by repeated squaring (0 for degree 1)."""
    if degree < 1:
        raise ModelError(f"polynomial degree must be at least 1, got {degree}")
    return degree.bit_length() - 1 + bin(degree).count("1") - 1


def kernel_opcount(kernel: Kernel, n_inputs: int) -> OpCount:
    """Count the operations of one kernel evaluation k(x, c) for ``n_inputs`` features."""
    d = n_inputs
    if kernel.name == "gaussian":
        return OpCount(multiplications=d + 1, additions=2 * d - 1, exponentials=1)
    if kernel.name == "linear":
        return OpCount(multiplications=d, additions=d)
    return OpCount(
        multiplications=d + 1 + power_multiplications(kernel.degree), additions=d
    )


def falkon_opcount(
    kernel: Kernel, centres: int, n_inputs: int, n_outputs: int
) -> OpCount:
    """Count the operations of a Falkon prediction for one row: M kernels and the weighted sum."""
    per_centre = kernel_opcount(kernel, n_inputs)
    weighted_sum = OpCount(
        multiplications=centres * n_outputs, additions=(centres - 1) * n_outputs
    )
    return (
        OpCount(
            multiplications=per_centre.multiplications * centres,
            additions=per_centre.additions * centres,
            exponentials=per_centre.exponentials * centres,
            nonlinear=per_centre.nonlinear * centres,
        )
        + weighted_sum
    )


def falkon_study_formula(centres: int, n_outputs: int) -> int:
    """Return the study's approximate count ``M * t`` for one row (kernel excluded)."""
    return centres * n_outputs


def scaling_opcount(n_inputs: int, n_outputs: int) -> OpCount:
    """Count the affine input and target scalers: one multiplication and one addition per value."""
    return OpCount(multiplications=n_inputs + n_outputs, additions=n_inputs + n_outputs)


def count_keras_model(model: Any) -> dict[str, Any]:
    """Return the exact and approximate counts of a Keras network.

    Returns:
        ``{"exact": {...}, "study_formula": int, "layers": [[n_in, n_out, activation], ...],
        "batchnorm_folded": True}``.
    """
    layers = fold_batchnorm(model)
    hidden = layers[:-1]
    n_inputs = layers[0].kernel.shape[0]
    n_outputs = layers[-1].kernel.shape[1]
    units = hidden[0].kernel.shape[1] if hidden else 0
    return {
        "exact": network_opcount(layers).to_dict(),
        "study_formula": network_study_formula(n_inputs, len(hidden), units, n_outputs),
        "layers": [
            [int(layer.kernel.shape[0]), int(layer.kernel.shape[1]), layer.activation]
            for layer in layers
        ],
        "batchnorm_folded": True,
    }


def count_falkon(
    kernel: Kernel, centres: np.ndarray, coefficients: np.ndarray
) -> dict[str, Any]:
    """Return the exact and approximate counts of a Falkon model.

    Args:
        kernel: the kernel.
        centres: (M, d) Nystrom centres.
        coefficients: (M, t) weights.
    """
    n_centres, n_inputs = centres.shape
    n_outputs = coefficients.shape[1]
    return {
        "exact": falkon_opcount(kernel, n_centres, n_inputs, n_outputs).to_dict(),
        "per_kernel": kernel_opcount(kernel, n_inputs).to_dict(),
        "study_formula": falkon_study_formula(n_centres, n_outputs),
        "scaling": scaling_opcount(n_inputs, n_outputs).to_dict(),
        "centres": int(n_centres),
        "kernel": kernel.name,
    }


def count_bundle(directory: Path) -> dict[str, Any]:
    """Return the operation counts of a saved model bundle of either family.

    Raises:
        ModelError: when the bundle is of an unknown family or has an unsupported layer.
    """
    card = json.loads((directory / MODEL_CARD_FILE).read_text())
    family = card.get("family")
    if family == "network":
        import keras

        # compile=False: counting needs no loss, and a training loss may be a custom class.
        model = keras.saving.load_model(directory / KERAS_FILE, compile=False)
        counts = count_keras_model(model)
    elif family == "falkon":
        arrays = np.load(directory / FALKON_FILE)
        counts = count_falkon(
            Kernel(**card["kernel"]), arrays["centres"], arrays["coefficients"]
        )
    else:
        raise ModelError(
            f"{directory / MODEL_CARD_FILE}: unknown model family {family!r}; "
            "expected 'network' or 'falkon'"
        )
    return {"family": family, **counts}
