"""lakebert configuration: typed schema (`conf.schema`) and the one loader (`conf.loader`).

    from conf import load_config
    cfg = load_config(env="local", overrides=["lakehouse.root=/tmp/lh"])

The loader's and the schema's names load on first use (PEP 562), so importing `conf.redact` or
`conf.errors` (the storage layer and the Python workers need them) does not load pydantic and the
whole schema. `redact` is a leaf, imported here: it is also the name of its own module.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from conf.redact import redact

if TYPE_CHECKING:
    from conf.loader import ConfigError, config_dict, config_yaml, load_config
    from conf.schema import Config

_HOMES = {"ConfigError": "conf.loader", "config_dict": "conf.loader", "config_yaml": "conf.loader",
          "load_config": "conf.loader", "Config": "conf.schema"}
__all__ = ["Config", "ConfigError", "config_dict", "config_yaml", "load_config", "redact"]


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'conf' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value
    return value
