"""The descriptions MLflow shows on a run's page (tag `mlflow.note.content`, markdown).

A run says what ran, how it ended and how to run it again; a sweep's parent ranks its jobs.
Plain functions of values already at hand: no MLflow import here.
"""

from __future__ import annotations

import math
from urllib.parse import urlsplit, urlunsplit

NOTE_TAG = "mlflow.note.content"
DEGREE_NAMES = {0: "constant", 1: "line", 2: "quadratic", 3: "cubic", 4: "quartic", 5: "quintic"}


def shown_uri(uri: str) -> str:
    """`uri` with any user:password@ part and query string removed, fit to print or store."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None and not parts.query:
        return uri
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", parts.fragment))


def store_option(uri: str, default_uri: str) -> str:
    """` --tracking-uri URI` when `uri` is not where the commands look by default."""
    return "" if uri == default_uri else f" --tracking-uri {shown_uri(uri)}"


def _model_text(cfg) -> str:
    model, data = cfg.model, cfg.data
    degree = model.get("degree")
    what = (
        f"a {DEGREE_NAMES.get(degree, f'degree-{degree} polynomial')}"
        if degree is not None
        else f"model {model.get('name', '?')}"
    )
    return (
        f"{what} fitted to {data.target}(x) on {data.n_points:,} points "
        f"in [{data.x_min:.6g}, {data.x_max:.6g}]"
    )


def _optimizer_text(optimizer) -> str:
    extras = [f"{k} {v}" for k, v in optimizer.items() if k not in ("name", "lr")]
    return f"{optimizer.name} (lr {optimizer.lr:g}{', ' if extras else ''}{', '.join(extras)})"


def run_note(
    cfg,
    run_id: str,
    status: str,
    *,
    rerun: str,
    result_line: str | None = None,
    final_loss: float | None = None,
    optimal_loss: float | None = None,
    diverged_at: int | None = None,
    error: str | None = None,
) -> str:
    """What ran, the example's `Result:` line, the final loss and its gap to the optimum, how
    the run ended, and the command that reruns it (`rerun`: the store option, if any)."""
    lines = [
        f"**{cfg.backend.name}** backend ({cfg.backend.dtype}, {cfg.device.name}) · "
        f"**{_optimizer_text(cfg.optimizer)}** · {cfg.train.steps:,} steps · seed {cfg.train.seed}",
        "",
        _model_text(cfg) + ", gradient descent on the sum of squared errors.",
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
    runs, parent_id: str, *, swept: list[str], store: str, view: str | None, best_id: str | None
) -> str:
    """A ranked markdown table of a sweep's jobs (best first; failed ones last, with why) and
    the commands that compare and rerun them. `runs`: MLflow Run objects of the children."""

    def key(r):
        loss = r.data.metrics.get("final_loss", math.inf)
        return (r.info.status != "FINISHED", loss if math.isfinite(loss) else math.inf)

    ranked = sorted(runs, key=key)
    failed = [r for r in ranked if r.info.status != "FINISHED"]
    header = ["#", "run", *swept, "status", "final_loss", "loss_gap"]
    lines = [
        f"Sweep of {len(runs)} jobs, {len(failed)} not finished; "
        f"varied: {', '.join(swept) or 'nothing'}.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for rank, r in enumerate(ranked, 1):
        m = r.data.metrics
        cells = [
            str(rank),
            f"{r.info.run_name} `{r.info.run_id[:8]}`",
            *(r.data.params.get(k, "") for k in swept),
            r.info.status,
            f"{m['final_loss']:.8g}" if "final_loss" in m else "",
            f"{m['loss_gap']:.3g}" if "loss_gap" in m else "",
        ]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    if failed:
        lines += ["", "Not finished:", ""]
        for r in failed:
            lines.append(f"- `{r.info.run_id[:8]}` {r.info.run_name}: {why(r)}")
    lines += [
        "",
        f"Compare: `gdfit-compare --parent {parent_id}{store}`  ",
    ]
    lines.append(f"Rerun every job: `gdfit-rerun {parent_id}{store}`")
    if best_id:
        lines.append(f"Rerun the best: `gdfit-rerun {best_id}{store}`")
    if view:
        lines.append(f"View: {view}")
    return "\n".join(lines)


def why(run) -> str:
    """Why a job did not finish, from its tags."""
    tags = run.data.tags
    if "gdfit.diverged_at_step" in tags:
        return f"diverged at step {tags['gdfit.diverged_at_step']}"
    if "gdfit.error" in tags:
        return tags["gdfit.error"].splitlines()[0][:300]
    return {"KILLED": "stopped", "RUNNING": "still running or lost"}.get(run.info.status, "failed")
