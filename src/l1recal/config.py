"""Stage settings, loaded from the stage's section of ``params.yaml``.

Each stage reads only its own section; ``dvc.yaml`` lists the same keys as the
stage's ``params`` so that DVC re-runs a stage exactly when one of them changes.
Unknown keys are rejected, so a typo fails loudly instead of being ignored.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from l1recal.errors import ConfigError


class Settings(BaseModel):
    """Base of every settings section: frozen, no unknown keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class MuonPhysics(Settings):
    """Detector and spectrum settings of the muon simulator (approximate CMS values)."""

    spectrum_index: float = Field(
        5.5,
        description="ZeroBias offline pT spectrum dN/dpT ~ pT^-index (tuned to the L1 baseline RMSE).",
    )
    pt_min_gev: float = Field(
        3.5,
        description="Lowest offline pT in GeV; softer muons do not reach station 2.",
    )
    pt_max_gev: float = Field(
        200.0, description="Highest offline pT in GeV drawn from the power law."
    )
    w_fraction: float = Field(
        0.01, description="Fraction of muons drawn from the W Jacobian peak instead."
    )
    region_fractions: tuple[float, float, float] = Field(
        (0.45, 0.20, 0.35), description="Share of muons in barrel, overlap and endcap."
    )
    resolution_inv_pt: tuple[float, float, float] = Field(
        (0.12, 0.14, 0.16),
        description="Core relative resolution on 1/pT for barrel, overlap, endcap.",
    )
    tail_fraction: float = Field(
        0.03, description="Fraction of muons with a mismeasured pT (tail)."
    )
    tail_scale: float = Field(
        2.0, description="Width of the tail, in units of the core resolution."
    )
    charge_flip: tuple[float, float, float] = Field(
        (0.01, 0.025, 0.025),
        description="Charge misassignment probability for barrel, overlap, endcap.",
    )
    eta_resolution: float = Field(
        0.03, description="Gaussian eta resolution of the L1 muon."
    )
    mean_matched_muons: float = Field(
        1.4, description="Mean number of matched muons per event."
    )
    mean_unmatched_muons: float = Field(
        0.3, description="Mean number of unmatched L1 muons per event."
    )


class JetPhysics(Settings):
    """Detector and spectrum settings of the jet simulator (approximate CMS values).

    Tuned so that dR matching of the simulated events gives the matched PF-jet
    fractions of the ZeroBias study (3.75 % of all PF jets, 59.6 % within
    abs(eta) < 3) and an L1 relative pT residual RMSE near 1.10.
    """

    mean_central_jets: float = Field(
        1.0,
        description="Mean number of PF jets per event with abs(eta) < 3 (before neighbours).",
    )
    central_pt_min_gev: float = Field(
        6.0, description="Lowest central PF jet pT in GeV."
    )
    central_spectrum_index: float = Field(
        3.0, description="Central PF jet spectrum dN/dpT ~ pT^-index."
    )
    neighbour_fraction: float = Field(
        0.25,
        description="Fraction of central jets with a close PF neighbour that the L1 jet absorbs.",
    )
    mean_forward_jets: float = Field(
        19.0, description="Mean number of soft PF jets per event with 3 < abs(eta) < 5."
    )
    forward_pt_min_gev: float = Field(
        6.5, description="Lowest forward PF jet pT in GeV."
    )
    forward_spectrum_index: float = Field(
        4.2, description="Forward PF jet spectrum dN/dpT ~ pT^-index."
    )
    central_response: float = Field(
        0.9,
        description="Raw L1 energy over PF pT for abs(eta) < 3, before calibration.",
    )
    forward_response: float = Field(
        0.12,
        description="Raw L1 energy over PF pT for abs(eta) > 3 (HF), before calibration.",
    )
    noise_gev: float = Field(7.0, description="Noise term N of the L1 resolution, GeV.")
    stochastic: float = Field(
        1.1, description="Stochastic term S of the L1 resolution, sqrt(GeV)."
    )
    constant: float = Field(0.06, description="Constant term C of the L1 resolution.")
    pileup_offset_gev: float = Field(
        1.0,
        description="Mean of the exponential pile-up energy added to each raw L1 jet, GeV.",
    )
    seed_threshold_gev: float = Field(
        4.0, description="L1 jet seed tower threshold, GeV."
    )
    seed_fraction: float = Field(
        0.5, description="Share of the raw L1 jet energy in the seed tower."
    )
    position_sigma: float = Field(
        0.1,
        description="Gaussian L1 jet position resolution in eta and in phi (rad), abs(eta) < 3.",
    )
    mean_pileup_l1_jets: float = Field(
        0.5,
        description="Mean number of L1 jets per event from pile-up, with no PF partner.",
    )


