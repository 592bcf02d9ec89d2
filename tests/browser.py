"""Headless Chromium on gdfit's view of the MLflow UI: what a user sees without clicking.

Shared by the gdfit-ui tests (test_ui.py) and the tracking-server tests (test_server.py).
Screenshots go to screenshots/ in the checkout (or $GDFIT_SCREENSHOT_DIR), where CI lists them.
"""

import contextlib
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest

from gdfit import views

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (.ci/run installs it)"
)
SHOTS = Path(os.environ.get("GDFIT_SCREENSHOT_DIR") or Path(__file__).parents[1] / "screenshots")
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]
WAIT_MS = 90_000  # a loaded 2-core machine takes tens of seconds for the first page


@contextmanager
def new_page(credentials: dict | None = None):
    """A page in a fresh browser profile, as a first-time visitor sees the UI; `credentials`
    ({"username": ..., "password": ...}) answer a server's login."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            viewport = {"width": 1600, "height": 1000}
            yield browser.new_page(viewport=viewport, http_credentials=credentials)
        finally:
            browser.close()


def shot(page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.read_bytes()[:4] == b"\x89PNG"
    return path


def check_gdfit_view(page, base: str, experiment_id: str, children: list, prefix: str) -> None:
    """Open gdfit's view under server address `base` and check, without clicking, what the
    issue asks a user to see; screenshot the runs table, the chart view and the best run."""
    page.goto(views.page(base, experiment_id))
    cells = page.locator(".ag-center-cols-container [col-id='metrics.`final_loss`']")
    cells.first.wait_for(timeout=WAIT_MS)  # the view is applied
    for child in children:
        page.get_by_text(child.info.run_name, exact=True).first.wait_for(timeout=WAIT_MS)

    # MLflow's training layout (Runs, Models, Model registry), not the GenAI one.
    assert page.get_by_role("link", name="Model registry").count() == 1
    assert page.get_by_text("Judges", exact=True).count() == 0

    # Every child's final_loss in its row, the best first. Row ids end with the run id.
    shown = {}
    for i in range(cells.count()):
        row_id = cells.nth(i).evaluate("c => c.closest('.ag-row').getAttribute('row-id')")
        shown[row_id.rpartition(".")[2]] = (i, cells.nth(i).inner_text())
    for child in children:
        _, text = shown[child.info.run_id]
        assert float(text) == child.data.metrics["final_loss"], (child.info.run_name, text)
    in_rows = sorted(children, key=lambda c: shown[c.info.run_id][0])
    losses = [c.data.metrics["final_loss"] for c in in_rows]
    assert losses == sorted(losses), "the best run is not on top"
    shot(page, f"{prefix}-runs-table")

    # The chart view: the loss curves on a log axis.
    page.goto(views.page(base, experiment_id, charts=True))
    card = page.get_by_test_id("experiment-view-compare-runs-card").filter(
        has=page.get_by_text("loss", exact=True)
    )
    plot = card.first.locator(".js-plotly-plot")
    plot.wait_for(timeout=WAIT_MS)
    plot.evaluate("p => new Promise(r => setTimeout(r, 1000))")  # let plotly settle
    assert plot.evaluate("p => p._fullLayout.yaxis.type") == "log"
    # from the first steps (log10 of the step < 1), not mid-way as the outlier filter cut it
    assert plot.evaluate("p => p._fullLayout.xaxis.type") == "log"
    assert plot.evaluate("p => p._fullLayout.xaxis.range[0]") < 1
    shot(page, f"{prefix}-charts")

    # The best run's page: its description, then its fit figure among its artifacts.
    best = in_rows[0]
    run_page = views.page(base, experiment_id, best.info.run_id)
    page.goto(run_page)
    page.get_by_text(best.info.run_id).first.wait_for(timeout=WAIT_MS)
    settle(page)
    shot(page, f"{prefix}-run-page")
    page.goto(run_page.replace("?", "/artifacts/fit.png?"))
    page.locator("img[alt='fit.png']").first.wait_for(timeout=WAIT_MS)
    settle(page)
    shot(page, f"{prefix}-run-artifacts")


def settle(page) -> None:
    """Let the page finish loading what it shows (the parent run's name, an image)."""
    with contextlib.suppress(Exception):
        page.wait_for_load_state("networkidle", timeout=15_000)
