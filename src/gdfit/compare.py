"""`gdfit-compare`: read a set of runs back from MLflow as a table, and overlay their curves.

gdfit-compare --parent RUN_ID                    # the jobs of one sweep
gdfit-compare --experiment gdfit --filter "params.\\`backend.name\\` = 'tensor'"
"""

import argparse
import sys

from rich.console import Console
from rich.table import Table

from gdfit import summary, tracking
from gdfit.cli import add_tracking_uri, reported_errors
from gdfit.errors import GdfitError

COLUMNS = [  # (title, where the value lives, key)
    ("name", "info", "run_name"),
    ("backend", "params", "backend.name"),
    ("optimizer", "params", "optimizer.name"),
    ("lr", "params", "optimizer.lr"),
    ("seed", "params", "train.seed"),
    ("status", "info", "status"),
    ("final_loss", "metrics", "final_loss"),
    ("loss_gap", "metrics", "loss_gap"),
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="gdfit-compare", description=__doc__.splitlines()[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--parent", metavar="RUN_ID", help="the runs of this sweep's parent run")
    which.add_argument("--experiment", metavar="NAME", help="the runs of this experiment")
    parser.add_argument(
        "--filter",
        default="",
        metavar="SEARCH",
        help="MLflow search filter, e.g. \"params.`optimizer.name` = 'adam'\"",
    )
    add_tracking_uri(parser)
    parser.add_argument("--out", metavar="PATH", help="write the overlay of the loss curves here")
    return parser.parse_args(argv)


def cell(run, where: str, key: str) -> str:
    value = getattr(run.info, key) if where == "info" else getattr(run.data, where).get(key)
    if isinstance(value, float):
        return f"{value:.8g}"
    return "" if value is None else str(value)


def table(runs) -> Table:
    """The fixed columns, then any other setting that differs between the runs
    (`optimizer.momentum`, `backend.dtype`, ...), then coefficients and seconds."""
    shown = {key for _, where, key in COLUMNS if where == "params"}
    extra = [("params", k) for k in summary.swept_keys(runs) if k not in shown]
    coefs = summary.coefficient_keys(runs)
    out = Table()
    for title in (
        [c[0] for c in COLUMNS] + [k for _, k in extra] + ["coefficients", "train_seconds"]
    ):
        out.add_column(title, no_wrap=title != "coefficients")
    for r in runs:
        coef = ", ".join(f"{r.data.metrics[k]:.6g}" for k in coefs if k in r.data.metrics)
        seconds = r.data.metrics.get("train_seconds")
        out.add_row(
            *(cell(r, w, k) for _, w, k in COLUMNS),
            *(cell(r, w, k) for w, k in extra),
            f"[{coef}]",
            "" if seconds is None else f"{seconds:.3f}",
        )
    return out


def compare(args: argparse.Namespace) -> int:
    uri = tracking.resolve_uri(args.tracking_uri)
    try:
        runs = tracking.search_runs(
            uri, parent=args.parent, experiment=args.experiment, filter_string=args.filter
        )
    except Exception as error:  # a bad filter or run id, an unreachable store
        raise GdfitError(f"cannot read runs from {uri}: {str(error).splitlines()[0]}") from error
    if not runs:
        what = f"parent run {args.parent}" if args.parent else f"experiment {args.experiment!r}"
        print(
            f"gdfit-compare: no runs match ({what}"
            f"{', filter ' + args.filter if args.filter else ''}) in {uri}",
            file=sys.stderr,
        )
        return 1
    console = Console()
    if not console.is_terminal:  # piped or captured: do not squeeze the table into 80 columns
        console = Console(width=240)
    console.print(table(runs))
    if args.out:
        summary.comparison(uri, runs).savefig(args.out)
        print(f"wrote {args.out}")
    return 0


def main(argv: list[str] | None = None) -> None:
    with reported_errors():
        sys.exit(compare(parse_args(argv)))


if __name__ == "__main__":
    main()
