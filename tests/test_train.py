"""A run, composed as the CLI would compose it, read back through MLflow's own client."""

import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from gdfit import api, comparisons, curve, data, readback, reference, store
from gdfit.train import fit, prepare, train


def test_default_config_has_the_documented_keys():
    cfg = api.compose()
    assert cfg.model.name == "polynomial"
    assert cfg.backend.name == "numpy" and cfg.backend.dtype == "float64"
    assert cfg.optimizer.name == "sgd" and cfg.optimizer.lr == 1e-6
    assert cfg.device.name == "cpu"
    assert cfg.data.n_points == 2000 and cfg.data.target == "sin"
    assert cfg.data.x_min == -math.pi and cfg.data.x_max == math.pi
    assert cfg.model.degree == 3 and cfg.model.init == "random"
    assert (cfg.train.steps, cfg.train.log_every, cfg.train.seed) == (5000, 100, 0)
    assert cfg.tracking.experiment == "gdfit" and cfg.tracking.uri is None
    assert api.compose("backend=tensor").backend.dtype == "float32"
    assert api.compose("backend=autograd").backend.dtype == "float32"


@pytest.mark.parametrize("backend", ["numpy", "tensor", "autograd"])
def test_run_records_params_metrics_tags_and_artifacts(make_cfg, client, backend, tmp_path):
    cfg = make_cfg(f"backend={backend}", "train.steps=300")
    result = train(cfg)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == f"{backend}-sgd-lr1e-06-seed0"

    params = run.data.params
    assert params["backend.name"] == backend
    assert params["optimizer.lr"] == "1e-06"
    assert params["train.steps"] == "300" and params["model.init"] == "random"
    assert params["data.x_min"] == repr(-math.pi)
    assert {"backend.dtype", "device.name", "data.n_points", "model.degree", "train.seed"} <= set(
        params
    )
    assert params["model.name"] == "polynomial"

    metrics = run.data.metrics
    curve = client.get_metric_history(run.info.run_id, "loss")
    assert [m.step for m in curve] == list(range(300))
    np.testing.assert_allclose([m.value for m in curve], result.losses)
    assert metrics["final_loss"] == pytest.approx(result.final_loss)
    assert metrics["loss_gap"] == pytest.approx(metrics["final_loss"] - metrics["optimal_loss"])
    assert metrics["loss_gap"] > 0
    assert metrics["optimal_loss"] == pytest.approx(result.optimal_loss)
    assert result.optimal_loss == pytest.approx(8.817, abs=1e-3)  # the example's floor
    assert [metrics[f"coef_{k}"] for k in range(4)] == pytest.approx(result.coef)
    assert metrics["train_seconds"] > 0
    assert metrics["steps_per_second"] == pytest.approx(300 / metrics["train_seconds"])

    tags = run.data.tags
    assert tags["gdfit.backend"] == backend and tags["gdfit.device"] == "cpu"
    assert tags["gdfit.version"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    assert tags["mlflow.source.git.commit"] == head.strip()
    assert tags["gdfit.git_dirty"] in ("true", "false")

    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "environment.json", "coefficients.json", "fit.png", "loss.png"} <= names
    folder = client.download_artifacts(run.info.run_id, "", str(tmp_path))
    logged = yaml.safe_load(open(f"{folder}/config.yaml"))
    assert logged["backend"]["name"] == backend and logged["train"]["steps"] == 300
    coefficients = json.load(open(f"{folder}/coefficients.json"))
    assert [coefficients[f"coef_{k}"] for k in range(4)] == pytest.approx(result.coef)


def test_default_numpy_run_is_the_example(make_cfg):
    cfg = make_cfg("train.steps=400")
    result = train(cfg)
    x, y = data.make_data(cfg.data)
    coef0 = np.random.default_rng(0).standard_normal(4)
    ref_losses, ref_coef = reference.numpy_loop(x, y, coef0, steps=400)
    np.testing.assert_allclose(result.losses, ref_losses, rtol=1e-12)
    np.testing.assert_allclose(result.coef, ref_coef, rtol=1e-11)


def test_backends_with_one_seed_start_from_one_point(make_cfg):
    first = {
        b: train(make_cfg(f"backend={b}", "train.steps=1", "train.seed=5")).losses[0]
        for b in ("numpy", "tensor", "autograd")
    }
    assert first["tensor"] == pytest.approx(first["numpy"], rel=1e-6)
    assert first["autograd"] == pytest.approx(first["numpy"], rel=1e-6)
    other = train(make_cfg("train.steps=1", "train.seed=6")).losses[0]
    assert other != first["numpy"]


