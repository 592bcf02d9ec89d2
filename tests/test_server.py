"""Against the real thing: an `mlflow server` on a loopback port, a sweep sent to it over HTTP,
every gdfit command pointed at it, and headless Chromium reading the runs page."""

import os
import shutil
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from conftest import BIN, run_command
from mlflow.tracking import MlflowClient

from gdfit.ui import wait_until_healthy

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`mlflow server` with an sqlite backend and proxied artifacts in a temp folder."""
    folder = tmp_path_factory.mktemp("server")
    url = f"http://127.0.0.1:{free_port()}"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{folder / 'mlflow.db'}",
            "--artifacts-destination",
            str(folder / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            url.rsplit(":", 1)[1],
            "--workers",
            "1",
        ],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_healthy(url, proc)
        yield url, folder
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def sweep(server):
    """A three-backend sweep sent to the server with tracking=server and MLFLOW_TRACKING_URI."""
    url, folder = server
    out = run_command(
        "gdfit-train",
        "-m",
        "tracking=server",
        "backend=numpy,tensor,autograd",
        "train.steps=120",
        cwd=folder,
        env={"MLFLOW_TRACKING_URI": url},
    )
    assert out.returncode == 0, out.stderr
    client = MlflowClient(url)
    experiment = client.get_experiment_by_name("gdfit").experiment_id
    (parent,) = client.search_runs([experiment], "tags.gdfit.sweep = 'true'")
    children = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    return url, folder, experiment, parent, children


def test_sweep_lands_on_the_server_with_curves_and_figures(sweep, tmp_path):
    url, _, _, parent, children = sweep
    client = MlflowClient(url)
    assert parent.info.status == "FINISHED"
    assert sorted(c.data.params["backend.name"] for c in children) == [
        "autograd",
        "numpy",
        "tensor",
    ]
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.info.artifact_uri.startswith("mlflow-artifacts:")  # through the proxy
        assert len(client.get_metric_history(child.info.run_id, "loss")) == 120
        png = client.download_artifacts(child.info.run_id, "fit.png", str(tmp_path))
        assert Path(png).read_bytes()[:4] == b"\x89PNG"
    assert "summary.csv" in {a.path for a in client.list_artifacts(parent.info.run_id)}


def test_compare_and_rerun_work_against_the_server(sweep):
    url, folder, _, parent, children = sweep
    out = run_command(
        "gdfit-compare", "--parent", parent.info.run_id, "--tracking-uri", url, cwd=folder
    )
    assert out.returncode == 0, out.stderr
    assert all(c.info.run_name in out.stdout for c in children)
    tensor = next(c for c in children if c.data.params["backend.name"] == "tensor")
    out = run_command("gdfit-rerun", tensor.info.run_id, "--tracking-uri", url, cwd=folder)
    assert out.returncode == 0, out.stderr
    assert ": identical: " in out.stdout


@pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (.ci/run installs it)"
)
def test_browser_lists_the_sweep_on_the_runs_page(sweep, tmp_path):
    from playwright.sync_api import sync_playwright

    url, _, experiment, parent, children = sweep
    shot = tmp_path / "runs-page.png"
    flags = [
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
    ]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=flags)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(f"{url}/#/experiments/{experiment}/runs")
        page.get_by_text(parent.info.run_name).first.wait_for(timeout=60_000)
        # Children are folded under their parent: press the expander in the parent's name cell.
        name_cell = page.get_by_text(parent.info.run_name).first.locator(
            "xpath=ancestor::div[@role='gridcell'][1]"
        )
        name_cell.locator("button[data-component-id*='runnamecellrenderer']").first.click()
        for child in children:
            page.get_by_text(child.info.run_name).first.wait_for(timeout=30_000)
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert shot.read_bytes()[:4] == b"\x89PNG"
    keep = os.environ.get("GDFIT_SCREENSHOT_DIR")
    if keep:
        shutil.copy(shot, Path(keep) / shot.name)


def test_gdfit_ui_serves_the_store_and_prints_the_runs_page(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert (
        run_command("gdfit-train", "train.steps=5", f"tracking.uri={uri}", cwd=tmp_path).returncode
        == 0
    )
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "gdfit-ui"), "--tracking-uri", uri, "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        lines = [proc.stdout.readline() for _ in range(2)]
        experiment = MlflowClient(uri).get_experiment_by_name("gdfit").experiment_id
        page = f"http://127.0.0.1:{port}/#/experiments/{experiment}/runs"
        assert lines[1].strip() == f"runs of 'gdfit': {page}"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as answer:
            assert answer.status == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)
