"""Evaluation figures in the CMS style (matplotlib with mplhep), written as PNG files.

Muons:

* ``l1_vs_offline``: distributions and 2D histograms of L1 against offline
  phi, eta and pT (the study's Figure 5).
* ``residuals_<model>``: residuals before and after re-calibration, predicted
  against offline values, and the L1, predicted and offline distributions
  (the study's Figure 11).
* ``resolution_pt_<model>``, ``resolution_eta_<model>``: bias and resolution of
  each residual against offline pT (per barrel / overlap / endcap region) and
  against offline eta.
* ``charge_<model>``: residuals of positive and negative L1 muons.

Jets: ``jet_l1_vs_pf`` (distributions, residual, match multiplicity, like the
study's Figure 7), ``jet_residuals_<model>`` and ``jet_resolution_<model>``.

Residuals are phi_pred - phi_reco (rad, wrapped into [-pi, pi)), eta_pred -
eta_reco, and (pT_pred - pT_reco) / pT_reco. Bias is the median residual in a
bin and resolution is half the width of its central 68 % interval, which
tolerates the non-Gaussian tails of L1 pT; bins with fewer than
:data:`MIN_BIN_ENTRIES` rows are left empty.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import mplhep
import numpy as np
import pandas as pd

from l1recal.atomic import atomic_path
from l1recal.evaluation.metrics import recalibrate
from l1recal.schema import (
    BARREL_MAX_ABS_ETA,
    ENDCAP_MAX_ABS_ETA,
    OVERLAP_MAX_ABS_ETA,
)
from l1recal.units import wrap_delta_phi

logger = logging.getLogger(__name__)

#: Resolution of the written PNG files, dots per inch.
FIGURE_DPI = 72
#: Minimum number of rows for a bias or resolution point.
MIN_BIN_ENTRIES = 20
#: Offline muon pT bin edges of the resolution figures, GeV.
MUON_PT_EDGES = np.array([3, 5, 7, 9, 11, 14, 17, 20, 25, 30, 40, 50, 70])
#: Offline eta bin edges of the resolution figures.
ETA_EDGES = np.linspace(-2.4, 2.4, 25)
#: Offline jet pT bin edges, GeV.
JET_PT_EDGES = np.array([10, 15, 20, 30, 40, 60, 80, 120, 200, 400])
REGIONS = (
    ("barrel", 0.0, BARREL_MAX_ABS_ETA),
    ("overlap", BARREL_MAX_ABS_ETA, OVERLAP_MAX_ABS_ETA),
    ("endcap", OVERLAP_MAX_ABS_ETA, ENDCAP_MAX_ABS_ETA),
)
_QUANTITIES = (
    (
        "phi",
        r"$\phi$ (rad)",
        r"$\phi - \phi_{reco}$ (rad)",
        (0.0, 2 * np.pi),
        (-1.5, 1.5),
    ),
    ("eta", r"$\eta$", r"$\eta - \eta_{reco}$", (-2.5, 2.5), (-0.15, 0.15)),
    (
        "pt",
        r"$p_T$ (GeV)",
        r"$(p_T - p_{T,reco}) / p_{T,reco}$",
        (0.0, 60.0),
        (-1.0, 2.0),
    ),
)
_STYLE = [
    mplhep.style.CMS,
    {"font.size": 13, "axes.labelsize": 13, "legend.fontsize": 11},
]


@dataclass(frozen=True)
class FigureRecord:
    """A written figure.

    Attributes:
        name: file stem, unique within a report.
        title: one-line title.
        caption: what the figure shows.
        path: the PNG file.
    """

    name: str
    title: str
    caption: str
    path: Path


def sample_rows(frame: pd.DataFrame, rows: int, seed: int = 0) -> np.ndarray:
    """Return sorted positions of at most ``rows`` rows of ``frame``, drawn without replacement."""
    if len(frame) <= rows:
        return np.arange(len(frame))
    return np.sort(np.random.default_rng(seed).choice(len(frame), rows, replace=False))


def muon_values(
    frame: pd.DataFrame, corrections: np.ndarray | None
) -> dict[str, np.ndarray]:
    """Return re-calibrated muon pT (GeV), eta and phi (rad); the L1 values for no corrections."""
    if corrections is None:
        corrections = np.zeros((len(frame), 3))
    values = recalibrate(frame, corrections)
    return {key: values[key].to_numpy() for key in ("pt", "eta", "phi")}


def muon_offline(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Return offline pT (GeV), eta and phi (rad, [0, 2 pi)) of the muons."""
    return {
        "pt": frame["ptReco"].to_numpy(),
        "eta": frame["etaVtxReco"].to_numpy(),
        "phi": frame["phiVtxReco"].to_numpy(),
    }


