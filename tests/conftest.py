"""Shared fixtures: composed configs and a real sqlite MLflow store in a temp folder."""

import csv
import io
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from mlflow.tracking import MlflowClient

from gdfit import config
from gdfit.paths import conf_dir

config.register()
_experiments = itertools.count()
BIN = Path(sys.executable).parent  # the virtualenv's installed commands


def run_command(exe: str | None, *args: str, cwd, env=None, timeout: float = 300):
    """Run an installed command (`gdfit-train`, `gdfit-compare`, ...) as a user would, or this
    Python with `exe=None`; output captured as text."""
    program = [str(BIN / exe)] if exe else [sys.executable]
    return subprocess.run(
        [*program, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="session")
def store_uri(tmp_path_factory):
    """One sqlite store for the session: creating a store costs ~1.5 s, opening it ~0.1 s."""
    return f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"


@pytest.fixture
def client(store_uri):
    return MlflowClient(store_uri)


@pytest.fixture
def make_cfg(store_uri):
    """compose(overrides) -> DictConfig logging to the session store, one experiment per test."""
    experiment = f"test-{next(_experiments)}"

    def make(*overrides: str):
        with initialize_config_dir(str(conf_dir()), version_base="1.3"):
            return compose(
                "config",
                [f"tracking.uri={store_uri}", f"tracking.experiment={experiment}", *overrides],
            )

    return make


def sweep_runs(uri: str):
    """(client, the one sweep parent of experiment gdfit at `uri`, its children oldest first)."""
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("gdfit").experiment_id
    (parent,) = client.search_runs([experiment], "tags.gdfit.sweep = 'true'")
    children = client.search_runs(
        [experiment],
        f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
        order_by=["attributes.start_time ASC"],
    )
    return client, parent, children


# gdfit-train (`python -c CTRL_C_AT_CHILD <gdfit-train's arguments>`) with a fault injected: a
# SIGINT sent to itself as the store creates the sweep's second child, between create_run and
# everything after it (the window of a Ctrl-C just after the previous job's FINISHED line).
CTRL_C_AT_CHILD = """
import os, signal, sys
from gdfit import cli
from gdfit.client import Client

create, children = Client.create_run, []

def create_run(self, experiment_id, start_time=None, tags=None, run_name=None):
    created = create(self, experiment_id, start_time, tags, run_name)
    if "mlflow.parentRunId" in (tags or {}):
        children.append(created)
        if len(children) == 2:
            os.kill(os.getpid(), signal.SIGINT)
    return created

Client.create_run = create_run
sys.argv = ["gdfit-train", *sys.argv[1:]]
cli.main()
"""


def summary_rows(client, parent, folder) -> list[dict]:
    """The rows of a sweep parent's summary.csv."""
    path = client.download_artifacts(parent.info.run_id, "summary.csv", str(folder))
    return list(csv.DictReader(io.StringIO(Path(path).read_text())))


def wait_for_curve(uri: str, timeout: float = 60) -> str:
    """Block until a run of experiment `gdfit` at `uri` has loss points; return its id.

    The store is opened through gdfit's own `open_experiment`, under the file lock that keeps
    a second process from racing MLflow's table creation.
    """
    from gdfit.store import open_experiment

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        client, experiment = open_experiment(uri, "gdfit")
        for run in client.search_runs([experiment]):
            if client.get_metric_history(run.info.run_id, "loss"):
                return run.info.run_id
        time.sleep(0.3)
    raise AssertionError(f"no loss curve arrived at {uri} within {timeout} s")


# Tensor methods that copy to the host and wait for the device.
SYNCING = ("cpu", "item", "tolist", "numpy", "__float__", "__bool__", "__int__")


@pytest.fixture
def host_syncs(monkeypatch) -> list[str]:
    """The names of the syncing Tensor methods called while the test runs, in call order."""
    import torch

    calls = []
    for method in SYNCING:
        original = getattr(torch.Tensor, method)

        def counting(self, *args, _original=original, _method=method, **kwargs):
            calls.append(_method)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, method, counting)
    return calls


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def mlflow_server(folder: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """`mlflow server` on a free loopback port, with an sqlite backend and proxied artifacts in
    `folder`; (its address, its process, whose pid is its process group's), stopped by pid at
    the end."""
    from gdfit.ui import wait_until_healthy

    url = f"http://127.0.0.1:{free_port()}"
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "mlflow", "server"),
            *("--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}"),
            *("--artifacts-destination", str(folder / "artifacts")),
            *("--host", "127.0.0.1", "--port", url.rsplit(":", 1)[1], "--workers", "1"),
        ],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its workers are its process group: stopped together
    )
    try:
        wait_until_healthy(url, proc)
        yield url, proc
    finally:
        os.killpg(proc.pid, signal.SIGCONT)
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
