import json

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from l1recal.config import PreprocessSettings
from l1recal.data.preprocess import (
    drop_duplicates,
    fit_scalers,
    load_scalers,
    load_split,
    select_pt_window,
    split_rows,
    to_physical,
)
from l1recal.schema import MUON_INPUTS, MUON_TARGETS, TWO_PI


def _muon_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "hwPtL1": [20, 20, 11, 12, 90, 89],
            "hwEtaL1": [0, 0, 10, -10, 100, -100],
            "hwPhiL1": [0, 0, 575, 288, 1, 144],
            "hwSignL1": [0, 0, 1, 0, 1, 0],
            "ptReco": [9.0, 9.0, 5.0, 6.5, 40.0, 42.0],
            "etaVtxReco": [0.01, 0.01, 0.1, -0.1, 1.1, -1.1],
            "phiVtxReco": [-0.01, -0.01, -0.02, 3.0, 0.05, -3.1],
        }
    )


def test_duplicates_dropped():
    assert len(drop_duplicates(_muon_table())) == 5


def test_physical_units_and_targets():
    physical = to_physical(_muon_table())
    assert_allclose(physical["ptL1"], [10.0, 10.0, 5.5, 6.0, 45.0, 44.5])
    assert_allclose(physical["etaL1"][:3], [0.0, 0.0, 0.10875])
    # Offline phi shifted from [-pi, pi) into [0, 2 pi).
    assert physical["phiVtxReco"].min() >= 0
    assert physical["phiVtxReco"].max() < TWO_PI
    assert_allclose(physical["phiVtxReco"][0], TWO_PI - 0.01)
    # dPhi wrapped: L1 phi 0 against offline 2 pi - 0.01 is +0.01, not -2 pi.
    assert_allclose(physical["dPhi"][0], 0.01, atol=1e-12)
    # L1 at 575 bins (just below 2 pi) against offline -0.02.
    assert_allclose(
        physical["dPhi"][2], TWO_PI * 575 / 576 - (TWO_PI - 0.02), atol=1e-12
    )
    assert_allclose(physical["dPt"], physical["ptL1"] - physical["ptReco"])
    assert_allclose(physical["dEta"], physical["etaL1"] - physical["etaVtxReco"])
    assert np.abs(physical["dPhi"]).max() <= np.pi


def test_pt_window_is_exclusive():
    selected = select_pt_window(to_physical(_muon_table()), 5.5, 45.0)
    assert_allclose(sorted(selected["ptL1"]), [6.0, 10.0, 10.0, 44.5])


def test_split_fractions_and_disjoint():
    splits = split_rows(1000, (0.65, 0.20, 0.15), seed=1)
    assert [len(splits[name]) for name in ("train", "val", "test")] == [650, 200, 150]
    union = np.concatenate(list(splits.values()))
    assert_array_equal(np.sort(union), np.arange(1000))


def test_split_reproducible_for_seed():
    first = split_rows(500, (0.65, 0.20, 0.15), seed=3)
    second = split_rows(500, (0.65, 0.20, 0.15), seed=3)
    other = split_rows(500, (0.65, 0.20, 0.15), seed=4)
    for name in first:
        assert_array_equal(first[name], second[name])
    assert not np.array_equal(first["train"], other["train"])


def test_scalers_fitted_on_train_only(small_splits):
    scalers = load_scalers(small_splits)
    train = load_split(small_splits, "train")
    scaled_train = scalers["inputs"].transform(train[list(MUON_INPUTS)].to_numpy())
    assert_allclose(scaled_train.min(axis=0), 0.0, atol=1e-12)
    assert_allclose(scaled_train.max(axis=0), 1.0, atol=1e-12)
    targets = scalers["targets"].transform(train[list(MUON_TARGETS)].to_numpy())
    assert_allclose(targets.mean(axis=0), 0.0, atol=1e-9)
    assert_allclose(targets.std(axis=0), 1.0, atol=1e-9)
    refit = fit_scalers(train)
    assert_allclose(refit["inputs"].offset, scalers["inputs"].offset)


def test_summary_counts(small_splits):
    summary = json.loads((small_splits / "summary.json").read_text())
    assert (
        summary["train"] + summary["val"] + summary["test"]
        == summary["after_pt_window"]
    )
    assert summary["after_pt_window"] < summary["after_duplicates"] <= summary["input"]
    for name in ("train", "val", "test"):
        split = load_split(small_splits, name)
        assert len(split) == summary[name]
        assert split["ptL1"].min() > 5.5
        assert split["ptL1"].max() < 45.0


def test_invalid_split_rejected():
    with pytest.raises(ValueError, match="sum to 1"):
        PreprocessSettings(split=(0.5, 0.2, 0.2))
