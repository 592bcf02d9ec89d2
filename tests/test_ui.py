"""gdfit's view of its runs in the MLflow UI, and `gdfit-ui`, the command that serves it.

The browser tests open what `gdfit-ui` prints in headless Chromium on a store holding a small
sweep; the faults (taken port, mistyped store, bad port, Ctrl-C) go through the installed
command.
"""

import base64
import json
import re
import signal
import socket
import subprocess
import time
import urllib.request
import zlib
from pathlib import Path

import pytest
from browser import SHOTS, WAIT_MS, check_gdfit_view, needs_chromium, new_page, settle, shot
from conftest import BIN, free_port, run_command, sweep_runs
from mlflow.tracking import MlflowClient

from gdfit import store, uiapp, views
from gdfit.notes import NOTE_TAG

ADDRESS = re.compile(r"^\s+runs:\s+(\S+)$", re.M)


def start_ui(*args: str, folder: Path) -> tuple[subprocess.Popen, Path, Path]:
    """`gdfit-ui` started as a user would, its output going to files the test can read."""
    out, err = folder / "ui.out", folder / "ui.err"
    proc = subprocess.Popen(
        [str(BIN / "gdfit-ui"), *args],
        cwd=folder,
        stdout=out.open("w"),
        stderr=err.open("w"),
        stdin=subprocess.DEVNULL,
    )
    return proc, out, err


def wait_for_text(path: Path, text: str, proc: subprocess.Popen, seconds: float = 180) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        content = path.read_text()
        if text in content:
            return content
        if proc.poll() is not None:
            raise AssertionError(f"gdfit-ui exited {proc.returncode}: {content}")
        time.sleep(0.2)
    raise AssertionError(f"{text!r} not printed within {seconds} s: {path.read_text()}")


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=3) as answer:
            return answer.status == 200
    except OSError:
        return False


def servers_on(port: int) -> list[int]:
    """Pids of MLflow server processes (`mlflow server`, its uvicorn) started for `port`."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        mlflow = any(a == b"mlflow" or a.startswith(b"mlflow.server") for a in argv)
        if mlflow and b"--port" in argv and str(port).encode() in argv:
            pids.append(int(proc.name))
    return pids


@pytest.fixture(scope="module")
def sweep_store(tmp_path_factory):
    """A store holding a three-job learning-rate sweep of 200 steps."""
    folder = tmp_path_factory.mktemp("ui-store")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    out = run_command(
        "gdfit-train",
        "-m",
        "optimizer.lr=1e-6,2e-6,3e-6",
        "train.steps=200",
        f"tracking.uri={uri}",
        cwd=folder,
    )
    assert out.returncode == 0, out.stderr
    _, parent, children = sweep_runs(uri)
    return folder, uri, parent.info.experiment_id, parent, children


@pytest.fixture(scope="module")
def ui(sweep_store):
    """`gdfit-ui` serving the sweep's store on a free port: (process, stdout, stderr file, port)."""
    folder, uri, *_ = sweep_store
    port = free_port()
    proc, out, err = start_ui("--tracking-uri", uri, "--port", str(port), folder=folder)
    try:
        printed = wait_for_text(out, "Ctrl-C stops it.", proc)
        yield proc, printed, err, port
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


# ---- the view and its address ----


def test_address_is_the_servers_own_ui_without_credentials_or_gdfit_uis():
    view = "#/experiments/7/runs?workflowType=machine_learning&viewStateShareKey=gdfit"
    assert views.address("https://alice:pw@mlflow.example:8443/base/?token=x", "7") == (
        f"https://mlflow.example:8443/base/{view}"
    )
    assert views.address("sqlite:////tmp/s/mlflow.db", "7") == f"http://127.0.0.1:5000/gdfit{view}"
    assert views.address("http://[::1]:5000", "7", run_id="abc") == (
        "http://[::1]:5000/#/experiments/7/runs/abc?workflowType=machine_learning"
    )
    assert views.address("postgresql://db.example/mlflow", "7") is None


