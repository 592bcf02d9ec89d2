"""gdfit from Python: gdfit.fit, gdfit.sweep and gdfit.runs make and read the same MLflow runs as
the commands, and refuse bad settings with the commands' own line."""

import contextlib
import io
import itertools
import re
from pathlib import Path

import mlflow
import pytest
from conftest import run_command, sweep_runs
from mlflow.tracking import MlflowClient

import gdfit
from gdfit import api, rerun
from gdfit.errors import ConfigError, Diverged, UsageError

_experiments = itertools.count()


@pytest.fixture
def where(store_uri):
    """Keywords that send a run to the session store, in an experiment of its own."""
    return {"tracking_uri": store_uri, "experiment": f"api-{next(_experiments)}"}


def runs_of(client, experiment):
    found = client.get_experiment_by_name(experiment)
    return [] if found is None else client.search_runs([found.experiment_id])


def curve(client, run_id):
    history = sorted(client.get_metric_history(run_id, "loss"), key=lambda m: m.step)
    return [m.step for m in history], [m.value for m in history]


def test_fit_logs_the_run_gdfit_train_logs(where, client, tmp_path):
    result = gdfit.fit(backend="tensor", lr=2e-6, steps=200, **where)
    out = run_command(
        "gdfit-train",
        "backend=tensor",
        "optimizer.lr=2e-6",
        "train.steps=200",
        f"tracking.uri={where['tracking_uri']}",
        f"tracking.experiment={where['experiment']}",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    (command,) = [r for r in runs_of(client, where["experiment"]) if r.info.run_id != result.run_id]
    # The same numbers, bit for bit: the curve and the coefficients...
    steps, losses = curve(client, command.info.run_id)
    assert steps == list(result.loss_steps) == list(range(200))
    assert losses == list(result.losses)
    coef = [command.data.metrics[f"coef_{k}"] for k in range(4)]
    assert coef == list(result.coef)
    # ...and the same run around them: params, metric names, artifacts.
    mine = client.get_run(result.run_id)
    assert mine.data.params == command.data.params
    assert mine.data.metrics.keys() == command.data.metrics.keys()
    names = {a.path for a in client.list_artifacts(result.run_id)}
    assert names == {a.path for a in client.list_artifacts(command.info.run_id)}
    assert {"config.yaml", "fit.png", "loss.png"} <= names
    assert mine.data.tags["gdfit.overrides"].startswith(
        "backend=tensor optimizer.lr=2e-06 train.steps=200 tracking.uri='sqlite:///"
    )


def test_the_result_and_how_a_notebook_shows_it(where, client):
    result = gdfit.fit("optimizer=momentum", steps=300, seed=3, **where)
    assert isinstance(result, gdfit.Fit)
    logged = client.get_run(result.run_id).data
    assert result.final_loss == logged.metrics["final_loss"]
    assert result.loss_gap == pytest.approx(logged.metrics["loss_gap"], abs=1e-12)
    assert result.coefficients == {f"coef_{k}": logged.metrics[f"coef_{k}"] for k in range(4)}
    assert (
        result.run_name
        == "numpy-momentum-lr1e-06-seed3"
        == client.get_run(result.run_id).info.run_name
    )
    assert result.cfg.train.seed == 3
    page = result._repr_html_()
    assert result.run_id in page and "least-squares optimum" in page
    assert page.count("<img") == 2  # fit.png and loss.png as logged
    assert result.describe() in repr(result)


def test_progress_bar_by_default_and_the_examples_lines_on_request(where, capsys):
    gdfit.fit(steps=300, **where)
    shown = capsys.readouterr().out
    assert "300/300" in shown  # the bar, finished
    assert not re.search(r"^\d+ \d", shown, re.M) and "Result:" not in shown
    gdfit.fit(steps=300, log_every=100, progress="lines", **where)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[:3]] == ["0", "100", "200"]
    assert lines[3].startswith("Result: y = ")
    gdfit.fit(steps=300, progress="none", **where)
    assert capsys.readouterr().out == ""


def test_an_api_run_reruns_identically(where):
    result = gdfit.fit(backend="autograd", steps=200, progress="none", **where)
    code = run_rerun(result.run_id, "--check", "--tracking-uri", where["tracking_uri"])
    assert code == 0


def run_rerun(*args):
    with pytest.raises(SystemExit) as stopped:
        rerun.main(list(args))
    return stopped.value.code


