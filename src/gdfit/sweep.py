"""A Hydra multirun as one MLflow parent run with a child run per job.

`MlflowSweep` is a Hydra callback (registered in conf/config.yaml). When the sweep starts it
creates the parent run and exports its id, so every job's run nests under it whichever launcher
runs the job; when the sweep ends it logs summary.csv, comparison.png, final_loss_vs_<key>.png
for each numeric setting swept, and the best child's final_loss on the parent.

Hydra builds this callback for single runs too, so MLflow is imported inside the sweep hooks
only: a plain run with a bad setting fails without paying ~1 s for it.
"""

import atexit
import os
import time

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from gdfit import __version__
from gdfit.environment import git_state, git_tags


class MlflowSweep(Callback):
    def __init__(self) -> None:
        self.uri = self.parent = None

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        from gdfit import tracking

        self.uri = tracking.resolve_uri(config.tracking.uri)
        overrides = list(config.hydra.overrides.task)
        tags = {
            "gdfit.sweep": "true",
            "gdfit.version": __version__,
            "gdfit.sweep_overrides": " ".join(overrides)[:5000],
            "gdfit.sweeper": config.hydra.sweeper._target_.rpartition(".")[2],
            "gdfit.launcher": config.hydra.launcher._target_.rpartition(".")[2],
        }
        tags |= git_tags(git_state())
        name = f"sweep-{time.strftime('%Y%m%d-%H%M%S')}"
        self.parent = tracking.start_parent(self.uri, config.tracking.experiment, name, tags)
        os.environ[tracking.SWEEP_PARENT_ENV] = self.parent
        os.environ[tracking.SWEEP_NAME_ENV] = name
        self.sweep_yaml = OmegaConf.to_yaml(config)
        atexit.register(self._cut_off)  # Ctrl-C or a crash: the parent must not stay RUNNING
        print(f"gdfit: sweep {name}: parent run {self.parent}", flush=True)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        from gdfit import summary, tracking

        os.environ.pop(tracking.SWEEP_PARENT_ENV, None)
        os.environ.pop(tracking.SWEEP_NAME_ENV, None)
        runs = tracking.search_runs(self.uri, parent=self.parent)
        header, table = summary.rows(runs)
        best = summary.best(runs)
        metrics = {"best_final_loss": best.data.metrics["final_loss"]} if best else {}
        failed = sum(r.info.status != "FINISHED" for r in runs)
        tags = {"gdfit.jobs": str(len(runs)), "gdfit.failed_jobs": str(failed)}
        if best:
            tags["gdfit.best_run_id"] = best.info.run_id
        texts = {"summary.csv": summary.to_csv(header, table), "sweep.yaml": self.sweep_yaml}
        tracking.log_figures(self.uri, self.parent, summary.versus_figures(runs))
        tracking.finish_parent(
            self.uri, self.parent, metrics, tags, texts, summary.comparison(self.uri, runs)
        )
        best_text = f"; best {best.info.run_name} final_loss {metrics['best_final_loss']:.8g}"
        print(
            f"gdfit: sweep done: {len(runs)} runs, {failed} failed"
            f"{best_text if best else ''}; parent run {self.parent}",
            flush=True,
        )
        atexit.unregister(self._cut_off)
        self.parent = None

    def _cut_off(self) -> None:
        from gdfit import tracking

        if self.parent:
            tracking.end_if_running(self.uri, self.parent, "KILLED")
