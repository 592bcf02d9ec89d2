"""The team stack end to end: scripts/team_server.py starts PostgreSQL, SeaweedFS's S3 server and
MLflow's basic-auth app on free loopback ports, and every gdfit command works through it as the
user account (not the admin). Then the faults: a wrong password, the MLflow server restarted in
the middle of a run, PostgreSQL restarted in the middle of a sweep. Every process is stopped by
its id when the module ends, whatever happened."""

import importlib.util
import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from browser import WAIT_MS, needs_chromium, new_page, settle, shot
from conftest import BIN, run_command
from mlflow.tracking import MlflowClient

from gdfit import views

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("team_server", ROOT / "scripts" / "team_server.py")
team_server = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(team_server)

try:
    team_server.postgres_bindir()
    HAVE_POSTGRES = True
except SystemExit:
    HAVE_POSTGRES = False
pytestmark = pytest.mark.skipif(
    not HAVE_POSTGRES, reason="PostgreSQL is not installed (.ci/run installs Debian's postgresql)"
)

USER = "alice"
# Variables named like credentials, set for every command: none of their values may be stored.
SECRETS = {
    "GDFIT_DEPLOY_TOKEN": "tok-" + secrets.token_hex(12),
    "TEAM_DB_PASSWORD": "pw-" + secrets.token_hex(12),
    "MY_SECRET": "sec-" + secrets.token_hex(12),
    "SIGNING_KEY": "key-" + secrets.token_hex(12),
}


@pytest.fixture(scope="module")
def stack():
    # Not under pytest's tmp folder: that is private to root, and PostgreSQL runs as `postgres`.
    folder = Path(tempfile.mkdtemp(prefix="gdfit-team-"))
    stack = team_server.Stack(folder)
    stack.create(team_server.free_port(), USER)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop_all()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def user_env(stack):
    """The environment every command runs in: the user's credentials and the secrets."""
    return {**stack.client_env(), **SECRETS}


@pytest.fixture(scope="module")
def as_user(stack):
    """MLflow's client in this process, signed in as the user account."""
    with pytest.MonkeyPatch.context() as patch:
        for key, value in stack.client_env().items():
            patch.setenv(key, value)
        yield MlflowClient(stack.url)


@pytest.fixture(scope="module")
def sweep(stack, user_env, as_user, tmp_path_factory):
    """A three-backend sweep with tracking=server, logged as the user."""
    out = run_command(
        "gdfit-train",
        "-m",
        "tracking=server",
        "backend=numpy,tensor,autograd",
        "train.steps=200",
        cwd=tmp_path_factory.mktemp("sweep"),
        env=user_env,
    )
    assert out.returncode == 0, out.stderr
    experiment = as_user.get_experiment_by_name("gdfit").experiment_id
    (parent,) = as_user.search_runs([experiment], "tags.gdfit.sweep = 'true'")
    children = as_user.search_runs(
        [experiment], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    return parent, children


def bucket_objects(stack) -> dict[str, bytes]:
    """Every object in the artifact bucket, read through the S3 API with the stack's keys."""
    s3 = stack.s3_client()
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=team_server.BUCKET):
        for item in page.get("Contents", []):
            body = s3.get_object(Bucket=team_server.BUCKET, Key=item["Key"])["Body"].read()
            found[item["Key"]] = body
    return found


def test_sweep_runs_are_in_postgres_and_their_artifacts_in_the_bucket(stack, sweep, as_user):
    parent, children = sweep
    assert parent.info.status == "FINISHED"
    assert sorted(c.data.params["backend.name"] for c in children) == [
        "autograd",
        "numpy",
        "tensor",
    ]
    objects = bucket_objects(stack)
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.info.artifact_uri.startswith("mlflow-artifacts:")  # proxied by the server
        assert len(as_user.get_metric_history(child.info.run_id, "loss")) == 200
        mine = {key.rsplit("/", 1)[1] for key in objects if f"/{child.info.run_id}/" in key}
        assert {"config.yaml", "environment.json", "fit.png", "loss.png"} <= mine
        fit = next(
            v for k, v in objects.items() if k.endswith(f"{child.info.run_id}/artifacts/fit.png")
        )
        assert fit[:4] == b"\x89PNG"
    assert any(k.endswith(f"{parent.info.run_id}/artifacts/summary.csv") for k in objects)


