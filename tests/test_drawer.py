"""gdfit-train's drawer (gdfit.drawer): the figures it draws are the run's own, byte for byte;
one that fails costs time only; nothing is left behind when the command ends."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import BIN
from mlflow.tracking import MlflowClient

from gdfit import drawer, plots


def drawn(k: int) -> dict:
    """What a run hands the figures: its data, fitted curve, loss curve and frames."""
    x = np.linspace(-np.pi, np.pi, 2000)
    y, fitted = np.sin(x), (0.85 + 0.01 * k) * x - 0.093 * x**3
    steps = np.arange(5000)
    return {
        "x": x,
        "y": y,
        "fitted": fitted,
        "target": "sin",
        "run_name": f"numpy-sgd-lr1e-06-seed{k}",
        "formula": f"y = 0 + {0.85 + 0.01 * k:.4g} x + 0 x^2 + -0.093 x^3",
        "steps": steps,
        "losses": np.exp(-steps / (300 + 50 * k)) * 2e4 + 8.8,
        "optimal_loss": 8.8,
        "snapshots": [(s, fitted * min(1.0, s / 1000)) for s in (0, 10, 100, 1000, 5000)],
    }


def assert_same(apart: dict, here: dict) -> None:
    assert apart["fit.png"] == here["fit.png"] and apart["loss.png"] == here["loss.png"]
    assert [s for s, _ in apart["frames"]] == [s for s, _ in here["frames"]]
    pairs = zip(apart["frames"], here["frames"], strict=True)
    assert all(np.array_equal(a, b) for (_, a), (_, b) in pairs)


@pytest.fixture
def started(monkeypatch):
    """A drawer forked from this process, as gdfit-train forks one; stopped and reaped after."""
    monkeypatch.delenv(drawer.ENV, raising=False)
    monkeypatch.setattr(drawer, "_warmed", False)
    drawer.start()
    assert drawer.running()
    pid = drawer._pid
    yield pid
    drawer.stop()
    with pytest.raises(ChildProcessError):  # reaped: no zombie left
        os.waitpid(pid, os.WNOHANG)


def test_the_drawers_figures_are_the_ones_drawn_here(started):
    first = drawn(0)
    drawer.warm(first["x"], first["y"], "sin", first["run_name"], "y = a + b x", 5000)
    for k in range(3):  # warmed, then jobs of a sweep
        assert_same(drawer.draw(**drawn(k))(), plots.run_figures(**drawn(k)))
    assert drawer.running()


def test_a_drawer_that_died_costs_time_only(started, capsys):
    os.kill(started, signal.SIGKILL)
    assert_same(drawer.draw(**drawn(1))(), plots.run_figures(**drawn(1)))
    assert not drawer.running()  # not asked again: the runs draw their own
    said = "gdfit: warning: the figure drawer is gone; this command draws its figures itself\n"
    assert capsys.readouterr().err == said
    assert_same(drawer.draw(**drawn(2))(), plots.run_figures(**drawn(2)))


def test_a_drawer_that_cannot_draw_leaves_the_error_to_the_run(started):
    broken = drawn(0) | {"x": np.linspace(0, 1, 7)}  # x and y of different lengths
    with pytest.raises(ValueError):
        drawer.draw(**broken)()  # the drawer failed; drawn here, it fails the same way
    assert drawer.running()  # the drawer is fine: the next job's figures are its own
    assert_same(drawer.draw(**drawn(1))(), plots.run_figures(**drawn(1)))


def big(k: int) -> dict:
    """A request and an answer larger than the socket's buffer: seven frames, 4,000 steps."""
    request = drawn(k)
    fitted, steps = request["fitted"], np.arange(4000)
    frames = [(s, fitted * min(1.0, s / 1000)) for s in (0, 1, 10, 100, 1000, 2000, 3999)]
    return request | {"steps": steps, "losses": np.exp(-steps / 300) * 2e4, "snapshots": frames}


