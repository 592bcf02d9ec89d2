"""Sweeps as one MLflow parent with a child per job, run through the installed commands, and
`gdfit-compare` reading them back. Each sweep runs once per module (a few hundred steps)."""

import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import BIN, CTRL_C_AT_CHILD, run_command, summary_rows, sweep_runs, wait_for_curve
from mlflow.tracking import MlflowClient

from gdfit import views


def final_loss(run) -> float:
    return run.data.metrics["final_loss"]


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """3 backends x 2 rates, one rate diverging: six jobs, three of them diverge."""
    folder = tmp_path_factory.mktemp("grid")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    out = run_command(
        "gdfit-train",
        "-m",
        "backend=numpy,tensor,autograd",
        "optimizer.lr=1e-6,1e-4",
        "train.steps=200",
        f"tracking.uri={uri}",
        cwd=folder,
    )
    return out, uri, folder


def test_grid_sweep_is_one_parent_with_a_child_per_job(grid, tmp_path):
    out, uri, _ = grid
    # Three jobs diverged: a result of the search (the rate is too large), not a failure.
    assert out.returncode == 0, out.stderr
    assert "error" not in out.stdout + out.stderr
    client, parent, children = sweep_runs(uri)
    assert parent.info.status == "FINISHED"
    assert parent.info.run_name.startswith("sweep-")
    assert len(children) == 6
    by_status = sorted(
        (c.data.params["backend.name"], c.data.params["optimizer.lr"], c.info.status)
        for c in children
    )
    assert by_status == [
        ("autograd", "0.0001", "FAILED"),
        ("autograd", "1e-06", "FINISHED"),
        ("numpy", "0.0001", "FAILED"),
        ("numpy", "1e-06", "FINISHED"),
        ("tensor", "0.0001", "FAILED"),
        ("tensor", "1e-06", "FINISHED"),
    ]
    for child in children:  # a child records what a single run records
        assert child.data.tags["gdfit.backend"] == child.data.params["backend.name"]
        assert len(client.get_metric_history(child.info.run_id, "loss")) > 0
        if child.info.status == "FINISHED":
            assert {"final_loss", "loss_gap", "coef_3", "train_seconds"} <= set(child.data.metrics)
            assert len(client.list_artifacts(child.info.run_id)) >= 5
        else:
            assert "gdfit.diverged_at_step" in child.data.tags


def test_parent_holds_summary_comparison_and_best_loss(grid, tmp_path):
    _, uri, _ = grid
    client, parent, children = sweep_runs(uri)
    names = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"summary.csv", "comparison.png", "sweep.yaml"} <= names
    rows = summary_rows(client, parent, tmp_path)
    assert len(rows) == 6
    assert {
        "run_id",
        "run_name",
        "model",
        "backend",
        "optimizer",
        "lr",
        "seed",
        "status",
        "final_loss",
        "loss_gap",
        "coef_0",
        "coef_3",
        "train_seconds",
    } <= set(rows[0])
    assert sorted(r["status"] for r in rows) == ["FAILED"] * 3 + ["FINISHED"] * 3
    assert sorted(r["ended"][:17] for r in rows) == [""] * 3 + ["diverged at step "] * 3
    assert {r["run_id"] for r in rows} == {c.info.run_id for c in children}
    by_id = {c.info.run_id: c.data.params for c in children}
    for row in rows:  # the settings under short titles, as gdfit-compare shows them
        params = by_id[row["run_id"]]
        assert (row["backend"], row["lr"]) == (params["backend.name"], params["optimizer.lr"])
        assert (row["model"], row["seed"]) == ("polynomial", "0")
    finished = [c.data.metrics["final_loss"] for c in children if c.info.status == "FINISHED"]
    assert parent.data.metrics["best_final_loss"] == min(finished)
    assert parent.data.tags["gdfit.diverged_jobs"] == "3"
    assert parent.data.tags["gdfit.failed_jobs"] == "0"
    # the description's View link opens gdfit's view on whatever serves the UI: its key is a
    # name, not a credential
    view = views.route(parent.info.experiment_id)
    assert view.endswith("viewStateShareKey=gdfit")
    assert f"View: [gdfit's view of the runs]({view})" in parent.data.tags["mlflow.note.content"]