def test_every_opened_experiment_carries_the_view_written_once(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client, experiment = store.open_experiment(uri, "gdfit")
    tags = client.get_experiment(experiment).tags
    assert tags[views.KIND_TAG] == views.KIND
    envelope = json.loads(tags[views.VIEW_TAG])
    assert set(envelope) == {"name", "createdAt", "updatedAt", "state"}
    assert json.loads(envelope["state"]) == views.VIEW_STATE
    store.open_experiment(uri, "gdfit")  # a second run: nothing to write
    assert client.get_experiment(experiment).tags[views.VIEW_TAG] == tags[views.VIEW_TAG]


def test_a_sweep_and_its_jobs_are_grouped_under_its_name(sweep_store):
    *_, parent, children = sweep_store
    assert len(children) == 3
    assert {c.data.tags[views.GROUP_TAG] for c in children} == {parent.info.run_name}
    assert parent.data.tags[views.GROUP_TAG] == parent.info.run_name  # not "Additional runs"


# ---- gdfit-ui and the browser ----


@needs_chromium
def test_browser_sees_gdfit_view_at_the_address_gdfit_ui_prints(sweep_store, ui):
    _, _, experiment, _, children = sweep_store
    _, printed, err, port = ui
    base = f"http://127.0.0.1:{port}"
    (address,) = ADDRESS.findall(printed)
    assert address == uiapp.landing(views.page(base, experiment))
    assert f"  charts: {uiapp.landing(views.page(base, experiment, charts=True))}\n" in printed
    with new_page() as page:
        # A first visit to the printed address lands on the view with MLflow's assistant
        # panel shut (MLflow opens it on a first visit to localhost) and its button in reach.
        page.goto(address)
        page.get_by_text(children[0].info.run_name, exact=True).first.wait_for(timeout=WAIT_MS)
        assert page.url.startswith(views.page(base, experiment))  # MLflow's own address
        assert page.get_by_role("button", name="MLflow Assistant").count() == 1
        assert page.get_by_role("textbox", name="Ask a question").count() == 0
        check_gdfit_view(page, base, experiment, children, "gdfit-ui")
    assert err.read_text() == ""  # quiet: no request log, no warnings


@needs_chromium
def test_browser_sees_a_sweeps_parent_its_stored_view_link_and_the_fit_images(sweep_store, ui):
    """The parent's page opens on its best job, linked, and its jobs ranked in aligned
    columns; the link and the stored View address open the training layout; the view's card of
    fit images. Screenshots: ui-parent-page, ui-best-from-parent, ui-stored-view, ui-fit-card,
    ui-run-page-fit-card."""
    _, uri, experiment, parent, children = sweep_store
    base = f"http://127.0.0.1:{ui[3]}"
    ranked = sorted(children, key=lambda c: c.data.metrics["final_loss"])
    best = ranked[0]
    with new_page() as page:
        page.goto(uiapp.landing(views.page(base, experiment)))  # as gdfit-ui's address does
        page.get_by_text(best.info.run_name, exact=True).first.wait_for(timeout=WAIT_MS)

        page.goto(views.page(base, experiment, parent.info.run_id))
        link = page.locator(f"a[href='{views.route(experiment, best.info.run_id)}']")
        link.wait_for(timeout=WAIT_MS)
        page.get_by_text("Show more").first.click()
        table = page.locator("pre").first.inner_text().splitlines()
        assert [line.split()[1] for line in table[2:]] == [c.info.run_name for c in ranked]
        assert all(line.index(" 1e-6" if "1e-06" in line else " ") for line in table)
        settle(page)
        shot(page, "ui-parent-page")
        with page.expect_popup() as opened:  # MLflow opens a description's links in a new tab
            link.click()
        best_page = opened.value
        best_page.get_by_role("heading", name=best.info.run_name).wait_for(timeout=WAIT_MS)
        assert best_page.url == views.page(base, experiment, best.info.run_id)
        assert best_page.get_by_role("link", name="Model registry").count() == 1  # training
        settle(best_page)
        shot(best_page, "ui-best-from-parent")
        best_page.close()

        # The View link stored in the description: relative, so it works on any port.
        (stored,) = re.findall(r"^View: \[.*\]\((\S+)\)$", parent.data.tags[NOTE_TAG], re.M)
        assert stored == views.route(experiment) and stored.endswith("viewStateShareKey=gdfit")
        page.goto(f"{base}/{stored}")
        cells = page.locator(".ag-center-cols-container [col-id='metrics.`final_loss`']")
        cells.first.wait_for(timeout=WAIT_MS)
        assert page.get_by_text("Judges", exact=True).count() == 0
        settle(page)
        shot(page, "ui-stored-view")

        # The fit images in gdfit's chart view: a card of their own, each run's frame whole
        # at its own 360 pixels, no parameters above it, and the slider under them.
        page.goto(views.page(base, experiment, charts=True))
        card = fit_card(page)
        images = card.locator("img.rc-image-img")
        first = images.first.bounding_box()
        assert (first["width"], first["height"]) == (360, 360)
        box = card.bounding_box()
        assert box["y"] < first["y"] and first["y"] + 360 < box["y"] + box["height"]
        assert images.nth(1).bounding_box()["y"] == first["y"]  # two abreast
        assert card.get_by_text("backend.name=", exact=False).count() == 0
        assert images.count() == len(children)  # each job's, under its name
        shown = set(card.inner_text().splitlines())
        assert {c.info.run_name for c in children} <= shown
        card.screenshot(path=str(SHOTS / "ui-fit-card.png"))

        # MLflow's own card on the run's Model metrics tab prints the run's every parameter
        # above the image: what docs/ui.md says of it, kept to look at.
        page.goto(views.page(base, experiment, best.info.run_id).replace("?", "/model-metrics?"))
        page.get_by_text("final_loss", exact=True).first.wait_for(timeout=WAIT_MS)
        fit_card(page).screenshot(path=str(SHOTS / "ui-run-page-fit-card.png"))


def fit_card(page):
    """The page's image card, scrolled into view, its first image loaded."""
    image = page.locator("img.rc-image-img").first
    for _ in range(20):  # the cards draw as they scroll into view; the image card is last
        if image.count():
            break
        page.mouse.move(800, 600)
        page.mouse.wheel(0, 500)
        page.wait_for_timeout(500)
    card = page.get_by_test_id("experiment-view-compare-runs-card").filter(has=image)
    card.scroll_into_view_if_needed()
    page.wait_for_function("i => i.complete && i.naturalWidth > 0", arg=image.element_handle())
    settle(page)
    return card


@needs_chromium
def test_the_uis_own_save_view_reads_gdfit_view_and_writes_it_back_unchanged(sweep_store, ui):
    """The shape of VIEW_STATE is the UI's: adopting gdfit's view and saving it as a new view
    (the UI's Share action) stores the very same state."""
    _, uri, experiment, _, children = sweep_store
    base = f"http://127.0.0.1:{ui[3]}"
    with new_page() as page:
        page.goto(views.page(base, experiment))
        page.get_by_text(children[0].info.run_name, exact=True).first.wait_for(timeout=WAIT_MS)
        page.get_by_role("button", name="Override saved view").click()
        page.get_by_test_id("saved-views-trigger").click()
        page.get_by_text("Save as new view").click()
        page.get_by_test_id("save-view-name-input").fill("saved by the UI")
        page.get_by_test_id("save-view-save-button").click()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            tags = MlflowClient(uri).get_experiment(experiment).tags
            saved = [json.loads(v) for k, v in tags.items() if k.startswith("mlflow.shared")]
            saved = [s for s in saved if s["name"] == "saved by the UI"]
            if saved:
                break
            time.sleep(0.5)
    (envelope,) = saved
    assert set(envelope) == {"name", "createdAt", "updatedAt", "state"}
    kind, _, data = envelope["state"].partition(";")  # the UI deflates what it stores
    assert kind == "deflate"
    assert json.loads(zlib.decompress(base64.b64decode(data))) == views.VIEW_STATE


# ---- gdfit-ui's faults, one line each ----


def test_a_port_held_by_another_mlflow_server_is_named_and_no_address_printed(sweep_store, ui):
    folder, uri, *_ = sweep_store
    port = ui[3]
    out = run_command("gdfit-ui", "--tracking-uri", uri, "--port", str(port), cwd=folder)
    assert out.returncode == 1
    assert out.stdout == ""
    assert out.stderr == (
        f"gdfit: error: port {port} on 127.0.0.1 is taken by another MLflow server; "
        "choose a free one with --port\n"
    )


def test_a_port_held_by_another_program_and_an_open_host_say_why(sweep_store):
    folder, uri, *_ = sweep_store
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        out = run_command(
            "gdfit-ui", "--tracking-uri", uri, "--host", "0.0.0.0", "--port", str(port), cwd=folder
        )
    assert out.returncode == 1
    warning, error = out.stderr.splitlines()
    assert warning.startswith("gdfit-ui: warning: --host 0.0.0.0 lets every machine")
    assert "--allowed-hosts" in warning
    assert error == (
        f"gdfit: error: port {port} on 0.0.0.0 is taken by another program; "
        "choose a free one with --port"
    )


def test_a_mistyped_store_or_experiment_is_refused_and_nothing_created(sweep_store, tmp_path):
    folder, uri, *_ = sweep_store
    typo = tmp_path / "mlrun" / "mlflow.db"
    out = run_command("gdfit-ui", "--tracking-uri", f"sqlite:///{typo}", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr == (
        f"gdfit: error: --tracking-uri: no MLflow store at {typo}; check the path, or pass "
        "--create to start an empty one\n"
    )
    assert not typo.parent.exists()
    out = run_command("gdfit-ui", "--tracking-uri", uri, "--experiment", "gdfti", cwd=folder)
    assert out.returncode == 2
    assert out.stderr.startswith("gdfit: error: no experiment 'gdfti' in ")
    assert "experiments there: Default, gdfit" in out.stderr
    assert MlflowClient(uri).get_experiment_by_name("gdfti") is None


def test_a_port_out_of_range_is_a_bad_setting(sweep_store):
    folder, uri, *_ = sweep_store
    out = run_command("gdfit-ui", "--tracking-uri", uri, "--port", "99999", cwd=folder)
    assert out.returncode == 2
    assert out.stderr == (
        "gdfit: error: --port: must be a port number from 1 to 65535 (got 99999)\n"
    )


def test_help_explains_every_option_without_markup():
    out = run_command("gdfit-ui", "--help", cwd=Path.cwd())
    assert out.returncode == 0
    options = re.findall(r"^\s+(--[a-z-]+)(.*)$", out.stdout, re.M)
    assert {o for o, _ in options} >= {"--port", "--host", "--create", "--open", "--verbose"}
    for option, rest in options:
        if option != "--allowed-hosts":  # its help starts on the next line
            assert rest.strip(), f"{option} has no help"
    assert "`" not in out.stdout


def test_taken_default_port_then_ctrl_c_stops_all_of_it_within_3_s_in_one_line(tmp_path):
    """A new store (--create), the default port taken, quiet output, Ctrl-C."""
    default = views.UI_PORT
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:  # hold the default port, unless someone else does already
            holder.bind(("127.0.0.1", default))
            holder.listen()
        except OSError:
            pass
        store = f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}"
        proc, out, err = start_ui("--tracking-uri", store, "--create", folder=tmp_path)
        printed = wait_for_text(out, "Ctrl-C stops it.", proc)
    (address,) = ADDRESS.findall(printed)
    port = int(re.match(r"http://127\.0\.0\.1:(\d+)/", address)[1])
    assert port != default
    assert re.fullmatch(
        f"gdfit-ui: port {default} is taken by another (program|MLflow server); "
        rf"serving on port {port} instead \(--port chooses\)\n",
        err.read_text(),
    )
    assert answers(f"http://127.0.0.1:{port}")
    before = err.read_text()

    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=10) == 0
    assert time.monotonic() - started <= 3.0
    assert err.read_text() == before + "gdfit-ui: stopped the MLflow server\n"
    assert not answers(f"http://127.0.0.1:{port}")
    assert servers_on(port) == []