def png_pixels(data: bytes):
    import io

    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGBA"))


def test_a_runs_figures_are_drawn_again_from_its_store(where, client, tmp_path):
    """Fit.figures() and gdfit.runs(...).draw(folder) draw fit.png and loss.png from what the
    store holds: those the run logged, pixel for pixel, and those a run left undrawn."""
    import io

    drawn = gdfit.fit(steps=300, progress="none", **where)
    figures = drawn.figures()
    assert set(figures) == {"fit.png", "loss.png"}
    for name, figure in figures.items():
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        logged = drawn.images[name]
        assert (png_pixels(buffer.getvalue()) == png_pixels(logged)).all(), name
    undrawn = gdfit.fit("tracking.figures=none", steps=300, seed=1, progress="none", **where)
    assert undrawn.images == {}  # nothing logged...
    assert set(undrawn.figures()) == {"fit.png", "loss.png"}  # ...yet drawn from the store
    runs = gdfit.runs(drawn, undrawn.run_id, tracking_uri=where["tracking_uri"])
    written = runs.draw(tmp_path / "figures")
    assert written == [
        tmp_path / "figures" / r.run_name / name for r in (drawn, undrawn) for name in figures
    ]
    assert all(path.read_bytes()[:4] == b"\x89PNG" for path in written)
    for name in figures:
        on_disk = (tmp_path / "figures" / drawn.run_name / name).read_bytes()
        assert (png_pixels(on_disk) == png_pixels(drawn.images[name])).all(), name


# ---- bad settings: one exception type, the command's own line ----


@pytest.mark.parametrize(
    "command, strings, keywords",
    [
        (["backend=jax"], [], {"backend": "jax"}),
        (["train.steps=abc"], [], {"steps": "abc"}),
        (["optimizer.lr=0"], [], {"lr": 0}),
        (["backend=[numpy,tensor]"], [], {"backend": ["numpy", "tensor"]}),
        (["+train.stpes=100"], ["+train.stpes=100"], {}),
        (["backend=numpy,tensor"], ["backend=numpy,tensor"], {}),
    ],
)
def test_a_bad_setting_raises_the_line_the_command_prints(
    command, strings, keywords, where, client, tmp_path
):
    out = run_command(
        "gdfit-train", *command, f"tracking.uri={where['tracking_uri']}", cwd=tmp_path
    )
    assert out.returncode == 2
    (line,) = out.stderr.splitlines()
    with pytest.raises(ConfigError) as raised:
        gdfit.fit(*strings, **keywords, **where)
    assert f"gdfit: error: {raised.value}" == line
    assert runs_of(client, where["experiment"]) == []  # refused before any run existed


def test_keywords_name_their_settings(where):
    assert api.override_strings(["backend=tensor"], {"lr": 2e-6, "init": [0.5, 1, 0, -1.5]}) == [
        "backend=tensor",
        "optimizer.lr=2e-06",
        "model.init=[0.5,1,0,-1.5]",
    ]
    assert api.override_strings([], {"run_name": "my run", "optimizer.momentum": 0.5}) == [
        "tracking.run_name='my run'",
        "optimizer.momentum=0.5",
    ]
    assert api.override_strings(
        [], {"lr": [1e-6, 2e-6], "backend": ["numpy", "tensor"]}, grid=True
    ) == [
        "optimizer.lr=1e-06,2e-06",
        "backend=numpy,tensor",
    ]
    cfg = api.compose(*api.override_strings([], {k: None for k in ("run_name",)}))
    assert cfg.tracking.run_name is None
    # every short keyword names a real setting
    assert set(api.KEYWORDS.values()) <= api._all_keys()
    with pytest.raises(ConfigError, match=r"^momentum: .*did you mean optimizer.momentum\?"):
        gdfit.fit(momentum=0.5, **where)
    with pytest.raises(ConfigError, match=r"^progress: must be one of lines, bar, none"):
        gdfit.fit(progress="loud", **where)


