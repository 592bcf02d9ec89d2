"""Reruns from what MLflow holds: same numbers bit for bit, or a clear verdict and exit code."""

import json
from pathlib import Path

import pytest
from conftest import run_command
from mlflow.tracking import MlflowClient

from gdfit import rerun
from gdfit.train import train


def run_rerun(*args):
    """gdfit-rerun in-process; returns its exit code."""
    with pytest.raises(SystemExit) as stopped:
        rerun.main(list(args))
    return stopped.value.code


def assert_same_numbers(client, a, b):
    curve_a = [(m.step, m.value) for m in client.get_metric_history(a, "loss")]
    curve_b = [(m.step, m.value) for m in client.get_metric_history(b, "loss")]
    assert sorted(curve_a) == sorted(curve_b)
    ma, mb = client.get_run(a).data.metrics, client.get_run(b).data.metrics
    assert [ma[f"coef_{k}"] for k in range(4)] == [mb[f"coef_{k}"] for k in range(4)]


def the_rerun_of(client, run_id):
    experiment = client.get_run(run_id).info.experiment_id
    (found,) = client.search_runs([experiment], f"tags.gdfit.rerun_of = '{run_id}'")
    return found


@pytest.mark.parametrize(
    "overrides",
    [
        ["backend=numpy"],
        ["backend=tensor"],
        ["backend=autograd"],
        ["backend=tensor", "optimizer=adam", "backend.dtype=float64"],
        ["optimizer=momentum", "model.init=[0.1,0.2,0.3,0.4]", "data.n_points=500"],
    ],
)
def test_rerun_reproduces_every_backend_bit_for_bit(overrides, make_cfg, client, store_uri, capsys):
    original = train(make_cfg(*overrides, "train.steps=300"))
    assert run_rerun(original.run_id, "--tracking-uri", store_uri) == 0
    assert "identical" in capsys.readouterr().out
    again = the_rerun_of(client, original.run_id)
    assert again.info.status == "FINISHED"
    assert again.info.experiment_id == client.get_run(original.run_id).info.experiment_id
    assert again.data.params == client.get_run(original.run_id).data.params | {
        "tracking.run_name": again.info.run_name,
        "tracking.uri": store_uri,
    }
    assert_same_numbers(client, original.run_id, again.info.run_id)


def test_a_changed_override_is_reported_as_different(make_cfg, store_uri, capsys):
    original = train(make_cfg("train.steps=200"))
    assert run_rerun(original.run_id, "optimizer.lr=1.5e-6", "--tracking-uri", store_uri) == 1
    out = capsys.readouterr().out
    assert ": different: largest relative difference" in out
    assert "the curves part at step 1" in out  # step 0 is the same start point


def test_rtol_accepts_a_small_difference(make_cfg, store_uri, capsys):
    original = train(make_cfg("backend=tensor", "train.steps=200"))
    code = run_rerun(
        original.run_id, "backend.dtype=float64", "--rtol", "1e-4", "--tracking-uri", store_uri
    )
    assert code == 0
    assert "within rtol=0.0001" in capsys.readouterr().out


def test_rerun_of_a_sweep_child(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = run_command(
        "gdfit-train",
        "-m",
        "backend=numpy,autograd",
        "train.steps=150",
        f"tracking.uri={uri}",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("gdfit").experiment_id
    (child,) = client.search_runs([experiment], "params.`backend.name` = 'autograd'")
    assert child.data.tags["mlflow.parentRunId"]
    assert run_rerun(child.info.run_id, "--tracking-uri", uri) == 0
    assert_same_numbers(
        client, child.info.run_id, the_rerun_of(client, child.info.run_id).info.run_id
    )


def test_every_run_carries_its_environment(make_cfg, client, tmp_path):
    result = train(make_cfg("backend=tensor", "train.steps=2"), overrides=["backend=tensor"])
    run = client.get_run(result.run_id)
    tags = run.data.tags
    for key in ("python", "numpy", "torch", "mlflow", "hydra-core", "gdfit"):
        assert tags[f"gdfit.env.{key}"]
    assert tags["gdfit.cpu"] and tags["gdfit.platform"]
    assert tags["gdfit.overrides"] == "backend=tensor"
    path = client.download_artifacts(result.run_id, "environment.json", str(tmp_path))
    env = json.loads(Path(path).read_text())
    assert env["versions"]["torch"] == tags["gdfit.env.torch"]
    assert env["git"]["commit"] == tags["mlflow.source.git.commit"]
    assert env["git"]["dirty"] == (tags["gdfit.git_dirty"] == "true")
    assert env["overrides"] == ["backend=tensor"] and env["command"]
    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert ("git.diff" in artifacts) == env["git"]["dirty"]


def test_unknown_run_or_missing_config_exits_2(store_uri, make_cfg, client, tmp_path):
    out = run_command("gdfit-rerun", "0123abc", "--tracking-uri", store_uri, cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip() == f"gdfit: error: cannot rerun: no run 0123abc in {store_uri}"
    experiment = client.get_experiment_by_name(make_cfg().tracking.experiment) or None
    bare = client.create_run(experiment.experiment_id if experiment else "0").info.run_id
    client.set_terminated(bare)
    assert run_rerun(bare, "--tracking-uri", store_uri) == 2
