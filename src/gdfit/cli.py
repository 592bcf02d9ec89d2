"""`gdfit-train`: Hydra's entry into gdfit. It composes the config from conf/ and the command
line, hands it to the story (gdfit.train), and turns a sweep (-m) into one MLflow parent run
with a child per job (the `MlflowSweep` callback around gdfit.sweeps).

Importing this module stays light: MLflow takes ~1 s to import, which a mistyped setting should
not have to wait for, so the heavy modules are imported once Hydra has composed the config.
"""

import gc
import shutil
import sys
import textwrap
from typing import Any, NoReturn

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, read_write

from gdfit import config
from gdfit.errors import (
    ConfigError,
    GdfitError,
    TrackingError,
    UsageError,
    fail,
    hydra_message,
    reported_errors,
)
from gdfit.jobs import grid
from gdfit.paths import conf_dir
from gdfit.redaction import redact_data


def version_line() -> str:
    """gdfit's version and those of the libraries that decide its numbers and its store."""
    from importlib.metadata import version

    from gdfit.environment import VERSION

    libs = [f"{name} {version(name)}" for name in ("hydra-core", "mlflow", "numpy")]
    return f"gdfit {VERSION} ({', '.join(libs)})"


def refuse_mode_clash(args: list[str]) -> None:
    """Hydra accepts one of -m, --cfg, --info, ... and says so with a traceback."""
    modes = {"-m": "-m", "--multirun": "-m", "-c": "--cfg", "--cfg": "--cfg", "-i": "--info"}
    modes |= {"--info": "--info", "--run": "--run", "-r": "--run"}
    given = sorted({modes[a] for a in args if a in modes})
    if len(given) > 1:
        raise UsageError(
            f"{' and '.join(given)} cannot go together; a sweep's composed config is shown by "
            "--cfg job without -m, and each job's is logged with its run as config.yaml"
        )


config.register()


@hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="config")
def hydra_main(cfg: DictConfig) -> float:
    """One run of the composed config. A failed single run exits with its one-line error; a
    sweep's job goes through `sweeps.run_job` (resume; a failed job leaves a FAILED child and
    returns +inf, what the Optuna sweeper needs, so that the other jobs go on)."""
    from gdfit import console, sweeps, train

    if not gc.isenabled():  # the first job of this process: what is imported now lives on
        gc.freeze()
        gc.enable()
    hydra_cfg = HydraConfig.get()
    overrides = list(hydra_cfg.overrides.task)
    sweeping = hydra_cfg.mode is not None and hydra_cfg.mode.name == "MULTIRUN"
    # A sweep's job prints one line, unless the user asked for its loss lines.
    lines = not sweeping or any(o.startswith("train.log_every=") for o in overrides)

    def run(opened: Any = lambda run_id: None) -> float:
        config.check_composed(cfg, hydra_cfg.runtime.choices)
        progress = "lines" if lines else "none"
        result = train.train(cfg, overrides=overrides, progress=progress, opened=opened)
        if not lines:
            print(console.job_line(result), flush=True)
        return result.final_loss

    if sweeping:
        return sweeps.run_job(cfg, run, cfg.tracking.run_name or train.default_run_name(cfg))
    try:
        sweeps.check_single_run(cfg)
        return run()
    except GdfitError as error:
        fail(error)


HELP_HEAD = (
    "gdfit-train: fit y = a + b x + c x^2 + d x^3 to sin(x) by gradient descent with the "
    "numpy, tensor, autograd or module backend (model=chebyshev: the same cubic in a "
    "better-conditioned basis; model=legendre3, dynamic: PyTorch's tutorial's other models), "
    "and record the run in MLflow (mlruns/ unless tracking.uri or MLFLOW_TRACKING_URI says "
    "otherwise)."
)
HELP_EXAMPLES = [
    ("gdfit-train backend=tensor optimizer.lr=2e-6", "one run"),
    ("gdfit-train -m backend=numpy,tensor,autograd", "a sweep: a parent run, a child per job"),
    ("gdfit-train hparams_search=lr_optuna", "Optuna searches optimizer.lr"),
    (
        "gdfit-train -m hydra/launcher=batched optimizer.lr=1e-6,2e-6 train.seed=0,1",
        "jobs that can share one vectorised program fit as one, each its own child",
    ),
]
HELP_TAIL = (
    "Show the composed config with --cfg job, Hydra's own options with --hydra-help. See "
    "README.md for gdfit-compare, gdfit-rerun, gdfit-ui."
)


def help_text(args: list[str], width: int) -> str:
    """`gdfit-train --help` at `width` columns: what it does, each group's options (conf/'s
    folders: what a user chooses from), the config those choices and `args`' other settings
    compose, and examples."""
    from hydra import compose, initialize_config_dir

    wrap = textwrap.TextWrapper(width=width, break_on_hyphens=False)
    lines = [*wrap.wrap(HELP_HEAD), "", "Choose an option of a group with group=option:"]
    indented = textwrap.TextWrapper(
        width=width, initial_indent="  ", subsequent_indent="      ", break_on_hyphens=False
    )
    for group in sorted(p for p in conf_dir().iterdir() if p.is_dir() and p.name != "hydra"):
        options = sorted(f.stem for f in group.glob("*.yaml"))
        lines += indented.wrap(f"{group.name}: {', '.join(options)}")
    lines += ["", "Set anything in the config with key=value; with the choices given:", ""]
    overrides = [a for a in args if "=" in a and not a.startswith("-")]
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            composed = compose("config", overrides=overrides)
    except Exception as error:
        raise ConfigError.from_line(hydra_message(error)) from error
    lines += OmegaConf.to_yaml(composed).splitlines()
    lines += ["", "Examples:"]
    for command, what in HELP_EXAMPLES:
        lines += [f"  {command}", *indented.wrap(f"    {what}")]
    return "\n".join([*lines, "", *wrap.wrap(HELP_TAIL)])