@pytest.mark.parametrize(
    "text",
    [
        *("sin", "my run", "true", "null", "nan", "1e-6", "42", "x,y", "it's", "${oc.env:HOME}"),
        *("a\\b", "C:\\runs\\", "a\\'b", "a\\${x}"),  # backslashes: some escape, most do not
    ],
)
def test_a_string_setting_reaches_the_run_as_written(text):
    """One quoting for the API's keywords and gdfit-rerun's overrides: a plain word goes bare,
    anything Hydra would read otherwise (a number, null, a list, an interpolation) quoted."""
    from gdfit.config import hydra_value

    assert api.compose(f"tracking.run_name={hydra_value(text)}").tracking.run_name == text
    assert (hydra_value(text) == text) == (text in ("sin",))


def test_a_diverged_fit_raises_and_leaves_a_failed_run(where, client):
    with pytest.raises(Diverged):
        gdfit.fit(lr=1e-3, steps=200, progress="none", **where)
    (run,) = runs_of(client, where["experiment"])
    assert run.info.status == "FAILED"


# ---- sweeps and reading runs back ----


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """gdfit.sweep and gdfit-train -m over the same grid (one rate diverges), each in a store of
    its own."""
    folder = tmp_path_factory.mktemp("swept")
    api_uri, cli_uri = (f"sqlite:///{folder / name / 'mlflow.db'}" for name in ("api", "cli"))
    said = io.StringIO()
    with contextlib.redirect_stdout(said), contextlib.redirect_stderr(said):
        result = gdfit.sweep(
            backend=["numpy", "tensor"], lr=[1e-6, 1e-3], steps=100, tracking_uri=api_uri
        )
    # A rate that diverges is a result of the sweep: said once per job, in its line; no error.
    assert "error" not in said.getvalue()
    for job in result.runs:
        lines = [line for line in said.getvalue().splitlines() if job.info.run_id[:8] in line]
        if job.info.status == "FAILED":
            assert [line.split("  ", 2)[2][:17] for line in lines] == ["diverged at step "]
    out = run_command(
        "gdfit-train",
        "-m",
        "backend=numpy,tensor",
        "optimizer.lr=1e-6,1e-3",
        "train.steps=100",
        f"tracking.uri={cli_uri}",
        cwd=folder,
    )
    assert out.returncode == 0 and "4 jobs, 2 finished, 2 diverged, 0 failed" in out.stdout
    return result, api_uri, cli_uri


def test_a_sweep_is_the_parent_and_children_of_minus_m(swept):
    result, api_uri, cli_uri = swept
    client, parent, jobs = sweep_runs(api_uri)
    _, cli_parent, cli_jobs = sweep_runs(cli_uri)
    assert result.parent_id == parent.info.run_id
    assert parent.info.status == cli_parent.info.status == "FINISHED"
    # the jobs of -m, in its order, ending as its did
    assert (
        [j.info.run_name for j in jobs]
        == [j.info.run_name for j in cli_jobs]
        == [
            "numpy-sgd-lr1e-06-seed0",
            "numpy-sgd-lr0.001-seed0",
            "tensor-sgd-lr1e-06-seed0",
            "tensor-sgd-lr0.001-seed0",
        ]
    )
    assert [j.info.status for j in jobs] == [j.info.status for j in cli_jobs]
    for mine, theirs in zip(jobs, cli_jobs, strict=True):
        assert mine.data.params | {"tracking.uri": ""} == theirs.data.params | {"tracking.uri": ""}
        assert (
            curve(client, mine.info.run_id)[1]
            == curve(MlflowClient(cli_uri), theirs.info.run_id)[1]
        )
    # the parent summarised as -m's is
    assert parent.data.tags["gdfit.jobs"] == "4" and parent.data.tags["gdfit.diverged_jobs"] == "2"
    assert parent.data.tags["gdfit.failed_jobs"] == "0"
    assert parent.data.metrics["best_final_loss"] == cli_parent.data.metrics["best_final_loss"]
    assert parent.data.tags["gdfit.sweep_overrides"] == (
        f"backend=numpy,tensor optimizer.lr=1e-06,0.001 train.steps=100 tracking.uri='{api_uri}'"
    )
    names = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert names == {a.path for a in MlflowClient(cli_uri).list_artifacts(cli_parent.info.run_id)}


