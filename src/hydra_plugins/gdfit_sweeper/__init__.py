"""Hydra's basic grid sweeper, composing each job's config once: gdfit's `hydra/sweeper=basic`.

Hydra's BasicSweeper composes every job's config before the batch starts, to fail early on
a bad combination (`optimizer=sgd,bogus`), and its basic launcher composes each again to run
it: ~0.06 s a job twice. With the basic launcher, which runs the jobs in this process, the
configs composed to validate are the ones launched. Other launchers (joblib, submitit) compose
in their own processes and get Hydra's plain behaviour.

Most sweeps change only values (`optimizer.lr=1e-6,2e-6`, `train.seed=range(48)`): a job that
differs from the batch's first job only in plain `key=scalar` overrides of keys that are not
config groups is that job's config with those values set, as Hydra itself applies value
overrides after composing the defaults (`ConfigLoaderImpl._apply_overrides_to_config`), plus
its own `hydra.overrides.task` and `hydra.job.override_dirname`. `derived` builds it so
(~0.01 s instead of ~0.06 s); anything else — a group, `+`/`++`/`~`, a dict or list value, a
`hydra.` key — is composed in full. tests/test_sweeps.py checks both give the same YAML.

It lives under `hydra_plugins` because Hydra instantiates sweepers from there only, and takes
the place of Hydra's `hydra/sweeper/basic` option (the same settings: max_batch_size, params):
Hydra's plugin scan runs this module after its own core plugins, so this registration stands.
Under its own name it would have to be selected by an `override` in gdfit's primary config,
and Hydra lets that override win over a preset's own (`hparams_search=lr_optuna` would then
merge Optuna's settings into this sweeper's). The price: other Hydra apps installed in the
same environment get this sweeper for their `basic` too (their configs come out the same).
"""

import copy
from collections.abc import Sequence

from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper as HydraBasicSweeper
from hydra._internal.core_plugins.basic_sweeper import BasicSweeperConf
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import OverrideType
from hydra.types import HydraContext
from omegaconf import DictConfig, OmegaConf


def derived(
    first: DictConfig, first_overrides: Sequence[str], overrides: Sequence[str], master: DictConfig
) -> DictConfig | None:
    """The config of the job with `overrides`, from `first`, the composed config of the job
    with `first_overrides`, when they differ only in the values of plain keys; else None."""
    parser = OverridesParser.create()
    old, new = (
        parser.parse_overrides(list(first_overrides)),
        parser.parse_overrides(list(overrides)),
    )
    if [o.key_or_group for o in old] != [n.key_or_group for n in new]:
        return None
    groups = first.hydra.runtime.choices
    changed = [n for o, n in zip(old, new, strict=True) if o.input_line != n.input_line]
    for n in changed:
        plain = n.type == OverrideType.CHANGE and n.package is None
        if not plain or n.is_hydra_override() or n.key_or_group in groups:
            return None
        if isinstance(n.value(), dict | list):  # merged into the first's, not set: compose
            return None
    config = copy.deepcopy(first)
    ConfigLoaderImpl._apply_overrides_to_config(changed, config)
    task = [n for n in new if not n.is_hydra_override()]
    config.hydra.overrides.task = [n.input_line for n in task]
    dirname = config.hydra.job.config.override_dirname
    config.hydra.job.override_dirname = get_overrides_dirname(
        overrides=task,
        kv_sep=dirname.kv_sep,
        item_sep=dirname.item_sep,
        exclude_keys=list(dirname.exclude_keys),
    )
    OmegaConf.copy_cache(from_config=master, to_config=config)
    return config


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
        first = None  # (config, overrides) of the batch's first job, composed in full
        for overrides in batch:  # as Hydra validates: a bad job fails before any runs
            config = first and derived(first[0], first[1], overrides, self.config)
            if config is None:
                config = self.composed.loader.load_sweep_config(self.config, list(overrides))
                first = first or (config, list(overrides))
            self.composed.kept[tuple(overrides)] = config


ConfigStore.instance().store(
    group="hydra/sweeper",
    name="basic",
    node=BasicSweeperConf(_target_=f"{__name__}.BasicSweeper"),
    provider="gdfit",
)