class SimulateSettings(Settings):
    """Settings of ``l1recal simulate``."""

    seed: int = Field(
        20170505, description="Seed of the event generator; same seed, same bytes."
    )
    n_events: int = Field(
        200_000, gt=0, description="Number of ZeroBias events written."
    )
    noise_floor_muons: int = Field(
        4_000_000,
        gt=0,
        description="Size of the separate muon sample used to estimate the noise floor.",
    )
    floor_pt_window_gev: tuple[float, float] = Field(
        (5.5, 45.0),
        description="L1 pT window (GeV) of the noise floor; match preprocess.pt_min/max_gev.",
    )
    physics: MuonPhysics = MuonPhysics()
    jet_events: int = Field(
        100_000,
        ge=0,
        description="Number of ZeroBias jet events written (0: no jet file).",
    )
    jet_physics: JetPhysics = JetPhysics()


class IngestSettings(Settings):
    """Settings of ``l1recal ingest``."""

    batch_rows: int = Field(
        65_536, gt=0, description="Events read per chunk (bounds memory)."
    )


class JetIngestSettings(Settings):
    """Settings of ``l1recal ingest --task jet``."""

    batch_rows: int = Field(
        16_384,
        gt=0,
        description="Events read per chunk (bounds memory: 420 dR values per event).",
    )
    abs_eta_max: float | None = Field(
        None,
        gt=0,
        description="Match only PF and L1 jets with abs(eta) below this; null keeps every jet.",
    )


class PreprocessSettings(Settings):
    """Settings of ``l1recal preprocess``."""

    pt_min_gev: float = Field(
        5.5, description="Keep muons with L1 pT above this (GeV, exclusive)."
    )
    pt_max_gev: float = Field(
        45.0, description="Keep muons with L1 pT below this (GeV, exclusive)."
    )
    split: tuple[float, float, float] = Field(
        (0.65, 0.20, 0.15), description="Train, validation and test fractions."
    )
    seed: int = Field(42, description="Seed of the random split.")

    @model_validator(mode="after")
    def _check(self) -> PreprocessSettings:
        # Shared with JetPreprocessSettings.
        if not self.pt_min_gev < self.pt_max_gev:
            raise ValueError(
                f"pt_min_gev ({self.pt_min_gev}) must be below pt_max_gev ({self.pt_max_gev})"
            )
        if any(f <= 0 for f in self.split) or abs(sum(self.split) - 1.0) > 1e-9:
            raise ValueError(
                f"split fractions must be positive and sum to 1, got {self.split}"
            )
        return self


class JetPreprocessSettings(PreprocessSettings):
    """Settings of ``l1recal preprocess --task jet``: the muon steps with a jet pT window."""

    pt_min_gev: float = Field(
        0.0, ge=0, description="Keep L1 jets with pT above this (GeV, exclusive)."
    )
    pt_max_gev: float = Field(
        1024.0, description="Keep L1 jets with pT below this (GeV, exclusive)."
    )


PtWeighting = Literal["relative", "none"]
_PT_WEIGHTING_HELP = (
    "relative: weight the pT-correction loss by 1 / pT_offline^2, so training minimises the"
    " relative residual (pT - pT_offline) / pT_offline that the evaluation scores; none: plain loss."
)


