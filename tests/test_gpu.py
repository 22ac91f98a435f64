"""GPU placement of both trainers; skipped where no CUDA device is present."""

import numpy as np
import pytest
import torch

from l1recal.models.falkon import Falkon, default_device
from l1recal.models.kernels import Kernel

pytestmark = pytest.mark.gpu


@pytest.mark.skipif(not torch.cuda.is_available(), reason="torch sees no CUDA device")
def test_falkon_runs_on_cuda():
    assert default_device().type == "cuda"
    x = np.random.default_rng(0).random((5_000, 4))
    model = Falkon(Kernel("gaussian", sigma=0.5), 100, 1e-6, 10, seed=0)
    model.fit(x, x[:, :2])
    assert model.device.type == "cuda"
    cpu = Falkon(
        Kernel("gaussian", sigma=0.5), 100, 1e-6, 10, seed=0, device=torch.device("cpu")
    ).fit(x, x[:, :2])
    np.testing.assert_allclose(model.predict(x), cpu.predict(x), rtol=1e-6, atol=1e-8)


def _tensorflow_gpus():
    import tensorflow as tf

    return tf.config.list_physical_devices("GPU")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_network_trains_on_gpu():
    import keras

    from l1recal.models.network import get_preset, train_network

    if not _tensorflow_gpus():
        pytest.skip("TensorFlow sees no GPU (CPU-only TensorFlow build installed)")
    x = np.random.default_rng(0).random((2_048, 4)).astype(np.float32)
    y = x[:, :3]
    model, _ = train_network(get_preset(6), x, y, x, y, 256, 2, 1, seed=0)
    assert "GPU" in model.layers[0].kernel.value.device.upper()
    assert keras.backend.backend() == "tensorflow"
