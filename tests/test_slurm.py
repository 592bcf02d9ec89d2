"""Sweeps beyond one process: Hydra's submitit launcher on this machine and on a real
single-node Slurm (scripts/slurm.sh), and resuming a sweep that was cut off.

Every command runs with a timeout: without Slurm accounting submitit cannot see a job that
died, so a broken job would otherwise be waited for forever.
"""

import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import BIN, run_command, summary_rows, sweep_runs

ROOT = Path(__file__).resolve().parents[1]
SWEEP_TIMEOUT = 240  # seconds; a three-job Slurm sweep takes ~35 s on two busy cores


def assert_finished_with_curves(client, children, steps):
    for child in children:
        assert child.info.status == "FINISHED", child.data.tags.get("gdfit.error")
        assert len(client.get_metric_history(child.info.run_id, "loss")) == steps
        names = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert {"config.yaml", "environment.json", "fit.png", "loss.png"} <= names


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A single-node Slurm started by scripts/slurm.sh for this module, stopped after it."""
    if not all(shutil.which(tool) for tool in ("slurmctld", "slurmd", "munged", "sbatch")):
        pytest.skip("Slurm is not installed: apt-get install slurm-wlm munge (.ci/run does)")
    folder = tmp_path_factory.mktemp("slurm")
    script = str(ROOT / "scripts" / "slurm.sh")
    started = subprocess.run(
        [script, "start", str(folder)], capture_output=True, text=True, timeout=120
    )
    assert started.returncode == 0, started.stderr
    try:
        yield {"SLURM_CONF": str(folder / "slurm.conf")}
    finally:
        subprocess.run([script, "stop", str(folder)], timeout=120)


def slurm_job_states(env, sweep_dir: Path, settle: float = 30) -> list[str]:
    """Slurm's own record (scontrol) of each array task submitit submitted for the sweep, once
    no task is still RUNNING or COMPLETING (up to `settle` seconds): submitit reads a job's
    result as soon as the job writes it, a moment before its process has exited."""
    deadline = time.monotonic() + settle
    while True:
        states = []
        for task in sorted(p.name for p in (sweep_dir / ".submitit").glob("*_*")):
            out = subprocess.run(
                ["scontrol", "show", "job", task],
                capture_output=True,
                text=True,
                timeout=30,
                env={**env, "PATH": "/usr/bin:/bin"},
            )
            states += re.findall(r"JobState=(\w+)", out.stdout)
        if not {"RUNNING", "COMPLETING"} & set(states) or time.monotonic() > deadline:
            return states
        time.sleep(0.5)


def test_slurm_sweep_is_one_parent_with_a_finished_child_per_backend(slurm, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = run_command(
        "gdfit-train",
        "-m",
        "hydra/launcher=submitit_slurm",
        "backend=numpy,tensor,autograd",
        "train.steps=200",
        f"tracking.uri={uri}",
        cwd=tmp_path,
        env=slurm,
        timeout=SWEEP_TIMEOUT,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    client, parent, children = sweep_runs(uri)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["gdfit.launcher"] == "SlurmLauncher"
    assert sorted(c.data.params["backend.name"] for c in children) == [
        "autograd",
        "numpy",
        "tensor",
    ]
    assert_finished_with_curves(client, children, steps=200)
    assert len(summary_rows(client, parent, tmp_path)) == 3
    (sweep_dir,) = (tmp_path / "sweeps").iterdir()  # beside the store, as the config says
    assert slurm_job_states(slurm, sweep_dir) == ["COMPLETED"] * 3


def test_slurm_job_that_diverges_is_recorded_and_needs_no_exported_environment(slurm, tmp_path):
    """The store comes from MLFLOW_TRACKING_URI and the cluster exports nothing to jobs
    (SBATCH_EXPORT=NONE): each job still finds its store and parent, through its config. A
    job whose loss diverges is a FAILED child with its step, counted apart: exit 0."""
    store = tmp_path / "store"
    uri = f"sqlite:///{store / 'mlflow.db'}"
    checkout_sweeps = ROOT / "mlruns" / "sweeps"
    before = set(checkout_sweeps.iterdir()) if checkout_sweeps.is_dir() else set()
    out = run_command(
        "gdfit-train",
        "-m",
        "hydra/launcher=submitit_slurm",
        "optimizer.lr=1e-6,1e-2",
        "train.steps=200",
        # gdfit's own setup line, then one that shows what the batch script was given
        "hydra.launcher.setup=['export SLURM_EXPORT_ENV=ALL',"
        "'printenv MLFLOW_TRACKING_URI || echo MLFLOW_TRACKING_URI not exported']",
        cwd=tmp_path,
        env={**slurm, "SBATCH_EXPORT": "NONE", "MLFLOW_TRACKING_URI": uri},
        timeout=SWEEP_TIMEOUT,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "done: 2 jobs, 1 finished, 1 diverged, 0 failed" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr
    (sweep_dir,) = (store / "sweeps").iterdir()
    logs = [p.read_text() for p in sweep_dir.glob(".submitit/*_*/*_log.out")]
    assert len(logs) == 2 and all("MLFLOW_TRACKING_URI not exported" in log for log in logs)
    assert sum("  numpy-sgd-lr0.01-seed0  diverged at step " in log for log in logs) == 1
    # nor did a job fall back to the code checkout's default store for its folder
    after = set(checkout_sweeps.iterdir()) if checkout_sweeps.is_dir() else set()
    assert after == before

    client, parent, children = sweep_runs(uri)
    by_lr = {c.data.params["optimizer.lr"]: c for c in children}
    assert sorted(by_lr) == ["0.01", "1e-06"]
    assert_finished_with_curves(client, [by_lr["1e-06"]], steps=200)
    failed = by_lr["0.01"]
    assert failed.info.status == "FAILED"
    assert "diverged at step" in failed.data.tags["gdfit.error"]
    assert parent.data.tags["gdfit.diverged_jobs"] == "1"
    assert parent.data.tags["gdfit.failed_jobs"] == "0"
    assert slurm_job_states(slurm, sweep_dir) == ["COMPLETED"] * 2


def test_submitit_local_sweep_is_one_parent_with_a_finished_child_per_backend(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = run_command(
        "gdfit-train",
        "-m",
        "hydra/launcher=submitit_local",
        "backend=numpy,tensor,autograd",
        "train.steps=200",
        f"tracking.uri={uri}",
        cwd=tmp_path,
        timeout=SWEEP_TIMEOUT,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    client, parent, children = sweep_runs(uri)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["gdfit.launcher"] == "LocalLauncher"
    assert "is validated against" not in out.stderr  # Hydra's schema-matching notice
    assert sorted(c.data.params["backend.name"] for c in children) == [
        "autograd",
        "numpy",
        "tensor",
    ]
    assert_finished_with_curves(client, children, steps=200)
    assert len(summary_rows(client, parent, tmp_path)) == 3


def wait_for_status(uri, want: list[str], timeout: float = 120) -> None:
    """Block until the sweep's children have exactly the statuses `want`, in start order."""
    from gdfit.store import open_experiment  # under the lock that guards a new store

    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        client, experiment = open_experiment(uri, "gdfit")
        kids = client.search_runs(
            [experiment], "tags.mlflow.parentRunId != ''", order_by=["attributes.start_time ASC"]
        )
        seen = [k.info.status for k in kids]
        if seen == want:
            return
        time.sleep(0.2)
    raise AssertionError(f"children {seen}, not {want}, within {timeout} s")