class NetworkTrainSettings(Settings):
    """Settings of ``l1recal train network``."""

    pt_weighting: PtWeighting = Field("relative", description=_PT_WEIGHTING_HELP)

    presets: list[int] = Field(
        [4], min_length=1, description="Network preset IDs (study's Table 6)."
    )
    batch_size: Literal[256, 512, 8192] = Field(512, description="Mini-batch size.")
    max_epochs: int = Field(
        100,
        gt=0,
        description="Upper bound on epochs; early stopping usually ends first.",
    )
    patience: int = Field(
        8,
        gt=0,
        description="Epochs without validation-loss improvement before stopping.",
    )
    seed: int = Field(7, description="Seed of weight initialisation and shuffling.")


#: The study's Falkon configurations. Sigma and lambda were tuned on the
#: simulated default data with ``l1recal tune`` (inputs min-max scaled to [0, 1]).
FALKON_PRESETS: dict[str, dict] = {
    "gaussian_m500": {
        "kernel": "gaussian",
        "centres": 500,
        "sigma": 0.5,
        "penalty": 1e-6,
        "max_iterations": 50,
    },
    "gaussian_m100": {
        "kernel": "gaussian",
        "centres": 100,
        "sigma": 0.5,
        "penalty": 1e-6,
        "max_iterations": 30,
    },
    "linear_m100": {
        "kernel": "linear",
        "centres": 100,
        "sigma": 1.0,
        "beta": 1.0,
        "penalty": 1e-6,
    },
    "polynomial_m100_deg5": {
        "kernel": "polynomial",
        "centres": 100,
        "degree": 5,
        "alpha": 1.0,
        "beta": 1.0,
        "penalty": 1e-6,
    },
}


class FalkonModelSettings(Settings):
    """One Falkon model: kernel, Nystrom centres and solver settings.

    With ``preset`` set, the preset's values fill every field not given
    explicitly, and ``name`` defaults to ``falkon_<preset>``.
    """

    preset: str | None = Field(
        None, description=f"Named configuration: one of {', '.join(FALKON_PRESETS)}."
    )
    name: str = Field(
        description="Model name used in reports, e.g. falkon_gaussian_m100."
    )
    kernel: Literal["gaussian", "linear", "polynomial"] = "gaussian"
    centres: int = Field(100, gt=0, description="Number M of Nystrom centres.")
    sigma: float = Field(
        0.5,
        gt=0,
        description="Kernel length scale, in units of the [0, 1] scaled inputs.",
    )
    penalty: float = Field(1e-6, gt=0, description="Ridge penalty lambda.")
    degree: int = Field(5, gt=0, description="Polynomial kernel degree.")
    alpha: float = Field(
        1.0, description="Polynomial kernel slope alpha in (alpha x.c + beta)^degree."
    )
    beta: float = Field(
        1.0, description="Offset beta of the linear and polynomial kernels."
    )
    max_iterations: int = Field(30, gt=0, description="Conjugate-gradient iterations.")
    seed: int = Field(11, description="Seed of the Nystrom centre draw.")

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, values: object) -> object:
        if not isinstance(values, dict) or values.get("preset") is None:
            return values
        preset = values["preset"]
        if preset not in FALKON_PRESETS:
            raise ValueError(
                f"unknown Falkon preset {preset!r}; valid presets: {', '.join(FALKON_PRESETS)}"
            )
        return {"name": f"falkon_{preset}", **FALKON_PRESETS[preset], **values}


class FalkonTrainSettings(Settings):
    """Settings of ``l1recal train falkon``."""

    pt_weighting: PtWeighting = Field("relative", description=_PT_WEIGHTING_HELP)

    models: list[FalkonModelSettings] = Field(
        default_factory=lambda: [FalkonModelSettings(preset="gaussian_m100")],
        min_length=1,
    )
    block_memory_mb: int = Field(
        512, gt=0, description="Memory budget of one kernel block, in MB."
    )
    kernel_cache_mb: int = Field(
        1024,
        ge=0,
        description="Keep the whole K_nM in memory when it fits in this many MB (faster); 0 rebuilds it per iteration.",
    )