def test_parent_description_ranks_the_jobs_best_first_in_aligned_columns(grid):
    _, uri, _ = grid
    _, parent, children = sweep_runs(uri)
    note = parent.data.tags["mlflow.note.content"]
    best = min((c for c in children if c.info.status == "FINISHED"), key=final_loss)
    route = f"#/experiments/{parent.info.experiment_id}/runs/{best.info.run_id}"
    assert note.startswith(
        f"**Best**: [{best.info.run_name}]({route}?workflowType=machine_learning): "
        f"final_loss {final_loss(best):.8g}, gap "
    )
    assert "Sweep of 6 jobs: 3 finished, 3 diverged, 0 failed. Varied: backend, lr" in note
    table = note.split("```")[1].strip().splitlines()
    assert table[0].split()[:5] == ["#", "run", "id", "backend", "lr"]
    assert table[0].split()[-2:] == ["final_loss", "loss_gap"]
    assert len({line.index(" 1e-") for line in table[2:]}) == 1  # aligned
    rows = [line.split() for line in table[2:]]
    assert [r[0] for r in rows] == ["1", "2", "3", "4", "5", "6"]
    losses = [float(r[6]) for r in rows[:3]]
    assert losses == sorted(losses) and rows[0][2] == best.info.run_id[:8]
    assert all(r[6:9] == ["diverged", "at", "step"] for r in rows[3:])
    assert {r[4] for r in rows} == {"1e-6", "1e-4"}  # short values
    assert "summary.csv" in note and "Failed" not in note


def test_sweep_ends_with_its_parent_and_the_command_that_compares_it(grid):
    out, uri, folder = grid
    _, parent, children = sweep_runs(uri)
    parent_id = parent.info.run_id
    lines = out.stdout.strip().splitlines()
    assert f"gdfit: parent run {parent_id}" in lines
    assert lines[0] == f"gdfit: sweep {parent.info.run_name}: parent run {parent_id}"
    summary = next(
        line for line in lines if line.startswith(f"gdfit: sweep {parent.info.run_name} done")
    )
    assert summary.endswith(" done: 6 jobs, 3 finished, 3 diverged, 0 failed")
    best = min((c for c in children if c.info.status == "FINISHED"), key=final_loss)
    assert lines[lines.index(summary) + 1].startswith(
        f"gdfit: best {best.info.run_id[:8]} {best.info.run_name}: final_loss "
    )
    # Each job says how it ended once, in one line that starts with its run id.
    for child in children:
        (line,) = [line for line in lines if line.startswith(child.info.run_id[:8])]
        assert line.startswith(f"{child.info.run_id[:8]}  {child.info.run_name}  ")
        if child.info.status == "FINISHED":
            assert f"final_loss {final_loss(child):.8g}  gap " in line
        else:
            step = int(child.data.tags["gdfit.diverged_at_step"])
            assert line.endswith(f"diverged at step {step} (stable: lr < 3.6e-06)")
        assert len(line) <= 80
    assert sum("diverged" in line for line in lines) == 3 + 1  # the jobs', and the count
    (compare,) = [line for line in lines if line.startswith("gdfit: compare its runs: ")]
    command = shlex.split(compare.removeprefix("gdfit: compare its runs: "))
    assert command == [str(BIN / "gdfit-compare"), "--parent", parent_id, "--tracking-uri", uri]
    shown = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0, shown.stderr
    assert all(child.info.run_id[:8] in shown.stdout for child in children)


