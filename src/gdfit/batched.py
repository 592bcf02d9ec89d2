"""A batched sweep's jobs (`hydra/launcher=batched`, `gdfit.sweep(..., batched=True)`): the
configs that can share one program are fitted together (gdfit.batchfit), then each is written
as its own child run of the sweep, with what a sequential job records: its params, metrics,
tags, config.yaml, environment.json, loss.npz (every step), description and figures
(tracking.figures), and the tag `gdfit.batch` (how many configs shared its program).

Configs share a program when everything but the rule's numbers, the seed and the start point
is the same (data, model, backend, dtype, device, rule and its switches, step count) and the
model, the backend and the rule can be batched (`why_alone`). The others run as today, one
after another, through the caller's sequential path.

A program's working set is bounded (`memory_mb`): a group too large for it is fitted in several
batches. A child is written in one go, in four store calls, after its batch's fit; its `loss`
chart holds at most `SWEEP_CHART_POINTS` points shared by the sweep's jobs (loss.npz keeps every
step).
"""

import json
import math
import os
from collections.abc import Iterator

from omegaconf import DictConfig, OmegaConf

from gdfit import batchfit, registry, resume, sweeps, train
from gdfit.console import diverged_line, job_line
from gdfit.errors import ConfigError, Diverged
from gdfit.runlog import DIVERGED_TAG, JOBS_ENV, signals_deferred, written_run
from gdfit.store import open_experiment, reap_lost, resolve_uri

BATCH_TAG = "gdfit.batch"  # on each child: how many configs its program fitted
BACKENDS = ("numpy", "tensor", "autograd")  # `module` holds one parameter vector per nn.Module
SWEEP_CHART_POINTS = 10_000  # `loss` points of all a batched sweep's charts together
MIN_CHART_POINTS = 10
MEMORY_MB = 1024  # the default working-set budget of one program (as the launcher's)


def why_alone(cfg: DictConfig) -> str | None:
    """Why this config cannot share a program with others, or None when it can."""
    if cfg.backend.name not in BACKENDS:
        return f"backend={cfg.backend.name} fits one parameter vector per torch.nn module"
    if not getattr(registry.load("model", cfg.model.name).Model, "linear", False):
        return f"model={cfg.model.name} is not linear in its parameters"
    if cfg.optimizer.name not in batchfit.RULES:
        return (
            f"optimizer={cfg.optimizer.name} steps ~lr·sign(grad) near the optimum, where a "
            "batched program's last-bit differences would grow into a different curve"
        )
    return None


def share_key(cfg: DictConfig) -> str:
    """Configs with the same key can share one program: everything but the rule's numbers,
    the seed, the start point and what only names or prints the run."""
    tree = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(tree, dict)
    tree["optimizer"] = {k: v for k, v in tree["optimizer"].items() if not isinstance(v, float)}
    tree["train"] = {k: v for k, v in tree["train"].items() if k not in ("seed", "log_every")}
    tree["model"] = {k: v for k, v in tree["model"].items() if k != "init"}
    tree["tracking"] = {k: v for k, v in tree["tracking"].items() if k != "run_name"}
    tree.pop("sweep", None)
    return json.dumps(tree, sort_keys=True)


def plan(cfgs: list[DictConfig]) -> tuple[list[list[int]], dict[int, str]]:
    """(groups of job indices that share a program, in job order; {index: why it runs alone})."""
    groups: dict[str, list[int]] = {}
    alone: dict[int, str] = {}
    for i, cfg in enumerate(cfgs):
        why = why_alone(cfg)
        if why is None:
            groups.setdefault(share_key(cfg), []).append(i)
        else:
            alone[i] = why
    return list(groups.values()), alone


