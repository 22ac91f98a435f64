"""The validate stage: Great Expectations suites on raw events and flattened tables.

Every corruption test writes a small corrupted file, runs the real stage and
checks that it fails, that the JSON result names the expectation and the
column, and that the reports exist. The clean samples pass.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from l1recal.config import JetValidateSettings, ValidateSettings
from l1recal.schema import (
    JET_MATCH_COLUMNS,
    JET_TABLE_COLUMNS,
    MUON_TABLE_COLUMNS,
    N_JET_SLOTS,
    N_MUON_SLOTS,
    N_PF_JET_SLOTS,
    raw_jet_event_columns,
    slot_column,
)
from l1recal.simulation.stage import MUON_EVENTS_FILE
from l1recal.validation.runner import DataValidationError, run_validate

MUON_SETTINGS = ValidateSettings(min_rows=100)
JET_SETTINGS = JetValidateSettings(min_rows=50)
N_EVENTS = 2_000


@pytest.fixture(scope="module")
def raw_muons(small_raw: Path) -> pd.DataFrame:
    """The first 2,000 simulated raw muon events."""
    table = pq.read_table(small_raw / MUON_EVENTS_FILE).slice(0, N_EVENTS)
    return table.to_pandas()


def _muon_table(raw: pd.DataFrame) -> pd.DataFrame:
    """Flatten raw events to one row per matched muon, as ingest does."""
    n_matched = raw["nMatchedMuons"].to_numpy()
    rows = []
    for slot in range(N_MUON_SLOTS):
        matched = raw[n_matched > slot]
        rows.append(
            pd.DataFrame(
                {name: matched[slot_column(name, slot)] for name in MUON_TABLE_COLUMNS}
            )
        )
    return pd.concat(rows, ignore_index=True)


def _raw_jets(n_events: int = 400, seed: int = 3) -> pd.DataFrame:
    """Raw jet events in the default layout, zero-padded after nJets and nPFJets."""
    rng = np.random.default_rng(seed)
    columns: dict[str, np.ndarray] = {}
    n_jets = rng.integers(0, 5, n_events)
    n_pf = rng.integers(0, 9, n_events)
    columns["nJets"] = n_jets
    for slot in range(N_JET_SLOTS):
        filled = n_jets > slot
        columns[slot_column("jetHwPt", slot)] = np.where(
            filled, rng.integers(1, 400, n_events), 0
        )
        columns[slot_column("jetHwEta", slot)] = np.where(
            filled, rng.integers(-114, 115, n_events), 0
        )
        columns[slot_column("jetHwPhi", slot)] = np.where(
            filled, rng.integers(0, 144, n_events), 0
        )
    columns["nPFJets"] = n_pf
    for slot in range(N_PF_JET_SLOTS):
        filled = n_pf > slot
        columns[slot_column("pfJetPt", slot)] = np.where(
            filled, rng.uniform(5, 200, n_events), 0.0
        )
        columns[slot_column("pfJetEta", slot)] = np.where(
            filled, rng.uniform(-5, 5, n_events), 0.0
        )
        columns[slot_column("pfJetPhi", slot)] = np.where(
            filled, rng.uniform(-np.pi, np.pi, n_events), 0.0
        )
        columns[slot_column("pfJetMass", slot)] = np.where(
            filled, rng.uniform(0, 20, n_events), 0.0
        )
    return pd.DataFrame({name: columns[name] for name in raw_jet_event_columns()})


def _jet_tables(n_jets: int = 300, seed: int = 4) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A consistent jet table and match records: one L1 jet per event, 1 or 2 PF jets each."""
    rng = np.random.default_rng(seed)
    n_matched = rng.integers(1, 3, n_jets)
    event = np.repeat(np.arange(n_jets), n_matched)
    pf_index = np.concatenate([np.arange(k) for k in n_matched])
    d_r = rng.uniform(0.0, 0.39, event.size)
    matches = pd.DataFrame(
        {
            "event": event,
            "pfIndex": pf_index,
            "l1Index": np.zeros(event.size, dtype=np.int64),
            "dR": d_r,
        }
    )
    max_dr = matches.groupby("event")["dR"].max().to_numpy()
    jets = pd.DataFrame(
        {
            "event": np.arange(n_jets),
            "l1Index": np.zeros(n_jets, dtype=np.int64),
            "hwPt": rng.integers(1, 400, n_jets),
            "hwEta": rng.integers(-60, 61, n_jets),
            "hwPhi": rng.integers(0, 144, n_jets),
            "ptPF": rng.uniform(10, 150, n_jets),
            "nMatchedPF": n_matched,
            "maxDR": max_dr,
        }
    )
    assert tuple(jets.columns) == JET_TABLE_COLUMNS
    assert tuple(matches.columns) == JET_MATCH_COLUMNS
    return jets, matches


