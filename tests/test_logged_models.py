"""A fit as an MLflow model: logged with its run for every model and backend, loaded and
predicting what gdfit's model predicts to the last bit, registered (the alias champion moves
only on a better fit of the same data), served over HTTP, and compared by gdfit-rerun."""

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import BIN, free_port, run_command
from mlflow.tracking import MlflowClient

from gdfit import champion, data, models, register, registry, rerun
from gdfit.train import train

COMBINATIONS = [
    (m, b)
    for m in registry.names("model")
    for b in registry.names("backend")
    if registry.load("backend", b).GRADIENT in registry.load("model", m).GRADIENTS
]


def model_id_of(client, run_id: str) -> str:
    (output,) = client.get_run(run_id).outputs.model_outputs
    return output.model_id


def expected(uri: str, run_id: str, x_new: np.ndarray) -> tuple[np.ndarray, ...]:
    """gdfit's own predictions of the run's logged coefficients: at its data and at x_new."""
    run = MlflowClient(uri).get_run(run_id)
    cfg = champion.logged_config(uri, run)
    model = models.build(cfg.model)
    x, _ = data.make_data(cfg.data)
    F = model.features(x)
    coef = np.array([run.data.metrics[n] for n in model.param_names])
    return x, model.predict(coef, F), model.predict(coef, models.features_at(model, x_new))


@pytest.mark.parametrize(("model", "backend"), COMBINATIONS)
def test_every_model_and_backend_logs_a_model_that_predicts_its_fit_bit_for_bit(
    model, backend, make_cfg, store_uri, client
):
    rate = "optimizer.lr=1e-8" if model == "dynamic" else "optimizer.lr=1e-6"  # the tutorial's
    fit = train(make_cfg(f"model={model}", f"backend={backend}", rate, "train.steps=30"))
    model_id = model_id_of(client, fit.run_id)
    logged = client.get_logged_model(model_id)
    assert logged.status.to_int() == logged.status.READY.to_int()
    assert logged.source_run_id == fit.run_id
    linked = {m.key: m.value for m in logged.metrics}
    assert linked["final_loss"] == fit.final_loss
    if fit.optimal_loss is not None:  # the models with a closed-form optimum
        assert linked["loss_gap"] == fit.final_loss - fit.optimal_loss
    assert logged.params["backend.name"] == backend

    x_new = np.array([-4.0, -1.0, 0.0, 0.25, 2.5, 4.0])  # inside and outside the data's range
    x, at_data, at_new = expected(store_uri, fit.run_id, x_new)
    loaded = champion.load(store_uri, model_id)
    assert np.array_equal(loaded.predict(pd.DataFrame({"x": x})), at_data)
    assert np.array_equal(loaded.predict(x_new), at_new)


def test_the_model_file_has_a_signature_an_example_and_pinned_requirements(
    make_cfg, store_uri, client, tmp_path
):
    fit = train(make_cfg("train.steps=20"))
    location = client.get_logged_model(model_id_of(client, fit.run_id)).artifact_location
    folder = Path(location.removeprefix("file://"))
    mlmodel = yaml.safe_load((folder / "MLmodel").read_text())
    assert mlmodel["run_id"] == fit.run_id
    assert json.loads(mlmodel["signature"]["inputs"])[0]["name"] == "x"
    assert mlmodel["flavors"]["python_function"]["config"]["params"] == list(fit.coef)
    example = json.loads((folder / "serving_input_example.json").read_text())
    assert example["dataframe_split"]["columns"] == ["x"]
    requirements = (folder / "requirements.txt").read_text().split()
    assert {r.split("==")[0] for r in requirements} >= {"gdfit", "mlflow", "numpy"}
    assert all("==" in r for r in requirements)  # every one pinned, none inferred


def test_loading_imports_neither_torch_nor_anything_the_fit_used(make_cfg, store_uri, client):
    """Models fitted by numpy and by torch's autograd both load and predict without torch."""
    ids = [
        model_id_of(client, train(make_cfg(*overrides, "train.steps=20")).run_id)
        for overrides in (
            ["backend=numpy"],
            ["model=dynamic", "backend=autograd", "optimizer.lr=1e-8"],
        )
    ]
    script = (
        "import sys\nimport numpy as np\nfrom gdfit import champion\n"
        f"for m in {ids!r}:\n"
        f"    print(champion.load({store_uri!r}, m).predict(np.array([0.5])))\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    out = run_command(None, "-c", script, cwd=Path.cwd())
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.splitlines()) == 2


def test_log_model_off_logs_none_and_a_sweep_logs_only_its_best_jobs(make_cfg, client, store_uri):
    from gdfit import api

    fit = train(make_cfg("train.steps=20", "tracking.log_model=false"))
    assert client.get_run(fit.run_id).outputs.model_outputs == []
    experiment = client.get_run(fit.run_id).info.experiment_id
    name = client.get_experiment(experiment).name
    runs = api.sweep(
        "optimizer.lr=1e-6,3e-6",
        "train.steps=50",
        f"tracking.uri={store_uri}",
        f"tracking.experiment={name}",
        progress="none",
    )
    with_models = [r for r in runs.runs if client.get_run(r.info.run_id).outputs.model_outputs]
    best = min(runs.runs, key=lambda r: r.data.metrics["final_loss"])
    assert [r.info.run_id for r in with_models] == [best.info.run_id]
    logged = client.get_logged_model(model_id_of(client, best.info.run_id))
    assert {m.key: m.value for m in logged.metrics}["final_loss"] == best.data.metrics["final_loss"]


