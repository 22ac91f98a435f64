"""Falkon: Nystrom kernel ridge regression solved by preconditioned conjugate gradient.

The estimator minimises (1/n) ||K_nM alpha - y||^2 + lambda alpha^T K_MM alpha
over M Nystrom centres drawn uniformly from the training rows. It follows
Algorithm 1 of Rudi, Carratino and Rosasco, "FALKON: An Optimal Large Scale
Kernel Method", NeurIPS 2017 (arXiv:1705.10958), with the Cholesky-based
preconditioner B = (1/sqrt(n)) T^-1 A^-1, where T^T T = K_MM and
A^T A = T T^T / M + lambda I, as also used by Meanti et al., "Kernel methods
through the roof", NeurIPS 2020 (arXiv:2006.10350).

K_nM is never stored: each conjugate-gradient step recomputes it in row
blocks sized by a memory budget, so memory is O(M^2 + block * M) for any n.
With M = n centres equal to the training points the solution is exact kernel
ridge regression with ridge n * lambda.

When the ``falkon`` package is importable it can be used instead
(:func:`fit_with_falkon_library`); both produce the same bundle of centres and
coefficients, so prediction and saving do not depend on which one trained.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from l1recal.errors import ConfigError
from l1recal.models.kernels import Kernel

logger = logging.getLogger(__name__)

_BYTES_PER_BLOCK_ELEMENT = (
    4  # the kernel block plus about three temporaries of its size
)


@dataclass
class FalkonSolution:
    """A fitted model: f(x) = k(x, centres) @ coefficients.

    Attributes:
        kernel: the kernel.
        centres: (M, d) Nystrom centres, in the scaled input space.
        coefficients: (M, t) weights alpha.
    """

    kernel: Kernel
    centres: np.ndarray
    coefficients: np.ndarray


def default_device() -> torch.device:
    """Return CUDA when torch finds a GPU, else the CPU."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def block_rows(n_centres: int, memory_mb: float, itemsize: int = 8) -> int:
    """Return how many rows of K_nM fit in ``memory_mb`` with their temporaries."""
    per_row = n_centres * itemsize * _BYTES_PER_BLOCK_ELEMENT
    return max(1, int(memory_mb * 2**20 // per_row))


class Falkon:
    """Falkon estimator with the fit / predict interface.

    Args:
        kernel: kernel function.
        centres: number M of Nystrom centres (at most the number of rows).
        penalty: ridge penalty lambda (> 0).
        max_iterations: conjugate-gradient iterations.
        seed: seed of the centre draw.
        block_memory_mb: memory budget of one K_nM block.
        cache_memory_mb: when the whole K_nM fits in this budget it is computed
            once and kept; otherwise every CG iteration rebuilds it block by block.
        device: torch device; default CUDA if available, else CPU.
        dtype: float64 (default) or float32.
    """

    def __init__(
        self,
        kernel: Kernel,
        centres: int,
        penalty: float,
        max_iterations: int = 20,
        seed: int = 0,
        block_memory_mb: float = 512.0,
        device: torch.device | None = None,
        dtype: torch.dtype = torch.float64,
        cache_memory_mb: float = 1024.0,
    ) -> None:
        if centres < 1:
            raise ConfigError(f"Falkon needs at least one centre, got M={centres}")
        if penalty <= 0:
            raise ConfigError(f"Falkon penalty lambda must be positive, got {penalty}")
        self.kernel = kernel
        self.n_centres = centres
        self.penalty = penalty
        self.max_iterations = max_iterations
        self.seed = seed
        self.block_memory_mb = block_memory_mb
        self.cache_memory_mb = cache_memory_mb
        self.device = device or default_device()
        self.dtype = dtype
        self.solution: FalkonSolution | None = None
        self.residuals: list[float] = []

    def fit(
        self, x: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None
    ) -> Falkon:
        """Fit on inputs ``x`` (n, d) and targets ``y`` (n, t) or (n,).

        Args:
            sample_weight: optional non-negative weights, (n,) for all targets
                or (n, t) per target; the data term becomes
                (1/n) sum_i w_i (f(x_i) - y_i)^2. The preconditioner stays the
                unweighted one, so weights far from 1 need more iterations.
        """
        x_t = torch.as_tensor(np.asarray(x), dtype=self.dtype, device=self.device)
        y_t = torch.as_tensor(np.asarray(y), dtype=self.dtype, device=self.device)
        if y_t.ndim == 1:
            y_t = y_t[:, None]
        weights = None
        if sample_weight is not None:
            weights = torch.as_tensor(
                np.asarray(sample_weight), dtype=self.dtype, device=self.device
            )
            if weights.ndim == 1:
                weights = weights[:, None].expand(-1, y_t.shape[1])
            if weights.shape != y_t.shape:
                raise ConfigError(
                    f"sample_weight has shape {tuple(weights.shape)}, expected {tuple(y_t.shape)}"
                )
        n = x_t.shape[0]
        if self.n_centres > n:
            raise ConfigError(
                f"Falkon M={self.n_centres} exceeds the {n} training rows"
            )

        generator = np.random.default_rng(self.seed)
        centre_rows = np.sort(generator.choice(n, size=self.n_centres, replace=False))
        centres = x_t[torch.as_tensor(centre_rows, device=self.device)]
        coefficients = self._solve(x_t, y_t, centres, weights)
        self.solution = FalkonSolution(
            self.kernel, centres.cpu().numpy(), coefficients.cpu().numpy()
        )
        return self

    def _solve(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        centres: torch.Tensor,
        weights: torch.Tensor | None,
    ) -> torch.Tensor:
        n, m = x.shape[0], centres.shape[0]
        rows = block_rows(m, self.block_memory_mb, x.element_size())
        identity = torch.eye(m, dtype=self.dtype, device=self.device)

        k_mm = self.kernel(centres, centres)
        t_upper = _upper_cholesky(k_mm, torch.finfo(self.dtype).eps * m, identity)
        a_upper = _upper_cholesky(
            t_upper @ t_upper.T / m + self.penalty * identity, 0.0, identity
        )

        cached_blocks = None
        if n * m * x.element_size() <= self.cache_memory_mb * 2**20:
            cached_blocks = [
                self.kernel(x[start : start + rows], centres)
                for start in range(0, n, rows)
            ]

        def knm_transpose_times(
            u: torch.Tensor | None, v: torch.Tensor | None
        ) -> torch.Tensor:
            # Returns K_nM^T W (K_nM u + v), with K_nM cached or rebuilt block by
            # block; W is the diagonal of sample weights, applied per target column.
            total = torch.zeros((m, y.shape[1]), dtype=self.dtype, device=self.device)
            for index, start in enumerate(range(0, n, rows)):
                if cached_blocks is not None:
                    block = cached_blocks[index]
                else:
                    block = self.kernel(x[start : start + rows], centres)
                inner = torch.zeros(
                    (block.shape[0], y.shape[1]), dtype=self.dtype, device=self.device
                )
                if u is not None:
                    inner += block @ u
                if v is not None:
                    inner += v[start : start + rows]
                if weights is not None:
                    inner *= weights[start : start + rows]
                total += block.T @ inner
            return total

        def solve_upper(matrix: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
            return torch.linalg.solve_triangular(matrix, rhs, upper=True)

        def solve_upper_transposed(
            matrix: torch.Tensor, rhs: torch.Tensor
        ) -> torch.Tensor:
            return torch.linalg.solve_triangular(matrix.T, rhs, upper=False)

        def preconditioned_operator(u: torch.Tensor) -> torch.Tensor:
            a_inv_u = solve_upper(a_upper, u)
            product = knm_transpose_times(solve_upper(t_upper, a_inv_u), None) / n
            return solve_upper_transposed(
                a_upper,
                solve_upper_transposed(t_upper, product) + self.penalty * a_inv_u,
            )

        rhs = solve_upper_transposed(
            a_upper, solve_upper_transposed(t_upper, knm_transpose_times(None, y / n))
        )
        beta, self.residuals = conjugate_gradient(
            preconditioned_operator, rhs, self.max_iterations
        )
        return solve_upper(t_upper, solve_upper(a_upper, beta))

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Return predictions (n, t) for inputs ``x`` (n, d), in the scale of the fitted targets."""
        if self.solution is None:
            raise RuntimeError("Falkon.predict called before fit")
        return predict_solution(
            self.solution, x, self.block_memory_mb, self.device, self.dtype
        )


def predict_solution(
    solution: FalkonSolution,
    x: np.ndarray,
    block_memory_mb: float = 512.0,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float64,
) -> np.ndarray:
    """Evaluate k(x, centres) @ coefficients in row blocks; returns (n, t)."""
    device = device or default_device()
    centres = torch.as_tensor(solution.centres, dtype=dtype, device=device)
    coefficients = torch.as_tensor(solution.coefficients, dtype=dtype, device=device)
    x_t = torch.as_tensor(np.asarray(x), dtype=dtype, device=device)
    rows = block_rows(centres.shape[0], block_memory_mb, x_t.element_size())
    outputs = [
        solution.kernel(x_t[start : start + rows], centres) @ coefficients
        for start in range(0, x_t.shape[0], rows)
    ]
    if not outputs:
        return np.zeros((0, coefficients.shape[1]))
    return torch.cat(outputs).cpu().numpy()


def _upper_cholesky(
    matrix: torch.Tensor, jitter: float, identity: torch.Tensor
) -> torch.Tensor:
    # Duplicate centres (common with binned L1 inputs) make K_MM singular; the
    # jitter is raised tenfold until the factorisation succeeds.
    for _ in range(12):
        lower, info = torch.linalg.cholesky_ex(matrix + jitter * identity)
        if int(info) == 0:
            return lower.T
        jitter = max(jitter * 10.0, 1e-12 * float(matrix.diagonal().abs().max()))
        logger.debug("Cholesky failed, retrying with jitter %.3g", jitter)
    raise ConfigError(
        "Falkon preconditioner failed: K_MM is not positive definite even with jitter"
    )


def conjugate_gradient(
    operator, rhs: torch.Tensor, iterations: int
) -> tuple[torch.Tensor, list[float]]:
    """Solve operator(x) = rhs for each column of rhs (m, t) by conjugate gradient.

    Columns are independent systems, iterated together. Returns the solution
    and the relative residual norm (largest over columns) after each iteration.
    """
    solution = torch.zeros_like(rhs)
    residual = rhs.clone()
    direction = residual.clone()
    residual_sq = (residual * residual).sum(dim=0)
    reference = residual_sq.sqrt().clamp_min(torch.finfo(rhs.dtype).tiny)
    history: list[float] = []
    for _ in range(iterations):
        if float(residual_sq.max()) == 0.0:
            break
        applied = operator(direction)
        step = residual_sq / (direction * applied).sum(dim=0).clamp_min(
            torch.finfo(rhs.dtype).tiny
        )
        solution += step * direction
        residual -= step * applied
        new_residual_sq = (residual * residual).sum(dim=0)
        direction = (
            residual
            + (new_residual_sq / residual_sq.clamp_min(torch.finfo(rhs.dtype).tiny))
            * direction
        )
        residual_sq = new_residual_sq
        history.append(float((residual_sq.sqrt() / reference).max()))
    return solution, history


def falkon_library_available() -> bool:
    """Return True when the real ``falkon`` package can be imported."""
    try:
        import falkon  # noqa: F401
    except ImportError:
        return False
    return True


def fit_with_falkon_library(
    kernel: Kernel,
    centres: int,
    penalty: float,
    max_iterations: int,
    seed: int,
    x: np.ndarray,
    y: np.ndarray,
) -> FalkonSolution:
    """Fit with the ``falkon`` package and return the same bundle as :class:`Falkon`.

    The package's kernels map onto ours as GaussianKernel(sigma),
    LinearKernel(beta, gamma = 1 / sigma^2) and PolynomialKernel(beta, gamma = alpha, degree).
    """
    # NOTE: the falkon package is not installable on the CPU build machines, so
    # this adapter is only exercised in the GPU image.
    import falkon

    if kernel.name == "gaussian":
        library_kernel = falkon.kernels.GaussianKernel(sigma=kernel.sigma)
    elif kernel.name == "linear":
        library_kernel = falkon.kernels.LinearKernel(
            beta=kernel.beta, gamma=1.0 / kernel.sigma**2
        )
    else:
        library_kernel = falkon.kernels.PolynomialKernel(
            beta=kernel.beta, gamma=kernel.alpha, degree=kernel.degree
        )
    model = falkon.Falkon(
        kernel=library_kernel,
        penalty=penalty,
        M=centres,
        maxiter=max_iterations,
        seed=seed,
    )
    model.fit(torch.as_tensor(x), torch.as_tensor(y))
    return FalkonSolution(
        kernel, model.ny_points_.cpu().numpy(), model.alpha_.cpu().numpy()
    )
