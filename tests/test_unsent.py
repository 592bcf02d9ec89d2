"""A store that cannot take a run's end — a full disk, a read-only artifact folder, a server
that hangs — loses none of it: the run says in one line where its end is kept, `gdfit-send`
sends it once the store is back, and the run then has every loss point, file and its status.

The disks are real: a small tmpfs mounted for the test, filled with zeros or remounted
read-only (this needs the right to mount, which CI's root has)."""

import os
import signal
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from conftest import BIN, mlflow_server, run_command
from mlflow.tracking import MlflowClient

from gdfit.readback import saved_curve

STEPS = 400_000  # a few seconds with 10 points: long enough to break the store mid-run
LONG = [f"train.steps={STEPS}", "data.n_points=10", "train.log_every=100000"]


@contextmanager
def small_disk(folder: Path, size: str = "32m"):
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"filling a disk needs a tmpfs of its own: {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path) -> Path:
    """Write zeros into `folder` until its disk has no byte left."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (1 << 20, 1 << 12, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                continue
    finally:
        os.close(fd)
    return filler


def start_long_run(uri: str, cwd: Path, env: dict) -> subprocess.Popen:
    """gdfit-train of STEPS steps; returns once it has printed step 100,000 (mid-run)."""
    proc = subprocess.Popen(
        [str(BIN / "gdfit-train"), *LONG, f"tracking.uri={uri}"],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    for line in proc.stdout:
        if line.startswith("100000 "):
            return proc
    raise AssertionError(f"the run ended before step 100000: {proc.wait()} {proc.stderr.read()}")


def one_error_line(stderr: str) -> str:
    errors = [line for line in stderr.splitlines() if line.startswith("gdfit: error:")]
    assert "Traceback" not in stderr, stderr
    assert len(errors) == 1, stderr
    return errors[0]


def kept_folder(line: str) -> Path:
    assert "gdfit-send " in line, line
    return Path(line.rsplit("`gdfit-send ", 1)[1].split("`")[0])


def assert_whole(uri: str, run_id: str, steps: int) -> None:
    """The run is FINISHED with every step in loss.npz, the chart's points, its figures and
    none of the marks a failed end leaves."""
    run = MlflowClient(uri).get_run(run_id)
    assert run.info.status == "FINISHED"
    assert not {"gdfit.unsent", "gdfit.error", "gdfit.reaped"} & set(run.data.tags)
    assert "final_loss" in run.data.metrics
    curve = saved_curve(uri, run_id)
    assert curve is not None
    assert np.array_equal(curve.steps, np.arange(steps))  # not one point lost
    assert np.isfinite(curve.losses).all()
    assert len(MlflowClient(uri).get_metric_history(run_id, "loss")) == 500
    names = {f.path for f in MlflowClient(uri).list_artifacts(run_id)}
    assert {"config.yaml", "fit.png", "loss.png", "loss.npz", "images"} <= names


def test_a_full_disk_mid_run_keeps_the_runs_end_until_gdfit_send(tmp_path):
    home = tmp_path / "home"  # gdfit's state folder: on another disk than the full one
    env = {"HOME": str(home), "XDG_STATE_HOME": ""}
    with small_disk(tmp_path / "disk") as disk:
        uri = f"sqlite:///{disk / 'mlflow.db'}"
        proc = start_long_run(uri, tmp_path, env)
        filler = fill(disk)
        _, stderr = proc.communicate(timeout=300)

        assert proc.returncode == 1
        line = one_error_line(stderr)
        assert "database or disk is full" in line or "No space left on device" in line
        folder = kept_folder(line)
        assert folder.is_relative_to(home / ".local" / "state" / "gdfit" / "unsent")
        run_id = folder.name

        # A run started on the full disk fails in one line before it has anything to lose.
        late = run_command("gdfit-train", "train.steps=50", f"tracking.uri={uri}", cwd=tmp_path)
        assert late.returncode == 1
        assert "database or disk is full" in one_error_line(late.stderr)

        filler.unlink()  # the disk has room again
        sent = run_command("gdfit-send", cwd=tmp_path, env={**env, "MLFLOW_TRACKING_URI": uri})
        assert sent.returncode == 0, sent.stderr
        assert f"sent run {run_id}" in sent.stdout
        assert not folder.exists()
        assert_whole(uri, run_id, STEPS)
        listed = run_command(
            "gdfit-compare", "--experiment", "gdfit", "--tracking-uri", uri, cwd=tmp_path
        )
        assert listed.returncode == 0, listed.stderr
        statuses = [r.info.status for r in MlflowClient(uri).search_runs(["1"])]
        assert "RUNNING" not in statuses, statuses


def test_a_read_only_artifact_folder_fails_the_run_in_one_line_and_loses_nothing(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with small_disk(tmp_path / "artifacts") as artifacts:
        short = ["train.steps=300", f"tracking.uri={uri}"]
        assert run_command("gdfit-train", *short, cwd=tmp_path).returncode == 0
        subprocess.run(["mount", "-o", "remount,ro", str(artifacts)], check=True)

        done = run_command("gdfit-train", *short, cwd=tmp_path)
        assert done.returncode == 1
        line = one_error_line(done.stderr)
        assert "Read-only file system" in line
        folder = kept_folder(line)
        assert folder.parent == tmp_path / "unsent"  # beside the store
        # The store itself answers: the run says what happened rather than staying RUNNING.
        run = MlflowClient(uri).get_run(folder.name)
        assert run.info.status == "FAILED"
        assert run.data.tags["gdfit.unsent"] == str(folder)

        # A run that failed on its own (diverged) keeps its reason through the kept end.
        diverged = run_command("gdfit-train", *short, "optimizer.lr=1e-4", cwd=tmp_path)
        assert diverged.returncode == 1 and "diverged" in one_error_line(diverged.stderr)
        failed = kept_folder(diverged.stderr)

        early = run_command("gdfit-send", str(folder), cwd=tmp_path)  # still read-only
        assert early.returncode == 1 and f"{folder} is kept for a retry" in early.stderr
        assert (folder / "files" / "loss.npz").is_file()

        subprocess.run(["mount", "-o", "remount,rw", str(artifacts)], check=True)
        sent = run_command("gdfit-send", str(folder), cwd=tmp_path)
        assert sent.returncode == 0, sent.stderr
        whole = MlflowClient(uri).get_run(folder.name)
        assert whole.info.status == "FINISHED"
        assert not {"gdfit.unsent", "gdfit.error"} & set(whole.data.tags)
        assert len(saved_curve(uri, folder.name).steps) == 300
        sent = run_command("gdfit-send", "--tracking-uri", uri, cwd=tmp_path)  # what is left
        assert sent.returncode == 0 and f"sent run {failed.name}" in sent.stdout, sent.stderr
        run = MlflowClient(uri).get_run(failed.name)
        assert run.info.status == "FAILED" and "diverged" in run.data.tags["gdfit.error"]
        assert "gdfit.unsent" not in run.data.tags
        again = run_command("gdfit-send", "--tracking-uri", uri, cwd=tmp_path)
        assert again.returncode == 0 and "nothing to send" in again.stdout


def test_a_hung_server_mid_run_keeps_the_runs_end_until_gdfit_send(tmp_path):
    """SIGSTOP: the server accepts connections and never answers."""
    env = {
        "HOME": str(tmp_path / "home"),
        "XDG_STATE_HOME": "",
        "GDFIT_SERVER_WAIT": "3",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "1",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    }
    folder = tmp_path / "server"
    folder.mkdir()
    with mlflow_server(folder) as (url, server):
        proc = start_long_run(url, tmp_path, env)
        os.killpg(server.pid, signal.SIGSTOP)  # the server and its workers
        try:
            began = time.monotonic()
            _, stderr = proc.communicate(timeout=300)
            waited = time.monotonic() - began
        finally:
            os.killpg(server.pid, signal.SIGCONT)

        assert proc.returncode == 1
        line = one_error_line(stderr)
        assert "no answer" in line
        assert waited < 60  # bounded by GDFIT_SERVER_WAIT and the HTTP timeout, not minutes
        kept = kept_folder(line)
        sent = run_command("gdfit-send", "--tracking-uri", url, cwd=tmp_path, env=env)
        assert sent.returncode == 0, sent.stderr
        assert_whole(url, kept.name, STEPS)


def test_gdfit_send_refuses_what_it_cannot_send_in_one_line(tmp_path):
    junk = tmp_path / "unsent" / "abc"
    junk.mkdir(parents=True)
    done = run_command("gdfit-send", str(junk), cwd=tmp_path)
    assert done.returncode == 2
    assert "is not a folder gdfit kept unsent data in" in done.stderr
    assert "Traceback" not in done.stderr
    assert junk.exists()  # nothing removed that was not sent


def test_a_password_in_the_store_address_is_never_written_down(tmp_path, monkeypatch):
    from gdfit import outbox
    from gdfit.errors import UsageError
    from gdfit.send import send

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    folder = outbox.keep(
        "http://alice:s3cret-pw@127.0.0.1:1", "0" * 32, "run", "FINISHED", "why", [], {}, None
    )
    assert folder.is_relative_to(tmp_path / "gdfit" / "unsent")
    assert "s3cret-pw" not in (folder / outbox.FILE).read_text()
    with pytest.raises(UsageError, match="give the address with --tracking-uri"):
        send(folder)
    assert folder.exists()


def test_gdfit_send_takes_only_this_users_finished_folders(tmp_path, monkeypatch):
    from gdfit import outbox

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    whole = outbox.keep(uri, "a" * 32, "run", "FINISHED", "why", [], {}, None)
    building = whole.parent / f".{'b' * 32}.partial-1"  # another process still writing it
    building.mkdir()
    (building / outbox.FILE).write_text("{}")
    assert outbox.found(uri) == [whole]
    assert outbox.found("sqlite:////elsewhere/mlflow.db") == []  # another store's: not sent
    private = outbox.places(uri)[-1]
    assert private.name == f"gdfit-unsent-{os.getuid()}"
    assert outbox.usable(private) and private.stat().st_mode & 0o077 == 0


@pytest.fixture
def kept(tmp_path, monkeypatch):
    """A run's end kept on disk as a store that refused it leaves it: (store, run id, folder)."""
    from mlflow.entities import Metric

    from gdfit import outbox

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("kept")).info.run_id
    files = tmp_path / "staged"
    files.mkdir()
    (files / "config.yaml").write_text("train:\n  steps: 3\n")
    metrics = [Metric("loss", 1.5, 1, 0), Metric("final_loss", 1.5, 1, 0)]
    folder = outbox.keep(uri, run_id, "run", "FINISHED", "why", metrics, {"a": "b"}, files)
    return uri, run_id, folder