class TuneSweep(Settings):
    """One tuning curve: a Falkon setting varied with the others fixed."""

    parameter: Literal["sigma", "penalty", "centres"] = Field(
        description="Setting to vary."
    )
    values: list[float] = Field(
        min_length=2, description="Values to try (sigma unitless, penalty lambda, M)."
    )


class TuneSettings(Settings):
    """Settings of ``l1recal tune``: Falkon tuning curves on the validation split."""

    base: FalkonModelSettings = Field(
        default_factory=lambda: FalkonModelSettings(preset="gaussian_m100"),
        description="The fixed settings; each sweep varies one of them.",
    )
    sweeps: list[TuneSweep] = Field(
        default_factory=lambda: [
            TuneSweep(parameter="sigma", values=[0.1, 0.2, 0.3, 0.5, 1.0, 2.0]),
            TuneSweep(parameter="penalty", values=[1e-9, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4]),
            TuneSweep(parameter="centres", values=[25, 50, 100, 200, 300]),
        ],
        min_length=1,
    )
    pt_weighting: PtWeighting = Field("relative", description=_PT_WEIGHTING_HELP)
    block_memory_mb: int = Field(
        512, gt=0, description="Memory budget of one kernel block, in MB."
    )


class EvaluateSettings(Settings):
    """Settings of ``l1recal evaluate``."""

    batch_size: int = Field(65_536, gt=0, description="Rows per prediction batch.")
    figure_rows: int = Field(
        200_000,
        gt=0,
        description="Test rows drawn at random for the figures (all rows when fewer).",
    )
    figure_models: list[str] = Field(
        default_factory=list,
        description="Models that get the full set of residual figures besides the best one.",
    )
    throughput_rows: int = Field(
        65_536,
        ge=0,
        description="Rows per batch of the CPU throughput measurement; 0 skips it.",
    )
    throughput_seconds: float = Field(
        0.5,
        gt=0,
        description="Minimum wall time, in s, of repeated batches per model and thread count.",
    )
    simulated: bool | None = Field(
        None,
        description=(
            "Label the figures as simulation; null: simulated exactly when a noise "
            "floor is given."
        ),
    )


class ApproveSettings(Settings):
    """Settings of ``l1recal approve``: the gate a model passes before serving and synthesis."""

    baseline_margins: dict[str, float] = Field(
        default_factory=lambda: {"phi": 0.10, "eta": 0.01, "pt_rel": 0.10},
        description=(
            "Per metric, the fraction by which a model's RMSE must be below the L1 "
            "baseline's: rmse < (1 - margin) * rmse_L1. Metrics not listed need margin 0."
        ),
    )
    champion_tolerance: float = Field(
        0.02,
        ge=0,
        description=(
            "Largest fraction by which a model's RMSE may exceed the champion's on the "
            "same test split, per metric: rmse <= (1 + tolerance) * rmse_champion."
        ),
    )
    fixed_point_tolerance: float = Field(
        0.05,
        ge=0,
        description=(
            "Largest relative RMSE loss (fixed - float) / float of the fixed-point "
            "emulation, per metric."
        ),
    )
    require_fixed_point: bool = Field(
        False,
        description="Reject models that have no fixed-point emulation result.",
    )

    @model_validator(mode="after")
    def _check_margins(self) -> ApproveSettings:
        for metric, margin in self.baseline_margins.items():
            if not 0 <= margin < 1:
                raise ValueError(
                    f"baseline_margins.{metric} must be in [0, 1), got {margin}"
                )
        return self


