"""Against the real thing: an `mlflow server` on a loopback port, a sweep sent to it over HTTP,
every gdfit command pointed at it, and headless Chromium on gdfit's view of the runs there."""

from pathlib import Path

import pytest
from browser import check_gdfit_view, needs_chromium, new_page
from conftest import mlflow_server, run_command, sweep_runs
from mlflow.tracking import MlflowClient

from gdfit import views


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`mlflow server` with an sqlite backend and proxied artifacts in a temp folder."""
    folder = tmp_path_factory.mktemp("server")
    with mlflow_server(folder) as (url, _):
        yield url, folder


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
    _, parent, children = sweep_runs(url)
    experiment = parent.info.experiment_id
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


@needs_chromium
def test_browser_sees_gdfit_view_on_the_server(sweep):
    """The view gdfit wrote into the server's store opens at the server's own address."""
    url, _, experiment, _, children = sweep
    with new_page() as page:
        check_gdfit_view(page, url, experiment, children, "server")


def test_gdfit_ui_points_at_a_servers_own_ui_without_credentials(sweep, tmp_path):
    url, _, experiment, _, _ = sweep
    with_password = url.replace("http://", "http://alice:secret@")
    out = run_command("gdfit-ui", "--tracking-uri", with_password, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[1].strip() == views.address(url, experiment)
    assert "secret" not in out.stdout