TAMPERED = [
    # (what is changed in unsent.json, what the one line says)
    ({"metrics": [["loss", 1.5, 1]]}, "a metric must be [key, value, timestamp, step]"),
    ({"metrics": None}, "metrics must be a list (got null)"),
    ({"metrics": [["loss", "1.5", 1, 0]]}, "a metric must be [key, value, timestamp, step]"),
    ({"tags": ["a", "b"]}, "tags must be an object of texts"),
    ({"tags": {"a[0]": "b"}}, "tag 'a[0]' must be a key with a text value"),
    ({"store": None}, "store must be text (got None)"),
    ({"status": None}, "status must be one of FINISHED, FAILED, KILLED (got None)"),
    ({"run_id": "../../../etc"}, "run_id must be an MLflow run id, 32 hex digits"),
    ({"end_time": "yesterday"}, "end_time must be milliseconds since 1970 (got 'yesterday')"),
    ({"marks": "gdfit.unsent"}, "marks must be a list of tag keys"),
]


@pytest.mark.parametrize(("change", "says"), TAMPERED, ids=lambda v: str(v)[:40])
def test_a_tampered_folder_is_refused_in_one_line_before_anything_is_sent(kept, change, says):
    import json

    from gdfit import outbox

    uri, run_id, folder = kept
    record = outbox.read(folder) | change
    (folder / outbox.FILE).write_text(json.dumps(record))
    done = run_command("gdfit-send", str(folder), "--tracking-uri", uri, cwd=folder.parent)
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        f"gdfit-send: error: {folder} is not a folder gdfit kept unsent data in: {says}"
        + done.stderr.partition(says)[2]
    )
    assert done.stderr.count("\n") == 1 and "retry" not in done.stderr
    client = MlflowClient(uri)
    assert client.list_artifacts(run_id) == [] and client.get_run(run_id).info.status == "RUNNING"
    assert folder.exists()