class HlsSettings(Settings):
    """Settings of ``l1recal hls``: hls4ml conversion, C simulation and synthesis of the firmware."""

    backend: Literal["Vitis", "Vivado"] = Field(
        "Vitis",
        description="hls4ml backend; Vitis needs vitis-run, Vivado needs vivado_hls.",
    )
    part: str = Field(
        "xcvu13p-flga2577-2-e",
        description="Xilinx FPGA part (Virtex UltraScale+ of the L1 scouting boards).",
    )
    clock_period_ns: float = Field(
        4.16, gt=0, description="Target clock period in ns (4.16 ns is 240 MHz)."
    )
    precision: str = Field(
        "ap_fixed<16,6>",
        description="Default fixed-point type of inputs, weights and activations.",
    )
    layer_precision: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description=(
            "Per-layer overrides, layer name -> {result|weight|bias|accum|table: type}; "
            "Dense results stay 'auto' unless set here, so BatchNorm folds into them."
        ),
    )
    reuse_factor: int = Field(
        1,
        gt=0,
        description="Multiplications sharing one multiplier; 1 is fully parallel.",
    )
    strategy: Literal["Latency", "Resource"] = Field(
        "Latency", description="hls4ml Dense implementation strategy."
    )
    io_type: Literal["io_parallel", "io_stream"] = Field(
        "io_parallel", description="Firmware interface: parallel arrays or AXI streams."
    )
    elu_table_size: int = Field(
        4096,
        gt=0,
        description="Entries of the exp(z) - 1 lookup table over z in [-8, 0] (Falkon Gaussian kernel).",
    )
    scan_widths: list[int] = Field(
        default_factory=lambda: [8, 10, 12, 14, 16, 18, 20],
        min_length=1,
        description="Total widths W of the precision scan, ap_fixed<W, scan_integer_bits>.",
    )
    scan_integer_bits: int = Field(
        6, gt=0, description="Integer bits I of every type in the precision scan."
    )
    scan_tolerance: float = Field(
        0.01,
        ge=0,
        description="Relative RMSE loss per metric below which a scanned width counts as safe.",
    )
    max_test_rows: int = Field(
        0,
        ge=0,
        description="Test rows emulated per model; 0 uses the whole test split.",
    )
    scan_test_rows: int = Field(
        5_000,
        ge=0,
        description="Test rows emulated per width of the precision scan; 0 uses all of max_test_rows.",
    )

    @model_validator(mode="after")
    def _check_types(self) -> HlsSettings:
        from l1recal.fpga.precision import parse_fixed

        types = {"precision": self.precision}
        for layer, layer_types in self.layer_precision.items():
            for key, text in layer_types.items():
                if key not in {"result", "weight", "bias", "accum", "table"}:
                    raise ValueError(
                        f"layer_precision.{layer}.{key}: unknown type key; "
                        "use result, weight, bias, accum or table"
                    )
                if text != "auto":
                    types[f"layer_precision.{layer}.{key}"] = text
        for field, text in types.items():
            try:
                parse_fixed(text)
            except ConfigError as error:
                raise ValueError(f"{field}: {error}") from None
        if any(not self.scan_integer_bits < width <= 64 for width in self.scan_widths):
            raise ValueError(
                f"scan_widths {self.scan_widths} must each exceed scan_integer_bits "
                f"({self.scan_integer_bits}) and be at most 64"
            )
        return self


class _ValidateCommon(Settings):
    """Thresholds shared by the muon and jet ``validate`` stages."""

    batch_rows: int = Field(
        250_000,
        gt=0,
        description="Events of a raw file validated per chunk (bounds memory; one Data Docs page per chunk).",
    )
    min_rows: int = Field(
        1_000,
        ge=0,
        description="Minimum number of rows of a flattened table; fewer fails the row-count expectation.",
    )
    # NOTE: 0.01 is a guess. The study drops duplicate rows but does not report
    # how many; simulated tables have none. Raise it if real exports fail here.
    max_duplicate_fraction: float = Field(
        0.01,
        ge=0.0,
        le=1.0,
        description="Largest allowed fraction of flattened-table rows that repeat an earlier row exactly.",
    )
    examples: int = Field(
        5,
        gt=0,
        le=20,
        description="Unexpected values kept per failed expectation in the reports.",
    )