def test_ctrl_c_while_the_server_starts_is_one_line_and_leaves_no_server(sweep_store, tmp_path):
    _, uri, *_ = sweep_store
    port = free_port()
    proc, out, err = start_ui("--tracking-uri", uri, "--port", str(port), folder=tmp_path)
    deadline = time.monotonic() + 60
    while not servers_on(port) and time.monotonic() < deadline:  # the server is starting
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=10) == 0
    assert err.read_text() == "gdfit-ui: stopped the MLflow server\n"
    assert out.read_text() == ""
    time.sleep(0.5)
    assert servers_on(port) == []


@needs_chromium
def test_the_models_tab_lists_the_best_runs_model_with_its_metrics(sweep_store, ui):
    """The sweep's best job logged its fit as a model; the experiment's Models tab lists it, and
    with the model attributes folded away (its Columns menu) final_loss and loss_gap lead."""
    _, uri, experiment, _, children = sweep_store
    best = min(children, key=lambda c: c.data.metrics["final_loss"])
    (model,) = MlflowClient(uri).search_logged_models([experiment])
    assert model.source_run_id == best.info.run_id
    base = f"http://127.0.0.1:{ui[3]}"
    with new_page() as page:
        page.goto(f"{base}/#/experiments/{experiment}/models?workflowType=machine_learning")
        page.get_by_text(best.info.run_name).first.wait_for(timeout=WAIT_MS)  # its source run
        assert page.get_by_text(model.name, exact=True).count() == 1
        page.get_by_role("button", name="Columns").click()
        page.get_by_text("Model attributes").last.click()
        page.keyboard.press("Escape")
        page.get_by_text("loss_gap", exact=True).first.wait_for(timeout=WAIT_MS)
        headers = page.locator(".ag-header-cell-text").all_inner_texts()
        assert headers[:4] == ["Model name", "Created", "final_loss", "loss_gap"], headers
        for metric in ("final_loss", "loss_gap"):
            shown = repr(best.data.metrics[metric])
            assert page.get_by_text(shown, exact=True).count() == 1, (metric, shown)
        settle(page)
        shot(page, "gdfit-ui-models-tab")