def test_compare_prints_one_row_per_child_and_writes_the_overlay(grid):
    _, uri, folder = grid
    _, parent, children = sweep_runs(uri)
    png = folder / "overlay.png"
    out = run_command(
        "gdfit-compare",
        "--parent",
        parent.info.run_id,
        "--tracking-uri",
        uri,
        "--out",
        str(png),
        cwd=folder,
    )
    assert out.returncode == 0, out.stderr
    for child in children:
        assert child.info.run_name in out.stdout
    assert out.stdout.count("diverged") == 3 and out.stdout.count("FINISHED") == 3
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_compare_filters_an_experiment_and_fails_clearly_on_no_match(grid):
    _, uri, folder = grid
    only = "params.`backend.name` = 'tensor'"
    out = run_command(
        "gdfit-compare",
        "--experiment",
        "gdfit",
        "--filter",
        only,
        "--tracking-uri",
        uri,
        cwd=folder,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("tensor-sgd") == 2 and "numpy-sgd" not in out.stdout
    assert "sweep-" not in out.stdout  # the parent is not a run to compare
    nothing = "params.`backend.name` = 'jax'"
    out = run_command(
        "gdfit-compare",
        "--experiment",
        "gdfit",
        "--filter",
        nothing,
        "--tracking-uri",
        uri,
        cwd=folder,
    )
    assert out.returncode == 1
    assert "no runs match" in out.stderr and "Traceback" not in out.stderr


def test_a_job_failing_is_summarised_with_its_reason_and_exit_1_a_divergence_beside_it(
    tmp_path,
):
    """A non-gdfit error (numpy refuses seed -1) and a divergence: the sweep goes on past the
    first, records both as FAILED children with their reasons, lists the failure and exits 1;
    the divergence is counted apart."""
    store = tmp_path / "store"
    uri = f"sqlite:///{store / 'mlflow.db'}"
    out = run_command(
        "gdfit-train",
        "-m",
        "train.seed=-1,0",
        "optimizer.lr=1e-2",
        "train.steps=200",
        f"tracking.uri={uri}",
        cwd=tmp_path,
    )
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1] == "gdfit: error: 1 of 2 jobs failed"
    assert "Traceback" not in out.stdout + out.stderr and "Error" not in out.stderr
    assert "done: 2 jobs, 0 finished, 1 diverged, 1 failed" in out.stdout
    client, parent, children = sweep_runs(uri)
    assert parent.info.status == "FINISHED" and parent.data.tags["gdfit.failed_jobs"] == "1"
    assert parent.data.tags["gdfit.diverged_jobs"] == "1"
    reasons = {c.data.params["train.seed"]: c.data.tags["gdfit.error"] for c in children}
    assert [c.info.status for c in children] == ["FAILED", "FAILED"]
    assert "seed" in reasons["-1"].lower() and "diverged" in reasons["0"]
    assert len(summary_rows(client, parent, tmp_path)) == 2
    assert "comparison.png" in {a.path for a in client.list_artifacts(parent.info.run_id)}
    # Hydra's own files go beside the store in use, not into the code's checkout
    assert len(list((store / "sweeps").glob("*/multirun.yaml"))) == 1
    assert not (tmp_path / "multirun").exists()


def test_a_job_that_cannot_be_composed_stops_the_sweep_before_any_job_runs(tmp_path):
    """Hydra's basic sweeper composes every job's config before it launches any: a bad option
    among the jobs fails the sweep before the first job runs."""
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    out = run_command(
        "gdfit-train",
        "-m",
        "train.seed=0,1",
        "optimizer=sgd,bogus",
        "train.steps=5",
        f"tracking.uri={uri}",
        cwd=tmp_path,
    )
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("gdfit: error: optimizer=bogus")
    client, parent, children = sweep_runs(uri)
    assert children == [] and parent.info.status == "KILLED"


def test_sweep_folder_follows_the_store_or_the_user(tmp_path, monkeypatch):
    from hydra import compose, initialize_config_dir

    from gdfit.paths import conf_dir, default_store_dir

    def sweep_dir(*overrides):
        with initialize_config_dir(str(conf_dir()), version_base="1.3"):
            cfg = compose("config", list(overrides), return_hydra_config=True)
        return Path(cfg.hydra.sweep.dir)

    assert (
        sweep_dir(f"tracking.uri=sqlite:///{tmp_path}/a/mlflow.db").parent == tmp_path / "a/sweeps"
    )
    assert sweep_dir("tracking=server").parent == Path.cwd() / "multirun"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/b/mlflow.db")
    assert sweep_dir().parent == tmp_path / "b/sweeps"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert sweep_dir().parent == default_store_dir() / "sweeps"
    assert sweep_dir(f"hydra.sweep.dir={tmp_path}/mine") == tmp_path / "mine"


