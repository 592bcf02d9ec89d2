"""`gdfit-compare` read from a terminal, a script and a notebook: runs found by id, prefix or
name; a table that stays readable at 80 columns; csv, markdown and json; one-line errors."""

import csv
import io
import json
import re
from pathlib import Path

import pytest
from conftest import run_command, sweep_runs


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """An optimizer sweep (the widest table: every optimizer setting differs) and two single
    runs that share a name."""
    folder = tmp_path_factory.mktemp("compare")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    out = run_command(
        "gdfit-train",
        "-m",
        "optimizer=sgd,momentum,adam",
        "train.steps=200",
        f"tracking.uri={uri}",
        cwd=folder,
    )
    assert out.returncode == 0, out.stderr
    for seed in (1, 2):
        out = run_command(
            "gdfit-train",
            "train.steps=50",
            f"train.seed={seed}",
            "tracking.run_name=twice",
            f"tracking.uri={uri}",
            cwd=folder,
        )
        assert out.returncode == 0, out.stderr
    client, parent, children = sweep_runs(uri)
    experiment = parent.info.experiment_id
    twice = client.search_runs(
        [experiment], "attributes.run_name = 'twice'", order_by=["attributes.start_time DESC"]
    )
    return uri, folder, parent, children, twice


def compare(store, *args, env=None):
    uri, folder, *_ = store
    return run_command("gdfit-compare", *args, "--tracking-uri", uri, cwd=folder, env=env)


def test_table_fits_80_columns_and_never_drops_what_tells_runs_apart(store):
    """An optimizer sweep at 80 columns: every run by its id and name, whole final loss, and
    each optimizer's own settings (momentum, betas, eps) folded into one column, short."""
    _, _, parent, children, _ = store
    out = compare(store, "--parent", parent.info.run_id, env={"COLUMNS": "80"})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in out.stdout
    assert lines[0] == "same in every run: model polynomial, backend numpy, seed 0, status FINISHED"
    assert lines[1].split() == ["run_id", "run_name", "settings", "final_loss", "loss_gap"]
    for child in children:  # every run is told apart by its id and name, with its whole loss
        (row,) = [line for line in lines if line.startswith(child.info.run_id[:8])]
        assert child.info.run_name in row
        assert f"{child.data.metrics['final_loss']:.8g}" in row
    settings = " ".join(line[10:].split("  ")[-1] for line in lines[3:])
    for part in ("momentum=0.9", "betas=[0.9,0.999]", "eps=1e-8", "lr=1e-3", "lr=1e-6"):
        assert part in " ".join(out.stdout.split()), part
    assert "1e-06" not in settings and "0.001" not in settings  # values as short as they go
    assert lines[-1] == "(not shown at 80 columns: coefficients, train_seconds; --format csv: all)"
    # Sorted best first by default.
    shown = [float(m) for m in re.findall(r"\s(\d+\.\d+)\s+\S+\s*$", out.stdout, re.M)]
    assert shown == sorted(shown) and len(shown) == 3


def test_wide_table_shows_every_column(store):
    _, _, parent, children, _ = store
    out = compare(store, "--parent", parent.info.run_id)
    assert out.returncode == 0, out.stderr
    header = next(line for line in out.stdout.splitlines() if line.startswith("run_id")).split()
    # 240 columns (a pipe) hold all but the settings every run shares, shown above.
    assert out.stdout.startswith("same in every run: model polynomial\n")
    assert header[:6] == ["run_id", "run_name", "backend", "optimizer", "lr", "seed"]
    assert {"optimizer.momentum", "optimizer.betas", "coefficients", "train_seconds"} <= set(header)


def test_csv_json_and_markdown_carry_full_values_and_sort(store):
    _, _, parent, children, _ = store
    by_id = {c.info.run_id: c for c in children}
    out = compare(store, "--parent", parent.info.run_id, "--format", "csv", "--sort=-lr")
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert [float(r["lr"]) for r in rows] == sorted((float(r["lr"]) for r in rows), reverse=True)
    for row in rows:  # full precision, not the table's rounding
        assert float(row["final_loss"]) == by_id[row["run_id"]].data.metrics["final_loss"]
    out = compare(store, "--parent", parent.info.run_id, "--format", "json")
    records = json.loads(out.stdout)
    assert {r["run_id"] for r in records} == set(by_id)
    assert [r["final_loss"] for r in records] == sorted(r["final_loss"] for r in records)
    out = compare(store, "--parent", parent.info.run_id, "--format", "markdown")
    lines = out.stdout.splitlines()
    assert lines[0].startswith("| run_id | run_name |") and lines[1].startswith("|---|")
    assert len(lines) == 2 + len(children)
    out = compare(store, "--parent", parent.info.run_id, "--sort", "nosuch")
    assert out.returncode == 2
    assert out.stderr.startswith("gdfit: error: --sort nosuch: no such column; choose one of")


