"""A table of runs: the settings that differ between them and how each fit ended.

Shared by the sweep's parent run (summary.csv, comparison.png) and `gdfit-compare`.
"""

import csv
import io
import math

from gdfit import plots, tracking

RESULT_COLUMNS = ["status", "final_loss", "loss_gap"]


def swept_keys(runs) -> list[str]:
    """Params whose values differ between the runs (run names and tracking aside)."""
    keys = sorted({k for r in runs for k in r.data.params})
    differ = [k for k in keys if len({r.data.params.get(k) for r in runs}) > 1]
    return [k for k in differ if not k.startswith("tracking.")]


def coefficient_keys(runs) -> list[str]:
    found = {k for r in runs for k in r.data.metrics if k.startswith("coef_")}
    return sorted(found, key=lambda k: int(k.split("_")[1]))


def rows(runs) -> tuple[list[str], list[list]]:
    """(header, one row per run): id, name, swept settings, results, coefficients, seconds."""
    swept, coefs = swept_keys(runs), coefficient_keys(runs)
    header = ["run_id", "run_name", *swept, *RESULT_COLUMNS, *coefs, "train_seconds"]
    table = []
    for r in runs:
        m = r.data.metrics
        table.append(
            [
                r.info.run_id,
                r.info.run_name,
                *(r.data.params.get(k, "") for k in swept),
                r.info.status,
                m.get("final_loss", ""),
                m.get("loss_gap", ""),
                *(m.get(k, "") for k in coefs),
                m.get("train_seconds", ""),
            ]
        )
    return header, table


def to_csv(header: list[str], table: list[list]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(table)
    return out.getvalue()


def label(run, swept: list[str]) -> str:
    parts = [f"{k}={run.data.params.get(k, '')}" for k in swept] or [run.info.run_name]
    status = "" if run.info.status == "FINISHED" else f" ({run.info.status})"
    return ", ".join(parts) + status


def comparison(uri: str, runs):
    """The overlay of every run's loss curve, each labelled by its differing settings."""
    swept = swept_keys(runs)
    curves = [(label(r, swept), *tracking.loss_curve(uri, r.info.run_id)) for r in runs]
    return plots.comparison_figure(curves)


def best(runs):
    """The finished run with the lowest final_loss, or None."""
    done = [
        r
        for r in runs
        if r.info.status == "FINISHED" and math.isfinite(r.data.metrics.get("final_loss", math.inf))
    ]
    return min(done, key=lambda r: r.data.metrics["final_loss"], default=None)
