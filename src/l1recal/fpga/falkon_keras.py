"""Falkon models as Keras graphs of layers that hls4ml converts.

A Falkon model predicts f(x) = sum_j alpha_j k(x, c_j) over M centres c_j.
hls4ml 1.3 has no exponential or power layer, so each kernel is rewritten in
stock layers (Dense, Multiply, Concatenate, ELU):

* linear, k = beta + x.c / sigma^2: f is affine in x, so the model collapses to
  one Dense layer with weights C^T alpha / sigma^2 and bias beta sum_j alpha_j.
* Gaussian, k = exp(-||x - c||^2 / (2 sigma^2)): the exponent
  z_j = (x.c_j - ||x||^2 / 2 - ||c_j||^2 / 2) / sigma^2 is linear in the
  features [x, x^2], and ELU(z) = exp(z) - 1 for z <= 0. So
  Multiply(x, x) -> Concatenate -> Dense(M) -> ELU -> Dense(t) with output bias
  sum_j alpha_j (the "+ 1" of exp(z) = ELU(z) + 1) reproduces f.
* polynomial, k = (alpha x.c + beta)^degree: Dense(M) gives the base and
  Multiply layers raise it to the power by repeated squaring.

Every graph takes the min-max scaled inputs (n, d) and returns the scaled
targets (n, t), as the Falkon model itself does.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from l1recal.errors import ModelError
from l1recal.models.falkon import FalkonSolution

INPUT_LAYER = "inputs"
OUTPUT_LAYER = "corrections"
EXPONENT_LAYER = "exponent"
ELU_LAYER = "exp_minus_one"


def falkon_to_keras(solution: FalkonSolution, name: str = "falkon") -> Any:
    """Build a Keras model that computes ``solution`` with hls4ml-convertible layers.

    Args:
        solution: centres (M, d) and coefficients (M, t) in the scaled input space.
        name: Keras model name.

    Returns:
        A ``keras.Model`` mapping scaled inputs (n, d) to scaled targets (n, t).

    Raises:
        ModelError: for a kernel without a firmware form.
    """
    kernel = solution.kernel.name
    centres = np.asarray(solution.centres, dtype=np.float64)
    coefficients = np.asarray(solution.coefficients, dtype=np.float64)
    if kernel == "linear":
        return _linear(solution, centres, coefficients, name)
    if kernel == "gaussian":
        return _gaussian(solution, centres, coefficients, name)
    if kernel == "polynomial":
        return _polynomial(solution, centres, coefficients, name)
    raise ModelError(
        f"kernel {kernel!r} has no firmware form; use gaussian, linear or polynomial"
    )


def _linear(
    solution: FalkonSolution, centres: np.ndarray, coefficients: np.ndarray, name: str
) -> Any:
    import keras

    sigma_sq = solution.kernel.sigma**2
    inputs = keras.Input(shape=(centres.shape[1],), name=INPUT_LAYER)
    dense = keras.layers.Dense(coefficients.shape[1], name=OUTPUT_LAYER)
    model = keras.Model(inputs, dense(inputs), name=name)
    dense.set_weights(
        [
            centres.T @ coefficients / sigma_sq,
            solution.kernel.beta * coefficients.sum(axis=0),
        ]
    )
    return model


def _gaussian(
    solution: FalkonSolution, centres: np.ndarray, coefficients: np.ndarray, name: str
) -> Any:
    import keras

    n_centres, n_inputs = centres.shape
    sigma_sq = solution.kernel.sigma**2
    inputs = keras.Input(shape=(n_inputs,), name=INPUT_LAYER)
    squares = keras.layers.Multiply(name="squares")([inputs, inputs])
    features = keras.layers.Concatenate(name="features")([inputs, squares])
    exponent = keras.layers.Dense(n_centres, name=EXPONENT_LAYER)
    exp_minus_one = keras.layers.ELU(alpha=1.0, name=ELU_LAYER)
    output = keras.layers.Dense(coefficients.shape[1], name=OUTPUT_LAYER)
    model = keras.Model(inputs, output(exp_minus_one(exponent(features))), name=name)

    exponent_weights = np.concatenate(
        [centres.T / sigma_sq, np.full((n_inputs, n_centres), -0.5 / sigma_sq)]
    )
    exponent_bias = -0.5 * (centres**2).sum(axis=1) / sigma_sq
    exponent.set_weights([exponent_weights, exponent_bias])
    output.set_weights([coefficients, coefficients.sum(axis=0)])
    return model


def _polynomial(
    solution: FalkonSolution, centres: np.ndarray, coefficients: np.ndarray, name: str
) -> Any:
    import keras

    kernel = solution.kernel
    inputs = keras.Input(shape=(centres.shape[1],), name=INPUT_LAYER)
    base_layer = keras.layers.Dense(centres.shape[0], name="base")
    base = base_layer(inputs)
    # Binary exponentiation: base^degree from squares of base.
    power, result, square_index = base, None, 0
    remaining = kernel.degree
    while remaining:
        if remaining & 1:
            result = (
                power
                if result is None
                else keras.layers.Multiply(name=f"power_{square_index}")(
                    [result, power]
                )
            )
        remaining >>= 1
        if remaining:
            square_index += 1
            power = keras.layers.Multiply(name=f"square_{square_index}")([power, power])
    output = keras.layers.Dense(coefficients.shape[1], name=OUTPUT_LAYER)
    model = keras.Model(inputs, output(result), name=name)
    base_layer.set_weights(
        [kernel.alpha * centres.T, np.full(centres.shape[0], kernel.beta)]
    )
    output.set_weights([coefficients, np.zeros(coefficients.shape[1])])
    return model


def falkon_layer_types(model: Any, width: int) -> dict[str, dict[str, str]]:
    """Return the per-layer fixed-point types the Falkon graphs need at total width ``width``.

    The exp(z) - 1 table contains values in [-1, 0], so it gets one integer bit and
    the rest fractional. The squares of the [0, 1] scaled inputs keep the
    default type. Other layers keep the default type or 'auto'.
    """
    types: dict[str, dict[str, str]] = {}
    names = {layer.name for layer in model.layers}
    if ELU_LAYER in names:
        table_width = max(width, 18)
        types[ELU_LAYER] = {
            "table": f"ap_fixed<{table_width},1>",
            "result": f"ap_fixed<{table_width},2>",
        }
    return types
