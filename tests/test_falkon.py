import math

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose

from l1recal.errors import ConfigError
from l1recal.models.falkon import Falkon, block_rows, conjugate_gradient
from l1recal.models.kernels import Kernel

X = torch.tensor([[1.0, 2.0], [0.0, 0.0]], dtype=torch.float64)
C = torch.tensor([[0.0, 1.0]], dtype=torch.float64)


def test_gaussian_kernel_hand_values():
    values = Kernel("gaussian", sigma=1.0)(X, C).numpy()
    # ||(1, 2) - (0, 1)||^2 = 2 and ||(0, 0) - (0, 1)||^2 = 1, over 2 sigma^2 = 2.
    assert_allclose(values[:, 0], [math.exp(-1.0), math.exp(-0.5)], rtol=1e-14)


def test_linear_kernel_hand_values():
    values = Kernel("linear", sigma=2.0, beta=0.5)(X, C).numpy()
    assert_allclose(values[:, 0], [0.5 + 2.0 / 4.0, 0.5], rtol=1e-14)


def test_polynomial_kernel_hand_values():
    values = Kernel("polynomial", alpha=2.0, beta=1.0, degree=3)(X, C).numpy()
    assert_allclose(values[:, 0], [125.0, 1.0], rtol=1e-14)


def test_unknown_kernel_lists_valid():
    with pytest.raises(
        ConfigError,
        match="unknown kernel 'rbf'; valid kernels: gaussian, linear, polynomial",
    ):
        Kernel("rbf")


def _regression_data(n=150, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 4))
    y = np.stack([np.sin(3 * x[:, 0]) + x[:, 1], np.cos(2 * x[:, 2]) * x[:, 3]], axis=1)
    return x, y + 0.05 * rng.normal(size=y.shape)


@pytest.mark.parametrize(
    "kernel",
    [
        Kernel("gaussian", sigma=0.5),
        Kernel("linear", sigma=1.0, beta=1.0),
        Kernel("polynomial", degree=3),
    ],
    ids=lambda k: k.name,
)
def test_all_centres_equals_exact_krr(kernel):
    x, y = _regression_data()
    n, penalty = len(x), 1e-4
    model = Falkon(
        kernel,
        centres=n,
        penalty=penalty,
        max_iterations=300,
        seed=1,
        device=torch.device("cpu"),
    )
    model.fit(x, y)
    x_test = np.random.default_rng(9).random((40, 4))
    k_nn = kernel(torch.tensor(x), torch.tensor(x)).numpy()
    k_test = kernel(torch.tensor(x_test), torch.tensor(x)).numpy()
    # Falkon's objective with M = n is kernel ridge regression with ridge n * lambda.
    exact = k_test @ np.linalg.lstsq(k_nn + n * penalty * np.eye(n), y, rcond=None)[0]
    assert_allclose(model.predict(x_test), exact, rtol=1e-6, atol=1e-7)


def test_fit_reproducible_for_seed():
    x, y = _regression_data(400)
    first = Falkon(Kernel("gaussian", sigma=0.4), 50, 1e-5, 20, seed=3).fit(x, y)
    second = Falkon(Kernel("gaussian", sigma=0.4), 50, 1e-5, 20, seed=3).fit(x, y)
    other = Falkon(Kernel("gaussian", sigma=0.4), 50, 1e-5, 20, seed=4).fit(x, y)
    assert_allclose(
        first.solution.coefficients, second.solution.coefficients, rtol=0, atol=0
    )
    assert_allclose(first.solution.centres, second.solution.centres, rtol=0, atol=0)
    assert not np.allclose(first.solution.centres, other.solution.centres)


