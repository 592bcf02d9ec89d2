"""Bad settings, diverging fits, signals, unreachable and racing stores: one clear line, the
right exit code, nothing left RUNNING."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch
from conftest import BIN, CTRL_C_AT_CHILD, run_command, sweep_runs, wait_for_curve
from mlflow.tracking import MlflowClient

from gdfit import api, curve, readback
from gdfit.errors import ConfigError
from gdfit.train import train

GDFIT_TRAIN = str(BIN / "gdfit-train")

BAD_SETTINGS = [
    # (overrides, exit code, what the one line must say)
    (["optimizer.lr=0"], 2, "optimizer.lr: must be a positive finite number (got 0.0)"),
    (["optimizer.lr=-1e-6"], 2, "optimizer.lr: must be a positive finite number"),
    (["optimizer.lr=inf"], 2, "optimizer.lr: must be a positive finite number (got inf)"),
    (["optimizer.lr=nan"], 2, "optimizer.lr: must be a positive finite number (got nan)"),
    (["optimizer.lr=fast"], 2, "optimizer.lr: must be a number (got 'fast')"),
    (["train.steps=0"], 2, "train.steps: must be >= 1 (got 0)"),
    (["train.steps=abc"], 2, "train.steps: must be an integer (got 'abc')"),
    (["train.log_every=0"], 2, "train.log_every: must be >= 1 (got 0)"),
    (["data.n_points=3"], 2, "data.n_points: must be >= model.degree + 1 = 4 (got 3)"),
    (["data.x_min=4"], 2, "data.x_min: must be less than data.x_max"),
    (["model.degree=-1"], 2, "model.degree: must be between 0 and 20 (got -1)"),
    (["model.degree=99"], 2, "model.degree: must be between 0 and 20 (got 99)"),
    (["model.init=[1,2]"], 2, "model.init: must have degree+1 = 4 numbers"),
    (["model.init=[1,2,3,nan]"], 2, "model.init: must contain only finite numbers"),
    (["model.init=zeros"], 2, 'model.init: must be "random" or a list of 4 numbers'),
    (
        ["backend=jax"],
        2,
        "backend=jax: unknown option; choose one of autograd, module, numpy, tensor",
    ),
    # only real options are offered, never the schemas behind them
    (["optimizer=Adam"], 2, "optimizer=Adam: unknown option; choose one of adam, momentum"),
    (["device=tpu"], 2, "device=tpu: unknown option; choose one of auto, cpu, cuda"),
    (["backend.dtype=float16"], 2, "backend.dtype: must be one of float32, float64"),
    (["trian.steps=3"], 2, "trian: no such setting; 'trian' is not one of backend, optimizer"),
    (["optimizer=momentum", "optimizer.momentum=1"], 2, "optimizer.momentum: must be in [0, 1)"),
    (["optimizer=adam", "optimizer.betas=[0.9]"], 2, "optimizer.betas: must be two numbers"),
    (["optimizer=adam", "optimizer.eps=0"], 2, "optimizer.eps: must be a positive finite"),
    (
        ["device=cuda"],
        2,
        "device.name: cuda needs backend=autograd or backend=module or backend=tensor (numpy",
    ),
    # what composing lets through: a group's name set apart from the group, appended keys
    (["backend.name=tensor"], 2, "backend.name: choose the option with backend=tensor:"),
    (
        ["+optimizer.momentum=0.5"],
        2,
        "optimizer.momentum: not a setting of optimizer=sgd; optimizer=momentum and "
        "optimizer=rmsprop have it",
    ),
    (["+train.stpes=100"], 2, "train.stpes: no such setting; did you mean train.steps"),
    (["+foo=1"], 2, "foo: no such setting; 'foo' is not one of backend, optimizer"),
    # a quote Hydra cannot read: said without the password in the value
    (
        ["tracking.uri=http://alice:it's-Secr3t@127.0.0.1:5077"],
        2,
        'tracking.uri: cannot read the override "tracking.uri=http://***@127.0.0.1:5077": quote',
    ),
]


def runs(uri: str, experiment: str = "gdfit"):
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id]) if found else []


@pytest.mark.parametrize(("overrides", "code", "message"), BAD_SETTINGS, ids=lambda v: str(v))
def test_bad_setting_is_one_line_before_any_run(overrides, code, message, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = run_command("gdfit-train", *overrides, f"tracking.uri={uri}", cwd=tmp_path)
    assert out.returncode == code
    assert "Traceback" not in out.stderr + out.stdout
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert out.stderr.startswith("gdfit: error: " + message), out.stderr
    assert "schema" not in out.stderr
    assert not (tmp_path / "mlflow.db").exists()  # no store touched, so no run created


def test_the_api_refuses_what_the_command_refuses():
    with pytest.raises(ConfigError) as refused:
        api.compose("+train.stpes=100")
    assert str(refused.value).startswith("train.stpes: no such setting")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message when CUDA is absent")
def test_cuda_without_cuda_names_cuda(make_cfg):
    with pytest.raises(ConfigError, match="device.name: cuda is not available"):
        train(make_cfg("backend=tensor", "device=cuda"))


def test_auto_device_records_what_it_chose(make_cfg, client):
    result = train(make_cfg("backend=autograd", "device=auto", "train.steps=2"))
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert client.get_run(result.run_id).data.tags["gdfit.device"] == expected


@pytest.mark.parametrize("backend", ["numpy", "autograd"])
def test_divergence_fails_the_run_and_keeps_the_curve(backend, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = run_command(
        "gdfit-train",
        f"backend={backend}",
        "optimizer.lr=1e-4",
        f"tracking.uri={uri}",
        cwd=tmp_path,
    )
    assert out.returncode == 1
    assert "Traceback" not in out.stderr and "RuntimeWarning" not in out.stderr
    assert "the loss diverged at step" in out.stderr and "smaller learning rate" in out.stderr
    (run,) = runs(uri)
    assert run.info.status == "FAILED"
    step = int(run.data.tags["gdfit.diverged_at_step"])
    assert f"diverged at step {step} " in out.stderr
    assert f"run {run.info.run_id} ended FAILED" in out.stderr
    # Every step up to the divergence is kept (loss.npz); the chart's metric is a subset of it.
    steps = readback.loss_curve(uri, run.info.run_id).steps.tolist()
    assert steps == list(range(step))
    curve = MlflowClient(uri).get_metric_history(run.info.run_id, "loss")
    assert {m.step for m in curve} <= set(steps) and curve


@pytest.mark.parametrize(
    ("sig", "code", "times"),
    [
        (signal.SIGINT, 130, 1),
        (signal.SIGTERM, 143, 1),
        (signal.SIGHUP, 129, 1),  # the terminal was closed
        (signal.SIGQUIT, 131, 1),
        (signal.SIGINT, 130, 3),  # Ctrl-C pressed three times, 5 ms apart
    ],
)
def test_signal_ends_the_run_killed_with_its_curve(sig, code, times, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    endless = ["train.steps=100000000", "tracking.curve_points=100000", "train.log_every=1000000"]
    proc = subprocess.Popen(
        [GDFIT_TRAIN, *endless, f"tracking.uri={uri}"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_curve(uri)  # the run is going and its first batch of the curve has landed
    client = MlflowClient(uri)
    for _ in range(times):
        proc.send_signal(sig)
        time.sleep(0.005)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code
    assert "Traceback" not in stderr
    assert stderr.startswith(f"gdfit: error: stopped by {sig.name}; run ")
    (run,) = runs(uri)
    assert run.info.status == "KILLED"
    assert len(client.get_metric_history(run.info.run_id, "loss")) > 1  # stride 1000 steps
    steps = readback.saved_curve(uri, run.info.run_id).steps  # every step to the stop, none cut
    kept = curve.thinned_steps(100_000_000, curve.FULL_CURVE_MAX)  # (so long a run thins)
    assert np.array_equal(steps, kept[: len(steps)]) and len(steps) > 1000


def test_unreachable_server_fails_fast_naming_the_uri(tmp_path):
    with socket.socket() as s:  # a free port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    began = time.monotonic()
    out = run_command("gdfit-train", f"tracking.uri=http://127.0.0.1:{port}", cwd=tmp_path)
    assert time.monotonic() - began < 30
    assert out.returncode == 1
    assert out.stderr.strip() == (
        f"gdfit: error: cannot use the MLflow store at http://127.0.0.1:{port}: Connection refused"
    )


def test_unwritable_sqlite_path_fails_clearly(tmp_path):
    (tmp_path / "a-file").write_text("")
    uri = f"sqlite:///{tmp_path / 'a-file' / 'mlflow.db'}"
    out = run_command("gdfit-train", f"tracking.uri={uri}", cwd=tmp_path)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.startswith(f"gdfit: error: cannot use the MLflow store at {uri}: ")


def test_an_unexpected_error_ends_the_run_failed_with_the_error(make_cfg, client, monkeypatch):
    from gdfit import plots

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(plots, "run_figures", broken)
    with pytest.raises(RuntimeError):
        train(make_cfg("train.steps=3"))
    (run,) = client.search_runs(
        [client.get_experiment_by_name(make_cfg().tracking.experiment).experiment_id]
    )
    assert run.info.status == "FAILED"
    assert run.data.tags["gdfit.error"] == "RuntimeError: disk full"


def test_six_simultaneous_starts_on_a_fresh_store_all_succeed(tmp_path):
    uri = f"sqlite:///{tmp_path / 'fresh' / 'mlflow.db'}"
    procs = [
        subprocess.Popen(
            [GDFIT_TRAIN, "train.steps=200", f"train.seed={i}", f"tracking.uri={uri}"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=os.environ,
        )
        for i in range(6)
    ]
    outcomes = [(p.wait(timeout=180), p.stderr.read()) for p in procs]
    assert [code for code, _ in outcomes] == [0] * 6, outcomes
    found = runs(uri)
    assert sorted(r.data.params["train.seed"] for r in found) == [str(i) for i in range(6)]
    client = MlflowClient(uri)
    for run in found:
        assert run.info.status == "FINISHED"
        assert len(client.get_metric_history(run.info.run_id, "loss")) == 200
        assert len(client.list_artifacts(run.info.run_id)) >= 5


def test_ctrl_c_as_a_sweeps_child_is_created_ends_it_killed_with_its_params(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    grid = ["-m", "train.seed=0,1,2", "train.steps=50", f"tracking.uri={uri}"]
    out = run_command(None, "-c", CTRL_C_AT_CHILD, *grid, cwd=tmp_path)
    assert out.returncode == 130, out.stderr
    assert "Traceback" not in out.stderr
    assert out.stderr.startswith("gdfit: error: stopped by SIGINT; run ")
    assert "ended KILLED" in out.stderr
    client, parent, children = sweep_runs(uri)
    assert parent.info.status == "KILLED"
    assert [c.info.status for c in children] == ["FINISHED", "KILLED"]
    assert children[1].data.params["train.seed"] == "1"  # a config a resume can recognise


def test_runs_start_while_another_thread_changes_the_environment(make_cfg, client):
    """As MLflow's telemetry thread does: variables, one of them named like a secret, set and
    removed all the time while runs start, their environment is filtered and a server's
    environment is copied. Thread switches are made as frequent as Python allows."""
    from gdfit import environment
    from gdfit.redaction import secret_values

    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            for name in ("_GDFIT_RACE_SESSION_ID", "GDFIT_RACE_TOKEN"):
                os.environ[name] = "race-value-that-comes-and-goes"
                os.environ.pop(name, None)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    churning = threading.Thread(target=churn, daemon=True)
    churning.start()
    try:
        for _ in range(300):  # the readers alone: the old items() loop failed ~1 in 10 here
            secret_values()
            environment.variables()
        results = [train(make_cfg("train.steps=20", f"train.seed={i}")) for i in range(3)]
    finally:
        stop.set()
        churning.join()
        sys.setswitchinterval(interval)
    assert [client.get_run(r.run_id).info.status for r in results] == ["FINISHED"] * 3
