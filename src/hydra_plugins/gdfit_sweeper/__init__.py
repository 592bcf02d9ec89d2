"""Hydra's basic grid sweeper, composing each job's config once: gdfit's `hydra/sweeper=basic`.

Hydra's BasicSweeper composes every job's config before the batch starts, to fail early on
a bad combination (`optimizer=sgd,bogus`), and its basic launcher composes each again to run
it: ~0.06 s a job twice. With the basic launcher, which runs the jobs in this process, the
configs composed to validate are the ones launched. Other launchers (joblib, submitit) compose
in their own processes and get Hydra's plain behaviour.

It lives under `hydra_plugins` because Hydra instantiates sweepers from there only, and takes
the place of Hydra's `hydra/sweeper/basic` option (the same settings: max_batch_size, params):
Hydra's plugin scan runs this module after its own core plugins, so this registration stands.
"""

from collections.abc import Sequence

from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper as HydraBasicSweeper
from hydra._internal.core_plugins.basic_sweeper import BasicSweeperConf
from hydra.core.config_store import ConfigStore
from hydra.types import HydraContext


class _Composed:
    """The sweep's config loader, answering `load_sweep_config` from the configs the sweeper
    composed to validate the batch (each handed out once), and composing what it lacks."""

    def __init__(self, loader) -> None:
        self.loader = loader
        self.kept: dict[tuple[str, ...], object] = {}

    def load_sweep_config(self, master_config, sweep_overrides):
        found = self.kept.pop(tuple(sweep_overrides), None)
        if found is None:
            found = self.loader.load_sweep_config(master_config, list(sweep_overrides))
        return found

    def __getattr__(self, name: str):
        return getattr(self.loader, name)


class BasicSweeper(HydraBasicSweeper):
    def setup(self, *, hydra_context: HydraContext, task_function, config) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        self.composed = None
        if type(self.launcher) is BasicLauncher:  # jobs composed and run in this process
            self.composed = _Composed(hydra_context.config_loader)
            self.launcher.hydra_context = HydraContext(self.composed, hydra_context.callbacks)

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        if self.composed is None:
            return super().validate_batch_is_legal(batch)
        for overrides in batch:  # as Hydra validates: a bad job fails before any runs
            config = self.composed.loader.load_sweep_config(self.config, list(overrides))
            self.composed.kept[tuple(overrides)] = config


ConfigStore.instance().store(
    group="hydra/sweeper",
    name="basic",
    node=BasicSweeperConf(_target_=f"{__name__}.BasicSweeper"),
    provider="gdfit",
)
