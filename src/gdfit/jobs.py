"""A sweep's jobs from its override lines: the grid as Hydra's basic sweeper lists it, and the
jobs' configs composed shape by shape (Hydra composes a shape's first two jobs; the others get
their values set into the first)."""

import copy
import itertools
from collections.abc import Callable

from omegaconf import DictConfig, OmegaConf, open_dict, read_write


def grid(lines: list[str]) -> list[list[str]]:
    """The jobs of a grid sweep over override strings, as Hydra's basic sweeper lists them: a
    later key's value changes first, a key given twice keeps its last values. HydraException
    for a sweep the basic sweeper does not take (a range of floats, glob without a config)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    values: dict[str, list[str]] = {}
    for o in OverridesParser.create().parse_overrides(lines):
        key = o.get_key_element()
        if not o.is_sweep_override():
            values[key] = [f"{key}={o.get_value_element_as_str()}"]
        elif o.is_discrete_sweep():
            values[key] = [f"{key}={v}" for v in o.sweep_string_iterator()]
        else:
            raise HydraException(f"a grid cannot sweep {o.input_line}: give the values one by one")
    return [list(job) for job in itertools.product(*values.values())]


def compose_many(
    jobs: list[list[str]], compose: Callable[[list[str]], DictConfig]
) -> list[tuple[DictConfig, DictConfig]]:
    """The configs of many jobs of a sweep, each a list of overrides, without composing every
    one: (the job's config, resolved, without its `hydra` node; the config `compose` gave for
    the first job of its shape, `hydra` node included).

    Jobs of one shape differ only in the values of plain settings (`optimizer.lr=...`, not a
    group, a `+`, `~` or `hydra.` override). `compose` (Hydra's composition of one job) builds
    the first two jobs of each shape; when the second equals the first with its values set,
    the shape's other jobs are built that way (~1 ms instead of Hydra's ~0.1 s), else each is
    composed too."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    shapes: dict[tuple, tuple[DictConfig, DictConfig, bool | None]] = {}
    out = []
    for job in jobs:
        parsed = parser.parse_overrides(job)
        plain = [o for o in parsed if _plain(o)]
        shape = tuple(o.input_line if not _plain(o) else o.key_or_group for o in parsed)
        if shape not in shapes:
            first = compose(job)
            shapes[shape] = (first, _without_hydra(first), None)
            out.append((_resolved(shapes[shape][1]), first))
            continue
        first, base, trusted = shapes[shape]
        if trusted:
            out.append((_with_values(base, plain), first))
            continue
        composed = _resolved(_without_hydra(compose(job)))
        if trusted is None:  # the shape's second job: does setting values give Hydra's config?
            same = _with_values(base, plain)
            trusted = OmegaConf.to_container(same) == OmegaConf.to_container(composed)
            shapes[shape] = (first, base, trusted)
        out.append((composed, first))
    return out


def _plain(override) -> bool:
    key = override.key_or_group
    changes = not (override.is_add() or override.is_delete() or override.is_force_add())
    return changes and override.package is None and "." in key and not key.startswith("hydra.")


def _without_hydra(composed: DictConfig) -> DictConfig:
    task = copy.deepcopy(composed)
    with read_write(task), open_dict(task):
        task.pop("hydra", None)
    return task


def _resolved(task: DictConfig) -> DictConfig:
    OmegaConf.resolve(task)
    return task


def _with_values(base: DictConfig, overrides: list) -> DictConfig:
    """A copy of `base` with the values of `overrides` set, resolved."""
    task = copy.deepcopy(base)
    for o in overrides:
        OmegaConf.update(task, o.key_or_group, o.value(), merge=True)
    return _resolved(task)