def test_resumed_sweep_runs_only_what_did_not_finish_and_joins_the_same_parent(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # The third job runs long enough (~15 s) that the Ctrl-C lands inside it, not after it.
    grid = ["train.steps=200,300,2000000", f"tracking.uri={uri}"]
    proc = subprocess.Popen(
        [str(BIN / "gdfit-train"), "-m", *grid],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_status(uri, ["FINISHED", "FINISHED", "RUNNING"])  # the third job is running
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "Traceback" not in stderr
    client, parent, children = sweep_runs(uri)
    assert parent.info.status == "KILLED"
    assert [c.info.status for c in children] == ["FINISHED", "FINISHED", "KILLED"]
    finished_before = {c.info.run_id for c in children if c.info.status == "FINISHED"}
    assert len(summary_rows(client, parent, tmp_path / "cut")) == 3  # what the cut-off had

    # resume by the parent's name, the jobs now as submitit processes
    out = run_command(
        "gdfit-train",
        "-m",
        "hydra/launcher=submitit_local",
        *grid,
        f"sweep.resume={parent.info.run_name}",
        cwd=tmp_path,
        timeout=SWEEP_TIMEOUT,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert f"resuming parent run {parent.info.run_id}" in out.stdout
    client, parent_after, children = sweep_runs(uri)  # still exactly one parent
    assert parent_after.info.run_id == parent.info.run_id
    assert parent_after.info.status == "FINISHED"
    assert parent_after.data.tags["gdfit.resumes"] == "1"
    by_steps = {}
    for child in children:
        by_steps.setdefault(child.data.params["train.steps"], []).append(child.info.status)
    assert by_steps == {
        "200": ["FINISHED"],
        "300": ["FINISHED"],
        "2000000": ["KILLED", "FINISHED"],
    }
    finished = {c.info.run_id for c in children if c.info.status == "FINISHED"}
    assert finished_before < finished  # the finished jobs were not run again
    rows = summary_rows(client, parent_after, tmp_path / "resumed")
    assert sorted((r["train.steps"], r["status"]) for r in rows) == [
        ("200", "FINISHED"),
        ("2000000", "FINISHED"),  # sorted as text
        ("300", "FINISHED"),
    ]
    assert {r["run_id"] for r in rows} == finished
    assert "sweep.resume" not in rows[0]  # how the sweep was resumed is no setting of a job


def test_launchers_have_small_defaults_and_every_slurm_setting_can_be_overridden():
    from hydra import compose, initialize_config_dir

    from gdfit.paths import conf_dir

    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        slurm = compose(
            "config",
            [
                "hydra/launcher=submitit_slurm",
                "hydra.launcher.partition=gpu",
                "hydra.launcher.timeout_min=120",
                "+hydra.launcher.additional_parameters.mail-type=END",
            ],
            return_hydra_config=True,
        ).hydra.launcher
        local = compose(
            "config", ["hydra/launcher=submitit_local"], return_hydra_config=True
        ).hydra.launcher
    assert (slurm.cpus_per_task, slurm.mem_gb, slurm.name) == (1, 2, "gdfit")
    assert (slurm.partition, slurm.timeout_min) == ("gpu", 120)
    assert slurm.additional_parameters == {"mail-type": "END"}
    assert slurm.setup == ["export SLURM_EXPORT_ENV=ALL"]
    assert (local.cpus_per_task, local.timeout_min) == (1, 30)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-m", "sweep.resume=no-such-sweep"], "sweep.resume: must name a sweep's parent run"),
        (["sweep.resume=no-such-sweep"], "sweep.resume: resumes a sweep: add -m"),
        (
            ["-m", "hydra/launcher=submitit_slurm", "hydra.launcher.mem_gb=lots"],
            "hydra.launcher.mem_gb: must be an integer (got 'lots')",
        ),
        (
            ["-m", "hydra/launcher=submitit_slurm", "hydra.launcher.additional_parameters={a:1}"],
            "hydra.launcher.additional_parameters.a: Key 'a' is not in struct",
        ),
    ],
)
def test_bad_sweep_settings_are_one_line(args, message, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = run_command("gdfit-train", *args, "train.steps=10", f"tracking.uri={uri}", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith(f"gdfit: error: {message}")
    assert "Traceback" not in out.stderr
