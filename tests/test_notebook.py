"""scripts/tour.ipynb runs top to bottom in a fresh Jupyter kernel, headless, and keeps MLflow's
console noise out of its cells; in git it carries no outputs."""

from pathlib import Path

import nbformat
import pytest
from mlflow.tracking import MlflowClient
from nbclient import NotebookClient

TOUR = Path(__file__).resolve().parents[1] / "scripts" / "tour.ipynb"


def test_the_notebook_is_stored_without_outputs():
    notebook = nbformat.read(TOUR, as_version=4)
    nbformat.validate(notebook)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The tour run with few steps (its parameter cell reads GDFIT_TOUR_STEPS) into a scratch
    store; any failing cell raises CellExecutionError here."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('tour') / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GDFIT_TOUR_STEPS", "300")
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        notebook = nbformat.read(TOUR, as_version=4)
        client = NotebookClient(
            notebook,
            timeout=300,
            kernel_name="python3",
            resources={"metadata": {"path": str(TOUR.parent)}},
        )
        client.execute()
    return notebook, uri


def test_the_notebook_runs_top_to_bottom(executed):
    notebook, uri = executed
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code)
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert errors == []
    client = MlflowClient(uri)
    tour = client.get_experiment_by_name("tour")
    runs = client.search_runs([tour.experiment_id])
    parents = [r for r in runs if r.data.tags.get("gdfit.sweep") == "true"]
    fits = [r for r in runs if r not in parents]
    assert len(parents) == 1 and len(fits) == 9  # 3 ways, the example's lines, 4 rates, momentum
    assert {r.data.params["train.steps"] for r in fits} == {"300"}


def test_cells_show_bars_and_summaries_not_console_noise(executed):
    notebook, _ = executed
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    stderr = "".join(o.text for o in outputs if o.output_type == "stream" and o.name == "stderr")
    # gdfit's own lines only (where a run went, after the example's lines): no MLflow, alembic
    # or tqdm warnings
    assert all(line.startswith("gdfit: ") for line in stderr.splitlines())
    pages = [o.data["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert any("least-squares optimum" in p and p.count("<img") == 2 for p in pages)  # a Fit
    printed = "".join(o.text for o in outputs if o.output_type == "stream")
    assert "300/300" in printed  # progress bars, finished
    assert "Result: y = " in printed  # the one cell that asks for the example's lines
