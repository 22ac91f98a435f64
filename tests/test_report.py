"""The evaluation report: files, contents, Kubeflow outputs, and a real headless browser."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import REPO_ROOT
from l1recal.config import EvaluateSettings, FalkonModelSettings, FalkonTrainSettings
from l1recal.evaluation.evaluate import EvaluateOutputs, run_evaluate
from l1recal.models.train import run_train_falkon
from l1recal.simulation.stage import NOISE_FLOOR_FILE

ARTIFACTS = REPO_ROOT / "tests" / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
MODEL = "falkon_gaussian_m20"
FIGURES = (
    "l1_vs_offline",
    f"residuals_{MODEL}",
    f"resolution_pt_{MODEL}",
    f"resolution_eta_{MODEL}",
    f"charge_{MODEL}",
)


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory, small_splits: Path, small_raw: Path) -> Path:
    """Run the evaluate stage with every output on one small Falkon model."""
    work = tmp_path_factory.mktemp("report")
    models = work / "models" / "muon" / "falkon"
    run_train_falkon(
        FalkonTrainSettings(models=[FalkonModelSettings(name=MODEL, centres=20)]),
        small_splits,
        models,
    )
    settings = EvaluateSettings(
        figure_rows=5_000, throughput_rows=2_048, throughput_seconds=0.05
    )
    reports = work / "reports"
    run_evaluate(
        settings,
        small_splits,
        [models],
        reports / "muon_metrics.json",
        reports / "muon_rmse.md",
        small_raw / NOISE_FLOOR_FILE,
        outputs=EvaluateOutputs(
            report_html=reports / "report.html",
            report_markdown=reports / "report.md",
            figures_dir=reports / "figures" / "muon",
            costs=reports / "muon_costs.json",
            kfp_metrics=reports / "kfp" / "metrics.json",
            kfp_executor_output=reports / "kfp" / "output_metadata.json",
        ),
    )
    return reports


def test_figures_written(report_dir):
    for name in FIGURES:
        path = report_dir / "figures" / "muon" / f"{name}.png"
        assert path.exists(), name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_html_embeds_every_figure(report_dir):
    page = (report_dir / "report.html").read_text()
    for name in FIGURES:
        assert f'<figure id="fig-{name}">' in page, name
    assert page.count('src="data:image/png;base64,') == len(FIGURES)


def test_html_loads_nothing_external(report_dir):
    page = (report_dir / "report.html").read_text()
    assert "<script" not in page
    assert "http://" not in page
    assert "https://" not in page
    assert 'src="data:' in page


def test_markdown_summary_tables(report_dir):
    summary = (report_dir / "report.md").read_text()
    assert "| L1 (GMT, uncorrected) |" in summary
    assert f"| {MODEL} (best) |" in summary
    assert "*noise floor (simulation truth)*" in summary
    assert "## Cost per inference" in summary
    assert "(figures/muon/l1_vs_offline.png)" in summary


def test_costs_json(report_dir):
    costs = json.loads((report_dir / "muon_costs.json").read_text())
    operations = costs[MODEL]["operations"]
    # Gaussian kernel, M = 20, d = 4, t = 3.
    assert operations["exact"]["multiplications"] == 20 * 5 + 20 * 3
    assert operations["exact"]["exponentials"] == 20
    assert operations["study_formula"] == 60
    speed = costs[MODEL]["throughput"]
    assert speed["rows_per_s_1_thread"] > 0
    assert speed["rows_per_s_all_threads"] > 0
    assert speed["ratio_to_40mhz_1_thread"] == pytest.approx(
        speed["rows_per_s_1_thread"] / 40e6
    )


def test_kfp_outputs(report_dir):
    scalars = json.loads((report_dir / "kfp" / "metrics.json").read_text())
    metrics = json.loads((report_dir / "muon_metrics.json").read_text())
    assert scalars[f"muon_{MODEL}_phi"] == pytest.approx(metrics[MODEL]["phi"])
    assert scalars["muon_gmt_pt_rel"] == pytest.approx(metrics["gmt"]["pt_rel"])
    assert all(isinstance(value, float) for value in scalars.values())
    executor = json.loads((report_dir / "kfp" / "output_metadata.json").read_text())
    assert executor["artifacts"]["metrics"]["artifacts"][0]["metadata"] == scalars


def test_kfp_metadata_loads_as_metrics_artifact(report_dir):
    from kfp import dsl

    scalars = json.loads((report_dir / "kfp" / "metrics.json").read_text())
    artifact = dsl.Metrics(name="metrics", metadata={})
    for key, value in scalars.items():
        artifact.log_metric(key, value)
    assert artifact.metadata == scalars


class DevToolsPage:
    """A minimal Chrome DevTools protocol client for one page target, on loopback."""

    def __init__(self, websocket_url: str) -> None:
        import websocket

        self.socket = websocket.create_connection(websocket_url, timeout=30)
        self.next_id = 0
        self.events: list[dict] = []

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.socket.send(
            json.dumps({"id": self.next_id, "method": method, "params": params})
        )
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == self.next_id:
                assert "error" not in message, f"{method}: {message['error']}"
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, method: str, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        for event in self.events:
            if event.get("method") == method:
                return event
        while time.monotonic() < deadline:
            message = json.loads(self.socket.recv())
            self.events.append(message)
            if message.get("method") == method:
                return message
        raise TimeoutError(f"no {method} event within {timeout} s")

    def close(self) -> None:
        self.socket.close()


def _start_chromium(profile: Path) -> tuple[subprocess.Popen, int]:
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0",
        f"--user-data-dir={profile}",
        "--window-size=1280,2000",
        "about:blank",
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if port_file.exists() and port_file.read_text().strip():
            return process, int(port_file.read_text().split()[0])
        if process.poll() is not None:
            raise RuntimeError(
                f"chromium exited: {process.stderr.read().decode()[-2000:]}"
            )
        time.sleep(0.2)
    process.kill()
    raise TimeoutError("chromium did not open its DevTools port within 60 s")


@pytest.mark.skipif(
    CHROMIUM is None, reason="chromium not installed (apt-get install chromium)"
)
def test_report_in_headless_chromium(report_dir):
    with tempfile.TemporaryDirectory(prefix="l1recal-chromium-") as profile:
        process, port = _start_chromium(Path(profile))
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{port}/json/list", timeout=10
            ) as reply:
                targets = json.loads(reply.read())
            page_target = next(t for t in targets if t["type"] == "page")
            page = DevToolsPage(page_target["webSocketDebuggerUrl"])
            for domain in ("Page", "Runtime", "Log"):
                page.call(f"{domain}.enable")
            page.call(
                "Page.navigate", url=(report_dir / "report.html").resolve().as_uri()
            )
            page.wait_for("Page.loadEventFired")

            result = page.call(
                "Runtime.evaluate",
                expression=(
                    "JSON.stringify(Array.from(document.querySelectorAll('figure')).map("
                    "f => [f.id, f.querySelector('img').complete, "
                    "f.querySelector('img').naturalWidth]))"
                ),
                returnByValue=True,
            )
            figures = {
                figure_id: (complete, width)
                for figure_id, complete, width in json.loads(result["result"]["value"])
            }
            screenshot = page.call(
                "Page.captureScreenshot", format="png", captureBeyondViewport=True
            )
            page.close()
        finally:
            process.terminate()
            process.wait(timeout=30)

    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "report.png").write_bytes(base64.b64decode(screenshot["data"]))

    for name in FIGURES:
        assert f"fig-{name}" in figures, name
        complete, width = figures[f"fig-{name}"]
        assert complete, name
        assert width > 0, name
    errors = [
        event
        for event in page.events
        if (
            event.get("method") == "Runtime.consoleAPICalled"
            and event["params"]["type"] == "error"
        )
        or (
            event.get("method") == "Log.entryAdded"
            and event["params"]["entry"]["level"] == "error"
        )
        or event.get("method") == "Runtime.exceptionThrown"
    ]
    assert errors == []
    assert os.path.getsize(ARTIFACTS / "report.png") > 10_000


def test_jet_figures_and_report(tmp_path):
    import numpy as np
    import pandas as pd

    from l1recal.evaluation.figures import write_figures
    from l1recal.evaluation.report import ReportInputs, render_html, render_markdown

    rng = np.random.default_rng(2)
    pt_pf = rng.uniform(15.0, 150.0, size=3_000)
    frame = pd.DataFrame(
        {
            "ptL1": pt_pf * rng.normal(1.3, 0.2, size=pt_pf.size),
            "etaL1": rng.uniform(-4.0, 4.0, size=pt_pf.size),
            "phiL1": rng.uniform(0.0, 6.28, size=pt_pf.size),
            "ptPF": pt_pf,
            "nMatchedPF": rng.choice([1, 1, 1, 2, 3], size=pt_pf.size),
        }
    )
    corrections = (frame["ptL1"] - frame["ptPF"]).to_numpy()[:, None] * 0.8
    figures = write_figures(
        tmp_path / "figures",
        "jet",
        frame,
        {"nn_id6": corrections},
        ["nn_id6"],
        5_000,
        True,
    )
    assert [record.name for record in figures] == [
        "jet_l1_vs_pf",
        "jet_residuals_nn_id6",
    ]

    inputs = ReportInputs(
        task="jet",
        metrics={
            "gmt": {"pt_rel": 0.4, "test_rows": 3000},
            "nn_id6": {"pt_rel": 0.1, "test_rows": 3000},
        },
        costs={},
        figures=figures,
        best_model="nn_id6",
        data_version=None,
        code_version="test",
        metric_names=("pt_rel",),
    )
    page = render_html(inputs)
    assert page.count('src="data:image/png;base64,') == 2
    summary = render_markdown(inputs, tmp_path / "jet_report.md")
    assert "| model | pT / pT_PF |" in summary
    assert "| L1 (uncorrected) | 0.4000 |" in summary
    assert "*study: L1* | 1.102 |" in summary
    assert "(figures/jet_l1_vs_pf.png)" in summary


def test_evaluate_cli_writes_report(tmp_path, small_splits, small_raw, report_dir):
    from typer.testing import CliRunner

    from l1recal.cli import app

    params = tmp_path / "params.yaml"
    params.write_text("evaluate:\n  throughput_rows: 0\n  figure_rows: 2000\n")
    models = report_dir.parent / "models" / "muon" / "falkon"
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            str(small_splits),
            "--models",
            str(models),
            "--noise-floor",
            str(small_raw / NOISE_FLOOR_FILE),
            "--metrics",
            str(tmp_path / "muon_metrics.json"),
            "--table",
            str(tmp_path / "muon_rmse.md"),
            "--report",
            str(tmp_path / "report.html"),
            "--summary",
            str(tmp_path / "report.md"),
            "--costs",
            str(tmp_path / "muon_costs.json"),
            "--kfp-executor-output",
            str(tmp_path / "output_metadata.json"),
            "--params",
            str(params),
        ],
    )
    assert result.exit_code == 0, result.output
    page = (tmp_path / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == len(FIGURES)
    # Without --figures the PNG files are temporary, so the summary links none.
    assert ".png)" not in (tmp_path / "report.md").read_text()
    costs = json.loads((tmp_path / "muon_costs.json").read_text())
    assert "throughput" not in costs[MODEL]
    executor = json.loads((tmp_path / "output_metadata.json").read_text())
    assert (
        f"muon_{MODEL}_phi"
        in executor["artifacts"]["metrics"]["artifacts"][0]["metadata"]
    )