class ValidateSettings(_ValidateCommon):
    """Settings of ``l1recal validate`` for raw muon events and the flattened muon table."""

    max_offline_pt_gev: float = Field(
        255.0,
        gt=0,
        description="Largest offline muon pT (ptReco) accepted, GeV.",
    )
    max_abs_offline_eta: float = Field(
        2.45,
        gt=0,
        description="Largest abs(eta) accepted for etaVtxReco and etaExtRecoSt1.",
    )


class JetValidateSettings(_ValidateCommon):
    """Settings of ``l1recal validate`` for raw jet events and the flattened jet tables."""

    max_abs_pf_eta: float = Field(
        5.2,
        gt=0,
        description="Largest abs(eta) accepted for a PF jet (the HF acceptance ends at 5.19).",
    )


class PackageSettings(Settings):
    """Settings of ``l1recal package``."""

    export: bool = Field(
        True,
        description="Write one .bentomodel file per approved model into the export folder.",
    )


class ServingSettings(Settings):
    """Settings of the BentoML service, read from the ``serving`` section of the file in L1RECAL_PARAMS."""

    max_batch_size: int = Field(
        16_384,
        gt=0,
        le=1_000_000,
        description="Maximum number of objects in one request to a batch endpoint; larger requests get HTTP 400.",
    )
    adaptive_max_batch_size: int = Field(
        1_024,
        gt=0,
        description="Maximum number of objects the adaptive-batching endpoints merge into one model call.",
    )
    adaptive_max_latency_ms: int = Field(
        2_000,
        gt=0,
        description="Latency bound of the adaptive batcher in ms; requests queued longer get HTTP 503.",
    )
    required_kinds: list[Literal["muon", "jet"]] = Field(
        [],
        description="Kinds whose approved model must be loaded for /readyz to report ready; "
        "empty: every kind present in the model store, and at least one.",
    )
    workers: int = Field(1, gt=0, description="BentoML worker processes.")


SettingsT = TypeVar("SettingsT", bound=Settings)


def load_section(path: str | Path, section: str, model: type[SettingsT]) -> SettingsT:
    """Load and validate one section of a ``params.yaml`` file.

    Args:
        path: the YAML file.
        section: top-level key of the stage.
        model: the settings class to validate against.

    Raises:
        ConfigError: when the file is missing or unreadable, or the section is invalid.
    """
    path = Path(path)
    try:
        # Parsing the text of a stream named after the file puts its name in YAML errors.
        with path.open() as stream:
            document = yaml.safe_load(stream) or {}
    except FileNotFoundError as error:
        raise ConfigError(
            f"{path}: parameter file not found; pass --params with the path of params.yaml"
        ) from error
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: invalid YAML: {error}") from error
    if not isinstance(document, dict):
        raise ConfigError(
            f"{path}: expected a mapping of stage sections at the top level"
        )
    if section not in document:
        # A missing section means defaults, but a near-miss is a typo that would
        # otherwise silently run the stage on defaults.
        stem = section.removeprefix("jet_")
        # The muon and jet sections of one stage differ only by the jet_ prefix.
        others = [str(key) for key in document if str(key).removeprefix("jet_") != stem]
        close = difflib.get_close_matches(section, others, n=1, cutoff=0.8)
        if close:
            raise ConfigError(
                f"{path}: section {section!r} not found, but {close[0]!r} is present;"
                f" rename it to {section!r} or remove it"
            )
    raw = document.get(section, {}) or {}
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        problems = "; ".join(
            f"{section}.{'.'.join(str(p) for p in item['loc'])}: {item['msg']}"
            for item in error.errors()
        )
        raise ConfigError(f"{path}: invalid settings: {problems}") from error