def _write(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_parquet(path, index=False)
    return path


def _first_event(raw: pd.DataFrame, matched: int) -> int:
    return int(np.flatnonzero(raw["nMatchedMuons"].to_numpy() == matched)[0])


def _expect_failure(
    tmp_path: Path,
    kind: str,
    inputs: list[Path],
    settings,
    expectation: str,
    column: str,
) -> dict:
    """Run the stage, check that it fails naming ``expectation`` on ``column``; return the JSON."""
    out = tmp_path / "reports"
    with pytest.raises(
        DataValidationError, match=f"{kind} validation failed"
    ) as raised:
        run_validate(settings, kind, inputs, out)
    payload = json.loads((out / f"{kind}.json").read_text())
    assert payload["success"] is False
    named = [
        failure
        for failure in payload["failed_expectations"]
        if failure["expectation"] == expectation
        and column in failure["column"].split(", ")
    ]
    assert named, (
        f"no failed {expectation} on {column}: {payload['failed_expectations']}"
    )
    assert column in raised.value.failures
    assert expectation in raised.value.failures
    markdown = (out / f"{kind}.md").read_text()
    assert column in markdown
    assert (out / f"{kind}_data_docs.tar.gz").exists()
    return named[0]


def test_clean_raw_muons_pass(raw_muons, tmp_path):
    payload = run_validate(
        MUON_SETTINGS,
        "raw-muon",
        [_write(raw_muons, tmp_path / "events.parquet")],
        tmp_path,
    )
    assert payload["success"] is True
    assert payload["failed_expectations"] == []
    assert payload["statistics"]["not_evaluated_expectations"] == 0
    assert payload["statistics"]["tables"]["raw-muon"]["rows"] == N_EVENTS
    markdown = (tmp_path / "raw-muon.md").read_text()
    assert "raw-muon: passed" in markdown


def test_clean_muon_table_passes(raw_muons, tmp_path):
    table = _write(_muon_table(raw_muons), tmp_path / "muons.parquet")
    payload = run_validate(MUON_SETTINGS, "muon-table", [table], tmp_path)
    assert payload["success"] is True
    assert payload["statistics"]["tables"]["muon-table"]["duplicate_fraction"] == 0.0


def test_clean_raw_jets_pass(tmp_path):
    payload = run_validate(
        JET_SETTINGS,
        "raw-jet",
        [_write(_raw_jets(), tmp_path / "jet_events.parquet")],
        tmp_path,
    )
    assert payload["success"] is True


def test_clean_jet_tables_pass(tmp_path):
    jets, matches = _jet_tables()
    inputs = [
        _write(jets, tmp_path / "jets.parquet"),
        _write(matches, tmp_path / "jet_matches.parquet"),
    ]
    payload = run_validate(JET_SETTINGS, "jet-table", inputs, tmp_path)
    assert payload["success"] is True
    assert set(payload["statistics"]["tables"]) == {"jet-table", "jet-matches"}


def _set(raw: pd.DataFrame, event: int, column: str, value) -> pd.DataFrame:
    corrupted = raw.copy()
    if isinstance(value, float) and corrupted[column].dtype.kind == "i":
        corrupted[column] = corrupted[column].astype(np.float64)
    corrupted.loc[event, column] = value
    return corrupted


@pytest.mark.parametrize(
    ("column", "value", "matched", "expectation"),
    [
        ("hwEtaL1_0", 300, 1, "expect_column_values_to_be_between"),
        ("hwPhiL1_0", 576, 1, "expect_column_values_to_be_between"),
        ("hwSignL1_0", 2, 1, "expect_column_values_to_be_in_set"),
        ("ptReco_0", float("nan"), 1, "expect_column_values_to_not_be_null"),
        ("etaVtxReco_1", float("inf"), 2, "expect_column_values_to_be_between"),
        ("nMatchedMuons", 2, 1, "expect_column_pair_values_to_be_equal"),
        ("etaVtxReco_0", 0.5, 0, "expect_column_values_to_be_in_set"),
        ("chargeReco_0", 0, 1, "expect_column_values_to_be_in_set"),
        ("hwPhiL1Unmatched_0", 700, 0, "expect_column_values_to_be_between"),
    ],
    ids=[
        "eta-out-of-range",
        "phi-576",
        "sign-2",
        "nan",
        "inf",
        "count-disagrees",
        "non-zero-padding",
        "zero-charge-filled",
        "unmatched-phi",
    ],
)
def test_raw_muon_corruption_fails(
    raw_muons, tmp_path, column, value, matched, expectation
):
    event = _first_event(raw_muons, matched)
    path = _write(_set(raw_muons, event, column, value), tmp_path / "events.parquet")
    failure = _expect_failure(
        tmp_path, "raw-muon", [path], MUON_SETTINGS, expectation, column
    )
    assert failure["unexpected_count"] >= 1
    if column != "nMatchedMuons":
        assert event in failure["example_events"]


def test_padding_failure_names_rows(raw_muons, tmp_path):
    event = _first_event(raw_muons, 0)
    path = _write(
        _set(raw_muons, event, "etaVtxReco_0", 0.5), tmp_path / "events.parquet"
    )
    failure = _expect_failure(
        tmp_path,
        "raw-muon",
        [path],
        MUON_SETTINGS,
        "expect_column_values_to_be_in_set",
        "etaVtxReco_0",
    )
    assert failure["rows"] == "padding slots, slot >= nMatchedMuons"
    assert failure["examples"] == [0.5]


def test_missing_column_fails_column_set(raw_muons, tmp_path):
    path = _write(raw_muons.drop(columns=["hwPhiL1_3"]), tmp_path / "events.parquet")
    failure = _expect_failure(
        tmp_path,
        "raw-muon",
        [path],
        MUON_SETTINGS,
        "expect_table_columns_to_match_set",
        "hwPhiL1_3",
    )
    assert failure["examples"] == ["missing hwPhiL1_3"]
    payload = json.loads((tmp_path / "reports" / "raw-muon.json").read_text())
    # The hwPhiL1 batch cannot be built without one of its slots.
    assert payload["statistics"]["not_evaluated_expectations"] >= 1


def test_extra_raw_column_allowed(raw_muons, tmp_path):
    path = _write(raw_muons.assign(runNumber=1), tmp_path / "events.parquet")
    assert run_validate(MUON_SETTINGS, "raw-muon", [path], tmp_path)["success"] is True


def test_chunks_add_up(raw_muons, tmp_path):
    first, last = _first_event(raw_muons, 1), N_EVENTS - 1
    corrupted = _set(
        _set(raw_muons, first, "hwPhiL1Unmatched_0", 600),
        last,
        "hwPhiL1Unmatched_0",
        601,
    )
    path = _write(corrupted, tmp_path / "events.parquet")
    settings = MUON_SETTINGS.model_copy(update={"batch_rows": 700})
    failure = _expect_failure(
        tmp_path,
        "raw-muon",
        [path],
        settings,
        "expect_column_values_to_be_between",
        "hwPhiL1Unmatched_0",
    )
    payload = json.loads((tmp_path / "reports" / "raw-muon.json").read_text())
    assert payload["statistics"]["tables"]["raw-muon"]["chunks"] == 3
    assert failure["unexpected_count"] == 2
    assert failure["element_count"] == N_EVENTS * N_MUON_SLOTS
    assert failure["example_events"] == [first, last]


@pytest.mark.parametrize(
    ("column", "value", "expectation"),
    [
        ("hwPhiL1", 576, "expect_column_values_to_be_between"),
        ("hwSignL1", 2, "expect_column_values_to_be_in_set"),
        ("etaVtxReco", float("nan"), "expect_column_values_to_not_be_null"),
        ("ptReco", 0.0, "expect_column_values_to_be_between"),
    ],
    ids=["phi-576", "sign-2", "nan", "zero-pt"],
)
def test_muon_table_corruption_fails(raw_muons, tmp_path, column, value, expectation):
    table = _set(_muon_table(raw_muons), 10, column, value)
    path = _write(table, tmp_path / "muons.parquet")
    _expect_failure(tmp_path, "muon-table", [path], MUON_SETTINGS, expectation, column)


def test_muon_table_too_few_rows(raw_muons, tmp_path):
    path = _write(_muon_table(raw_muons).head(50), tmp_path / "muons.parquet")
    failure = _expect_failure(
        tmp_path,
        "muon-table",
        [path],
        MUON_SETTINGS,
        "expect_table_row_count_to_be_between",
        "(table)",
    )
    assert failure["observed_value"] == 50


def test_muon_table_duplicates_above_threshold(raw_muons, tmp_path):
    table = _muon_table(raw_muons)
    duplicated = pd.concat([table, table.head(len(table) // 10)], ignore_index=True)
    path = _write(duplicated, tmp_path / "muons.parquet")
    failure = _expect_failure(
        tmp_path,
        "muon-table",
        [path],
        MUON_SETTINGS,
        "expect_column_values_to_be_in_set",
        "(all columns)",
    )
    assert failure["unexpected_count"] == len(table) // 10
    payload = json.loads((tmp_path / "reports" / "muon-table.json").read_text())
    fraction = payload["statistics"]["tables"]["muon-table"]["duplicate_fraction"]
    assert fraction == pytest.approx((len(table) // 10) / len(duplicated))


def test_muon_table_extra_column_fails(raw_muons, tmp_path):
    path = _write(_muon_table(raw_muons).assign(extra=1), tmp_path / "muons.parquet")
    failure = _expect_failure(
        tmp_path,
        "muon-table",
        [path],
        MUON_SETTINGS,
        "expect_table_columns_to_match_set",
        "(table)",
    )
    assert failure["examples"] == ["extra extra"]


@pytest.mark.parametrize(
    ("column", "value", "expectation"),
    [
        ("jetHwPhi_0", 144, "expect_column_values_to_be_between"),
        ("pfJetPt_0", float("nan"), "expect_column_values_to_not_be_null"),
        ("pfJetEta_34", 1.0, "expect_column_values_to_be_in_set"),
        ("nJets", 12, "expect_column_pair_values_to_be_equal"),
    ],
    ids=["phi-144", "nan", "pf-padding", "count-disagrees"],
)
def test_raw_jet_corruption_fails(tmp_path, column, value, expectation):
    raw = _raw_jets()
    event = int(np.flatnonzero((raw["nJets"] > 0) & (raw["nPFJets"] > 0))[0])
    path = _write(_set(raw, event, column, value), tmp_path / "jet_events.parquet")
    _expect_failure(tmp_path, "raw-jet", [path], JET_SETTINGS, expectation, column)


def _jet_inputs(
    tmp_path: Path, jets: pd.DataFrame, matches: pd.DataFrame
) -> list[Path]:
    return [
        _write(jets, tmp_path / "jets.parquet"),
        _write(matches, tmp_path / "jet_matches.parquet"),
    ]


def test_match_at_cone_edge_fails(tmp_path):
    jets, matches = _jet_tables()
    matches.loc[5, "dR"] = 0.4
    failure = _expect_failure(
        tmp_path,
        "jet-table",
        _jet_inputs(tmp_path, jets, matches),
        JET_SETTINGS,
        "expect_column_values_to_be_between",
        "dR",
    )
    assert failure["examples"] == [0.4]


def test_pf_jet_matched_twice_fails(tmp_path):
    jets, matches = _jet_tables()
    twice = matches.iloc[[0]].assign(l1Index=1)
    matches = pd.concat([matches, twice], ignore_index=True)
    failure = _expect_failure(
        tmp_path,
        "jet-table",
        _jet_inputs(tmp_path, jets, matches),
        JET_SETTINGS,
        "expect_compound_columns_to_be_unique",
        "pfIndex",
    )
    assert failure["unexpected_count"] == 2


def test_jet_match_count_disagrees_fails(tmp_path):
    jets, matches = _jet_tables()
    jets.loc[0, "nMatchedPF"] = 3
    _expect_failure(
        tmp_path,
        "jet-table",
        _jet_inputs(tmp_path, jets, matches),
        JET_SETTINGS,
        "expect_column_pair_values_to_be_equal",
        "nMatchedPF",
    )


def test_data_docs_archive_has_site(raw_muons, tmp_path):
    table = _write(_muon_table(raw_muons), tmp_path / "muons.parquet")
    run_validate(MUON_SETTINGS, "muon-table", [table], tmp_path)
    with tarfile.open(tmp_path / "muon-table_data_docs.tar.gz") as archive:
        names = archive.getnames()
    assert "data_docs/index.html" in names
    pages = [name for name in names if name.startswith("data_docs/validations/")]
    assert any("muon-table" in name and name.endswith(".html") for name in pages)


def test_cli_prints_failures_and_exits_1(raw_muons, tmp_path):
    event = _first_event(raw_muons, 1)
    source = _write(
        _set(raw_muons, event, "hwPhiL1_0", 576), tmp_path / "events.parquet"
    )
    (tmp_path / "params.yaml").write_text("validate:\n  min_rows: 100\n")
    out = tmp_path / "reports"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "l1recal",
            "validate",
            str(source),
            "--kind",
            "raw-muon",
            "--output-dir",
            str(out),
            "--params",
            str(tmp_path / "params.yaml"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    table_lines = [
        line for line in result.stderr.splitlines() if line.startswith("hwPhiL1_0 ")
    ]
    assert len(table_lines) == 1
    assert "expect_column_values_to_be_between" in table_lines[0]
    assert "576" in table_lines[0]
    error_lines = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert len(error_lines) == 1
    assert "raw-muon validation failed" in error_lines[0]
    assert json.loads((out / "raw-muon.json").read_text())["success"] is False


def test_wrong_input_count_rejected(tmp_path):
    from l1recal.errors import ConfigError

    with pytest.raises(ConfigError, match="takes 2 input file"):
        run_validate(JET_SETTINGS, "jet-table", [tmp_path / "jets.parquet"], tmp_path)
    with pytest.raises(ConfigError, match="unknown validation kind"):
        run_validate(JET_SETTINGS, "jets", [tmp_path / "jets.parquet"], tmp_path)


def _user_layout(raw: pd.DataFrame) -> pd.DataFrame:
    """Rename the muon columns as a user's export might: ``hwPtL1_0`` to ``L1Mu1_hwPt``."""
    renamed = {"nMatchedMuons": "nMu"}
    for slot in range(N_MUON_SLOTS):
        for stem in MUON_TABLE_COLUMNS:
            renamed[slot_column(stem, slot)] = f"L1Mu{slot + 1}_{stem}"
    mapped = list(renamed)
    return raw[mapped].rename(columns=renamed)


USER_MAP = """
name: user
muon:
  count: nMu
  first_slot: 1
  columns:
"""


def _write_user_map(tmp_path: Path) -> Path:
    lines = [USER_MAP.strip("\n")]
    lines += [f"    {stem}: L1Mu{{slot}}_{stem}" for stem in MUON_TABLE_COLUMNS]
    path = tmp_path / "user_map.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_column_map_renames_raw_columns(raw_muons, tmp_path):
    from l1recal.data.column_map import load_column_map

    column_map = load_column_map(_write_user_map(tmp_path))
    path = _write(_user_layout(raw_muons), tmp_path / "user.parquet")
    payload = run_validate(
        MUON_SETTINGS, "raw-muon", [path], tmp_path / "clean", column_map
    )
    assert payload["success"] is True

    event = _first_event(raw_muons, 1)
    corrupted = _user_layout(_set(raw_muons, event, "hwPhiL1_0", 576))
    path = _write(corrupted, tmp_path / "user.parquet")
    out = tmp_path / "reports"
    with pytest.raises(DataValidationError):
        run_validate(MUON_SETTINGS, "raw-muon", [path], out, column_map)
    failures = json.loads((out / "raw-muon.json").read_text())["failed_expectations"]
    # Row expectations use project names.
    assert [f["column"] for f in failures] == ["hwPhiL1_0"]


def test_column_map_missing_user_column(raw_muons, tmp_path):
    from l1recal.data.column_map import load_column_map

    column_map = load_column_map(_write_user_map(tmp_path))
    user = _user_layout(raw_muons).drop(columns=["L1Mu4_ptReco"])
    path = _write(user, tmp_path / "user.parquet")
    out = tmp_path / "reports"
    with pytest.raises(DataValidationError):
        run_validate(MUON_SETTINGS, "raw-muon", [path], out, column_map)
    failures = json.loads((out / "raw-muon.json").read_text())["failed_expectations"]
    column_set = [
        f for f in failures if f["expectation"] == "expect_table_columns_to_match_set"
    ]
    assert column_set[0]["examples"] == ["missing L1Mu4_ptReco"]


def test_jagged_column_map_rejected(tmp_path):
    from l1recal.data.column_map import load_column_map
    from l1recal.errors import ConfigError

    with pytest.raises(
        ConfigError, match=r"section muon has layout jagged.*--kind muon-table"
    ):
        run_validate(
            MUON_SETTINGS,
            "raw-muon",
            [tmp_path / "x.parquet"],
            tmp_path,
            load_column_map("nanoaod"),
        )
