"""gdfit's own view of its experiment in the MLflow UI, and the address that opens it.

MLflow 3.17's UI keeps a saved, shareable view of an experiment's runs page as the experiment
tag `mlflow.sharedViewState.<key>`, and opens it at
`#/experiments/<id>/runs?viewStateShareKey=<key>`.
Its "Save as new view" action writes `{"name", "createdAt", "updatedAt", "state"}`, where
`state` is the page state as JSON text (the UI deflates it; it reads plain JSON as well): the
search facets (filter, sort) and the UI state (columns, grouping, chart cards and sections).
`VIEW_STATE` is that state as read back from a tag the UI wrote, set the way gdfit wants it.
The view lives in the store, so the same address works on a team server.

The experiment page opens in MLflow's GenAI layout unless its address says
`workflowType=machine_learning`; the experiment tag `mlflow.experimentKind` is read only by UI
builds without the GenAI/training switch. `address()` says the first, `ensure()` sets both.
"""

from __future__ import annotations

import json
import time

from gdfit.redaction import public_uri
from gdfit.uiapp import landing

VIEW_KEY = "gdfit"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"
VIEW_NAME = "gdfit: best run first (by loss_gap), loss on log axes"
KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"  # the training layout
UI_HOST, UI_PORT = "127.0.0.1", 5000  # where gdfit-ui serves unless told otherwise

# A sweep's parent and its jobs carry the sweep's name in this tag, other runs SINGLE_RUNS: the
# view groups the table by it. (The UI nests children under their parent only while sorted by
# start time, and a best-first sort needs groups instead; runs without the tag fall into
# MLflow's collapsed "Additional runs" group. A parent has no loss_gap: last in its group.)
GROUP_TAG = "gdfit.group"
SINGLE_RUNS = "single runs"

PARAM_COLUMNS = [
    "backend.name",
    "optimizer.name",
    "optimizer.lr",
    "train.seed",
    "backend.dtype",
    "device.name",
    "train.steps",
]
# log10_loss_gap reads at a glance (-7.77); loss_gap itself is printed to 16 digits.
METRIC_COLUMNS = ["final_loss", "log10_loss_gap", "loss_gap", "train_seconds"]
SECTION = "gdfit-charts"
FIT_SECTION = "gdfit-fit"


def _column(group: str, key: str) -> str:
    return f"{group}.`{key}`"


# ag-grid column ids. "Created" carries the run's status icon. The widths keep run names and
# metrics (printed to 16 digits, a gap with its exponent: 1.7763568394002505e-15) whole.
WIDTHS = {"log10_loss_gap": 130, "loss_gap": 215, "train_seconds": 175}
COLUMNS = [
    ("attributes.`Run Name`", 290),
    ("runDateAndNestInfo", 140),
    *((_column("metrics", k), WIDTHS.get(k, 160)) for k in METRIC_COLUMNS),
    *((_column("params", k), 110) for k in PARAM_COLUMNS),
    ("duration", 80),
]


def _card(uuid: str, kind: str, **fields) -> dict:
    """A chart card with the fields the UI's own card classes start from."""
    base = {
        "uuid": uuid,
        "type": kind,
        "runsCountToCompare": 100,
        "metricSectionId": SECTION,
        "deleted": False,
        "isGenerated": False,
    }
    return base | fields


LOSS_CHART = _card(
    "gdfit-loss",
    "LINE",
    displayName="loss",
    metricKey="loss",
    selectedMetricKeys=["loss"],
    lineSmoothness=0,
    xAxisScaleType="log",
    scaleType="log",
    range={},
    xAxisKey="step",
    selectedXAxisMetricKey="",
    yAxisKey="metric",
    yAxisExpressions=[],
    # Every point: MLflow's outlier filter drops a curve's first, highest steps, so the
    # descent would start mid-way (at step ~150 of 2,000). On a log axis a diverged run's
    # ~1e8 takes a few decades above the others and leaves their curves readable.
    ignoreOutliers=False,
    useGlobalXaxisKey=True,
    useGlobalLineSmoothing=True,
)
CHARTS = [
    # Every step on log axes: runs of 2,000 and 30,000 steps share one chart, and the curves'
    # plateaus at the optimum read apart.
    LOSS_CHART,
    # The best run is the lowest point. The scatter chart has no log axis: against log10 of
    # the rate, which spans decades, and log10 of the gap, which spans more.
    _card(
        "gdfit-gap-vs-lr",
        "SCATTER",
        xaxis={"key": "log10_lr", "type": "METRIC"},
        yaxis={"key": "log10_loss_gap", "type": "METRIC"},
    ),
    _card(
        "gdfit-loss-vs-lr",
        "SCATTER",
        xaxis={"key": "log10_lr", "type": "METRIC"},
        yaxis={"key": "final_loss", "type": "METRIC"},
    ),
    # The runs' fit images (gdfit.plots.Frames), each at its own 360 pixels, side by side under
    # its run's name and colour; the slider steps them all. Without the run's parameters: the
    # card would print each run's every parameter above its image (the run page's card does,
    # and its image sits below the card's edge). Step 0 is drawn by every run.
    _card(
        "gdfit-fit-images",
        "IMAGE",
        metricSectionId=FIT_SECTION,
        imageKeys=["fit"],
        step=0,
        showRunParams=False,
    ),
]