def chart_points(cfg: DictConfig, configs: int) -> int:
    """`loss` points per child: a chart of many runs shows their shapes, not their points."""
    jobs = os.environ.get(JOBS_ENV, "")
    jobs_n = max(int(jobs) if jobs.isdigit() else 0, configs, 1)
    return min(cfg.tracking.curve_points, max(MIN_CHART_POINTS, SWEEP_CHART_POINTS // jobs_n))


def run(
    cfgs: list[DictConfig], overrides: list[list[str]], memory_mb: float = MEMORY_MB
) -> list[float]:
    """Fit and write the configs `cfgs` (one group of `plan`; `overrides`: each job's command
    line) as few programs as `memory_mb` allows; each job's final loss, +inf for a job that
    failed or diverged (what the Optuna sweeper scores as the worst trial)."""
    if not (isinstance(memory_mb, int | float) and memory_mb > 0):
        raise ConfigError(
            "hydra.launcher.memory_mb", "must be a positive number of megabytes", memory_mb
        )
    scores = [math.inf] * len(cfgs)
    ready: list[tuple[int, train.Problem]] = []
    done = resume.finished_jobs(cfgs[0]) if cfgs else {}  # one search, not one per config
    for i, cfg in enumerate(cfgs):
        name = cfg.tracking.run_name or train.default_run_name(cfg)
        before = resume.finished_before(cfg, name, done)
        if before is not None:
            scores[i] = before
            continue
        try:
            ready.append((i, train.prepare(cfg)))
        except Exception as error:
            scores[i] = sweeps.job_failed(cfg, name, error, created=False)
    if not ready:
        return scores
    first = ready[0][1]
    cfg, steps = first.cfg, first.cfg.train.steps
    chunk = max(1, min(1000, train.CHUNK_ELEMENTS // len(first.x)))
    each = batchfit.bytes_per_config(len(first.x), len(first.p0), steps, chunk, cfg.backend.dtype)
    size = max(1, int(memory_mb * 2**20 // each))
    uri = resolve_uri(cfg.tracking.uri)
    client, experiment_id = open_experiment(uri, cfg.tracking.experiment)
    reap_lost(client, experiment_id, once=True)
    points = chart_points(cfg, len(ready))
    for part in _parts(ready, size):
        problems = [p for _, p in part]
        batch = batchfit.Batch(problems, steps)
        form = "Gram" if batchfit.gram_form(cfg.backend.dtype) else "residual"
        stopped = None
        try:  # a Ctrl-C from the first line on leaves the batch's runs KILLED
            print(
                f"gdfit: fitting {len(part)} config{'s' * (len(part) > 1)} as one program "
                f"({cfg.backend.name}, {cfg.backend.dtype}, {form} form)",
                flush=True,
            )
            batchfit.fit(
                problems,
                cfg.backend.name,
                cfg.backend.dtype,
                first.device,
                steps,
                chunk,
                train.frame_steps(steps),
                batch,
            )
        except KeyboardInterrupt as stop:
            stopped = stop
            print(
                f"gdfit: stopped at step {batch.done}: writing the batch's {len(part)} runs "
                "KILLED with their curves so far (Ctrl-C again leaves the rest out)",
                flush=True,
            )
        writer = _Writer(client, experiment_id, batch, points, stopped is not None)
        for k, (i, problem) in enumerate(part):
            scores[i] = writer.write(k, problem, overrides[i])
        if stopped is not None:
            raise stopped
    return scores


def _parts(items: list, size: int) -> Iterator[list]:
    """`items` in runs of at most `size`, as even as they can be."""
    count = math.ceil(len(items) / size)
    for n in range(count):
        yield items[n * len(items) // count : (n + 1) * len(items) // count]


class _Writer:
    """Writes the configs of one fitted (or stopped) batch as child runs."""

    def __init__(self, client, experiment_id: str, batch: batchfit.Batch, points: int, killed):
        self.client, self.experiment_id, self.batch = client, experiment_id, batch
        self.points, self.killed = points, killed
        self.k_total = len(batch.problems)

    def write(self, k: int, problem: train.Problem, overrides: list[str]) -> float:
        """Write config k of the batch; its score."""
        batch, cfg, steps = self.batch, problem.cfg, problem.cfg.train.steps
        curve = batch.curve(k)
        diverged = batch.stopped[k] < steps
        inputs = train.Inputs(problem, overrides)
        tags = inputs.tags | {BATCH_TAG: str(self.k_total)}
        score, said = math.inf, None
        with signals_deferred():  # created and ended together: no Ctrl-C leaves it RUNNING
            run = written_run(
                self.client, self.experiment_id, cfg, problem.run_name, tags, self.points
            )
            inputs.log(run)
            run.curve.add(0, curve)
            if diverged:
                step = int(batch.stopped[k])
                loss = float(batch.losses[step, k])
                error = Diverged(step, loss, cfg.optimizer.lr, train.stable_rate(problem))
                run.set_tags({DIVERGED_TAG: step, "gdfit.error": f"Diverged: {error}"})
                train.write_description(run, problem, "FAILED", error=error)
                status, said = "FAILED", error
            elif self.killed:
                stop = KeyboardInterrupt()
                train.write_description(run, problem, "KILLED", error=stop)
                status = "KILLED"
            else:
                params = batch.params[:, k].copy()
                snapshots = {s: p[:, k].copy() for s, p in batch.snapshots.items()}
                seconds = batchfit.share(batch.seconds, self.k_total)
                result = train.record(run, problem, train.Fitted(params, seconds, snapshots))
                train.write_description(run, problem, "FINISHED", result)
                status, score = "FINISHED", result.final_loss
            kept = run.close(status)
        if kept is not None:
            print(f"gdfit: error: {problem.run_name}: {kept.error}", flush=True)
            return math.inf
        if said is not None:  # a result of the search, said once (as sweeps.run_job says it)
            print(diverged_line(run.run_id, problem.run_name, said), flush=True)
        elif status == "FINISHED":
            print(job_line(result), flush=True)
        return score
