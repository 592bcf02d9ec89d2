"""Models, backends and update rules, found by name.

Each is one module of its package, named as its option in `conf/<group>/<name>.yaml`; the names
are read from the package, so a new one is a module and a YAML and nothing else. The modules
import torch only inside their functions, so listing them (to validate a config or to name the
choices in an error) never imports it.
"""

import pkgutil
from functools import cache
from importlib import import_module
from types import ModuleType

PACKAGES = {"model": "gdfit.models", "backend": "gdfit.backends", "optimizer": "gdfit.optimizers"}
GROUPS = tuple(PACKAGES)  # the config groups whose options are modules


@cache
def names(group: str) -> tuple[str, ...]:
    """The options of `group`, sorted: its package's modules whose name has no leading `_`."""
    package = import_module(PACKAGES[group])
    found = pkgutil.iter_modules(package.__path__)
    return tuple(sorted(m.name for m in found if not m.name.startswith("_")))


def load(group: str, name: str) -> ModuleType:
    return import_module(f"{PACKAGES[group]}.{name}")
