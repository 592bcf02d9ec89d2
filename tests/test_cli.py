"""The installed command, run as a user runs it, with a tiny budget (cleanrl-style)."""

import pytest
from conftest import run_command
from mlflow.tracking import MlflowClient


def test_console_script_prints_the_example_output_and_leaves_no_files(tmp_path):
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    work = tmp_path / "work"
    work.mkdir()
    out = run_command("gdfit-train", "train.steps=250", f"tracking.uri={uri}", cwd=work)
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
        "import sys; from gdfit.cli import main; main(); "
        "assert 'torch' not in sys.modules, 'the numpy backend imported torch'"
    )
    out = run_command(None, "-c", code, "train.steps=3", f"tracking.uri={uri}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    out = run_command(
        None,
        "-m",
        "gdfit.cli",
        "backend=tensor",
        "train.steps=3",
        cwd=tmp_path,
        env={"MLFLOW_TRACKING_URI": uri},
    )
    assert out.returncode == 0, out.stderr
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("gdfit").experiment_id])
    assert sorted(r.data.tags["gdfit.backend"] for r in runs) == ["numpy", "tensor"]


def test_a_bad_setting_is_one_line_and_creates_no_run(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = run_command("gdfit-train", "train.steps=0", f"tracking.uri={uri}", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip() == "gdfit: error: train.steps: must be >= 1 (got 0)"
    assert not (tmp_path / "mlflow.db").exists()


def test_version_names_gdfit_and_its_libraries(tmp_path):
    out = run_command("gdfit-train", "--version", cwd=tmp_path)
    assert out.returncode == 0
    assert out.stdout.startswith("gdfit ") and "hydra-core 1.3" in out.stdout


def test_setting_mistakes_get_the_fix_in_one_line(tmp_path):
    cases = {
        # a key without its group: the dotted key that has that name
        ("lr=1e-3",): "lr: no such setting; did you mean optimizer.lr?",
        # several values without -m: keep Hydra's sweep hint
        ("backend=numpy,tensor",): "to run each one, sweep: gdfit-train -m backend=numpy,tensor",
        # a list for a group would merge two options into one run
        ("backend=[numpy,tensor]",): "backend: takes one option, not a list; to run each, "
        "sweep: -m backend=numpy,tensor",
    }
    for args, says in cases.items():
        out = run_command("gdfit-train", *args, cwd=tmp_path)
        assert out.returncode == 2, (args, out.stderr)
        assert says in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert out.stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_a_run_ends_by_saying_where_it_went_and_a_sweep_job_by_one_line(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = run_command("gdfit-train", "train.steps=50", f"tracking.uri={uri}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("gdfit").experiment_id
    (run,) = client.search_runs([experiment])
    run_id = run.info.run_id
    assert out.stdout.splitlines()[-1].startswith("Result: y = ")  # stdout: the example's own
    assert out.stderr.splitlines() == [
        f"gdfit: run {run_id} FINISHED, in {uri}",
        f"gdfit: view it: gdfit-ui --tracking-uri {uri}, then http://127.0.0.1:5000/gdfit#/experiments/"
        f"{experiment}/runs/{run_id}?workflowType=machine_learning",
        f"gdfit: compare it: gdfit-compare {run_id[:8]} --tracking-uri {uri}; "
        f"rerun it: gdfit-rerun {run_id[:8]} --tracking-uri {uri}",
    ]
    out = run_command(
        "gdfit-train",
        "-m",
        "backend=numpy,tensor",
        "train.steps=50",
        f"tracking.uri={uri}",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    jobs = [line for line in out.stdout.splitlines() if not line.startswith("gdfit: ")]
    assert [line.split()[1] for line in jobs] == [
        "numpy-sgd-lr1e-06-seed0",
        "tensor-sgd-lr1e-06-seed0",
    ]
    runs = {(r.info.run_id[:8], r.info.run_name) for r in client.search_runs([experiment])}
    for line in jobs:  # the run id first, then its name, loss and gap: no loss lines
        run_id, name, *rest = line.split()
        assert (run_id, name) in runs and rest[0::2] == ["final_loss", "gap"]
    assert "[HYDRA]" not in out.stdout + out.stderr and "\x1b[" not in out.stderr
    assert "gdfit: view them: gdfit-ui" in out.stdout and "viewStateShareKey=gdfit" in out.stdout


def test_help_fits_the_terminal_and_lists_only_what_a_user_chooses(tmp_path):
    out = run_command(
        "gdfit-train", "optimizer=adam", "--help", cwd=tmp_path, env={"COLUMNS": "80"}
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "  optimizer: adam, momentum, rmsprop, sgd" in lines
    assert "  backend: autograd, module, numpy, tensor" in lines
    assert "schema" not in out.stdout and "hydra:" not in out.stdout
    assert "  name: adam" in lines and "  - 0.999" in lines  # the config the choice composes
    assert "  gdfit-train hparams_search=lr_optuna" in lines
    assert list(tmp_path.iterdir()) == []  # nothing run, nothing written


@pytest.mark.parametrize(
    "command", ["gdfit-compare", "gdfit-rerun", "gdfit-register", "gdfit-ui", "gdfit-send"]
)
def test_every_commands_help_fits_80_columns(command, tmp_path):
    out = run_command(command, "--help", cwd=tmp_path, env={"COLUMNS": "80"})
    assert out.returncode == 0, out.stderr
    assert max(len(line) for line in out.stdout.splitlines()) <= 80, out.stdout