def muon_residuals(
    values: dict[str, np.ndarray], offline: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Return the phi (wrapped), eta and relative pT residuals against offline."""
    return {
        "phi": wrap_delta_phi(values["phi"] - offline["phi"]),
        "eta": values["eta"] - offline["eta"],
        "pt": (values["pt"] - offline["pt"]) / offline["pt"],
    }


def binned_bias_resolution(
    x: np.ndarray, residual: np.ndarray, edges: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return bin centres, median and half the central 68 % width of ``residual`` in bins of ``x``.

    Bins with fewer than :data:`MIN_BIN_ENTRIES` entries hold NaN.
    """
    index = np.digitize(x, edges) - 1
    n_bins = len(edges) - 1
    bias = np.full(n_bins, np.nan)
    width = np.full(n_bins, np.nan)
    for b in range(n_bins):
        selected = residual[index == b]
        if len(selected) >= MIN_BIN_ENTRIES:
            low, median, high = np.quantile(selected, [0.16, 0.5, 0.84])
            bias[b] = median
            width[b] = 0.5 * (high - low)
    return 0.5 * (edges[:-1] + edges[1:]), bias, width


class FigureWriter:
    """Save figures into one folder and keep their records in order.

    Args:
        directory: output folder, created when missing.
        simulated: label the figures as simulation.
    """

    def __init__(self, directory: Path, simulated: bool) -> None:
        self.directory = directory
        self.simulated = simulated
        self.records: list[FigureRecord] = []
        directory.mkdir(parents=True, exist_ok=True)

    def label(self, ax: plt.Axes, right: str = "") -> None:
        """Draw the CMS label above one axis: "CMS", then "Simulation Private work" or "Private work".

        Drawn as two text artists: mplhep.cms.label measures its text by
        rendering the figure, about 2 s per figure with mplhep 1.3.3 on two cores.
        """
        ax.text(
            0.0,
            1.01,
            "CMS",
            transform=ax.transAxes,
            fontweight="bold",
            fontsize=15,
            va="bottom",
        )
        extra = "Simulation Private work" if self.simulated else "Private work"
        ax.text(
            0.16,
            1.01,
            extra,
            transform=ax.transAxes,
            fontstyle="italic",
            fontsize=13,
            va="bottom",
        )
        if right:
            ax.text(
                1.0,
                1.01,
                right,
                transform=ax.transAxes,
                fontsize=13,
                ha="right",
                va="bottom",
            )

    def save(self, figure: plt.Figure, name: str, title: str, caption: str) -> None:
        """Write ``figure`` as ``<name>.png`` atomically and close it."""
        path = self.directory / f"{name}.png"
        figure.subplots_adjust(
            left=0.07, right=0.97, bottom=0.08, top=0.94, wspace=0.32, hspace=0.32
        )
        with atomic_path(path) as temporary:
            figure.savefig(temporary, format="png", dpi=FIGURE_DPI)
        plt.close(figure)
        self.records.append(FigureRecord(name, title, caption, path))
        logger.debug("wrote %s", path)


def _hist(
    ax: plt.Axes, values: np.ndarray, bins: np.ndarray, label: str, **kwargs
) -> None:
    counts, _ = np.histogram(values, bins=bins)
    mplhep.histplot(counts, bins, ax=ax, label=label, flow="none", **kwargs)


def _hist2d(ax: plt.Axes, x: np.ndarray, y: np.ndarray, bins: np.ndarray) -> None:
    counts, xedges, yedges = np.histogram2d(x, y, bins=[bins, bins])
    masked = np.where(counts > 0, counts, np.nan)
    mplhep.hist2dplot(
        masked,
        xedges,
        yedges,
        ax=ax,
        cbar=True,
        flow="none",
        norm=matplotlib.colors.LogNorm(),
    )


def _bins(span: tuple[float, float], n: int = 60) -> np.ndarray:
    return np.linspace(span[0], span[1], n + 1)


def plot_muon_inputs(writer: FigureWriter, frame: pd.DataFrame) -> None:
    """Draw L1 against offline distributions and 2D histograms of phi, eta and pT."""
    l1, offline = muon_values(frame, None), muon_offline(frame)
    with plt.style.context(_STYLE):
        figure, axes = plt.subplots(2, 3, figsize=(18, 11))
        for column, (key, axis_label, _, span, _) in enumerate(_QUANTITIES):
            bins = _bins(span)
            _hist(axes[0, column], l1[key], bins, "L1 (uGMT)")
            _hist(axes[0, column], offline[key], bins, "offline")
            axes[0, column].set_xlabel(axis_label)
            axes[0, column].set_ylabel("muons")
            axes[0, column].legend()
            _hist2d(axes[1, column], offline[key], l1[key], bins)
            axes[1, column].set_xlabel(f"offline {axis_label}")
            axes[1, column].set_ylabel(f"L1 {axis_label}")
        writer.label(axes[0, 0])
        writer.save(
            figure,
            "l1_vs_offline",
            "L1 against offline muons",
            "Top: distributions of L1 (uGMT) and offline phi, eta and pT on the test split. "
            "Bottom: L1 against offline value (log colour scale).",
        )


def plot_muon_residuals(
    writer: FigureWriter, frame: pd.DataFrame, corrections: np.ndarray, model: str
) -> None:
    """Draw residuals before and after re-calibration, predicted against offline, and distributions."""
    l1, offline = muon_values(frame, None), muon_offline(frame)
    predicted = muon_values(frame, corrections)
    before, after = muon_residuals(l1, offline), muon_residuals(predicted, offline)
    with plt.style.context(_STYLE):
        figure, axes = plt.subplots(3, 3, figsize=(18, 16))
        for column, (key, axis_label, residual_label, span, residual_span) in enumerate(
            _QUANTITIES
        ):
            bins = _bins(residual_span, 80)
            _hist(axes[0, column], before[key], bins, "L1")
            _hist(axes[0, column], after[key], bins, model)
            axes[0, column].set_xlabel(residual_label)
            axes[0, column].set_ylabel("muons")
            axes[0, column].legend()
            _hist2d(axes[1, column], offline[key], predicted[key], _bins(span))
            axes[1, column].set_xlabel(f"offline {axis_label}")
            axes[1, column].set_ylabel(f"{model} {axis_label}")
            value_bins = _bins(span)
            _hist(axes[2, column], l1[key], value_bins, "L1")
            _hist(axes[2, column], predicted[key], value_bins, model)
            _hist(axes[2, column], offline[key], value_bins, "offline")
            axes[2, column].set_xlabel(axis_label)
            axes[2, column].set_ylabel("muons")
            axes[2, column].legend()
        writer.label(axes[0, 0], model)
        writer.save(
            figure,
            f"residuals_{model}",
            f"Re-calibration by {model}",
            "Top: residuals against offline before (L1) and after re-calibration. "
            "Middle: re-calibrated against offline value. Bottom: L1, re-calibrated and "
            "offline distributions.",
        )


def _region_masks(abs_eta: np.ndarray) -> list[tuple[str, np.ndarray]]:
    return [(name, (abs_eta >= low) & (abs_eta < high)) for name, low, high in REGIONS]


def plot_muon_resolution(
    writer: FigureWriter, frame: pd.DataFrame, corrections: np.ndarray, model: str
) -> None:
    """Draw bias and resolution against offline pT per region, and against offline eta."""
    offline = muon_offline(frame)
    before = muon_residuals(muon_values(frame, None), offline)
    after = muon_residuals(muon_values(frame, corrections), offline)
    regions = _region_masks(np.abs(offline["eta"]))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]

    with plt.style.context(_STYLE):
        figure, axes = plt.subplots(2, 3, figsize=(18, 11))
        for column, (key, _, residual_label, _, _) in enumerate(_QUANTITIES):
            for (region, mask), colour in zip(regions, colours, strict=False):
                for residuals, style, source in (
                    (before, "--", "L1"),
                    (after, "-", model),
                ):
                    centres, bias, width = binned_bias_resolution(
                        offline["pt"][mask], residuals[key][mask], MUON_PT_EDGES
                    )
                    label = f"{source}, {region}"
                    axes[0, column].plot(
                        centres, bias, style, marker="o", color=colour, label=label
                    )
                    axes[1, column].plot(
                        centres, width, style, marker="o", color=colour, label=label
                    )
            axes[0, column].set_ylabel(f"bias of {residual_label}")
            axes[1, column].set_ylabel(f"resolution of {residual_label}")
            for row in (0, 1):
                axes[row, column].set_xlabel(r"offline $p_T$ (GeV)")
        axes[0, 0].legend(ncol=2)
        writer.label(axes[0, 0], model)
        writer.save(
            figure,
            f"resolution_pt_{model}",
            f"Bias and resolution against offline pT, {model}",
            "Median (top) and half the central 68 % width (bottom) of each residual in bins "
            "of offline pT, for barrel, overlap and endcap; dashed: L1, solid: re-calibrated.",
        )

        figure, axes = plt.subplots(2, 3, figsize=(18, 11))
        for column, (key, _, residual_label, _, _) in enumerate(_QUANTITIES):
            for residuals, style, source in ((before, "--", "L1"), (after, "-", model)):
                centres, bias, width = binned_bias_resolution(
                    offline["eta"], residuals[key], ETA_EDGES
                )
                axes[0, column].plot(centres, bias, style, marker="o", label=source)
                axes[1, column].plot(centres, width, style, marker="o", label=source)
            axes[0, column].set_ylabel(f"bias of {residual_label}")
            axes[1, column].set_ylabel(f"resolution of {residual_label}")
            for row in (0, 1):
                axes[row, column].set_xlabel(r"offline $\eta$")
                for _, low, _ in REGIONS[1:]:
                    for edge in (-low, low):
                        axes[row, column].axvline(
                            edge, color="grey", linewidth=0.8, linestyle=":"
                        )
        axes[0, 0].legend()
        writer.label(axes[0, 0], model)
        writer.save(
            figure,
            f"resolution_eta_{model}",
            f"Bias and resolution against offline eta, {model}",
            "Median (top) and half the central 68 % width (bottom) of each residual in bins "
            "of offline eta; dotted lines mark the barrel, overlap and endcap boundaries.",
        )