def test_block_size_does_not_change_result():
    x, y = _regression_data(300)
    # Few CG iterations: later ones amplify rounding differences of the summation order.
    whole = Falkon(
        Kernel("gaussian", sigma=0.4), 40, 1e-5, 6, seed=2, block_memory_mb=64
    ).fit(x, y)
    # 0.01 MB holds about 8 rows of 40 centres, so K_nM is built in ~40 blocks.
    blocked = Falkon(
        Kernel("gaussian", sigma=0.4), 40, 1e-5, 6, seed=2, block_memory_mb=0.01
    ).fit(x, y)
    assert block_rows(40, 0.01) < 20
    assert_allclose(blocked.predict(x), whole.predict(x), rtol=1e-9, atol=1e-11)


def test_duplicate_centres_handled():
    # Binned L1 inputs repeat: many identical rows make K_MM singular.
    x = np.repeat(np.random.default_rng(0).random((10, 4)), 30, axis=0)
    y = x[:, :1] * 2.0
    model = Falkon(Kernel("gaussian", sigma=0.5), 100, 1e-6, 30, seed=0).fit(x, y)
    assert np.all(np.isfinite(model.predict(x)))
    assert np.sqrt(np.mean((model.predict(x) - y) ** 2)) < 0.05


def test_conjugate_gradient_solves_spd_system():
    rng = np.random.default_rng(1)
    a = rng.random((20, 20))
    matrix = torch.tensor(a @ a.T + 20 * np.eye(20))
    rhs = torch.tensor(rng.random((20, 3)))
    solution, history = conjugate_gradient(lambda v: matrix @ v, rhs, 40)
    assert_allclose(
        solution.numpy(), np.linalg.solve(matrix.numpy(), rhs.numpy()), rtol=1e-8
    )
    assert history[-1] < 1e-8


def test_invalid_settings_rejected():
    with pytest.raises(ConfigError, match="penalty"):
        Falkon(Kernel("gaussian"), 10, 0.0)
    with pytest.raises(ConfigError, match="exceeds the 5 training rows"):
        Falkon(Kernel("gaussian"), 10, 1e-3).fit(np.zeros((5, 2)), np.zeros(5))


def test_weighted_fit_equals_weighted_krr():
    x, y = _regression_data(120)
    n, penalty = len(x), 1e-3
    weights = np.random.default_rng(4).uniform(0.2, 3.0, size=y.shape)
    kernel = Kernel("gaussian", sigma=0.5)
    model = Falkon(kernel, centres=n, penalty=penalty, max_iterations=400, seed=0, device=torch.device("cpu"))
    model.fit(x, y, sample_weight=weights)
    x_test = np.random.default_rng(8).random((30, 4))
    k_nn = kernel(torch.tensor(x), torch.tensor(x)).numpy()
    k_test = kernel(torch.tensor(x_test), torch.tensor(x)).numpy()
    # Per column: minimise (1/n) sum w (K a - y)^2 + lambda a^T K a, so (W K + n lambda I) a = W y.
    for column in range(y.shape[1]):
        w = weights[:, column]
        coefficients = np.linalg.solve(w[:, None] * k_nn + n * penalty * np.eye(n), w * y[:, column])
        assert_allclose(model.predict(x_test)[:, column], k_test @ coefficients, rtol=1e-6, atol=1e-7)


def test_weight_shape_checked():
    x, y = _regression_data(50)
    with pytest.raises(ConfigError, match=r"sample_weight has shape \(50, 3\), expected \(50, 2\)"):
        Falkon(Kernel("gaussian"), 10, 1e-3).fit(x, y, sample_weight=np.ones((50, 3)))


def test_cached_kernel_equals_rebuilt():
    x, y = _regression_data(300)
    cached = Falkon(Kernel("gaussian", sigma=0.4), 40, 1e-5, 6, seed=2, block_memory_mb=0.01).fit(x, y)
    rebuilt = Falkon(Kernel("gaussian", sigma=0.4), 40, 1e-5, 6, seed=2, block_memory_mb=0.01, cache_memory_mb=0)
    rebuilt.fit(x, y)
    assert_allclose(cached.predict(x), rebuilt.predict(x), rtol=1e-12, atol=1e-13)