def test_runs_are_found_by_id_prefix_or_name(store):
    _, _, parent, children, twice = store
    child = children[0]
    out = compare(store, child.info.run_id[:7], "--format", "csv")
    assert out.returncode == 0, out.stderr
    assert [r["run_id"] for r in csv.DictReader(io.StringIO(out.stdout))] == [child.info.run_id]
    # A run name means the newest run of that name, and the command says which it took.
    out = compare(store, "twice", "--format", "csv")
    assert out.returncode == 0, out.stderr
    assert [r["run_id"] for r in csv.DictReader(io.StringIO(out.stdout))] == [twice[0].info.run_id]
    assert f"names 2 runs; using the newest, {twice[0].info.run_id}" in out.stderr
    # A sweep parent named directly stands for its jobs.
    out = compare(store, parent.info.run_id[:10], "--format", "csv")
    assert len(list(csv.DictReader(io.StringIO(out.stdout)))) == len(children)
    # Nothing matches: one line, exit 2.
    out = compare(store, "0000deadbeef")
    assert out.returncode == 2
    assert "no run '0000deadbeef'" in out.stderr and "Traceback" not in out.stderr
    # A prefix too short to look up says so, and how long it must be.
    out = compare(store, child.info.run_id[:3])
    assert out.returncode == 2
    assert out.stderr.endswith("an id prefix needs at least 4 characters\n"), out.stderr


def test_an_ambiguous_prefix_lists_the_candidates(tmp_path):
    # Two real runs whose ids share their first 6 digits: MLflow's store draws run ids from
    # uuid.uuid4, which this script pins for the two create_run calls.
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code = (
        "import uuid, itertools, sys; from mlflow.tracking import MlflowClient\n"
        "ids = iter(['abcdef' + '0' * 25 + '1', 'abcdef' + '0' * 25 + '2'])\n"
        "c = MlflowClient(sys.argv[1]); e = c.create_experiment('gdfit')\n"
        "uuid.uuid4 = lambda: uuid.UUID(next(ids))\n"
        "c.create_run(e, run_name='first'); c.create_run(e, run_name='second')\n"
    )
    assert run_command(None, "-c", code, uri, cwd=tmp_path).returncode == 0
    out = run_command("gdfit-compare", "abcdef", "--tracking-uri", uri, cwd=tmp_path)
    assert out.returncode == 2
    assert "run id prefix 'abcdef' is ambiguous" in out.stderr
    assert "abcdef000000 first" in out.stderr and "abcdef000000 second" in out.stderr
    out = run_command(
        "gdfit-compare",
        "abcdef" + "0" * 25 + "2",
        "--tracking-uri",
        uri,
        "--format",
        "json",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert [r["run_name"] for r in json.loads(out.stdout)] == ["second"]


def test_unknown_experiment_and_bad_out_paths_are_one_line(store, tmp_path):
    out = compare(store, "--experiment", "nosuch")
    assert out.returncode == 2
    assert out.stderr.strip() == (
        f"gdfit: error: no experiment 'nosuch' in {store[0]}; experiments there: Default, gdfit"
    )
    for path, says in [
        (tmp_path / "missing" / "x.png", "does not exist"),
        (tmp_path / "x.bmpx", "unknown file type"),
    ]:
        out = compare(store, "--experiment", "gdfit", "--out", str(path))
        assert out.returncode == 2, out.stderr
        assert says in out.stderr and len(out.stderr.strip().splitlines()) == 1
        assert not path.exists()
    # A folder gets comparison.png inside it, and the command says so.
    out = compare(store, "--experiment", "gdfit", "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert f"wrote {tmp_path / 'comparison.png'}" in out.stdout
    assert (tmp_path / "comparison.png").read_bytes()[:4] == b"\x89PNG"
    assert not (tmp_path.parent / f"{tmp_path.name}.png").exists()


def test_figures_writes_each_runs_fit_and_loss_drawn_from_the_store(store, tmp_path):
    """--figures DIR: DIR/<run name>/fit.png and loss.png, the pixels each run logged."""
    from io import BytesIO

    import numpy as np
    from mlflow.tracking import MlflowClient
    from PIL import Image

    def pixels(data: bytes):
        with Image.open(BytesIO(data)) as image:
            return np.asarray(image.convert("RGBA"))

    uri, _, parent, children, _ = store
    client = MlflowClient(uri)
    out = compare(store, "--parent", parent.info.run_id, "--figures", str(tmp_path / "figs"))
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == sorted(
        c.info.run_name for c in children
    )
    for child in children:
        for name in ("fit.png", "loss.png"):
            path = tmp_path / "figs" / child.info.run_name / name
            assert str(path) in out.stdout  # the command says what it wrote
            logged = Path(client.download_artifacts(child.info.run_id, name, str(tmp_path)))
            assert np.array_equal(pixels(path.read_bytes()), pixels(logged.read_bytes())), path


def test_commands_that_read_runs_refuse_a_store_that_is_not_there(tmp_path):
    """A mistyped --tracking-uri is said in one line, and no empty store is left behind."""
    missing = tmp_path / "typo" / "mlflow.db"
    for command in (["gdfit-compare", "abcd1234"], ["gdfit-rerun", "abcd1234"]):
        out = run_command(*command, "--tracking-uri", f"sqlite:///{missing}", cwd=tmp_path)
        assert out.returncode == 2, out.stderr
        assert out.stderr == (
            f"gdfit: error: --tracking-uri: no MLflow store at {missing}: check the path\n"
        )
    assert not missing.parent.exists()