def test_compare_and_rerun_work_as_the_user(sweep, user_env, tmp_path):
    parent, children = sweep
    out = run_command("gdfit-compare", "--parent", parent.info.run_id, cwd=tmp_path, env=user_env)
    assert out.returncode == 0, out.stderr
    assert all(c.info.run_name in out.stdout for c in children)
    tensor = next(c for c in children if c.data.params["backend.name"] == "tensor")
    out = run_command("gdfit-rerun", tensor.info.run_id, cwd=tmp_path, env=user_env)
    assert out.returncode == 0, out.stderr
    assert ": identical: " in out.stdout


@pytest.mark.parametrize(
    "launcher",
    [["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], ["hydra/launcher=submitit_local"]],
)
def test_sweeps_with_the_other_launchers_reach_the_server(launcher, user_env, as_user, tmp_path):
    out = run_command(
        "gdfit-train",
        "-m",
        *launcher,
        "tracking=server",
        "tracking.experiment=launchers",
        "backend=numpy,tensor",
        "train.steps=100",
        cwd=tmp_path,
        env=user_env,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    parent = re.search(r"parent run (\w+)", out.stdout)[1]
    experiment = as_user.get_experiment_by_name("launchers").experiment_id
    children = as_user.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent}'")
    assert sorted((c.data.params["backend.name"], c.info.status) for c in children) == [
        ("numpy", "FINISHED"),
        ("tensor", "FINISHED"),
    ]
    assert as_user.get_run(parent).info.status == "FINISHED"


@needs_chromium
def test_gdfit_view_and_a_figure_from_the_bucket_open_in_the_ui_for_the_user(stack, sweep):
    """The UI behind the login: gdfit's view lists the sweep (test_server.py checks the view
    itself in depth), and a run's fit.png comes through the artifact proxy from the bucket."""
    parent, children = sweep
    experiment = parent.info.experiment_id
    with new_page({"username": USER, "password": stack.secret("user")}) as page:
        page.goto(views.page(stack.url, experiment))
        for child in children:
            page.get_by_text(child.info.run_name, exact=True).first.wait_for(timeout=WAIT_MS)
        page.get_by_text(USER, exact=True).first.wait_for(timeout=WAIT_MS)  # signed in as
        shot(page, "team-stack-runs-table")
        run_page = views.page(stack.url, experiment, children[0].info.run_id)
        page.goto(run_page.replace("?", "/artifacts/fit.png?"))
        page.locator("img[alt='fit.png']").first.wait_for(timeout=WAIT_MS)
        settle(page)
        shot(page, "team-stack-fit-from-the-bucket")


def test_anonymous_requests_are_refused(stack):
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{stack.url}/api/2.0/mlflow/experiments/search", timeout=10)
    assert refused.value.code == 401
    s3 = f"http://127.0.0.1:{stack.port('weed_s3')}/{team_server.BUCKET}/"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(s3, timeout=10)
    assert refused.value.code == 403


def test_the_artifact_store_cannot_be_read_or_written_past_the_s3_gateway(stack, sweep):
    """SeaweedFS's filer and volume ports are on loopback, where anyone on the machine reaches
    them: an unsigned read of a run's file, an unsigned upload beside it, and a write to a file
    id the master hands out are all refused; the bucket holds no forged file."""
    filer = f"http://127.0.0.1:{stack.port('weed_filer')}/buckets/{team_server.BUCKET}"
    key = next(k for k in bucket_objects(stack) if k.endswith("config.yaml"))
    upload = (
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="c"\r\n\r\nx\r\n--b--\r\n'
    )
    form = {"Content-Type": "multipart/form-data; boundary=b"}
    forged = key.rsplit("/", 1)[0] + "/forged.yaml"
    master = f"http://127.0.0.1:{stack.port('weed_master')}/dir/assign"
    fid = json.loads(urllib.request.urlopen(master, timeout=10).read())
    requests = [
        urllib.request.Request(f"{filer}/{key}"),
        urllib.request.Request(f"{filer}/{forged}", data=upload, headers=form, method="POST"),
        urllib.request.Request(f"http://{fid['url']}/{fid['fid']}", data=upload, headers=form),
    ]
    for request in requests:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 401, request.full_url
    assert not [k for k in bucket_objects(stack) if "forged" in k]


def test_a_wrong_password_is_one_line_in_seconds_and_creates_nothing(
    stack, sweep, user_env, as_user, tmp_path
):
    experiments = [e.experiment_id for e in as_user.search_experiments()]
    before = len(as_user.search_runs(experiments))
    began = time.monotonic()
    out = run_command(
        "gdfit-train",
        "tracking=server",
        "train.steps=200",
        cwd=tmp_path,
        env={**user_env, "MLFLOW_TRACKING_PASSWORD": "not-" + SECRETS["MY_SECRET"]},
    )
    assert time.monotonic() - began < 30
    assert out.returncode == 1
    assert out.stderr == (
        f"gdfit: error: cannot use the MLflow store at {stack.url}: authentication failed for "
        f"user '{USER}' (check MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD)\n"
    )
    assert len(as_user.search_runs(experiments)) == before


def test_an_experiment_the_user_may_only_read_refuses_a_run(stack, user_env, as_user, tmp_path):
    assert stack.admin_request("experiments/create", {"name": "admins-only"}) == 200
    out = run_command(
        "gdfit-train",
        "tracking=server",
        "tracking.experiment=admins-only",
        "train.steps=200",
        cwd=tmp_path,
        env=user_env,
    )
    assert out.returncode == 1
    assert out.stderr == (
        f"gdfit: error: cannot use the MLflow store at {stack.url}: permission denied for user "
        f"'{USER}' (ask the server's admin for access)\n"
    )
    experiment = as_user.get_experiment_by_name("admins-only").experiment_id
    assert as_user.search_runs([experiment]) == []


def test_no_credential_reaches_the_database_or_the_bucket(stack, sweep, user_env, tmp_path):
    # A run given the password inside its tracking URI, on the command line.
    password = stack.secret("user")
    in_uri = stack.url.replace("http://", f"http://{USER}:{password}@")
    env = {k: v for k, v in user_env.items() if not k.startswith("MLFLOW_TRACKING_")}
    out = run_command(
        "gdfit-train",
        "tracking=server",
        f"tracking.uri={in_uri}",
        "tracking.experiment=credentials",
        "train.steps=200",
        cwd=tmp_path,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    values = [*SECRETS.values(), password]
    assert not [v for v in values if v in out.stdout + out.stderr]

    dump = subprocess.run(
        [
            str(team_server.postgres_bindir() / "pg_dumpall"),
            "--host=127.0.0.1",
            f"--port={stack.port('postgres')}",
            "--username=postgres",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={"PGPASSWORD": stack.secret("db_superuser"), "PATH": "/usr/bin:/bin"},
    ).stdout
    assert "http://***@127.0.0.1" in dump  # the URI was recorded, its credentials masked
    assert "tracking.uri=http://***@" in dump  # and so was the command line
    leaks = [(name, v) for name, v in {**SECRETS, "user password": password}.items() if v in dump]
    assert not leaks, f"in the database dump: {leaks}"
    objects = bucket_objects(stack)
    assert any(key.endswith("environment.json") for key in objects)
    leaks = [(key, v) for key, body in objects.items() for v in values if v.encode() in body]
    assert not leaks, f"in the bucket: {leaks}"


def wait_for(check, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"{what} did not happen within {seconds} s")


def train_in_background(*overrides: str, env: dict, cwd) -> subprocess.Popen:
    """gdfit-train with `overrides` and `env` added to this environment, output captured."""
    return subprocess.Popen(
        [str(BIN / "gdfit-train"), *overrides],
        cwd=cwd,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_mlflow_server_restarted_mid_run_loses_no_point(stack, user_env, as_user, tmp_path):
    """The run rides the outage out: training goes on, points are kept and sent once the server
    is back (client.RETRY_SECONDS)."""
    steps = 600_000  # ~5 s of fitting or more: the server goes away while it runs
    proc = train_in_background(
        "tracking=server",
        "tracking.experiment=restart",
        f"train.steps={steps}",
        "train.log_every=500000",
        "tracking.curve_points=2000",
        env=user_env,
        cwd=tmp_path,
    )
    try:

        def first_points():
            experiment = as_user.get_experiment_by_name("restart")
            runs = as_user.search_runs([experiment.experiment_id]) if experiment else []
            if runs and as_user.get_metric_history(runs[0].info.run_id, "loss"):
                return runs[0]

        run = wait_for(first_points, 120, "the run's first loss points")
        assert proc.poll() is None, "the run ended before the server could be stopped"
        stack.stop("mlflow")
        time.sleep(2)
        stack.start_mlflow()
        _, stderr = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert f"the MLflow server at {stack.url} is unavailable" in stderr
    assert f"the MLflow server at {stack.url} is back" in stderr
    finished = as_user.get_run(run.info.run_id)
    assert finished.info.status == "FINISHED"
    history = as_user.get_metric_history(run.info.run_id, "loss")
    assert len(history) == 2_000  # curve_points, evenly spaced, both ends: none lost to the outage
    assert max(m.step for m in history) == steps - 1


def test_postgres_restarted_mid_sweep_leaves_no_run_running(stack, user_env, as_user, tmp_path):
    proc = train_in_background(
        "-m",
        "tracking=server",
        "tracking.experiment=pg-restart",
        "train.seed=0,1",
        "train.steps=100000",
        "train.log_every=100000",
        "tracking.curve_points=1000",  # one batch of points: the test is about the restart
        env=user_env,
        cwd=tmp_path,
    )
    try:

        def a_job_running():
            experiment = as_user.get_experiment_by_name("pg-restart")
            if experiment is None:
                return None
            jobs = as_user.search_runs([experiment.experiment_id], "tags.mlflow.parentRunId != ''")
            return [j for j in jobs if j.info.status == "RUNNING"]

        wait_for(a_job_running, 120, "a running job")
        stack.stop("postgres")
        time.sleep(5)
        back = time.time() * 1000  # jobs that start from here on come after the fault
        stack.start_postgres()
        _, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    experiment = as_user.get_experiment_by_name("pg-restart").experiment_id
    runs = as_user.search_runs([experiment])
    (parent,) = [r for r in runs if r.data.tags.get("gdfit.sweep") == "true"]
    jobs = [r for r in runs if r is not parent and r.data.tags.get("gdfit.sweep") != "true"]
    assert parent.info.status == "FINISHED"
    assert sorted(j.data.params["train.seed"] for j in jobs) == ["0", "1"]
    assert all(j.info.status in ("FINISHED", "FAILED") for j in jobs), [
        (j.info.run_name, j.info.status) for j in jobs
    ]
    failed = any(j.info.status == "FAILED" for j in jobs)
    assert proc.returncode == (1 if failed else 0), stderr  # a sweep with a failed job exits 1
    later = [j for j in jobs if j.info.start_time > back]
    assert later and all(j.info.status == "FINISHED" for j in later)


def test_the_sweeps_best_model_is_registered_and_served_through_the_stack(
    stack, sweep, user_env, as_user, tmp_path
):
    """The registry in PostgreSQL, the model's files in the bucket, every request signed in."""
    from test_logged_models import served

    from gdfit import champion

    parent, children = sweep
    # gdfit-register as `python -m`: the command as installed, without needing a reinstall
    out = run_command(None, "-m", "gdfit.register", parent.info.run_id, cwd=tmp_path, env=user_env)
    assert out.returncode == 0, out.stderr
    best = min(children, key=lambda c: c.data.metrics["final_loss"])
    version = as_user.get_model_version_by_alias("gdfit-polynomial", "champion")
    assert version.run_id == best.info.run_id
    model_id = version.tags["gdfit.model_id"]
    assert version.source == f"models:/{model_id}"  # the server resolves it in its own store
    assert any(model_id in key and key.endswith("/MLmodel") for key in bucket_objects(stack))
    x = [-2.0, 0.0, 0.5, 3.0]
    want = champion.load(stack.url, model_id).predict(np.array(x)).tolist()
    with served("models:/gdfit-polynomial@champion", user_env, tmp_path) as post:
        assert post({"dataframe_split": {"columns": ["x"], "data": [[v] for v in x]}}) == {
            "predictions": want
        }