def test_a_hung_drawer_costs_at_most_its_wait(started, monkeypatch, capsys):
    drawer.stop()
    monkeypatch.setattr(drawer, "WAIT", 1.0)
    drawer.start()
    hung = drawer._pid
    os.kill(hung, signal.SIGSTOP)  # stopped: it reads nothing, answers nothing
    began = time.monotonic()
    assert_same(drawer.draw(**big(0))(), plots.run_figures(**drawer.thinned(big(0))))
    assert time.monotonic() - began < 10 and not drawer.running()
    assert "the figure drawer gave no answer in 1 s" in capsys.readouterr().err
    with pytest.raises(ChildProcessError):  # killed and reaped
        os.waitpid(hung, os.WNOHANG)


def test_gdfit_train_logs_the_same_figures_with_its_drawer_and_leaves_no_process(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    timings = tmp_path / "timings.jsonl"
    runs = {}
    for on in ("1", "0"):
        proc = subprocess.Popen(
            [str(BIN / "gdfit-train"), "train.steps=300", f"tracking.uri={uri}"],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=os.environ | {drawer.ENV: on, "GDFIT_TIMINGS": str(timings)},
            start_new_session=True,  # the command and its drawer: one process group
        )
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
        with pytest.raises(ProcessLookupError):  # the drawer went with the command
            os.killpg(proc.pid, 0)
        line = json.loads(timings.read_text().splitlines()[-1])
        assert line["drawer"] is (on == "1")
        runs[on] = line["run_id"]
    client = MlflowClient(uri)

    def files(run_id: str) -> dict[str, bytes]:
        folder = Path(client.download_artifacts(run_id, "", str(tmp_path / run_id)))
        found = {p.name: p.read_bytes() for p in folder.glob("*.png")}
        # frames: fit+step+<step>+timestamp+<ms>+<uuid>.png and its +compressed.webp
        for p in (folder / "images").iterdir():
            parts = p.name.split("+")
            found[f"frame {parts[2]}{p.suffix}"] = p.read_bytes()
        return found

    apart, here = files(runs["1"]), files(runs["0"])
    assert {"fit.png", "loss.png", "frame 0.png", "frame 300.webp"} <= set(apart)
    assert apart == here


def test_an_answer_a_failed_job_left_unread_is_not_the_next_jobs(started):
    drawer.draw(**big(0))  # a job that failed between asking and reading: the drawer waits
    assert_same(drawer.draw(**big(1))(), plots.run_figures(**big(1)))
    assert drawer.running()


def test_a_large_run_sends_only_what_its_figures_show(started):
    """10^6 points and 10^6 steps: each line goes to the drawer as at most ~4,000 points, the
    first included, and the figures still come back the same as drawn here."""
    n = 1_000_000
    big = drawn(0) | {"x": np.linspace(-np.pi, np.pi, n), "steps": np.arange(n)}
    big |= {"y": np.sin(big["x"]), "fitted": 0.85 * big["x"] - 0.093 * big["x"] ** 3}
    big |= {"losses": np.exp(-big["steps"] / 1e5) * 2e4 + 8.8, "snapshots": [(0, big["y"])]}
    sent = drawer.thinned(big)
    for name in ("x", "y", "fitted", "steps", "losses"):
        assert sent[name][0] == big[name][0] and len(sent[name]) <= drawer.SENT
    assert len(sent["snapshots"][0][1]) == len(sent["x"])
    assert_same(drawer.draw(**big)(), plots.run_figures(**sent))


@pytest.mark.parametrize(
    ("args", "drawer_started"),
    [
        (["train.steps=300"], True),
        (["-m", "train.seed=0,1", "-cn", "config"], True),
        (["-m", "hydra/launcher=basic", "train.seed=0,1"], True),
        (["--cfg", "job"], False),
        (["--cfg=job"], False),
        (["-cjob"], False),
        (["--info=all"], False),
        (["--help"], False),
        (["-m", "hydra/launcher=joblib", "train.seed=0,1"], False),  # its workers draw their own
    ],
)
def test_a_drawer_starts_only_for_runs_drawn_in_the_commands_process(args, drawer_started):
    from gdfit.train import draws_here

    assert draws_here(args) is drawer_started