def plot_muon_charge(
    writer: FigureWriter, frame: pd.DataFrame, corrections: np.ndarray, model: str
) -> None:
    """Draw the residuals of positive and negative L1 muons, before and after re-calibration."""
    offline = muon_offline(frame)
    before = muon_residuals(muon_values(frame, None), offline)
    after = muon_residuals(muon_values(frame, corrections), offline)
    # The uGMT sign bit is 1 for negative muons: charge = 1 - 2 * sign.
    negative = frame["signL1"].to_numpy() > 0.5
    with plt.style.context(_STYLE):
        figure, axes = plt.subplots(1, 3, figsize=(18, 6))
        for column, (key, _, residual_label, _, residual_span) in enumerate(
            _QUANTITIES
        ):
            bins = _bins(residual_span, 80)
            for mask, charge in ((~negative, "+"), (negative, "-")):
                _hist(
                    axes[column],
                    before[key][mask],
                    bins,
                    f"L1, q = {charge}1",
                    linestyle="--",
                )
                _hist(axes[column], after[key][mask], bins, f"{model}, q = {charge}1")
            axes[column].set_xlabel(residual_label)
            axes[column].set_ylabel("muons")
        axes[0].legend()
        writer.label(axes[0], model)
        writer.save(
            figure,
            f"charge_{model}",
            f"Residuals by L1 charge, {model}",
            "Residuals of positive and negative L1 muons before (dashed) and after "
            "re-calibration; the charge-dependent bend in phi splits the L1 peaks.",
        )


