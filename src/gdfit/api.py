"""gdfit from Python: the one path that `gdfit-train`, `gdfit-rerun` and notebooks share.

    cfg = api.compose("backend=tensor", "optimizer.lr=2e-6")   # Hydra overrides, as on the CLI
    result = api.run(cfg)                                      # one tracked MLflow run

A bad setting raises gdfit.errors.ConfigError (or Hydra's own error for an unknown group option
or a malformed override) with the one line the commands print.
"""

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from omegaconf import DictConfig, OmegaConf, open_dict

from gdfit import config, train
from gdfit.paths import conf_dir
from gdfit.train import Result

__all__ = ["Result", "compose", "run"]


def compose(*overrides: str) -> DictConfig:
    """The config `gdfit-train <overrides>` would run, composed by Hydra from conf/ and checked
    as the command checks it."""
    config.register()
    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        cfg = hydra_compose("config", list(overrides), return_hydra_config=True)
    choices = OmegaConf.to_container(cfg.hydra.runtime.choices)
    with open_dict(cfg):
        del cfg["hydra"]
    config.check_composed(cfg, choices)
    config.validate(cfg)
    return cfg


def run(
    cfg: DictConfig,
    *,
    overrides: list[str] = (),
    tags: dict[str, str] | None = None,
    parent: str | None = None,
    snapshot_steps=None,
    progress: str = "lines",
) -> Result:
    """One tracked run of `cfg`: validate, prepare, fit, record. `overrides` and `tags` are
    recorded with it; `parent`: the id of a run to nest it under (a sweep's parent run);
    `snapshot_steps`: keep the parameters after these many updates in `Result.snapshots`;
    `progress`: what the console shows (console.PROGRESS)."""
    tags = dict(tags or {})
    if parent is not None:
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID  # ~1 s: only when asked

        tags[MLFLOW_PARENT_RUN_ID] = parent
    return train.train(
        cfg, overrides=overrides, tags=tags, snapshot_steps=snapshot_steps, progress=progress
    )
