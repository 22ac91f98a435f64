import pytest

from l1recal.config import SimulateSettings, load_section
from l1recal.errors import ConfigError


def test_misspelled_section_rejected(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("simulat:\n  n_events: 5\n")
    with pytest.raises(
        ConfigError, match="section 'simulate' not found, but 'simulat' is present"
    ):
        load_section(params, "simulate", SimulateSettings)


def test_missing_section_uses_defaults(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("train_network: {}\n")
    assert load_section(params, "jet_simulate", SimulateSettings) == SimulateSettings()


def test_unknown_key_rejected(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("simulate:\n  n_event: 5\n")
    with pytest.raises(
        ConfigError, match=r"simulate\.n_event: Extra inputs are not permitted"
    ):
        load_section(params, "simulate", SimulateSettings)


def test_yaml_error_names_file(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("simulate: [\n")
    with pytest.raises(ConfigError, match=r"(?s)invalid YAML: .*params\.yaml"):
        load_section(params, "simulate", SimulateSettings)
