"""lakebert configuration: typed schema (`conf.schema`) and the one loader (`conf.loader`).

    from conf import load_config
    cfg = load_config(env="local", overrides=["lakehouse.root=/tmp/lh"])
"""

from conf.loader import ConfigError, config_dict, config_yaml, load_config
from conf.redact import redact
from conf.schema import Config

__all__ = ["Config", "ConfigError", "config_dict", "config_yaml", "load_config", "redact"]
