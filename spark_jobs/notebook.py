"""What the notebooks in `notebooks/` share: parameters and one call into the library.

    params = notebook_params(globals().get("dbutils"))      # Databricks widgets, else defaults
    summary = run_in_notebook("ingest", params)              # the same function `lakebert ingest` runs

Parameters: `env` (a conf/env overlay), `config` (an extra YAML file) and `overrides`
(`key=value` pairs separated by `;` or new lines). On Databricks they are text widgets; anywhere
else they come from the environment variables `LAKEBERT_NOTEBOOK_ENV`, `..._CONFIG` and
`..._OVERRIDES`, or default to empty (the local env, `conf/base.yaml`). The config flows
through `conf.load_config` exactly as for `lakebert` and spark-submit.
"""

from __future__ import annotations

import os
import re

from conf import Config, load_config
from spark_jobs.registry import load, stages
from spark_jobs.stage import execute

PARAMS = {"env": "", "config": "", "overrides": ""}
ENV_PREFIX = "LAKEBERT_NOTEBOOK_"
DATABRICKS_ENV = "databricks"


def notebook_params(dbutils=None, defaults: dict[str, str] | None = None) -> dict[str, str]:
    """Widget values on Databricks (the widgets are created with the defaults), else the
    `LAKEBERT_NOTEBOOK_<NAME>` environment variables, else the defaults."""
    defaults = {**PARAMS, **({"env": DATABRICKS_ENV} if dbutils is not None else {}), **(defaults or {})}
    if dbutils is not None:
        for name, value in defaults.items():
            dbutils.widgets.text(name, value)
        return {name: dbutils.widgets.get(name) for name in defaults}
    return {name: os.environ.get(ENV_PREFIX + name.upper(), value) for name, value in defaults.items()}


def split_overrides(text: str) -> list[str]:
    return [item.strip() for item in re.split(r"[;\n]", text or "") if item.strip()]


def notebook_config(params: dict[str, str]) -> Config:
    return load_config(env=params.get("env") or None, config_file=params.get("config") or None,
                       overrides=split_overrides(params.get("overrides", "")))


def run_in_notebook(stage: str, params: dict[str, str], spark=None) -> dict:
    """Run one stage (`ingest`, `clean`, `tokenize`, `train`, `score`, `tune`: any of
    `spark_jobs.registry` with a body) or the whole pipeline (`run`) and return its summary;
    the run record is saved as for `lakebert <stage>`. Only the chosen stage's module is imported."""
    runnable = [name for name, record in stages().items() if record.body is not None]
    if stage not in runnable:
        raise ValueError(f"unknown stage {stage!r} (stages: {', '.join(runnable)})")
    return execute(stage, notebook_config(params), load(stage).body, spark)
