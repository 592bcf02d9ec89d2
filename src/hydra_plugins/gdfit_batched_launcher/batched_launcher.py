"""`hydra/launcher=batched`: gdfit's Hydra launcher that fits the jobs of a batch that can share one
program as one vectorised fit (gdfit.batched), each still its own child run of the sweep.

Hydra hands a launcher the batch's job overrides: the whole grid for the basic sweeper, each
batch of `n_jobs` trials for Optuna's. This launcher composes each job's config as Hydra's own
basic launcher does, groups the jobs that can share a program, fits each group, and runs the
other jobs one at a time through Hydra's `run_job`, exactly as the basic launcher would. Every
job gets its JobReturn (the final loss, +inf for a failed or diverged job), which is what
Optuna's sweeper scores.

    gdfit-train -m hydra/launcher=batched optimizer.lr=1e-6,2e-6,3e-6 train.seed=range(16)
    gdfit-train -m hydra/launcher=batched hydra.launcher.memory_mb=256 ...

Hydra imports every module of the hydra_plugins package when it starts, in any Hydra app of the
environment, so this one only registers its option and imports gdfit when a sweep launches.
"""

import gc
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.utils import (
    JobReturn,
    JobRuntime,
    JobStatus,
    configure_log,
    env_override,
    run_job,
    setup_globals,
)
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

MEMORY_MB = 1024  # the default budget of one program: a few thousand default configs


@dataclass
class BatchedLauncherConf:
    _target_: str = "hydra_plugins.gdfit_batched_launcher.batched_launcher.BatchedLauncher"
    memory_mb: float = MEMORY_MB  # the most one program's arrays and curves may take, > 0


ConfigStore.instance().store(
    group="hydra/launcher", name="batched", node=BatchedLauncherConf, provider="gdfit"
)


class BatchedLauncher(Launcher):
    def __init__(self, memory_mb: float) -> None:
        from gdfit.errors import ConfigError

        if not memory_mb > 0:
            raise ConfigError(
                "hydra.launcher.memory_mb", "must be a positive number of megabytes", memory_mb
            )
        self.memory_mb = memory_mb
        self.config: Any = None
        self.context: Any = None
        self.task_function: Any = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config, self.context, self.task_function = config, hydra_context, task_function

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        if not gc.isenabled():  # as gdfit.cli.hydra_main: what is imported now lives on
            gc.freeze()
            gc.enable()
        from gdfit.jobs import compose_many

        overrides = [list(o) for o in job_overrides]
        jobs = compose_many(overrides, self._compose)
        returns: list[JobReturn | None] = [None] * len(jobs)
        env = dict(jobs[0][1].hydra.job.env_set) if jobs else {}
        with env_override(env):  # where each job's run finds the sweep's parent
            ready = self._checked(jobs, overrides, returns)
            self._run(overrides, ready, returns, initial_job_idx)
        assert all(r is not None for r in returns)
        return returns  # type: ignore[return-value]

    def _compose(self, overrides: list[str]) -> DictConfig:
        """A job's config, composed as Hydra's basic launcher composes it."""
        return self.context.config_loader.load_sweep_config(self.config, overrides)

    def _checked(self, jobs: list, overrides: list[list[str]], returns: list) -> dict:
        """{index: config} of the jobs whose settings pass gdfit's checks after composing; a
        job that fails them gets its FAILED child now, as a sequential job would."""
        from gdfit import config, sweeps, train

        ready = {}
        for i, (task, shape) in enumerate(jobs):
            try:
                config.check_composed(task, shape.hydra.runtime.choices)
            except Exception as error:
                name = task.tracking.run_name or train.default_run_name(task)
                score = sweeps.job_failed(task, name, error, False)
                returns[i] = _returned(overrides[i], task, score)
            else:
                ready[i] = task
        return ready

    def _run(self, overrides: list[list[str]], ready: dict, returns: list, first: int) -> None:
        from gdfit import batched

        indices = sorted(ready)
        groups, alone = batched.plan([ready[i] for i in indices])
        for why in dict.fromkeys(alone.values()):
            count = sum(1 for w in alone.values() if w == why)
            print(f"gdfit: {count} of {len(overrides)} jobs run one at a time: {why}", flush=True)
        work: list[tuple[int, list[int] | None]] = []
        work += [(indices[g[0]], [indices[n] for n in g]) for g in groups]
        work += [(indices[n], None) for n in alone]
        for index, group in sorted(work, key=lambda w: w[0]):
            if group is None:  # as Hydra's basic launcher runs a job
                job = self._compose(overrides[index])
                with open_dict(job):
                    job.hydra.job.id = job.hydra.job.num = first + index
                returns[index] = run_job(
                    hydra_context=self.context,
                    task_function=self.task_function,
                    config=job,
                    job_dir_key="hydra.sweep.dir",
                    job_subdir_key="hydra.sweep.subdir",
                )
                configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
                continue
            scores = batched.run(
                [ready[i] for i in group], [overrides[i] for i in group], self.memory_mb
            )
            for i, score in zip(group, scores, strict=True):
                returns[i] = _returned(overrides[i], ready[i], score)


def _returned(overrides: list[str], task: DictConfig, score: float) -> JobReturn:
    """The JobReturn of a job this launcher ran itself: its score, as the task function's."""
    returned = JobReturn(
        overrides=overrides,
        cfg=task,
        working_dir=str(Path.cwd()),
        task_name=JobRuntime.instance().get("name"),
        status=JobStatus.COMPLETED,
    )
    returned.return_value = score if math.isfinite(score) else math.inf
    return returned
