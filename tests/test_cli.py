"""The installed command, run as a user runs it, with a tiny budget (cleanrl-style)."""

import os
import subprocess
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

BIN = Path(sys.executable).parent


def gdfit(*args, cwd, env=None, exe="gdfit-train"):
    command = [str(BIN / exe), *args] if exe else [sys.executable, *args]
    return subprocess.run(
        command,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_console_script_prints_the_example_output_and_leaves_no_files(tmp_path):
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    work = tmp_path / "work"
    work.mkdir()
    out = gdfit("train.steps=250", f"tracking.uri={uri}", cwd=work)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert [line.split()[0] for line in lines[:3]] == ["0", "100", "200"]
    assert float(lines[0].split()[1]) > float(lines[2].split()[1])
    assert lines[-1].startswith("Result: y = ") and lines[-1].endswith(" x^3")
    assert list(work.iterdir()) == []  # everything went to MLflow
    (run,) = MlflowClient(uri).search_runs(
        [MlflowClient(uri).get_experiment_by_name("gdfit").experiment_id]
    )
    assert run.info.status == "FINISHED" and run.data.params["train.steps"] == "250"


def test_module_entry_point_finds_its_configs_from_any_directory(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code = (
        "import sys; from gdfit.train import main; main(); "
        "assert 'torch' not in sys.modules, 'the numpy backend imported torch'"
    )
    out = gdfit("-c", code, "train.steps=3", f"tracking.uri={uri}", cwd=tmp_path, exe=None)
    assert out.returncode == 0, out.stderr
    out = gdfit(
        "-m",
        "gdfit.train",
        "backend=tensor",
        "train.steps=3",
        cwd=tmp_path,
        exe=None,
        env={"MLFLOW_TRACKING_URI": uri},
    )
    assert out.returncode == 0, out.stderr
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("gdfit").experiment_id])
    assert sorted(r.data.tags["gdfit.backend"] for r in runs) == ["numpy", "tensor"]


def test_a_bad_setting_is_one_line_and_creates_no_run(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = gdfit("train.steps=0", f"tracking.uri={uri}", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip() == "gdfit: error: train.steps: must be >= 1 (got 0)"
    assert not (tmp_path / "mlflow.db").exists()