def test_a_figure_that_cannot_be_drawn_costs_the_sweep_that_figure_alone(
    where, client, monkeypatch, capsys
):
    """matplotlib failing on the comparison (here made to fail): the parent still ends FINISHED
    with summary.csv, its other figure and the best run, and one line says what is missing."""
    from gdfit import comparisons

    def cannot_draw(uri, runs):
        raise ValueError("cannot draw this\nmore detail")

    monkeypatch.setattr(comparisons, "comparison", cannot_draw)
    result = gdfit.sweep(lr=[1e-6, 2e-6], steps=50, progress="none", **where)
    parent = client.get_run(result.parent_id)
    assert parent.info.status == "FINISHED" and "gdfit.best_run_id" in parent.data.tags
    names = {a.path for a in client.list_artifacts(result.parent_id)}
    assert {"summary.csv", "sweep.yaml", "final_loss_vs_optimizer.lr.png"} <= names
    assert "comparison.png" not in names
    err = capsys.readouterr().err
    assert "warning: the sweep's comparison.png was not drawn: ValueError: cannot draw" in err
    assert "more detail" not in err


def test_a_sweep_returns_the_table_mlflow_search_runs_gives(swept):
    result, api_uri, _ = swept
    client, parent, _ = sweep_runs(api_uri)
    mlflow.set_tracking_uri(api_uri)
    try:
        theirs = mlflow.search_runs(
            [parent.info.experiment_id],
            f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
            order_by=["attributes.start_time ASC"],
        )
    finally:
        mlflow.set_tracking_uri(None)
    mine = result.table
    assert sorted(mine.columns) == sorted(theirs.columns)
    assert mine[theirs.columns].equals(theirs)
    assert len(result) == 4 and list(result.summary["status"]).count("FAILED") == 2
    assert result.figure.axes and "<img" in result._repr_html_()


def test_runs_reads_back_by_parent_experiment_filter_or_name(swept, capsys):
    result, api_uri, _ = swept
    by_parent = gdfit.runs(parent=result.parent_id, tracking_uri=api_uri)
    assert list(by_parent.table["run_id"]) == list(result.table["run_id"])
    assert by_parent.parent_id == result.parent_id
    tensor = gdfit.runs(filter="params.`backend.name` = 'tensor'", tracking_uri=api_uri)
    assert set(tensor.table["params.backend.name"]) == {"tensor"} and len(tensor) == 2
    named = gdfit.runs("numpy-sgd-lr1e-06-seed0", tracking_uri=api_uri)
    assert list(named.table["tags.mlflow.runName"]) == ["numpy-sgd-lr1e-06-seed0"]
    assert "is run" in capsys.readouterr().out  # how the name was resolved
    with pytest.raises(UsageError, match="no experiment 'nope'"):
        gdfit.runs(experiment="nope", tracking_uri=api_uri)
    assert len(gdfit.runs(filter="params.`backend.name` = 'jax'", tracking_uri=api_uri)) == 0


def test_every_job_of_a_sweep_is_checked_before_the_parent_exists(where, client):
    with pytest.raises(ConfigError, match=r"^optimizer.lr: must be a positive finite number"):
        gdfit.sweep(lr=[1e-6, -1.0], **where)
    with pytest.raises(ConfigError, match=r"^optimizer.lr: has an empty list"):
        gdfit.sweep(lr=[], **where)
    assert runs_of(client, where["experiment"]) == []


def test_presets_that_sweep_go_to_sweep_and_searches_to_the_command(where, client):
    with pytest.raises(ConfigError, match=r"^experiment: compare_backends is a sweep of several"):
        gdfit.fit("experiment=compare_backends", **where)
    with pytest.raises(ConfigError, match=r"^hparams_search: lr_optuna is a search, not a grid"):
        gdfit.sweep("hparams_search=lr_optuna", **where)
    with pytest.raises(ConfigError, match=r"^hydra/launcher: sets how gdfit-train runs its jobs"):
        gdfit.sweep("hydra/launcher=joblib", lr=[1e-6, 2e-6], **where)
    assert runs_of(client, where["experiment"]) == []
    result = gdfit.sweep("experiment=compare_backends", steps=50, progress="none", **where)
    assert list(result.table["params.backend.name"]) == ["numpy", "tensor", "autograd"]
    assert set(result.table["params.backend.dtype"]) == {"float64"}  # the preset's own setting


def test_the_commands_import_no_api_they_do_not_use():
    """`import gdfit` stays light: the API comes on first use."""
    out = run_command(
        None, "-c", "import sys, gdfit; print('gdfit.api' in sys.modules)", cwd=Path.cwd()
    )
    assert out.stdout.strip() == "False"