def run_register(*args: str) -> int:
    try:
        register.main(list(args))
    except SystemExit as stopped:
        return int(stopped.code or 0)
    return 0


def test_the_champion_moves_only_to_a_better_fit_of_the_same_data(
    make_cfg, store_uri, client, capsys
):
    name = f"gdfit-test-{time.monotonic_ns()}"
    worse = train(make_cfg("train.steps=50", "tracking.log_model=false"))  # logged on register
    better = train(make_cfg("train.steps=400"))
    other = train(make_cfg("train.steps=400", "data.n_points=500"))
    uri = ["--tracking-uri", store_uri, "--name", name]

    assert run_register(worse.run_id, *uri) == 0
    assert "champion is now version 1 (the first champion)" in capsys.readouterr().out
    assert run_register(better.run_id, *uri) == 0
    assert "champion is now version 2 (final_loss" in capsys.readouterr().out
    assert run_register(worse.run_id, *uri) == 0
    said = capsys.readouterr().out
    assert "champion stays version 2: final_loss" in said and "does not beat" in said
    assert run_register(other.run_id, *uri) == 0
    assert "champion stays version 2: version 2 was fitted on other data" in capsys.readouterr().out
    champ = client.get_model_version_by_alias(name, "champion")
    assert str(champ.version) == "2" and champ.run_id == better.run_id
    assert f"gdfit-rerun {better.run_id} --tracking-uri {store_uri}" in champ.description
    assert "backend=numpy" in champ.description and "400 steps" in champ.description
    # the run logged without a model got one, with its metrics, and was not logged twice
    first, third = (client.get_model_version(name, v) for v in ("1", "3"))
    assert first.tags["gdfit.model_id"] == third.tags["gdfit.model_id"]
    assert first.tags["gdfit.model_id"] == model_id_of(client, worse.run_id)

    assert run_register(worse.run_id, *uri, "--force") == 0
    assert "champion is now version 5" in capsys.readouterr().out
    assert run_register("no-such-run", *uri) == 2
    assert "cannot register: no run 'no-such-run'" in capsys.readouterr().err


def test_tracking_register_registers_at_the_end_of_a_run(make_cfg, client, capsys):
    fit = train(make_cfg("train.steps=30", "model=chebyshev", "tracking.register=true"))
    assert f"registered run {fit.run_id}" in capsys.readouterr().out
    version = client.get_model_version_by_alias("gdfit-chebyshev", "champion")
    assert version.run_id == fit.run_id
    assert version.tags["gdfit.model_id"] == model_id_of(client, fit.run_id)


def test_served_champion_answers_invocations_over_http(make_cfg, store_uri, tmp_path):
    name = f"gdfit-serve-{time.monotonic_ns()}"
    fit = train(make_cfg("train.steps=100"))
    assert run_register(fit.run_id, "--tracking-uri", store_uri, "--name", name) == 0
    x = [-3.0, -0.5, 0.0, 1.25, 3.0]
    _, _, want = expected(store_uri, fit.run_id, np.array(x))
    with served(f"models:/{name}@champion", {"MLFLOW_TRACKING_URI": store_uri}, tmp_path) as post:
        answer = post({"dataframe_split": {"columns": ["x"], "data": [[v] for v in x]}})
        assert answer["predictions"] == want.tolist()
        assert post({"inputs": {"x": x}})["predictions"] == want.tolist()


@contextmanager
def served(model_uri: str, env: dict, folder: Path, seconds: float = 180):
    """`mlflow models serve` of `model_uri` on a free loopback port, in the environment `env`
    adds to this one; yields post(body) -> the answer of POST /invocations, once it answers."""
    port, log = free_port(), folder / "serve.log"
    server = subprocess.Popen(
        [str(BIN / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local"]
        + ["-h", "127.0.0.1", "-p", str(port)],
        cwd=folder,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its uvicorn worker too is stopped below
        # as in an activated virtualenv: MLflow starts its server as `uvicorn`, found on PATH
        env={**os.environ, **env, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"},
    )

    def post(body: dict) -> dict:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            json.dumps(body).encode(),
            {"Content-Type": "application/json"},
        )
        deadline = time.monotonic() + seconds
        while True:
            assert server.poll() is None, log.read_text()
            try:
                with urllib.request.urlopen(request, timeout=10) as answer:
                    return json.loads(answer.read())
            except urllib.error.HTTPError as refused:
                raise AssertionError(refused.read().decode()) from refused
            except OSError:
                assert time.monotonic() < deadline, f"no answer: {log.read_text()}"
                time.sleep(0.5)

    try:
        yield post
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_rerun_compares_the_models_predictions(make_cfg, store_uri, capsys):
    original = train(make_cfg("train.steps=100"))
    with pytest.raises(SystemExit) as same:
        rerun.main([original.run_id, "--tracking-uri", store_uri, "--check"])
    assert same.value.code == 0
    assert "the models' predictions at the 2000 data points agree bit for bit" in (
        capsys.readouterr().out
    )
    with pytest.raises(SystemExit) as changed:
        rerun.main([original.run_id, "--tracking-uri", store_uri, "optimizer.lr=1.5e-6"])
    assert changed.value.code == 1
    assert "the models' predictions differ by up to" in capsys.readouterr().out
