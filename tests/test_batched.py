"""Batched sweeps (hydra/launcher=batched, gdfit.sweep(batched=True)): the jobs that share a
program are fitted together, yet each child holds what the sequential job of the same config
holds, within the tolerance gdfit.batchfit states. Each sweep is tiny (200 steps)."""

import signal
import subprocess

import numpy as np
import pytest
from conftest import BIN, run_command, summary_rows, sweep_runs
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict

import gdfit
from gdfit import batchfit, readback
from gdfit.jobs import compose_many, grid
from gdfit.paths import conf_dir

GRID = ["backend=numpy,tensor,module", "optimizer.lr=1e-6,1e-5", "train.seed=0,1"]
# Tags that say how and where the command ran, not what the run is.
LAUNCH_TAGS = {"gdfit.batch", "gdfit.command", "gdfit.process", "gdfit.group"}


def _sweep(folder, *extra: str):
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    out = run_command(
        "gdfit-train", "-m", *GRID, "train.steps=200", f"tracking.uri={uri}", *extra, cwd=folder
    )
    return out, uri


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """The same 12-job grid, sequential and batched: numpy (float64) and tensor (float32)
    jobs share a program per backend; module jobs run alone; lr 1e-5 diverges."""
    sequential = _sweep(tmp_path_factory.mktemp("sequential"))
    batched = _sweep(tmp_path_factory.mktemp("batched"), "hydra/launcher=batched")
    return sequential, batched


def _by_config(uri):
    _, parent, children = sweep_runs(uri)
    key = ("backend.name", "optimizer.lr", "train.seed")
    return parent, {tuple(c.data.params[k] for k in key): c for c in children}


def test_batched_children_hold_what_sequential_jobs_hold(both):
    (seq_out, seq_uri), (out, uri) = both
    assert out.returncode == seq_out.returncode and "Traceback" not in out.stderr
    assert "4 of 12 jobs run one at a time: backend=module" in out.stdout
    assert out.stdout.count("fitting 4 configs as one program") == 2
    _, seq = _by_config(seq_uri)
    _, bat = _by_config(uri)
    assert len(bat) == len(seq) == 12
    for config_key, old in seq.items():
        new = bat[config_key]
        backend = config_key[0]
        assert new.data.tags.get("gdfit.batch") == (None if backend == "module" else "4")
        assert new.info.status == old.info.status
        assert new.data.params | {"tracking.uri": ""} == old.data.params | {"tracking.uri": ""}
        assert set(new.data.tags) - LAUNCH_TAGS == set(old.data.tags) - LAUNCH_TAGS
        assert set(new.data.metrics) == set(old.data.metrics)
        was, now = (
            readback.saved_curve(seq_uri, old.info.run_id),
            readback.saved_curve(uri, new.info.run_id),
        )
        assert was is not None and now is not None and len(was.steps) == len(now.steps)
        tol = batchfit.TOLERANCE["float64" if backend == "numpy" else "float32"]
        if backend == "module":
            tol = 0.0  # run alone: the sequential fit itself
        np.testing.assert_allclose(now.losses, was.losses, rtol=tol, atol=0)
        if old.info.status == "FINISHED":
            coef = [k for k in old.data.metrics if k.startswith("coef_")]
            a = np.array([old.data.metrics[k] for k in coef])
            b = np.array([new.data.metrics[k] for k in coef])
            assert np.abs(a - b).max() <= tol * np.abs(a).max()
        else:  # diverged at the same step, with the same reason (its loss within tol)
            assert (
                new.data.tags["gdfit.diverged_at_step"] == old.data.tags["gdfit.diverged_at_step"]
            )
            said, was_said = (r.data.tags["gdfit.error"].split("(loss") for r in (new, old))
            assert said[0] == was_said[0] and said[1].split(")")[1] == was_said[1].split(")")[1]


def test_a_batched_sweep_is_summarised_like_any_other(both, tmp_path):
    _, (out, uri) = both
    client, parent, children = sweep_runs(uri)
    rows = summary_rows(client, parent, tmp_path)
    assert len(rows) == 12
    assert sorted(r["status"] for r in rows) == ["FAILED"] * 6 + ["FINISHED"] * 6
    finished = [c.data.metrics["final_loss"] for c in children if c.info.status == "FINISHED"]
    assert parent.data.metrics["best_final_loss"] == min(finished)
    assert parent.data.tags["gdfit.launcher"] == "BatchedLauncher"


