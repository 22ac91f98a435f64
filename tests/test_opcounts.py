"""Exact operation counts of small hand-checkable models."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose

from l1recal.errors import ModelError
from l1recal.evaluation.opcounts import (
    OpCount,
    count_falkon,
    count_keras_model,
    evaluate_folded,
    fold_batchnorm,
    network_study_formula,
    power_multiplications,
)
from l1recal.models.falkon import FalkonSolution
from l1recal.models.kernels import Kernel


@pytest.fixture(scope="module")
def network_433():
    """A 4-3-3 network: Dense(3) + BatchNorm + ReLU, then a linear Dense(3), with set weights."""
    import keras

    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [
            keras.Input(shape=(4,)),
            keras.layers.Dense(3),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.Dense(3),
        ]
    )
    batchnorm = model.layers[1]
    batchnorm.set_weights(
        [
            np.array([1.5, 0.5, 2.0]),  # gamma
            np.array([0.1, -0.2, 0.3]),  # beta
            np.array([0.2, -0.1, 0.05]),  # moving mean
            np.array([0.5, 2.0, 1.0]),  # moving variance
        ]
    )
    return model


def test_network_433_exact_count(network_433):
    counts = count_keras_model(network_433)
    # Dense 4->3: 12 multiplications, 9 sum additions + 3 bias additions.
    # Dense 3->3: 9 multiplications, 6 + 3 additions. ReLU: 3 comparisons.
    assert counts["exact"]["multiplications"] == 21
    assert counts["exact"]["additions"] == 21
    assert counts["exact"]["exponentials"] == 0
    assert counts["exact"]["nonlinear"] == 3
    assert counts["exact"]["total"] == 45
    assert counts["layers"] == [[4, 3, "relu"], [3, 3, "linear"]]


def test_network_433_study_formula(network_433):
    # Hn * (d + Nl * Hn + t) = 3 * (4 + 3 + 3).
    assert count_keras_model(network_433)["study_formula"] == 30


def test_study_formula_matches_published_figures():
    assert network_study_formula(4, 4, 128, 3) == 66_432
    assert network_study_formula(4, 3, 32, 3) == 3_296


def test_folded_network_reproduces_keras(network_433):
    x = np.random.default_rng(0).uniform(size=(50, 4)).astype(np.float32)
    expected = network_433.predict(x, verbose=0)
    folded = fold_batchnorm(network_433)
    assert len(folded) == 2
    assert_allclose(evaluate_folded(folded, x), expected, rtol=1e-5, atol=1e-5)


def test_unsupported_layer_raises():
    import keras

    model = keras.Sequential(
        [keras.Input(shape=(4, 1)), keras.layers.Conv1D(2, 2), keras.layers.Flatten()]
    )
    with pytest.raises(ModelError, match="cannot count operations of a Conv1D layer"):
        fold_batchnorm(model)


def _solution(kernel: Kernel) -> FalkonSolution:
    rng = np.random.default_rng(1)
    return FalkonSolution(kernel, rng.uniform(size=(2, 4)), rng.normal(size=(2, 3)))


def test_falkon_gaussian_m2_exact_count():
    counts = count_falkon(**vars(_solution(Kernel("gaussian", sigma=0.5))))
    # Per centre: 4 subtractions, 4 squares, 3 additions, 1 scaling, 1 exp.
    assert counts["per_kernel"] == {
        "multiplications": 5,
        "additions": 7,
        "exponentials": 1,
        "nonlinear": 0,
        "total": 13,
    }
    # Two kernels, then 2 x 3 multiplications and 1 x 3 additions for the weighted sum.
    assert counts["exact"]["multiplications"] == 2 * 5 + 6
    assert counts["exact"]["additions"] == 2 * 7 + 3
    assert counts["exact"]["exponentials"] == 2
    assert counts["exact"]["total"] == 35
    assert counts["study_formula"] == 6
    assert counts["scaling"]["multiplications"] == 7


def test_falkon_linear_m2_exact_count():
    counts = count_falkon(**vars(_solution(Kernel("linear", sigma=0.5, beta=1.0))))
    # Per centre: dot product 4 multiplications and 3 additions, plus beta.
    assert counts["exact"]["multiplications"] == 2 * 4 + 6
    assert counts["exact"]["additions"] == 2 * 4 + 3
    assert counts["exact"]["exponentials"] == 0


def test_falkon_polynomial_m2_exact_count():
    kernel = Kernel("polynomial", alpha=1.0, beta=1.0, degree=5)
    counts = count_falkon(**vars(_solution(kernel)))
    # Per centre: dot product 4 + alpha 1 + x^5 by squaring 3 multiplications; 3 + 1 additions.
    assert counts["exact"]["multiplications"] == 2 * 8 + 6
    assert counts["exact"]["additions"] == 2 * 4 + 3


@pytest.mark.parametrize(
    ("degree", "expected"), [(1, 0), (2, 1), (3, 2), (4, 2), (5, 3), (8, 3)]
)
def test_power_by_squaring(degree, expected):
    assert power_multiplications(degree) == expected


def test_opcount_total_adds_every_kind():
    assert OpCount(1, 2, 3, 4).total == 10