def test_explicit_init_and_degree(make_cfg, client):
    result = train(make_cfg("model.degree=1", "model.init=[0.5,-0.25]", "train.steps=1"))
    x, y = data.make_data(make_cfg().data)
    assert result.losses[0] == pytest.approx(np.sum((0.5 - 0.25 * x - y) ** 2))
    run = client.get_run(result.run_id)
    assert run.data.params["model.init"] == "[0.5, -0.25]"
    assert set(k for k in run.data.metrics if k.startswith("coef_")) == {"coef_0", "coef_1"}


def test_metric_is_thinned_to_curve_points_and_loss_npz_holds_every_step(make_cfg, client):
    cfg = make_cfg("train.steps=1001", "tracking.curve_points=100")
    steps, losses = [], []

    def keep(start, chunk, params):  # what the loop produced, chunk by chunk
        steps.extend(range(start, start + len(chunk)))
        losses.extend(chunk)

    problem = prepare(cfg)
    fit(problem, keep)  # the same seed and start point as the tracked run below
    result = train(cfg)

    curve = client.get_metric_history(result.run_id, "loss")
    charted = [m.step for m in curve]
    assert len(charted) <= 100 and charted[0] == 0 and charted[-1] == 1000
    assert len(set(np.diff(charted))) <= 2  # evenly spaced: gaps of 10 and 11 steps
    assert [m.value for m in curve] == [losses[s] for s in charted]

    with np.load(client.download_artifacts(result.run_id, "loss.npz")) as saved:
        assert saved["steps"].tolist() == steps == list(range(1001))
        assert saved["losses"].dtype == np.float64
        assert saved["losses"].tolist() == losses  # bit for bit
    assert list(result.loss_steps) == steps and list(result.losses) == losses
    curve = readback.loss_curve(client.tracking_uri, result.run_id)
    assert curve.steps.tolist() == steps and curve.losses.tolist() == losses


def test_loss_npz_holds_the_fits_snapshots(make_cfg, client):
    """The parameters at the steps the run drew its fit images at, from which any run's
    figures can be drawn again (gdfit.redraw)."""
    result = train(make_cfg("train.steps=300"))
    with np.load(client.download_artifacts(result.run_id, "loss.npz")) as saved:
        assert saved["snapshot_steps"].dtype == np.int64
        assert saved["snapshot_steps"].tolist() == [0, 10, 100, 300] == sorted(result.snapshots)
        assert saved["snapshots"].shape == (4, 4)  # (steps, parameters)
        for step, params in zip(saved["snapshot_steps"], saved["snapshots"], strict=True):
            assert np.array_equal(params, result.snapshots[step])
    assert np.array_equal(result.snapshots[300], result.coef)  # the last: the fit itself
    curve = readback.loss_curve(client.tracking_uri, result.run_id)
    assert curve.snapshots.keys() == result.snapshots.keys()
    assert all(np.array_equal(curve.snapshots[s], p) for s, p in result.snapshots.items())


