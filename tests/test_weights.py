import keras
import numpy as np
import pandas as pd
from numpy.testing import assert_allclose

from l1recal.models.network import weighted_loss
from l1recal.models.weights import pt_target_weights
from l1recal.tasks import JET, MUON


def test_relative_weights_inverse_square_pt():
    frame = pd.DataFrame({"ptReco": [2.0, 4.0, 8.0]})
    weights = pt_target_weights(frame, MUON, "relative")
    raw = np.array([1 / 4, 1 / 16, 1 / 64])
    assert weights.shape == (3, 3)
    assert_allclose(weights[:, 0], raw / raw.mean())
    assert_allclose(weights[:, 1:], 1.0)


def test_no_weighting_returns_none():
    assert pt_target_weights(pd.DataFrame({"ptPF": [10.0]}), JET, "none") is None


def test_jet_weights_use_pf_pt():
    weights = pt_target_weights(pd.DataFrame({"ptPF": [10.0, 20.0]}), JET, "relative")
    assert weights.shape == (2, 1)
    assert weights[0, 0] == 4 * weights[1, 0]


def test_weighted_mse_matches_hand_value():
    loss = weighted_loss("mse", 2)
    y_true = np.array([[1.0, 0.0, 2.0, 1.0], [0.0, 0.0, 0.5, 3.0]], dtype=np.float32)
    y_pred = np.array([[0.0, 1.0], [1.0, 2.0]], dtype=np.float32)
    # Per sample: mean(w * e^2) = (2*1 + 1*1)/2 = 1.5 and (0.5*1 + 3*4)/2 = 6.25.
    assert_allclose(float(loss(y_true, y_pred)), (1.5 + 6.25) / 2, rtol=1e-6)


def test_weighted_logcosh_matches_keras_logcosh():
    loss = weighted_loss("logcosh", 3)
    rng = np.random.default_rng(0)
    target = rng.normal(size=(16, 3)).astype(np.float32)
    prediction = (target + 5.0 * rng.normal(size=(16, 3))).astype(np.float32)
    ones = np.ones_like(target)
    reference = keras.losses.LogCosh()(target, prediction)
    assert_allclose(
        float(loss(np.concatenate([target, ones], axis=1), prediction)),
        float(reference),
        rtol=1e-5,
    )