def test_parallel_sweep_on_a_fresh_store_loses_nothing(tmp_path):
    uri = f"sqlite:///{tmp_path / 'fresh' / 'mlflow.db'}"
    out = run_command(
        "gdfit-train",
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "backend=numpy,tensor",
        "train.seed=1,2",
        "train.steps=150",
        f"tracking.uri={uri}",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    client, parent, children = sweep_runs(uri)
    assert parent.info.status == "FINISHED" and parent.data.tags["gdfit.launcher"]
    assert sorted(
        (c.data.params["backend.name"], c.data.params["train.seed"]) for c in children
    ) == [("numpy", "1"), ("numpy", "2"), ("tensor", "1"), ("tensor", "2")]
    for child in children:
        assert child.info.status == "FINISHED"
        assert len(client.get_metric_history(child.info.run_id, "loss")) == 150
    assert len(summary_rows(client, parent, tmp_path)) == 4
    out = run_command(
        "gdfit-compare", "--parent", parent.info.run_id, "--tracking-uri", uri, cwd=tmp_path
    )
    assert out.returncode == 0 and out.stdout.count("FINISHED") == 4


def test_optuna_search_runs_trials_as_children(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = run_command(
        "gdfit-train",
        "hparams_search=lr_optuna",
        "hydra.sweeper.n_trials=3",
        "train.steps=200",
        f"tracking.uri={uri}",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    client, parent, children = sweep_runs(uri)
    assert parent.data.tags["gdfit.sweeper"] == "OptunaSweeper"
    assert len(children) == 3
    rates = [float(c.data.params["optimizer.lr"]) for c in children]
    assert all(1e-7 <= lr <= 1e-5 for lr in rates) and len(set(rates)) == 3
    finished = [c.data.metrics["final_loss"] for c in children if c.info.status == "FINISHED"]
    assert parent.data.metrics["best_final_loss"] == min(finished)
    out = run_command(
        "gdfit-compare", "--parent", parent.info.run_id, "--tracking-uri", uri, cwd=tmp_path
    )
    assert out.returncode == 0
    assert sum(c.info.run_name in out.stdout for c in children) == 3


def test_presets_are_sweeps_over_the_three_backends():
    from hydra import compose, initialize_config_dir

    from gdfit.paths import conf_dir

    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        compare = compose("config", ["experiment=compare_backends"], return_hydra_config=True)
        notebook = compose(
            "config", ["experiment=seed_notebook", "backend=tensor"], return_hydra_config=True
        )
    assert str(compare.hydra.mode) == "RunMode.MULTIRUN"
    assert compare.hydra.sweeper.params.backend == "numpy,tensor,autograd"
    assert compare.backend.dtype == "float64" and compare.train.seed == 0
    assert notebook.hydra.sweeper.params.backend == "numpy,tensor,autograd"
    assert notebook.backend.dtype == "float32"  # each cell keeps the example's own precision
    assert (notebook.optimizer.name, notebook.optimizer.lr) == ("sgd", 1e-6)
    assert (notebook.train.steps, notebook.train.log_every, notebook.data.n_points) == (
        5000,
        100,
        2000,
    )


def test_ctrl_c_during_a_sweep_leaves_nothing_running(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = subprocess.Popen(
        [
            str(BIN / "gdfit-train"),
            "-m",
            "train.seed=0,1",
            "train.steps=100000000",
            "tracking.curve_points=100000",
            f"tracking.uri={uri}",
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_curve(uri)  # the first job is running and logging
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in stderr
    client, parent, children = sweep_runs(uri)
    assert parent.info.status == "KILLED"
    assert [c.info.status for c in children] == ["KILLED"]  # the second job never started
    assert [r["status"] for r in summary_rows(client, parent, tmp_path)] == ["KILLED"]


@pytest.mark.parametrize(
    ("group", "signum", "code"),
    [(True, signal.SIGINT, 130), (False, signal.SIGTERM, 143)],
    ids=["ctrl-c-to-the-process-group", "sigterm-to-the-parent"],
)
def test_stopping_a_joblib_sweep_leaves_nothing_running(group, signum, code, tmp_path):
    """Two jobs running in joblib's worker processes when the sweep is stopped: the parent ends
    KILLED with its summary, and no child stays RUNNING once the store is read again (a worker
    killed outright is marked KILLED by the next command, gdfit.store.reap_lost)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = subprocess.Popen(
        [
            *(str(BIN / "gdfit-train"), "-m", "train.seed=0,1"),
            *("hydra/launcher=joblib", "hydra.launcher.n_jobs=2"),
            *("train.steps=100000000", "tracking.curve_points=100000", f"tracking.uri={uri}"),
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        wait_for_curve(uri)  # the store exists (gdfit made it whole) and a job is logging
        client = MlflowClient(uri)
        for _ in range(600):  # both jobs running and logging
            _, _, children = sweep_runs(uri)
            logging = [c for c in children if client.get_metric_history(c.info.run_id, "loss")]
            if len(logging) == 2:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the two jobs did not start")
        (os.killpg if group else os.kill)(proc.pid, signum)
        _, stderr = proc.communicate(timeout=120)
        assert gone(proc.pid), "joblib's workers went on computing after the sweep ended"
    finally:  # whatever failed above, no sweep is left computing
        if not gone(proc.pid, wait=0):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == code and "Traceback" not in stderr, stderr

    compared = run_command(
        "gdfit-compare", "--experiment", "gdfit", "--tracking-uri", uri, cwd=tmp_path
    )
    assert compared.returncode == 0, compared.stderr
    client, parent, children = sweep_runs(uri)
    assert parent.info.status == "KILLED"
    assert "summary.csv" in {a.path for a in client.list_artifacts(parent.info.run_id)}, stderr
    assert len(summary_rows(client, parent, tmp_path)) == 2
    assert sorted(c.info.status for c in children) == ["KILLED", "KILLED"]


def gone(group: int, wait: float = 15) -> bool:
    """Whether process group `group` has no process left (after up to `wait` seconds)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)


@pytest.mark.parametrize(
    "lines",
    [
        ["backend=numpy,tensor", "optimizer.lr=1e-6,2e-6"],
        ["optimizer.lr=1e-6,2e-6", "backend=numpy,tensor,autograd", "train.steps=50"],
        ["train.seed=0,1", "train.seed=5,6,7"],  # a key given twice: its last values
        ["model.init=[0,0,0,0],[1,1,1,1]", "tracking.run_name='a b'"],  # lists, quoted strings
    ],
)
def test_the_apis_grid_lists_the_jobs_of_minus_m_in_its_order(lines):
    """gdfit.sweep runs its jobs as gdfit.jobs.grid lists them: the jobs of Hydra's own basic
    sweeper (-m), in its order."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from gdfit.jobs import grid

    parsed = OverridesParser.create().parse_overrides(lines)
    (hydras,) = BasicSweeper.split_arguments(parsed, max_batch_size=None)
    assert grid(lines) == hydras


def test_minus_m_sweeps_with_hydras_own_basic_sweeper():
    from hydra import compose, initialize_config_dir

    from gdfit.paths import conf_dir

    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        cfg = compose("config", [], return_hydra_config=True)
    assert cfg.hydra.sweeper._target_ == "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def test_a_cut_sweep_resumes_exactly_once_and_then_ends_well_every_time(tmp_path):
    """A sweep cut at its second child, carrying also a child with no params (what an older
    gdfit left when Ctrl-C fell between a child's creation and its params) and a reaper's mark:
    two resumes started together run its configs once (one refuses in one line), and each
    later resume ends 0 without reaping its own parent."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    grid = ["-m", "train.seed=0,1,2", "train.steps=50", f"tracking.uri={uri}"]
    cut = run_command(None, "-c", CTRL_C_AT_CHILD, *grid, cwd=tmp_path)
    assert cut.returncode == 130, cut.stderr
    client, parent, children = sweep_runs(uri)
    assert [c.info.status for c in children] == ["FINISHED", "KILLED"]
    orphan = client.create_run(
        parent.info.experiment_id,
        run_name=children[1].info.run_name,
        tags={"mlflow.parentRunId": parent.info.run_id},
    ).info.run_id
    client.set_terminated(orphan, "KILLED")
    client.set_tag(parent.info.run_id, "gdfit.reaped", "its process was gone")

    resume = [str(BIN / "gdfit-train"), *grid, f"sweep.resume={parent.info.run_name}"]
    both = [
        subprocess.Popen(resume, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    outcomes = sorted(
        (p.wait(timeout=300), p.stdout.read().decode(), p.stderr.read().decode()) for p in both
    )
    (code, stdout, _), (refused, _, said) = outcomes
    assert (code, refused) == (0, 2), outcomes
    assert "3 jobs, 3 finished, 0 diverged, 0 failed" in stdout
    assert said.count("\n") == 1 and said.startswith(
        f"gdfit: error: sweep.resume: sweep {parent.info.run_name} is being run by another process"
    )
    client, after, children = sweep_runs(uri)
    finished = [c.data.params["train.seed"] for c in children if c.info.status == "FINISHED"]
    assert sorted(finished) == ["0", "1", "2"]  # each config run to its end once
    assert after.info.status == "FINISHED" and "gdfit.reaped" not in after.data.tags
    assert len(summary_rows(client, after, tmp_path / "first")) == 3

    again = run_command("gdfit-train", *grid, f"sweep.resume={parent.info.run_id}", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "3 jobs, 3 finished, 0 diverged, 0 failed" in again.stdout
    assert "is gone" not in again.stderr
    _, after, _ = sweep_runs(uri)
    assert after.info.status == "FINISHED" and after.data.tags["gdfit.resumes"] == "2"
    assert "gdfit.reaped" not in after.data.tags


def test_sweeps_started_in_the_same_second_have_their_own_names(store_uri, monkeypatch):
    from gdfit import api

    monkeypatch.setattr("time.strftime", lambda *args: "20260101-000000")
    experiment = "same-second"
    one, two = (
        api.sweep(tracking_uri=store_uri, experiment=experiment, steps=[20], progress="none")
        for _ in range(2)
    )
    client = MlflowClient(store_uri)
    parents = [client.get_run(runs.parent_id) for runs in (one, two)]
    names = {p.info.run_name for p in parents}
    assert len(names) == 2 and all(n.startswith("sweep-20260101-000000-") for n in names)
    groups = {r.data.tags["gdfit.group"] for runs in (one, two) for r in runs.runs}
    assert len(groups) == 2


def test_a_large_sweeps_description_keeps_within_mlflows_limit_by_design():
    """A sweep of 300 jobs (rows built as readback.table builds them, best first): the
    description holds the best rows that fit in MLflow's 8,000 characters, every failure
    (the first ones by name, the rest counted), and says where the full table is."""
    from gdfit import notes

    columns = ["run_id", "run_name", "model", "backend", "optimizer", "lr", "seed", "status"]
    columns += ["ended", "final_loss", "loss_gap"]

    def row(i: int, status: str = "FINISHED", ended: str = "", diverged: bool = False) -> dict:
        lr = f"{1e-7 * (1 + i % 37)!r}"
        return {
            "run_id": f"{i:08x}" + "0" * 24,
            "run_name": f"autograd-momentum-lr{float(lr):g}-seed{i}",
            "model": "polynomial",
            "backend": "autograd",
            "optimizer": "momentum",
            "lr": lr,
            "seed": str(i),
            "status": status,
            "ended": ended,
            "diverged": diverged,
            "final_loss": 8.8 + i * 1e-3 if status == "FINISHED" else None,
            "loss_gap": i * 1e-3 if status == "FINISHED" else None,
        }

    rows = [row(i) for i in range(200)]
    rows += [row(i, "FAILED", f"diverged at step {i}", True) for i in range(200, 280)]
    reason = "OutOfMemoryError: " + "x" * 400
    rows += [row(i, "FAILED", reason) for i in range(280, 300)]
    note = notes.sweep_note(
        columns,
        rows,
        "f" * 32,
        store=" --tracking-uri sqlite:////a/rather/long/path/to/the/team/store/mlflow.db",
        view="#/experiments/1/runs?workflowType=machine_learning",
        best_id=rows[0]["run_id"],
        ranking="by final_loss",
        run_link=lambda run_id: f"#/experiments/1/runs/{run_id}?workflowType=machine_learning",
    )
    assert 6000 < len(note) <= notes.NOTE_LIMIT == 8000
    assert "Sweep of 300 jobs: 200 finished, 80 diverged, 20 failed." in note
    table = note.split("```")[1].strip().splitlines()
    shown = [line.split()[1] for line in table[2:]]
    assert shown == [r["run_name"] for r in rows[: len(shown)]]  # the best ones, in order
    assert 40 <= len(shown) < 200
    assert f"The best {len(shown)} of 300 jobs. Every job" in note and "summary.csv" in note
    failures = [line for line in note.splitlines() if line.startswith("- `")]
    assert len(failures) == notes.MAX_FAILURES_LISTED
    assert all(len(line) < 300 for line in failures)
    assert "- and 10 more: see summary.csv" in note
    assert note.endswith(
        "View: [gdfit's view of the runs](#/experiments/1/runs?workflowType=machine_learning)"
    )
