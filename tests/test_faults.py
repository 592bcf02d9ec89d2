"""Faults from outside, through the installed commands: a new store interrupted while MLflow
builds it, store addresses that cannot work, experiment names that look like paths."""

import signal
import sqlite3
import subprocess
import time

import pytest
from conftest import BIN, run_command, wait_for_curve
from mlflow.tracking import MlflowClient


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM])
def test_a_store_interrupted_while_being_built_is_never_left_half_built(tmp_path, signum):
    store = tmp_path / "store"
    uri = f"sqlite:///{store / 'mlflow.db'}"
    proc = subprocess.Popen(
        [str(BIN / "gdfit-train"), "train.steps=50", f"tracking.uri={uri}"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not list(store.glob(".mlflow.db.creating-*")) and time.monotonic() < deadline:
        assert proc.poll() is None, "gdfit-train ended before it built the store"
        time.sleep(0.005)
    proc.send_signal(signum)  # in the middle of MLflow's table migrations
    proc.wait(timeout=60)
    # Whatever the signal cut short, the next command finds a whole store or none.
    out = run_command("gdfit-train", "train.steps=50", f"tracking.uri={uri}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("gdfit").experiment_id])
    assert [r.info.status for r in runs if r.info.status == "FINISHED"] == ["FINISHED"]
    assert not list(store.glob(".mlflow.db.creating-*"))


def test_a_half_built_store_says_what_happened_and_what_to_do(tmp_path):
    db = tmp_path / "mlflow.db"
    with sqlite3.connect(db) as con:  # what an interrupted migration by an older gdfit left
        con.execute("create table experiments (experiment_id integer primary key)")
        con.execute("create table alembic_version (version_num varchar(32) not null)")
        con.execute("insert into alembic_version values ('451aebb31d03')")
    out = run_command("gdfit-train", "train.steps=5", f"tracking.uri=sqlite:///{db}", cwd=tmp_path)
    assert out.returncode == 1
    assert f"the store {db} is half-built" in out.stderr and f"mv {db} {db}.broken" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


@pytest.mark.parametrize(
    "uri, says",
    [
        ("sqlite://", "an in-memory sqlite store vanishes"),
        ("junk", "MLflow's old file store"),
        ("file:///tmp/somewhere", "MLflow's old file store"),
        ("sqlite:////", "/ is a folder, not a database file"),
        ("http://", "the address names no host"),
        ("ftp://example.org", "ftp: is not a tracking store"),
    ],
)
def test_store_addresses_that_cannot_work_are_refused(uri, says, tmp_path):
    for command, args in [
        ("gdfit-train", ["train.steps=5", f"tracking.uri={uri}"]),
        ("gdfit-compare", ["--experiment", "gdfit", "--tracking-uri", uri]),
        ("gdfit-rerun", ["0123abcd", "--tracking-uri", uri]),
    ]:
        out = run_command(command, *args, cwd=tmp_path, timeout=60)
        assert out.returncode == 2, (command, out.stderr)
        assert says in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert list(tmp_path.iterdir()) == []  # nothing saved anywhere, nothing orphaned


def test_the_relative_sqlite_form_mlflow_prints_works_from_the_working_directory(tmp_path):
    out = run_command(
        "gdfit-train", "train.steps=5", "tracking.uri=sqlite:///mlflow.db", cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("gdfit").experiment_id])
    assert run.info.status == "FINISHED"
    assert (tmp_path / "artifacts" / "gdfit" / run.info.run_id).is_dir()


@pytest.mark.parametrize("name", ["../../escape", "/tmp/x/Users/me", "a/b"])
def test_an_experiment_name_never_leads_artifacts_outside_the_store(name, tmp_path):
    store = tmp_path / "deep" / "store"
    uri = f"sqlite:///{store / 'mlflow.db'}"
    out = run_command(
        "gdfit-train",
        "train.steps=5",
        f"tracking.uri={uri}",
        f"tracking.experiment={name}",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name(name).experiment_id])
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written and all(store in p.parents for p in written), written
    assert any(run.info.run_id in str(p) for p in written)


def test_an_experiment_name_that_cannot_be_stored_is_one_line(tmp_path):
    out = run_command(
        "gdfit-train",
        "train.steps=5",
        f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
        f"tracking.experiment={'x' * 300}",
        cwd=tmp_path,
    )
    assert out.returncode == 2
    assert "tracking.experiment: must be at most 200 printable characters" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args, says",
    [
        (["train.seed=-1"], "train.seed: must be between 0 and 4294967295 (got -1)"),
        (["train.seed=4294967296"], "train.seed: must be between 0 and 4294967295"),
        (["data.n_points=1000000000000"], "data.n_points: needs ~119,209 GiB"),
        (["data.x_min=-1e80", "data.x_max=1e80"], "data.x_max: makes the loss at the start"),
        (["backend=tensor", "data.x_max=1e20"], "overflow float32; narrow the range (got 1e+20)"),
        (["data.target=exp", "data.x_max=1000"], "data.target: exp(x) overflows float64"),
        (["model.init=[1e308,1e308,1e308,1e308]"], "model.init: gives a loss that overflows"),
        (["optimizer=null"], "optimizer: needs an option: one of adam, momentum, rmsprop, sgd"),
        (["-m", "--cfg", "job"], "--cfg and -m cannot go together"),
    ],
)
def test_inputs_that_broke_the_run_are_one_line_and_create_nothing(args, says, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = run_command("gdfit-train", *args, "train.steps=20", f"tracking.uri={uri}", cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert says in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert not (tmp_path / "mlflow.db").exists()  # nothing created: settings come first


def test_a_run_killed_by_sigkill_is_marked_killed_by_the_next_command(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    endless = ["train.steps=100000000", "tracking.curve_points=100000", "train.log_every=1000000"]
    proc = subprocess.Popen(
        [str(BIN / "gdfit-train"), *endless, f"tracking.uri={uri}"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    run_id = wait_for_curve(uri)
    proc.kill()  # SIGKILL: nothing in the process can close the run
    proc.wait(timeout=30)
    client = MlflowClient(uri)
    assert client.get_run(run_id).info.status == "RUNNING"
    assert client.get_run(run_id).data.tags["gdfit.process"].split(":")[2] == str(proc.pid)
    out = run_command("gdfit-compare", "--experiment", "gdfit", "--tracking-uri", uri, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert (
        f"gdfit: run {run_id} (numpy-sgd-lr1e-06-seed0) was RUNNING but its process" in out.stderr
    )
    run = client.get_run(run_id)
    assert run.info.status == "KILLED" and run.data.tags["gdfit.reaped"]
    assert len(client.get_metric_history(run_id, "loss")) > 1  # what it had logged is kept
    # A run whose process still runs is left alone.
    live = subprocess.Popen(
        [str(BIN / "gdfit-train"), *endless, f"tracking.uri={uri}", "tracking.run_name=live"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while (
            not client.search_runs([run.info.experiment_id], "attributes.run_name = 'live'")
            and time.monotonic() < deadline
        ):
            time.sleep(0.3)
        out = run_command(
            "gdfit-compare", "--experiment", "gdfit", "--tracking-uri", uri, cwd=tmp_path
        )
        (going,) = client.search_runs([run.info.experiment_id], "attributes.run_name = 'live'")
        assert going.info.status == "RUNNING" and "was RUNNING" not in out.stderr
    finally:
        live.kill()
        live.wait(timeout=30)
