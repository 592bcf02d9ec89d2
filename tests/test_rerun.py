"""Reruns from what MLflow holds: same numbers bit for bit, or a clear verdict and exit code."""

import json
from pathlib import Path

import pytest
from conftest import run_command, sweep_runs
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


def test_a_run_logged_before_loss_npz_reruns_identical_on_its_metric_steps(
    make_cfg, client, store_uri, capsys
):
    # An older gdfit logged the curve as the `loss` metric only. Such a run's thinned metric is
    # what the rerun's every-step curve is compared with, at the same steps.
    original = train(make_cfg("train.steps=1500", "tracking.curve_points=100"))
    folder = Path(client.get_run(original.run_id).info.artifact_uri.removeprefix("file://"))
    (folder / "loss.npz").unlink()
    assert run_rerun(original.run_id, "--tracking-uri", store_uri) == 0
    out = capsys.readouterr().out
    assert ": identical: 100 loss points and 4 coefficients, bit for bit" in out
    assert run_rerun(original.run_id, "optimizer.lr=1.5e-6", "--tracking-uri", store_uri) == 1
    assert "the curves part at step 15" in capsys.readouterr().out  # the first charted step


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
    assert out.stderr.strip() == (
        f"gdfit: error: cannot rerun: no run '0123abc' in {store_uri}: "
        "not a run id, id prefix or run name"
    )
    experiment = client.get_experiment_by_name(make_cfg().tracking.experiment) or None
    bare = client.create_run(experiment.experiment_id if experiment else "0").info.run_id
    client.set_terminated(bare)
    assert run_rerun(bare, "--tracking-uri", store_uri) == 2


def test_rerun_finds_runs_by_prefix_or_name_and_says_what_it_changed(
    make_cfg, client, store_uri, capsys
):
    original = train(make_cfg("train.steps=100", "tracking.run_name=prefix-and-name"))
    assert run_rerun(original.run_id[:8], "--tracking-uri", store_uri) == 0
    assert f"of {original.run_id}: identical" in capsys.readouterr().out
    assert run_rerun("prefix-and-name", "optimizer.lr=2e-6", "--tracking-uri", store_uri) == 1
    captured = capsys.readouterr()
    assert f"'prefix-and-name' is run {original.run_id}" in captured.err
    experiment = client.get_run(original.run_id).info.experiment_id
    changed = client.search_runs(
        [experiment], f"tags.gdfit.rerun_of = '{original.run_id}'", order_by=["start_time DESC"]
    )[0]
    assert changed.info.run_name == "prefix-and-name-rerun optimizer.lr=2e-6"
    assert changed.data.params["optimizer.lr"] == "2e-06"
    assert changed.data.tags["gdfit.rerun_verdict"].startswith("different")
    note = changed.data.tags["mlflow.note.content"]
    assert f"**Rerun** of `{original.run_id}` with `optimizer.lr=2e-6`: different" in note


def test_check_gives_the_verdict_without_logging_a_run(make_cfg, client, store_uri, capsys):
    original = train(make_cfg("backend=tensor", "train.steps=100"))
    experiment = client.get_run(original.run_id).info.experiment_id
    before = len(client.search_runs([experiment]))
    assert run_rerun(original.run_id, "--check", "--tracking-uri", store_uri) == 0
    said = capsys.readouterr()
    assert "identical" in said.out
    assert "gdfit-check-" not in said.out + said.err  # no hint names the scratch store, gone
    assert len(client.search_runs([experiment])) == before


def test_a_diverged_run_reruns_to_the_same_step(make_cfg, client, store_uri, capsys):
    from gdfit.errors import Diverged

    created = []
    with pytest.raises(Diverged) as diverged:
        train(make_cfg("optimizer.lr=1e-4", "train.steps=300"), opened=created.append)
    assert run_rerun(created[0], "--tracking-uri", store_uri) == 0
    out = capsys.readouterr().out
    assert ": identical: " in out
    step = diverged.value.step
    assert f"the original diverged at step {step}, the rerun at step {step}" in out


def test_rerun_of_a_sweep_parent_reruns_each_job(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = run_command(
        "gdfit-train",
        "-m",
        "backend=numpy,tensor",
        "train.steps=100",
        f"tracking.uri={uri}",
        cwd=tmp_path,
    )
    _, parent, _ = sweep_runs(uri)
    out = run_command("gdfit-rerun", parent.info.run_id[:6], "--tracking-uri", uri, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "is a sweep of 2 jobs; rerunning each" in out.stdout
    table = out.stdout.split("\njob ")[1].splitlines()[1:]
    assert sorted(line.split()[0] for line in table) == [
        "numpy-sgd-lr1e-06-seed0",
        "tensor-sgd-lr1e-06-seed0",
    ]
    assert all(line.split()[-1] == "identical" for line in table)
    # Rerun with a change: every job differs, and the exit code says so.
    out = run_command(
        "gdfit-rerun",
        parent.info.run_id,
        "optimizer.lr=2e-6",
        "--check",
        "--tracking-uri",
        uri,
        cwd=tmp_path,
    )
    assert out.returncode == 1 and out.stdout.count("different") == 4  # 2 lines + 2 rows


@pytest.mark.parametrize(
    "text, says",
    [
        ("backend: [unclosed", "is not valid YAML"),
        ("42", "is not a mapping of settings"),
        ("- a\n- b", "is not a mapping of settings"),
        ("!!python/object/apply:os.system ['echo owned']", "is not valid YAML"),
        ("train: {steps: 10}", "lacks backend.name: not a gdfit config"),
        (
            "backend: {name: numpy, dtype: float64}\noptimizer: {name: sgd, lr: 1e-6}\n"
            "device: {name: cpu}\ntracking: {run_name: '${oc.env:AWS_SECRET_ACCESS_KEY}'}",
            "tracking.run_name holds an interpolation",
        ),
    ],
)
def test_a_tampered_config_is_refused_in_one_line(text, says, client, store_uri, tmp_path):
    store = Path(store_uri.removeprefix("sqlite:///")).parent  # artifacts beside it, not in ./
    experiment = client.get_experiment_by_name("tampered") or client.get_experiment(
        client.create_experiment("tampered", artifact_location=(store / "tampered").as_uri())
    )
    run = client.create_run(experiment.experiment_id).info.run_id
    client.log_text(run, text, "config.yaml")
    client.set_terminated(run)
    out = run_command(
        "gdfit-rerun",
        run,
        "--tracking-uri",
        store_uri,
        cwd=tmp_path,
        env={"AWS_SECRET_ACCESS_KEY": "do-not-print-me"},
    )
    assert out.returncode == 2, out.stderr
    assert says in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "do-not-print-me" not in out.stdout + out.stderr and "owned" not in out.stdout


def test_rerun_into_another_store_compares_with_the_original(make_cfg, store_uri, tmp_path):
    original = train(make_cfg("train.steps=100"))
    other = f"sqlite:///{tmp_path / 'other' / 'mlflow.db'}"
    out = run_command(
        "gdfit-rerun",
        original.run_id,
        f"tracking.uri={other}",
        "--tracking-uri",
        store_uri,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert "identical" in out.stdout
    again = MlflowClient(other).search_runs(
        [MlflowClient(other).get_experiment_by_name(make_cfg().tracking.experiment).experiment_id]
    )
    assert [r.data.tags["gdfit.rerun_of"] for r in again] == [original.run_id]