def test_a_link_in_a_kept_folder_is_not_followed(kept, tmp_path):
    uri, run_id, folder = kept
    (tmp_path / "private").write_text("not for the store")
    (folder / "files" / "extra.txt").symlink_to(tmp_path / "private")
    done = run_command("gdfit-send", str(folder), "--tracking-uri", uri, cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "files/extra.txt is not a plain file" in done.stderr
    assert MlflowClient(uri).list_artifacts(run_id) == []


def test_one_folder_is_sent_by_one_gdfit_send_at_a_time(kept, tmp_path):
    from filelock import FileLock

    uri, run_id, folder = kept
    with FileLock(str(folder.parent / f".{folder.name}.sending")):  # a send under way
        busy = run_command("gdfit-send", str(folder), "--tracking-uri", uri, cwd=tmp_path)
    assert busy.returncode == 1
    assert (
        busy.stderr
        == f"gdfit-send: error: {folder} is being sent by another gdfit-send: left to it\n"
    )
    assert folder.exists()

    both = [
        subprocess.Popen(
            [str(BIN / "gdfit-send"), str(folder), "--tracking-uri", uri],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outcomes = [(p.wait(timeout=120), p.stdout.read(), p.stderr.read()) for p in both]
    assert sum(f"sent run {run_id}" in out for _, out, _ in outcomes) == 1, outcomes
    assert sorted(code for code, _, _ in outcomes) in ([0, 1], [0, 2]), outcomes  # busy, or gone
    for _, _, err in outcomes:
        assert "Traceback" not in err and err.count("\n") <= 1, outcomes
    assert MlflowClient(uri).get_run(run_id).info.status == "FINISHED"
    assert not folder.exists()


def test_a_server_whose_artifact_store_fails_is_said_to_fail_at_that_and_nothing_else(tmp_path):
    """The server answers, but every file upload gets HTTP 500 (its artifact store is away, as
    S3 in an outage): the lines say the files could not be stored, never that the server is
    back or gave no answer, and the run's end is kept until gdfit-send."""
    env = {"HOME": str(tmp_path / "home"), "XDG_STATE_HOME": "", "GDFIT_SERVER_WAIT": "3"}
    folder = tmp_path / "server"
    folder.mkdir()
    (folder / "artifacts").write_text("")  # where the server puts files: not a folder
    with mlflow_server(folder) as (url, _):
        done = run_command(
            "gdfit-train", "train.steps=300", f"tracking.uri={url}", cwd=tmp_path, env=env
        )
        assert done.returncode == 1
        line = one_error_line(done.stderr)
        assert f"cannot use the MLflow store at {url}: no file stored for 3 s (HTTP 500" in line
        warned = f"gdfit: warning: the MLflow server at {url} cannot store files (HTTP 500"
        assert done.stderr.startswith(warned), done.stderr
        for untrue in ("is back", "no answer", "is unavailable"):
            assert untrue not in done.stderr, done.stderr
        kept = kept_folder(line)
        (folder / "artifacts").unlink()
        (folder / "artifacts").mkdir()
        sent = run_command("gdfit-send", str(kept), "--tracking-uri", url, cwd=tmp_path, env=env)
        assert sent.returncode == 0, sent.stderr
        run = MlflowClient(url).get_run(kept.name)
        assert run.info.status == "FINISHED" and "gdfit.unsent" not in run.data.tags