def test_a_batched_child_reruns_alone_within_the_batched_tolerance(both, tmp_path):
    _, (_, uri) = both
    _, bat = _by_config(uri)
    for backend in ("numpy", "tensor"):
        child = bat[(backend, "1e-06", "0")]
        out = run_command(
            "gdfit-rerun", child.info.run_id, "--check", "--tracking-uri", uri, cwd=tmp_path
        )
        assert out.returncode == 0, out.stdout + out.stderr
        said = out.stdout + out.stderr
        assert "identical" in said or "within the batched tolerance" in said


def test_the_memory_budget_splits_a_group_into_several_programs(store_uri, capsys):
    # 200 steps: ~18 KB a config, so 0.04 MB holds two of the six.
    runs = gdfit.sweep(
        lr=[1e-6, 2e-6],
        seed=[0, 1, 2],
        steps=200,
        tracking_uri=store_uri,
        experiment="batched-memory",
        batched=True,
        memory_mb=0.04,
        progress="none",
    )
    assert capsys.readouterr().out.count("fitting 2 configs as one program") == 3
    assert len(runs) == 6 and all(f.status == "FINISHED" for f in runs.table.itertuples())
    with pytest.raises(gdfit.ConfigError, match="hydra.launcher.memory_mb"):
        gdfit.sweep(lr=[1e-6], steps=10, tracking_uri=store_uri, batched=True, memory_mb=0)


def test_optuna_hands_the_batched_launcher_its_trials_in_batches(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = run_command(
        "gdfit-train",
        "hparams_search=lr_optuna",
        "hydra/launcher=batched",
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.n_jobs=2",
        "train.steps=200",
        f"tracking.uri={uri}",
        cwd=tmp_path,
    )
    assert "Traceback" not in out.stderr
    _, parent, children = sweep_runs(uri)
    assert len(children) == 4
    assert {c.data.tags["gdfit.batch"] for c in children} == {"2"}
    assert out.stdout.count("fitting 2 configs as one program") == 2
    finished = [c.data.metrics["final_loss"] for c in children if c.info.status == "FINISHED"]
    assert finished and parent.data.metrics["best_final_loss"] == min(finished)


def test_ctrl_c_in_the_middle_of_a_batch_leaves_nothing_running(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = subprocess.Popen(
        [
            str(BIN / "gdfit-train"),
            "-m",
            "hydra/launcher=batched",
            "train.seed=0,1,2",
            "train.steps=20000000",
            f"tracking.uri={uri}",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:  # the program has started
        if "fitting 3 configs as one program" in line:
            break
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in stderr
    client, parent, children = sweep_runs(uri)
    assert parent.info.status == "KILLED"
    assert [c.info.status for c in children] == ["KILLED"] * 3
    assert [r["status"] for r in summary_rows(client, parent, tmp_path)] == ["KILLED"] * 3
    curves = [readback.saved_curve(uri, c.info.run_id) for c in children]
    assert all(c is not None and len(c.steps) == len(curves[0].steps) for c in curves)


def test_a_resumed_batched_sweep_fits_only_the_configs_not_finished(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    common = ["-m", "hydra/launcher=batched", "train.steps=100", f"tracking.uri={uri}"]
    first = run_command("gdfit-train", *common, "train.seed=0,1", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    _, parent, _ = sweep_runs(uri)
    resume = f"sweep.resume={parent.info.run_id}"
    out = run_command("gdfit-train", *common, "train.seed=0,1,2", resume, cwd=tmp_path)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    assert out.stdout.count("FINISHED before as run") == 2
    assert "fitting 1 config as one program" in out.stdout
    client, again, children = sweep_runs(uri)
    assert again.info.run_id == parent.info.run_id and again.info.status == "FINISHED"
    assert sorted(c.data.params["train.seed"] for c in children) == ["0", "1", "2"]
    assert [r["status"] for r in summary_rows(client, again, tmp_path)] == ["FINISHED"] * 3


def test_jobs_of_one_shape_get_the_config_hydra_composes(tmp_path):
    """compose_many sets the swept values into the shape's first config; each must equal the
    config Hydra composes for that job."""
    jobs = grid(["backend=numpy,tensor", "optimizer.lr=1e-6,3e-6", "train.seed=0,7"])
    with initialize_config_dir(str(conf_dir()), version_base="1.3"):

        def one(job):
            return compose("config", job, return_hydra_config=True)

        fast = compose_many(jobs, one)
        for job, (task, _) in zip(jobs, fast, strict=True):
            full = one(job)
            with open_dict(full):
                del full["hydra"]
            assert OmegaConf.to_container(task) == OmegaConf.to_container(full, resolve=True)
