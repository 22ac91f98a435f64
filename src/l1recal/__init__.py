"""l1recal: ML re-calibration of CMS Level-1 trigger muons and jets for L1 scouting."""

from __future__ import annotations

__version__ = "0.1.0"
