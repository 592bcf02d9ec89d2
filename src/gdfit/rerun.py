"""Run a logged run again from what MLflow holds; say whether it came out the same.

  gdfit-rerun 3f2a9c1e                    the same config: "identical", exit 0
  gdfit-rerun 3f2a9c1e --check            the same, without logging a new run
  gdfit-rerun 3f2a9c1e --rtol 1e-6        accept differences up to 1e-6 relative
  gdfit-rerun 3f2a9c1e optimizer.lr=2e-6  overrides on top of the logged config
  gdfit-rerun sweep-20261127-101500       a sweep's parent: each of its jobs

RUN is a run id, a unique prefix of one or a run name (the newest run of that
name). A run fitted in a batch (hydra/launcher=batched, tag gdfit.batch) is
rerun alone; without --rtol it is judged against the batched tolerance
(gdfit.batchfit.TOLERANCE).

Exit codes: 0 identical (or within --rtol), 1 different, 2 cannot rerun; for a
sweep, the worst of its jobs.
"""

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml
from mlflow.entities import RunTag
from omegaconf import DictConfig, OmegaConf

from gdfit import api, batchfit, champion, config, data, readback, train
from gdfit.batched import BATCH_TAG
from gdfit.client import connect, reading
from gdfit.errors import Diverged, GdfitError, TrackingError, reported_errors
from gdfit.notes import NOTE_TAG
from gdfit.store import add_tracking_uri, existing_store, resolve_uri

# Groups whose option every gdfit config.yaml has recorded since the first; later groups (model)
# may be absent from an older run, which had their default option.
GROUPS = ("backend", "optimizer", "device")


class CannotRerun(GdfitError):
    exit_code = 2


