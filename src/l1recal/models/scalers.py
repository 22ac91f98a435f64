"""Input and target scalers fitted on the training split and saved as JSON.

They are plain affine maps, x' = (x - offset) / scale, so a model bundle,
the serving code and the firmware can all apply them from the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AffineScaler:
    """Per-column affine map x' = (x - offset) / scale; arrays of shape (columns,)."""

    columns: tuple[str, ...]
    offset: np.ndarray
    scale: np.ndarray

    @classmethod
    def min_max(cls, columns: tuple[str, ...], values: np.ndarray) -> AffineScaler:
        """Fit a map of each column of ``values`` (n, columns) onto [0, 1].

        A constant column gets scale 1 so that it maps to 0 instead of NaN.
        """
        low, high = values.min(axis=0), values.max(axis=0)
        span = np.where(high > low, high - low, 1.0)
        return cls(tuple(columns), low.astype(np.float64), span.astype(np.float64))

    @classmethod
    def standard(cls, columns: tuple[str, ...], values: np.ndarray) -> AffineScaler:
        """Fit a map of each column to zero mean and unit standard deviation."""
        std = values.std(axis=0)
        return cls(
            tuple(columns),
            values.mean(axis=0).astype(np.float64),
            np.where(std > 0, std, 1.0),
        )

    def transform(self, values: np.ndarray) -> np.ndarray:
        """Apply the map to ``values`` of shape (n, columns)."""
        return (np.asarray(values, dtype=np.float64) - self.offset) / self.scale

    def inverse(self, values: np.ndarray) -> np.ndarray:
        """Undo the map."""
        return np.asarray(values, dtype=np.float64) * self.scale + self.offset

    def to_dict(self) -> dict:
        """Return a JSON-serialisable form."""
        return {
            "columns": list(self.columns),
            "offset": self.offset.tolist(),
            "scale": self.scale.tolist(),
        }

    @classmethod
    def from_dict(cls, payload: dict) -> AffineScaler:
        """Rebuild a scaler written by :meth:`to_dict`."""
        return cls(
            tuple(payload["columns"]),
            np.asarray(payload["offset"]),
            np.asarray(payload["scale"]),
        )
