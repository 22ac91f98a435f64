"""Kernel functions of the Falkon models, evaluated with torch.

All three take x of shape (n, d) and centres c of shape (m, d) and return the
kernel matrix of shape (n, m) in the dtype and on the device of x:

* Gaussian: exp(-||x - c||^2 / (2 sigma^2))
* linear: beta + x.c / sigma^2
* polynomial: (alpha x.c + beta)^degree
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import torch

from l1recal.errors import ConfigError

KernelName = Literal["gaussian", "linear", "polynomial"]
KERNEL_NAMES: tuple[str, ...] = ("gaussian", "linear", "polynomial")


@dataclass(frozen=True)
class Kernel:
    """A kernel and its parameters (only those of its formula are used)."""

    name: KernelName
    sigma: float = 1.0
    alpha: float = 1.0
    beta: float = 1.0
    degree: int = 2

    def __post_init__(self) -> None:
        if self.name not in KERNEL_NAMES:
            raise ConfigError(
                f"unknown kernel {self.name!r}; valid kernels: {', '.join(KERNEL_NAMES)}"
            )
        if self.name != "polynomial" and self.sigma <= 0:
            raise ConfigError(f"kernel sigma must be positive, got {self.sigma}")

    def __call__(self, x: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
        """Return the kernel matrix k(x_i, c_j), shape (n, m)."""
        if self.name == "gaussian":
            # ||x - c||^2 = |x|^2 - 2 x.c + |c|^2, computed in place on one (n, m) buffer.
            squared = torch.addmm(
                (x * x).sum(dim=1, keepdim=True), x, centres.T, beta=1.0, alpha=-2.0
            )
            squared.add_((centres * centres).sum(dim=1)[None, :])
            # Rounding can make the expanded squared distance slightly negative.
            squared.clamp_min_(0.0).mul_(-1.0 / (2.0 * self.sigma**2))
            return squared.exp_()
        if self.name == "linear":
            return self.beta + (x @ centres.T) / self.sigma**2
        return (self.alpha * (x @ centres.T) + self.beta) ** self.degree

    def to_dict(self) -> dict:
        """Return the kernel settings as a JSON-serialisable mapping."""
        return asdict(self)