def plot_jet_inputs(writer: FigureWriter, frame: pd.DataFrame) -> None:
    """Draw L1 against PF jet pT, the L1 residual and, when recorded, the match multiplicity."""
    pt_l1, pt_pf = frame["ptL1"].to_numpy(), frame["ptPF"].to_numpy()
    with plt.style.context(_STYLE):
        figure, axes = plt.subplots(1, 4, figsize=(24, 6))
        bins = np.linspace(0.0, max(200.0, float(np.quantile(pt_pf, 0.99))), 61)
        _hist(axes[0], pt_l1, bins, "L1")
        _hist(axes[0], pt_pf, bins, "matched PF (sum)")
        axes[0].set_xlabel(r"$p_T$ (GeV)")
        axes[0].set_ylabel("jets")
        axes[0].set_yscale("log")
        axes[0].legend()
        _hist2d(axes[1], pt_pf, pt_l1, bins)
        axes[1].set_xlabel(r"PF $p_T$ (GeV)")
        axes[1].set_ylabel(r"L1 $p_T$ (GeV)")
        _hist(axes[2], (pt_l1 - pt_pf) / pt_pf, _bins((-1.0, 3.0), 80), "L1")
        axes[2].set_xlabel(r"$(p_T - p_{T,PF}) / p_{T,PF}$")
        axes[2].set_ylabel("jets")
        if "nMatchedPF" in frame:
            counts = frame["nMatchedPF"].to_numpy()
            edges = np.arange(0.5, max(4, int(counts.max())) + 1.5)
            _hist(axes[3], counts, edges, "L1 jets")
            axes[3].set_xlabel("matched PF jets per L1 jet")
            axes[3].set_ylabel("L1 jets")
            axes[3].set_yscale("log")
        else:
            axes[3].set_axis_off()
            axes[3].text(
                0.5,
                0.5,
                "no match multiplicity\nin the split",
                ha="center",
                transform=axes[3].transAxes,
            )
        writer.label(axes[0])
        writer.save(
            figure,
            "jet_l1_vs_pf",
            "L1 against PF jets",
            "L1 and matched PF jet pT, L1 against PF pT, the L1 relative residual, and the "
            "number of PF jets matched to each L1 jet (when the split records it).",
        )