def test_a_loss_npz_cut_short_is_read_from_the_loss_metric(make_cfg, client, capsys):
    """A sweep job's worker killed while it sent loss.npz (joblib kills its workers when the
    sweep is stopped) leaves the file cut short: readers fall back to the `loss` metric, say so,
    and the sweep's comparison is still drawn."""
    shape = ("train.steps=300", "tracking.curve_points=50")
    results = [train(make_cfg(*shape, f"train.seed={seed}")) for seed in (0, 1)]
    uri, damaged = client.tracking_uri, results[0].run_id
    path = Path(client.get_run(damaged).info.artifact_uri.removeprefix("file://")) / "loss.npz"
    whole = path.read_bytes()
    charted = client.get_metric_history(damaged, "loss")
    for cut in (len(whole) // 2, 2, 0):  # numpy fails three ways: BadZipFile, ValueError, EOF
        path.write_bytes(whole[:cut])
        curve = readback.loss_curve(uri, damaged)
        assert curve.steps.tolist() == [m.step for m in charted]
        assert curve.losses.tolist() == [m.value for m in charted]
        assert curve.snapshots == {}  # the metric has none
        assert f"run {damaged}'s loss.npz is cut short or damaged" in capsys.readouterr().err
    runs = [client.get_run(r.run_id) for r in results]
    figure = comparisons.comparison(uri, runs)
    drawn = {len(line.get_xdata()) for line in figure.axes[0].get_lines()}
    assert {50, 300} <= drawn  # the damaged run's 50 charted points, the other's every step


def test_thinned_steps_are_even_and_keep_both_ends():
    assert curve.thinned_steps(5, 1000).tolist() == [0, 1, 2, 3, 4]
    assert curve.thinned_steps(5000, 1000)[[0, -1]].tolist() == [0, 4999]
    for steps, most in [(5000, 1000), (10**12, 10**7), (7, 2), (1001, 100)]:
        kept = curve.thinned_steps(steps, most)
        assert len(kept) == most and kept[0] == 0 and kept[-1] == steps - 1
        assert np.diff(kept).min() >= (steps - 1) // (most - 1)


def test_tracking_uri_setting_beats_environment_beats_default(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # a relative sqlite path is taken from the working directory
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    default = store.resolve_uri(None)
    assert default.startswith("sqlite:///") and default.endswith("/mlruns/mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///from-env.db")
    assert store.resolve_uri(None) == f"sqlite:///{tmp_path / 'from-env.db'}"
    assert store.resolve_uri("sqlite:///explicit.db") == f"sqlite:///{tmp_path / 'explicit.db'}"


def test_run_name_setting_is_used(make_cfg, client):
    result = train(make_cfg("train.steps=1", "tracking.run_name=my-run"))
    assert client.get_run(result.run_id).info.run_name == "my-run"


def test_snapshots_hold_the_fit_after_the_steps_asked_for(make_cfg):
    cfg = make_cfg("train.steps=300")
    result = train(cfg, snapshot_steps=[0, 10, 100, 250, 300, 1000])
    assert sorted(result.snapshots) == [0, 10, 100, 250, 300]
    x, y = data.make_data(cfg.data)
    coef0 = np.random.default_rng(0).standard_normal(4)
    assert np.array_equal(result.snapshots[0], coef0)
    for step in (10, 100, 250):
        _, ref_coef = reference.numpy_loop(x, y, coef0, steps=step)
        np.testing.assert_allclose(result.snapshots[step], ref_coef, rtol=1e-11)
    assert np.array_equal(result.snapshots[300], result.coef)
    # snapshots do not change the run: the same fit without them ends bit-identical
    assert np.array_equal(train(cfg).coef, result.coef)


def test_a_run_explains_itself_on_its_mlflow_page(make_cfg, client, store_uri):
    result = train(make_cfg("train.steps=2000"))
    run = client.get_run(result.run_id)
    note = run.data.tags["mlflow.note.content"]
    assert "**numpy** backend (float64, cpu)" in note and "**sgd (lr 1e-06)**" in note
    assert "2,000 steps" in note
    assert "a cubic (model=polynomial) fitted to sin(x) on 2,000 points" in note
    assert "`Result: y = " in note and f"| final loss | {result.final_loss:.10g} |" in note
    assert f"| least-squares optimum | {result.optimal_loss:.10g} |" in note
    assert f"gdfit-rerun {result.run_id} --tracking-uri {store_uri}" in note
    # The gap's exponent, which MLflow's two-decimal charts can show.
    gap = result.final_loss - result.optimal_loss
    assert run.data.metrics["log10_loss_gap"] == pytest.approx(math.log10(gap), abs=0.005)
    # The fit at steps 0, 10, 100, 1000 and 2000, as MLflow's image slider reads them.
    assert run.data.tags["mlflow.loggedImages"] == "True"
    images = [a.path for a in client.list_artifacts(result.run_id, "images")]
    steps = sorted({int(p.split("+step+")[1].split("+")[0]) for p in images})
    assert steps == [0, 10, 100, 1000, 2000] and len(images) == 10
    # The cards show the WebP: at the frame's own size, not shrunk to MLflow's 256 pixels.
    from PIL import Image

    folder = Path(client.download_artifacts(result.run_id, "images"))
    sizes = {Image.open(f).size for f in folder.iterdir()}
    assert sizes == {(360, 360)}, sizes


def test_a_runs_description_names_its_store_though_the_environment_chose_it(
    make_cfg, client, store_uri, monkeypatch
):
    """The rerun command kept in a description is read later, maybe in a shell without
    $MLFLOW_TRACKING_URI: it names the store unless it is the project's own."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store_uri)
    result = train(make_cfg("train.steps=20", "tracking.uri=null", "tracking.figures=none"))
    note = client.get_run(result.run_id).data.tags["mlflow.note.content"]
    assert f"`gdfit-rerun {result.run_id} --tracking-uri {store_uri}`" in note


def test_a_diverged_run_says_where_on_its_page(make_cfg, client):
    from gdfit.errors import Diverged

    created = []
    with pytest.raises(Diverged) as diverged:
        train(make_cfg("optimizer.lr=1e-4", "train.steps=300"), opened=created.append)
    (run_id,) = created  # told as soon as the run existed
    note = client.get_run(run_id).data.tags["mlflow.note.content"]
    assert f"**Diverged** at step {diverged.value.step}" in note
    assert f"(it is stable below ~{diverged.value.stable_lr:.2g} here)" in note  # as printed
    assert "Status: FAILED" in note and "`Result:" not in note