def overrides_for(logged: dict, experiment: str, uri: str, extra: list[str]) -> list[str]:
    """Overrides that rebuild the logged config (group options first, then every leaf), aimed
    at `uri` and `experiment`, then the user's `extra`. A group the user switches (`optimizer=adam`)
    takes that option's defaults instead of the logged leaves; a group an older run did not log
    keeps its default option, the one that run had."""
    groups = config.CHOSEN_BY_NAME
    switched = {o.split("=", 1)[0] for o in extra if o.split("=", 1)[0] in groups}
    out = [
        f"{g}={logged[g]['name']}"
        for g in groups
        if g not in switched and "name" in logged.get(g, {})
    ]

    def leaves(node, prefix):
        for key, value in node.items():
            if isinstance(value, dict):
                yield from leaves(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}", value

    for key, value in leaves(logged, ""):
        if key.split(".")[0] in switched or key.startswith("tracking."):
            continue
        out.append(f"{key}={config.hydra_value(value)}")
    curve_points = logged.get("tracking", {}).get("curve_points", 10000)
    out += [
        f"tracking.uri={config.hydra_value(uri)}",
        f"tracking.experiment={config.hydra_value(experiment)}",
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


def at_steps(curve: tuple, steps: list[int]) -> tuple:
    """`curve` (steps, losses, coefficients) at `steps` only, when it has each of them and ends
    where they end; else unchanged (the verdict then reports different steps)."""
    have, losses, coef = np.asarray(curve[0]), np.asarray(curve[1]), curve[2]
    if not steps or not len(have) or have[-1] != steps[-1]:
        return curve
    where = np.searchsorted(have, steps)
    if where.max() >= len(have) or not np.array_equal(have[where], steps):
        return curve
    return steps, losses[where], coef


def version_warnings(tags: dict[str, str], now: dict[str, str]) -> list[str]:
    keys = [k for k in now if k.startswith("gdfit.env.")] + ["mlflow.source.git.commit"]
    return [
        f"{k.removeprefix('gdfit.env.')}: {tags[k]} then, {now.get(k, 'unknown')} now"
        for k in keys
        if k in tags and tags[k] != now.get(k)
    ]


def load_logged(text: str, run_id: str) -> dict:
    """The logged config.yaml as a plain dict. It is data: gdfit logs it resolved, so an
    interpolation in it (`${oc.env:...}`) was put there by hand and is refused, never resolved
    against the environment of whoever reruns it."""
    try:
        shape = yaml.safe_load(text)  # OmegaConf's own loader below reads numbers as Hydra does
        node = OmegaConf.create(text) if isinstance(shape, dict) else None
    except Exception as error:
        reason = (str(error).strip() or type(error).__name__).splitlines()[0]
        raise CannotRerun(f"config.yaml of run {run_id} is not valid YAML: {reason}") from error
    if not isinstance(node, DictConfig):
        raise CannotRerun(f"config.yaml of run {run_id} is not a mapping of settings")
    logged = OmegaConf.to_container(node, resolve=False)

    def leaves(value, key):
        if isinstance(value, dict):
            for k, v in value.items():
                yield from leaves(v, f"{key}.{k}" if key else str(k))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                yield from leaves(v, f"{key}[{i}]")
        else:
            yield key, value

    for key, value in leaves(logged, ""):
        if isinstance(value, str) and "${" in value:
            raise CannotRerun(
                f"config.yaml of run {run_id}: {key} holds an interpolation ({value[:80]!r}); a "
                "logged config holds literal values, so it is not resolved"
            )
    assert isinstance(logged, dict)  # a DictConfig's container
    for group in GROUPS:
        if not isinstance(logged.get(group), dict) or "name" not in logged[group]:
            raise CannotRerun(f"config.yaml of run {run_id} lacks {group}.name: not a gdfit config")
    return logged


def rerun_name(original: str, overrides: list[str]) -> str:
    """`<name>-rerun`, plus what the rerun changed when it changed anything."""
    changed = f" {' '.join(overrides)}" if overrides else ""
    return f"{original}-rerun{changed}"[:250]


def rerun_one(uri: str, original, args: argparse.Namespace) -> tuple[int, str, str]:
    """Rerun one run; (exit code, the verdict, the line that says it)."""
    run_id = original.info.run_id
    try:
        config_text = readback.artifact_text(uri, original, "config.yaml")
        with reading(uri):
            experiment = connect(uri).get_experiment(original.info.experiment_id).name
    except TrackingError as error:
        raise CannotRerun(f"cannot rerun: {error}") from error
    logged = load_logged(config_text, run_id)
    cfg = api.compose(*overrides_for(logged, experiment, uri, args.overrides))
    cfg.tracking.run_name = rerun_name(original.info.run_name, args.overrides)
    # Like with like: a run logged before loss.npz existed has only its `loss` metric, so the
    # rerun's every-step curve is compared at that metric's steps.
    whole = readback.saved_curve(uri, run_id)
    was = whole or readback.metric_curve(uri, run_id)
    steps, losses = was.steps.tolist(), was.losses
    metrics = original.data.metrics
    old_coef = [metrics[k] for k in sorted(metrics, key=_power) if k.startswith("coef_")]
    old = (list(steps), np.array(losses), np.array(old_coef))

    with tempfile.TemporaryDirectory(prefix="gdfit-check-") as scratch:
        if args.check:  # run it in a store that is thrown away
            cfg.tracking.uri = f"sqlite:///{Path(scratch) / 'mlflow.db'}"
        store = resolve_uri(cfg.tracking.uri)
        diverged, created = None, []  # type: int | None, list[str]
        try:
            result = train.train(
                cfg,
                overrides=args.overrides,
                tags={"gdfit.rerun_of": run_id},
                opened=created.append,
                say_where=not args.check,  # the scratch store is gone when this ends
            )
            new_id, new = result.run_id, (result.loss_steps, result.losses, result.coef)
        except Diverged as error:  # compare where it diverged, as the original may have
            new_id, diverged = created[0], error.step
            curve = readback.loss_curve(store, new_id)
            new = (curve.steps.tolist(), curve.losses, np.array([]))
        with reading(store):
            rerun_run = connect(store).get_run(new_id)
        tags = rerun_run.data.tags
        for line in version_warnings(original.data.tags, tags):
            print(f"gdfit-rerun: warning: {line}", file=sys.stderr)
        if whole is None:
            new = at_steps(new, old[0])
        rtol, batch = args.rtol, original.data.tags.get(BATCH_TAG)
        if batch and rtol is None:  # fitted in a batch: not bitwise the sequential fit
            rtol = batchfit.TOLERANCE[cfg.backend.dtype]
        outcome, details = verdict(old, new, rtol)
        was = original.data.tags.get("gdfit.diverged_at_step")
        if diverged is not None or was is not None:
            details += (
                f"; the original diverged at step {was or '-'}, the rerun at step "
                f"{diverged if diverged is not None else '-'}"
            )
        same_model = compare_models(uri, original, store, rerun_run, logged, rtol)
        if same_model is not None:
            agrees, said = same_model
            details += f"; {said}"
            if not agrees:
                outcome = "different"
        shown = f"within rtol={rtol:g}" if outcome == "within rtol" else outcome
        if batch and args.rtol is None and outcome == "within rtol":
            shown = f"within the batched tolerance rtol={rtol:g} (fitted in a batch of {batch})"
        if args.check:
            line = f"check of {run_id}: {shown}: {details} (ran in a scratch store; nothing logged)"
        else:
            line = f"rerun {new_id} of {run_id}: {shown}: {details}"
            verdict_said = f"{shown}: {details}"
            record_verdict(store, new_id, run_id, args.overrides, verdict_said, tags)
    return (1 if outcome == "different" else 0), shown, line


def compare_models(
    uri: str, original, store: str, rerun_run, logged: dict, rtol: float | None
) -> tuple[bool, str] | None:
    """Whether the rerun's logged model predicts what the original's does at the original's
    data points (bit for bit, or within `rtol` of the largest prediction), and the words for
    it; None when the original has no model."""
    old_id = champion.logged_model(original)
    if old_id is None:
        return None
    new_id = champion.logged_model(rerun_run)
    if new_id is None:
        return False, "the original's model has no counterpart: the rerun logged none"
    x, _ = data.make_data(OmegaConf.create(logged["data"]))
    old = champion.load(uri, old_id).predict(x)
    new = champion.load(store, new_id).predict(x)
    if np.array_equal(old, new, equal_nan=True):
        return True, f"the models' predictions at the {len(x)} data points agree bit for bit"
    worst = float(np.nanmax(np.abs(new - old)) / max(float(np.nanmax(np.abs(old))), 1e-300))
    said = f"the models' predictions differ by up to {worst:.3g} of the largest"
    return rtol is not None and worst <= rtol, said


def record_verdict(
    uri: str, run_id: str, of: str, overrides: list[str], verdict: str, tags: dict[str, str]
) -> None:
    """Tag the rerun `run_id` (whose tags were `tags`) with its verdict, and put what it
    changed and how it came out above its description."""
    changed = f" with `{' '.join(overrides)}`" if overrides else " with the logged config"
    line = f"**Rerun** of `{of}`{changed}: {verdict}"
    note = tags.get(NOTE_TAG, "")
    text = f"{line}\n\n{note}" if note else line
    connect(uri).log_batch(
        run_id,
        tags=[RunTag("gdfit.rerun_verdict", verdict[:5000]), RunTag(NOTE_TAG, text[:5000])],
        synchronous=True,
    )


def _power(key: str) -> int:
    return int(key.split("_")[1]) if key.startswith("coef_") else -1


def rerun(args: argparse.Namespace) -> int:
    uri = existing_store(args.tracking_uri)
    try:
        original, how = readback.find_run(uri, args.run_id)
    except GdfitError as error:
        raise CannotRerun(f"cannot rerun: {error}") from error
    if how:
        print(f"gdfit-rerun: {how}", file=sys.stderr)
    if original.data.tags.get("gdfit.sweep") != "true":
        code, _, line = rerun_one(uri, original, args)
        print(line)
        return code
    jobs = readback.search_runs(uri, parent=original.info.run_id)
    print(f"gdfit-rerun: {original.info.run_name} is a sweep of {len(jobs)} jobs; rerunning each")
    results = []
    for job in jobs:
        try:
            code, shown, line = rerun_one(uri, job, args)
        except CannotRerun as error:
            code, shown, line = 2, "cannot rerun", f"{job.info.run_id}: {error}"
        print(line, flush=True)
        results.append((job, code, shown))
    width = max((len(job.info.run_name) for job in jobs), default=3)
    print(f"\n{'job':<{width}}  run_id    verdict")
    for job, _, shown in results:
        print(f"{job.info.run_name:<{width}}  {job.info.run_id[:8]}  {shown}")
    return max((code for _, code, _ in results), default=0)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="gdfit-rerun",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[2:]),
    )
    parser.add_argument(
        "run_id", metavar="RUN", help="the run to run again: id, id prefix or run name"
    )
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
    parser.add_argument(
        "--check",
        action="store_true",
        help="give the verdict without logging a new run (runs in a scratch store)",
    )
    return parser.parse_intermixed_args(argv)


def main(argv: list[str] | None = None) -> None:
    with reported_errors():
        sys.exit(rerun(parse_args(argv)))


if __name__ == "__main__":
    main()