def plot_jet_residuals(
    writer: FigureWriter, frame: pd.DataFrame, corrections: np.ndarray, model: str
) -> None:
    """Draw jet residuals before and after re-calibration, resolution against PF pT and distributions."""
    pt_l1, pt_pf = frame["ptL1"].to_numpy(), frame["ptPF"].to_numpy()
    predicted = pt_l1 - np.asarray(corrections)[:, 0]
    before, after = (pt_l1 - pt_pf) / pt_pf, (predicted - pt_pf) / pt_pf
    with plt.style.context(_STYLE):
        figure, axes = plt.subplots(1, 4, figsize=(24, 6))
        bins = _bins((-1.0, 3.0), 80)
        _hist(axes[0], before, bins, "L1")
        _hist(axes[0], after, bins, model)
        axes[0].set_xlabel(r"$(p_T - p_{T,PF}) / p_{T,PF}$")
        axes[0].set_ylabel("jets")
        axes[0].legend()
        pt_bins = np.linspace(0.0, max(200.0, float(np.quantile(pt_pf, 0.99))), 61)
        _hist2d(axes[1], pt_pf, predicted, pt_bins)
        axes[1].set_xlabel(r"PF $p_T$ (GeV)")
        axes[1].set_ylabel(rf"{model} $p_T$ (GeV)")
        for residual, style, source in ((before, "--", "L1"), (after, "-", model)):
            centres, bias, width = binned_bias_resolution(pt_pf, residual, JET_PT_EDGES)
            axes[2].plot(
                centres, width, style, marker="o", label=f"{source} resolution"
            )
            axes[2].plot(centres, bias, style, marker="s", label=f"{source} bias")
        axes[2].set_xlabel(r"PF $p_T$ (GeV)")
        axes[2].set_ylabel("relative pT residual")
        axes[2].legend()
        _hist(axes[3], pt_l1, pt_bins, "L1")
        _hist(axes[3], predicted, pt_bins, model)
        _hist(axes[3], pt_pf, pt_bins, "PF")
        axes[3].set_yscale("log")
        axes[3].set_xlabel(r"$p_T$ (GeV)")
        axes[3].legend()
        writer.label(axes[0], model)
        writer.save(
            figure,
            f"jet_residuals_{model}",
            f"Jet re-calibration by {model}",
            "Relative pT residual before and after re-calibration, re-calibrated against PF "
            "pT, bias (median) and resolution (half central 68 % width) against PF pT, and "
            "the pT distributions.",
        )


def write_figures(
    output_dir: Path,
    task_name: str,
    test: pd.DataFrame,
    predictions: dict[str, np.ndarray],
    models: list[str],
    rows: int,
    simulated: bool,
) -> list[FigureRecord]:
    """Write every figure of one task into ``output_dir``.

    Args:
        output_dir: folder of the PNG files.
        task_name: ``muon`` or ``jet``.
        test: the test split.
        predictions: physical corrections per model name, (n, targets).
        models: the models that get residual figures, best first.
        rows: at most this many test rows, drawn at random, enter the figures.
        simulated: label the figures as simulation.

    Returns:
        The written figures, in report order.
    """
    positions = sample_rows(test, rows)
    frame = test.iloc[positions].reset_index(drop=True)
    writer = FigureWriter(output_dir, simulated)
    if task_name == "muon":
        plot_muon_inputs(writer, frame)
        for model in models:
            corrections = predictions[model][positions]
            plot_muon_residuals(writer, frame, corrections, model)
            plot_muon_resolution(writer, frame, corrections, model)
            plot_muon_charge(writer, frame, corrections, model)
    else:
        plot_jet_inputs(writer, frame)
        for model in models:
            plot_jet_residuals(writer, frame, predictions[model][positions], model)
    return writer.records


def tuning_figures(tuning_dir: Path | None) -> list[FigureRecord]:
    """Return the tuning-curve PNG files of ``tuning_dir`` as figure records; none when absent."""
    if tuning_dir is None or not tuning_dir.is_dir():
        return []
    return [
        FigureRecord(
            f"tuning_{path.stem}",
            f"Tuning curve: {path.stem}",
            "Validation RMSE per target against the swept Falkon setting, the other two fixed.",
            path,
        )
        for path in sorted(tuning_dir.glob("*.png"))
    ]