VIEW_STATE = {
    # search facets
    "searchFilter": "",
    # Best first within each group: by the gap to the run's own model's optimum, which ranks
    # runs of different models as final_loss ranks runs of one (gdfit.readback.ranking).
    "orderByKey": _column("metrics", "loss_gap"),
    "orderByAsc": True,
    "startTime": "ALL",
    "lifecycleFilter": "Active",
    "datasetsFilter": [],
    "modelVersionFilter": "All Runs",
    # runs table
    "selectedColumns": [_column("metrics", k) for k in METRIC_COLUMNS]
    + [_column("params", k) for k in PARAM_COLUMNS],
    "columnOrder": [column for column, _ in COLUMNS],
    "columnWidths": dict(COLUMNS),
    "runsHiddenMode": "FIRST_10_RUNS",  # the charts draw the table's best 10: a colour each
    "viewMaximized": False,
    "runListHidden": False,
    # Each group row shows its best (lowest) value. Groups start expanded; MLflow's own
    # "Additional runs" group stays folded (expanding it from here misdraws the table).
    "groupBy": {
        "aggregateFunction": "min",
        "groupByKeys": [{"mode": "tag", "groupByData": GROUP_TAG}],
    },
    "groupsExpanded": {},
    "useGroupedValuesInCharts": False,  # a curve per run, not one per group
    # chart view: gdfit's charts first; those MLflow adds for every other metric wait in
    # folded sections below
    "compareRunCharts": CHARTS,
    "compareRunSections": [
        {"uuid": SECTION, "name": "gdfit", "display": True, "isReordered": True, "columns": 2},
        # one card across the section, tall enough for a row of frames, its name and the slider
        {
            "uuid": FIT_SECTION,
            "name": "fit",
            "display": True,
            "isReordered": True,
            "columns": 1,
            "cardHeight": 520,
        },
        {"uuid": "gdfit-model", "name": "Model metrics", "display": False, "isReordered": False},
        {"uuid": "gdfit-system", "name": "System metrics", "display": False, "isReordered": False},
    ],
    "isAccordionReordered": True,
    "hideEmptyCharts": True,
    "globalLineChartConfig": {
        "xAxisKey": "step",
        "lineSmoothness": 0,
        "selectedXAxisMetricKey": "",
    },
}


def group_tag(sweep_name: str | None) -> dict[str, str]:
    """The tag that places a run in the view's groups: its sweep's name, or SINGLE_RUNS."""
    return {GROUP_TAG: sweep_name or SINGLE_RUNS}


def wanted_tags(current: dict[str, str]) -> dict[str, str]:
    """The experiment tags to write so that gdfit's view is there and current; {} if it is."""
    wanted = {}
    if current.get(KIND_TAG) != KIND:
        wanted[KIND_TAG] = KIND
    stored = _envelope(current.get(VIEW_TAG))
    if stored.get("state") != VIEW_STATE:
        now = int(time.time() * 1000)
        envelope = {
            "name": VIEW_NAME,
            "createdAt": stored.get("createdAt", now),
            "updatedAt": now,
            "state": json.dumps(VIEW_STATE, separators=(",", ":")),
        }
        wanted[VIEW_TAG] = json.dumps(envelope, separators=(",", ":"))
    return wanted


def _envelope(value: str | None) -> dict:
    """A stored view with its state parsed; {} when missing or not gdfit's plain JSON (the UI's
    own saves are deflated: "Override saved view" replaces gdfit's view until gdfit's next run)."""
    if value is None:
        return {}
    try:
        envelope = json.loads(value)
        return envelope | {"state": json.loads(envelope["state"])}
    except (TypeError, ValueError, KeyError):
        return {}


def ensure(client, experiment) -> None:
    """Write gdfit's view onto `experiment` (an MLflow Experiment) unless it is there already.

    A view is a convenience: a store that refuses the write (a read-only permission, say) is
    left as it is, and the run goes on.
    """
    for key, value in wanted_tags(experiment.tags).items():
        try:
            client.set_experiment_tag(experiment.experiment_id, key, value)
        except Exception:
            return


def address(uri: str, experiment_id: str, run_id: str | None = None) -> str | None:
    """The address that shows the experiment in gdfit's view (or one run's page).

    An http(s) tracking URI is a server with its own UI: its address, credentials and query
    left out. A local sqlite store is what `gdfit-ui` serves, at its default address. Any other
    store (a database that a server elsewhere reads) has no address gdfit knows: None.
    """
    if uri.startswith(("http://", "https://")):
        base = public_uri(uri).rstrip("/")
    elif uri.startswith("sqlite:///"):
        # gdfit-ui's server: through its landing page, which keeps MLflow's assistant panel
        # from opening over the view (see gdfit.uiapp).
        return landing(page(f"http://{UI_HOST}:{UI_PORT}", experiment_id, run_id))
    else:
        return None
    return page(base, experiment_id, run_id)


def page(base: str, experiment_id: str, run_id: str | None = None, charts: bool = False) -> str:
    """The UI address under server address `base`: gdfit's view of the runs (its chart view
    with `charts`), or the page of run `run_id`."""
    layout = "workflowType=machine_learning"
    if run_id:
        return f"{base}/#/experiments/{experiment_id}/runs/{run_id}?{layout}"
    query = f"{layout}&viewStateShareKey={VIEW_KEY}"
    if charts:
        query += "&compareRunsMode=CHART"
    return f"{base}/#/experiments/{experiment_id}/runs?{query}"


def route(experiment_id: str, run_id: str | None = None) -> str:
    """A run page's address (or gdfit's view of the runs) relative to the UI's own
    (`#/experiments/...`), for a link in a description: it works on whatever host, port and
    path serve the UI."""
    return page("", experiment_id, run_id).removeprefix("/")
