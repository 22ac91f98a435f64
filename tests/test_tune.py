import json

import pytest

from l1recal.config import FalkonModelSettings, TuneSettings, TuneSweep
from l1recal.models.tune import run_tune


def test_tune_writes_curves(small_splits, tmp_path):
    settings = TuneSettings(
        base=FalkonModelSettings(name="base", centres=20, max_iterations=8),
        sweeps=[
            TuneSweep(parameter="sigma", values=[0.3, 1.0]),
            TuneSweep(parameter="centres", values=[10, 20]),
        ],
    )
    run_tune(settings, small_splits, tmp_path / "tuning")
    sigma = json.loads((tmp_path / "tuning" / "sigma.json").read_text())
    assert [point["value"] for point in sigma["points"]] == [0.3, 1.0]
    assert set(sigma["points"][0]) >= {"phi", "eta", "pt_rel", "fit_seconds"}
    assert sigma["fixed"]["centres"] == 20
    assert "sigma" not in sigma["fixed"]
    centres = json.loads((tmp_path / "tuning" / "centres.json").read_text())
    assert [point["value"] for point in centres["points"]] == [10, 20]
    for name in ("sigma.png", "centres.png"):
        assert (tmp_path / "tuning" / name).read_bytes()[:4] == b"\x89PNG"


def test_unknown_sweep_parameter_rejected():
    with pytest.raises(ValueError, match="parameter"):
        TuneSweep(parameter="gamma", values=[1, 2])


def test_falkon_preset_fills_settings():
    settings = FalkonModelSettings(preset="polynomial_m100_deg5", penalty=1e-5)
    assert settings.name == "falkon_polynomial_m100_deg5"
    assert settings.kernel == "polynomial"
    assert settings.degree == 5
    assert settings.centres == 100
    assert settings.penalty == 1e-5


def test_unknown_falkon_preset_lists_valid():
    with pytest.raises(
        ValueError,
        match="valid presets: gaussian_m500, gaussian_m100, linear_m100, polynomial_m100_deg5",
    ):
        FalkonModelSettings(preset="gaussian_m1000")