def main() -> None:
    """Console entry point: `gdfit-train [overrides]`."""
    args = sys.argv[1:]
    if "--version" in args:
        print(version_line())
        return
    with reported_errors():
        if "--help" in args or "-h" in args:
            print(help_text(args, min(shutil.get_terminal_size().columns, 100)))
            return
        refuse_mode_clash(args)
        groups = {p.name: p for p in conf_dir().iterdir() if p.is_dir()}
        config.refuse_group_lists([a for a in args if "=" in a and not a.startswith("-")], groups)
        # Importing MLflow, SQLAlchemy and matplotlib leaves ~10^6 objects that live as long as
        # the process; collecting while they are built walked them again and again (~1 s).
        # The first job freezes them out of the collector's way (see hydra_main).
        gc.disable()
        try:
            hydra_main()
        finally:
            gc.enable()


# ---- a sweep: its parent run around Hydra's jobs ----


def _stop(error: GdfitError) -> NoReturn:
    """Hydra turns an exception raised by a callback into a warning and goes on; a sweep that
    cannot start, or whose jobs failed, ends with gdfit's one line and exit code instead."""
    print(f"gdfit: error: {error}", file=sys.stderr, flush=True)
    raise SystemExit(error.exit_code)


def sweep_size(cfg: DictConfig) -> int | None:
    """How many jobs the sweep will run: the grid's size for Hydra's basic sweeper, the number
    of trials for Optuna's; None when that cannot be told in advance."""
    sweeper = cfg.hydra.sweeper
    if "Optuna" in sweeper._target_:
        return int(sweeper.n_trials)
    if not sweeper._target_.endswith("BasicSweeper"):
        return None
    params = sweeper.get("params") or {}
    lines = [f"{k}={v}" for k, v in params.items()] + list(cfg.hydra.overrides.task)
    try:
        return len(grid(lines))
    except Exception:  # glob(...) and the like need Hydra's config loader
        return None


class MlflowSweep(Callback):
    """Hydra's callbacks around a multirun: the sweep's parent run (gdfit.sweeps.Sweep).

    Hydra builds this callback for single runs too, so MLflow is imported inside the sweep
    hooks only. The parent's id and store reach the jobs as `hydra.job.env_set` overrides:
    Hydra composes every job's config from them (in this process, a worker, or a pickled
    submitit job on another host) and sets them around the job, also where the environment
    does not reach it (a Slurm cluster with `SBATCH_EXPORT=NONE`)."""

    def __init__(self) -> None:
        self.sweep: Any = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if "Optuna" in config.hydra.sweeper._target_:
            _quiet_optuna()
        try:
            self._start(config)
        except GdfitError as error:
            _stop(error)
        except Exception as error:
            _stop(TrackingError(f"cannot start the sweep's parent run: {error}"))

    def _start(self, config: DictConfig) -> None:
        from gdfit import sweeps
        from gdfit.config import hydra_value
        from gdfit.store import resolve_uri

        self.sweep = sweeps.Sweep()
        handed = self.sweep.open(
            resolve_uri(config.tracking.uri),
            config.tracking.experiment,
            list(config.hydra.overrides.task),
            config.hydra.sweeper._target_.rpartition(".")[2],
            config.hydra.launcher._target_.rpartition(".")[2],
            sweep_size(config),
            config.sweep.resume,
        )
        with read_write(config.hydra.overrides):
            for key, value in handed.items():
                line = f"++hydra.job.env_set.{key}={hydra_value(str(value))}"
                config.hydra.overrides.hydra.append(line)
        # filtered before it is YAML, which folds a long value with spaces across lines
        self.sweep.sweep_yaml = OmegaConf.to_yaml(redact_data(OmegaConf.to_container(config)))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from gdfit import sweeps

        if self.sweep is None:
            return
        try:
            jobs, failed = self.sweep.finish("FINISHED")
        except Exception as error:
            self.sweep.ended_early()
            _stop(TrackingError(f"the jobs ended but the sweep's summary was not written: {error}"))
        # A job whose loss diverged is a result of the search, not a failure (sweeps.finish).
        if failed or not jobs:
            said = f"{len(failed)} of {len(jobs)} jobs failed" if jobs else "no job was recorded"
            _stop(sweeps.SweepFailed(said))


def _quiet_optuna() -> None:
    """Optuna announces its study at INFO through a colouring handler of its own, escape codes
    and all even into a file; keep its warnings only, coloured only on a terminal."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if not sys.stderr.isatty():
        optuna.logging.disable_default_handler()
        optuna.logging.enable_propagation()


if __name__ == "__main__":
    main()
