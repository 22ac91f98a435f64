import keras
import numpy as np
import pytest
from numpy.testing import assert_allclose

from l1recal.config import (
    FalkonModelSettings,
    FalkonTrainSettings,
    NetworkTrainSettings,
)
from l1recal.data.preprocess import load_split
from l1recal.errors import ConfigError
from l1recal.models.bundle import load_bundle
from l1recal.models.network import NETWORK_PRESETS, build_network, get_preset
from l1recal.models.train import run_train_falkon, run_train_network
from l1recal.schema import MUON_INPUTS


@pytest.mark.parametrize("preset_id", sorted(NETWORK_PRESETS))
def test_preset_architecture(preset_id):
    preset = get_preset(preset_id)
    model = build_network(preset, 4, 3)
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    norms = [
        layer
        for layer in model.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    relus = [layer for layer in model.layers if isinstance(layer, keras.layers.ReLU)]
    assert len(dense) == preset.layers + 1
    assert len(norms) == preset.layers
    assert len(relus) == preset.layers
    assert [layer.units for layer in dense[:-1]] == [preset.units] * preset.layers
    assert dense[-1].units == 3
    assert dense[-1].activation.__name__ == "linear"
    has_l2 = dense[0].kernel_regularizer is not None
    assert has_l2 == (preset.l2 > 0)
    expected_loss = "log_cosh" if preset.loss == "logcosh" else "mean_squared_error"
    assert model.loss.name == expected_loss


def test_unknown_preset_lists_valid():
    with pytest.raises(
        ConfigError,
        match=r"unknown network preset ID 5 in train_network.presets; valid IDs: 1, 2, 3, 4, 6, 7, 8, 9",
    ):
        get_preset(5)


def test_network_trains_saves_and_reloads(small_splits, tmp_path):
    settings = NetworkTrainSettings(
        presets=[8], batch_size=256, max_epochs=4, patience=2, seed=1
    )
    run_train_network(settings, small_splits, tmp_path / "network")
    bundle = load_bundle(tmp_path / "network" / "nn_id8")
    history = bundle.card["history"]
    assert history["val_loss"][-1] < history["val_loss"][0]
    assert bundle.card["epochs_run"] == 4
    assert bundle.card["pt_weighting"] == "relative"
    assert bundle.card["task"] == "muon"

    inputs = load_split(small_splits, "test")[list(MUON_INPUTS)].to_numpy()
    reloaded = load_bundle(tmp_path / "network" / "nn_id8")
    assert_allclose(bundle.predict(inputs), reloaded.predict(inputs), rtol=0, atol=0)
    assert np.all(np.isfinite(bundle.predict(inputs)))


def test_falkon_saves_and_reloads(small_splits, tmp_path):
    settings = FalkonTrainSettings(
        models=[FalkonModelSettings(name="fk", centres=30, max_iterations=10)]
    )
    run_train_falkon(settings, small_splits, tmp_path / "falkon")
    first = load_bundle(tmp_path / "falkon" / "fk")
    second = load_bundle(tmp_path / "falkon" / "fk")
    inputs = load_split(small_splits, "test")[list(MUON_INPUTS)].to_numpy()
    assert_allclose(first.predict(inputs), second.predict(inputs), rtol=0, atol=0)
    assert first.card["kernel"]["name"] == "gaussian"
    assert first.card["settings"]["centres"] == 30
