"""The descriptions MLflow shows on a run's page (tag `mlflow.note.content`, markdown).

A run says what ran, how it ended and how to run it again; a sweep's parent ranks its jobs.
Plain functions of values already at hand: no MLflow import here.
"""

from __future__ import annotations

import math
from typing import Any

NOTE_TAG = "mlflow.note.content"


def _model_text(cfg: Any, what: str) -> str:
    data = cfg.data
    return (
        f"{what} (model={cfg.model.name}) fitted to {data.target}(x) on {data.n_points:,} "
        f"points in [{data.x_min:.6g}, {data.x_max:.6g}]"
    )


def _optimizer_text(optimizer) -> str:
    extras = [f"{k} {v}" for k, v in optimizer.items() if k not in ("name", "lr")]
    return f"{optimizer.name} (lr {optimizer.lr:g}{', ' if extras else ''}{', '.join(extras)})"


def run_note(
    cfg: Any,
    run_id: str,
    status: str,
    *,
    what: str,
    rerun: str,
    result_line: str | None = None,
    final_loss: float | None = None,
    optimal_loss: float | None = None,
    diverged_at: int | None = None,
    error: str | None = None,
) -> str:
    """What ran (`what`: the model's own words for its function), the example's `Result:`
    line, the final loss and its gap to the optimum, how the run ended, and the command that
    reruns it (`rerun`: the store option, if any)."""
    lines = [
        f"**{cfg.backend.name}** backend ({cfg.backend.dtype}, {cfg.device.name}) · "
        f"**{_optimizer_text(cfg.optimizer)}** · {cfg.train.steps:,} steps · seed {cfg.train.seed}",
        "",
        _model_text(cfg, what) + ", gradient descent on the sum of squared errors.",
        "",
    ]
    if result_line:
        lines += [f"`Result: {result_line}`", ""]
    if final_loss is not None:
        lines += ["| | |", "|---|---|", f"| final loss | {final_loss:.10g} |"]
        if optimal_loss is not None:
            gap = final_loss - optimal_loss
            lines += [
                f"| least-squares optimum | {optimal_loss:.10g} |",
                f"| gap to the optimum | {gap:.3g} ({_relative(gap, optimal_loss)}) |",
            ]
        lines.append("")
    if diverged_at is not None:
        lines += [
            f"**Diverged** at step {diverged_at:,}: the loss became non-finite or grew past the "
            f"bound; try a smaller `optimizer.lr` than {cfg.optimizer.lr:g}.",
            "",
        ]
    elif status == "FAILED":
        lines += [f"**Failed**: {error or 'see the tag gdfit.error'}", ""]
    elif status == "KILLED":
        lines += ["**Stopped** before the last step; the curve holds what was logged.", ""]
    lines += [
        f"Status: {status}. Run again and compare: `gdfit-rerun {run_id}{rerun}`",
    ]
    return "\n".join(lines)


def _relative(gap: float, optimum: float) -> str:
    if optimum == 0 or not math.isfinite(gap):
        return "-"
    return f"{gap / abs(optimum):.2g} relative"


def sweep_note(
    columns: list[str],
    rows: list[dict],
    parent_id: str,
    *,
    store: str,
    view: str | None,
    best_id: str | None,
) -> str:
    """A ranked markdown table of a sweep's jobs (`rows` of runs.table, best first; failed ones
    last, with `ended`: why) and the commands that compare and rerun them. Only the settings
    that differ between the jobs are shown."""
    settings = columns[2 : columns.index("status")]
    varied = [c for c in settings if len({r[c] for r in rows}) > 1]
    failed = [r for r in rows if r["status"] != "FINISHED"]
    header = ["#", "run", *varied, "status", "final_loss", "loss_gap"]
    lines = [
        f"Sweep of {len(rows)} jobs, {len(failed)} not finished; "
        f"varied: {', '.join(varied) or 'nothing'}.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for rank, r in enumerate(rows, 1):
        loss, gap = r["final_loss"], r["loss_gap"]
        cells = [
            str(rank),
            f"{r['run_name']} `{r['run_id'][:8]}`",
            *(r[c] or "" for c in varied),
            r["status"],
            "" if loss is None else f"{loss:.8g}",
            "" if gap is None else f"{gap:.3g}",
        ]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    if failed:
        lines += ["", "Not finished:", ""]
        lines += [f"- `{r['run_id'][:8]}` {r['run_name']}: {r['ended']}" for r in failed]
    lines += ["", f"Compare: `gdfit-compare --parent {parent_id}{store}`  "]
    lines.append(f"Rerun every job: `gdfit-rerun {parent_id}{store}`")
    if best_id:
        lines.append(f"Rerun the best: `gdfit-rerun {best_id}{store}`")
    if view:
        lines.append(f"View: {view}")
    return "\n".join(lines)
