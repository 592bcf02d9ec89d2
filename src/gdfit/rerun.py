"""`gdfit-rerun RUN_ID`: run a logged run again from what MLflow holds, and say whether the
numbers came out the same.

    gdfit-rerun 3f2a...                     # same config: expect "identical", exit 0
    gdfit-rerun 3f2a... --rtol 1e-6         # accept differences up to 1e-6 relative
    gdfit-rerun 3f2a... optimizer.lr=2e-6   # extra Hydra overrides on top of the logged config

Exit codes: 0 identical (or within --rtol), 1 different, 2 cannot rerun.
"""

import argparse
import sys

import numpy as np
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from gdfit import config, tracking
from gdfit.cli import add_tracking_uri, reported_errors
from gdfit.errors import GdfitError, TrackingError
from gdfit.paths import conf_dir
from gdfit.train import train

GROUPS = ("backend", "optimizer", "device")  # config groups whose option the run recorded


class CannotRerun(GdfitError):
    exit_code = 2


def hydra_value(value) -> str:
    """`value` in Hydra's override grammar."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def overrides_for(logged: dict, experiment: str, uri: str, extra: list[str]) -> list[str]:
    """Overrides that rebuild the logged config (group options first, then every leaf), aimed
    at `uri` and `experiment`, then the user's `extra`. A group the user switches (`optimizer=adam`)
    takes that option's defaults instead of the logged leaves."""
    switched = {o.split("=", 1)[0] for o in extra if o.split("=", 1)[0] in GROUPS}
    out = [f"{g}={logged[g]['name']}" for g in GROUPS if g not in switched]

    def leaves(node, prefix):
        for key, value in node.items():
            if isinstance(value, dict):
                yield from leaves(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}", value

    for key, value in leaves(logged, ""):
        if key.split(".")[0] in switched or key.startswith("tracking."):
            continue
        out.append(f"{key}={hydra_value(value)}")
    curve_points = logged.get("tracking", {}).get("curve_points", 10000)
    out += [
        f"tracking.uri={hydra_value(uri)}",
        f"tracking.experiment={hydra_value(experiment)}",
        f"tracking.curve_points={curve_points}",
    ]
    return out + extra


def verdict(old: tuple, new: tuple, rtol: float | None) -> tuple[str, str]:
    """('identical' | 'within rtol' | 'different', the details line). old/new: (steps, losses,
    coefficients). NaN anywhere counts as a difference unless both sides have it."""
    (old_steps, old_loss, old_coef), (new_steps, new_loss, new_coef) = old, new
    if list(old_steps) != list(new_steps) or len(old_coef) != len(new_coef):
        return "different", (
            f"the runs logged different steps ({len(old_steps)} vs {len(new_steps)} loss points)"
            f" or coefficients ({len(old_coef)} vs {len(new_coef)})"
        )
    old_all = np.concatenate([old_loss, old_coef])
    new_all = np.concatenate([new_loss, new_coef])
    if np.array_equal(old_all, new_all, equal_nan=True):
        return (
            "identical",
            f"{len(old_loss)} loss points and {len(old_coef)} coefficients, bit for bit",
        )
    names = [f"loss at step {s}" for s in old_steps] + [f"coef_{k}" for k in range(len(old_coef))]
    # Loss points relative to themselves; coefficients relative to the largest one, since a
    # coefficient that is ~0 (a, c for the odd sin) has no meaningful relative error of its own.
    scale = np.concatenate([np.abs(old_loss), np.full(len(old_coef), np.abs(old_coef).max())])
    rel = np.abs(new_all - old_all) / np.maximum(scale, np.finfo(float).tiny)
    worst = int(np.nanargmax(rel))
    parted = np.flatnonzero(rel[: len(old_loss)] > (rtol or 0.0))
    where = f"; the curves part at step {old_steps[parted[0]]}" if len(parted) else ""
    details = f"largest relative difference {rel[worst]:.3g} ({names[worst]}){where}"
    if rtol is not None and np.all(rel <= rtol):
        return "within rtol", details
    return "different", details


def version_warnings(tags: dict[str, str], now: dict[str, str]) -> list[str]:
    keys = [k for k in now if k.startswith("gdfit.env.")] + ["mlflow.source.git.commit"]
    return [
        f"{k.removeprefix('gdfit.env.')}: {tags[k]} then, {now.get(k, 'unknown')} now"
        for k in keys
        if k in tags and tags[k] != now.get(k)
    ]


def rerun(args: argparse.Namespace) -> int:
    uri = tracking.resolve_uri(args.tracking_uri)
    try:
        original, experiment, config_text = tracking.read_run(uri, args.run_id)
    except TrackingError as error:
        raise CannotRerun(f"cannot rerun: {error}") from error
    logged = OmegaConf.to_container(OmegaConf.create(config_text))
    config.register()
    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        cfg = compose("config", overrides_for(logged, experiment, uri, args.overrides))
    cfg.tracking.run_name = f"{original.info.run_name}-rerun"

    result = train(cfg, overrides=args.overrides, tags={"gdfit.rerun_of": args.run_id})

    new_tags = tracking.run_tags(uri, result.run_id)
    for line in version_warnings(original.data.tags, new_tags):
        print(f"gdfit-rerun: warning: {line}", file=sys.stderr)
    steps, losses = tracking.loss_curve(uri, args.run_id)
    metrics = original.data.metrics
    coef = [metrics[f"coef_{k}"] for k in range(len(result.coef)) if f"coef_{k}" in metrics]
    outcome, details = verdict(
        (steps, np.array(losses), np.array(coef)),
        (result.loss_steps, result.losses, result.coef),
        args.rtol,
    )
    shown = f"within rtol={args.rtol:g}" if outcome == "within rtol" else outcome
    print(f"rerun {result.run_id} of {args.run_id}: {shown}: {details}")
    return 1 if outcome == "different" else 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="gdfit-rerun",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[2:]),
    )
    parser.add_argument("run_id", metavar="RUN_ID", help="the MLflow run to run again")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="OVERRIDE",
        help="Hydra overrides applied on top of the logged config",
    )
    add_tracking_uri(parser)
    parser.add_argument(
        "--rtol",
        type=float,
        default=None,
        metavar="X",
        help="accept relative differences up to X (default: bit for bit)",
    )
    return parser.parse_intermixed_args(argv)


def main(argv: list[str] | None = None) -> None:
    with reported_errors():
        sys.exit(rerun(parse_args(argv)))


if __name__ == "__main__":
    main()
