"""The descriptions MLflow shows on a run's page (tag `mlflow.note.content`, markdown).

A run says what ran, how it ended and how to run it again; a sweep's parent ranks its jobs.
Plain functions of values already at hand: no MLflow import here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from gdfit.digits import value_texts

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
    stable_lr: float | None = None,
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
        stable = f" (it is stable below ~{stable_lr:.2g} here)" if stable_lr else ""
        lines += [
            f"**Diverged** at step {diverged_at:,}: the loss became non-finite or grew past the "
            f"bound; try a smaller `optimizer.lr` than {cfg.optimizer.lr:g}{stable}.",
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


NOTE_LIMIT = 8000  # characters of a tag's value that MLflow keeps (it cuts longer ones)
MAX_FAILURES_LISTED = 10  # failures named one by one in a sweep's description
MAX_REASON = 200  # characters of a failure's reason there


def sweep_note(
    columns: list[str],
    rows: list[dict],
    parent_id: str,
    *,
    store: str,
    view: str | None,
    best_id: str | None,
    ranking: str,
    run_link: Callable[[str], str] = lambda run_id: "",
) -> str:
    """A sweep's description: its jobs ranked in an aligned table (`rows` of readback.table,
    best first; `ranking` says by what), the jobs that failed with their reasons, the commands
    that compare and rerun them, and a link to `view` (a UI address, relative or whole). Only
    the settings that differ between the jobs are shown. A large sweep's description stays
    within NOTE_LIMIT by design: the table holds the best rows that fit, and says where every
    job is (summary.csv). `run_link(run_id)`: the address of a run's page, for the best one's
    name."""
    settings = columns[2 : columns.index("status")]
    varied = [c for c in settings if len({r[c] for r in rows}) > 1]
    diverged = [r for r in rows if r["diverged"]]
    failed = [r for r in rows if r["status"] != "FINISHED" and not r["diverged"]]
    finished = len(rows) - len(diverged) - len(failed)
    head = [
        f"Sweep of {len(rows)} jobs: {finished} finished, {len(diverged)} diverged, "
        f"{len(failed)} failed. Varied: {', '.join(varied) or 'nothing'}. Ranked {ranking}.",
        "",
    ]
    if best_id and rows:  # first: the page shows a description's first lines until unfolded
        top = rows[0]
        name = top["run_name"].replace("[", "\\[").replace("]", "\\]")
        link = run_link(best_id)
        named = f"[{name}]({link})" if link else name
        gap = "" if top["loss_gap"] is None else f", gap {top['loss_gap']:.3g}"
        head.insert(0, f"**Best**: {named}: final_loss {top['final_loss']:.8g}{gap}.  ")
    tail = ["", *_failure_lines(failed)] if failed else []
    tail += ["", f"Compare: `gdfit-compare --parent {parent_id}{store}`  "]
    tail.append(f"Rerun every job: `gdfit-rerun {parent_id}{store}`  ")
    if best_id:
        tail.append(f"Rerun the best: `gdfit-rerun {best_id}{store}`  ")
    if view:
        tail.append(f"View: [gdfit's view of the runs]({view})")
    table = _aligned(["#", "run", "id", *varied, "final_loss", "loss_gap"], _cells(rows, varied))
    every = "Every job, with its coefficients and how it ended: summary.csv, in the Artifacts."
    room = NOTE_LIMIT - sum(len(line) + 1 for line in head + tail) - len(every) - 100
    width = max(len(line) for line in table) + 1
    shown = max(0, min(len(rows), room // width - 2))  # less the titles and their rule
    cut = f"The best {shown} of {len(rows)} jobs. {every}"
    lines = [*head, "```", *table[: shown + 2], "```", cut if shown < len(rows) else every]
    return "\n".join(lines + tail)[:NOTE_LIMIT]


def _cells(rows: list[dict], varied: list[str]) -> list[list[str]]:
    """A table row per job: rank, name, id, the varied settings (short), then its final loss and
    gap, or how it ended (one cell, the last)."""
    texts = {c: value_texts([r[c] for r in rows if r[c] is not None]) for c in varied}
    cells = []
    for rank, r in enumerate(rows, 1):
        line = [str(rank), r["run_name"], r["run_id"][:8]]
        line += [texts[c].get(r[c], "") if r[c] is not None else "" for c in varied]
        if r["status"] == "FINISHED":
            gap = r["loss_gap"]
            line += [f"{r['final_loss']:.8g}", "" if gap is None else f"{gap:.3g}"]
        else:
            line.append(r["ended"] if r["diverged"] else r["status"])
        cells.append(line)
    return cells


def _aligned(titles: list[str], cells: list[list[str]]) -> list[str]:
    """Fixed-width lines for a code block: the titles, a rule, then each row, the rank and the
    numbers to the right. A row cut short (a job that did not finish) ends on its last cell,
    left-aligned under final_loss."""
    n = len(titles)
    full = [r for r in cells if len(r) == n]
    widths = [
        max([len(t), *(len(r[i]) for r in (full if i >= n - 2 else cells))])
        for i, t in enumerate(titles)
    ]
    right = {0, n - 2, n - 1}

    def line(row: list[str]) -> str:
        out = [
            c.rjust(w) if i in right and len(row) == n else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=False))
        ]
        return "  ".join(out).rstrip()

    return [line(titles), line(["-" * w for w in widths]), *(line(r) for r in cells)]


def _failure_lines(failed: list[dict]) -> list[str]:
    """The jobs that failed (not those that diverged), with their reasons: the first ones one
    by one, the rest counted."""
    lines = [f"Failed ({len(failed)}):", ""]
    for r in failed[:MAX_FAILURES_LISTED]:
        reason = (r["ended"] or r["status"].lower())[:MAX_REASON]
        lines.append(f"- `{r['run_id'][:8]}` {r['run_name']}: {reason}")
    if len(failed) > MAX_FAILURES_LISTED:
        lines.append(f"- and {len(failed) - MAX_FAILURES_LISTED} more: see summary.csv")
    return lines
