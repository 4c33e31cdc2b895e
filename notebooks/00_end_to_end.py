# Databricks notebook source
# MAGIC %md
# MAGIC # lakebert · The whole pipeline: ingest → clean → tokenize → train
# MAGIC
# MAGIC Runs every stage with one config, skips what is up to date, and ends with a summary: rows per stage, quarantine by reason, validation and test metrics, the MLflow run and the registered model.
# MAGIC
# MAGIC **Parameters** — text widgets on Databricks; elsewhere the environment variables
# MAGIC `LAKEBERT_NOTEBOOK_ENV`, `LAKEBERT_NOTEBOOK_CONFIG` and `LAKEBERT_NOTEBOOK_OVERRIDES`, or the defaults:
# MAGIC - `env`: the `conf/env/<env>.yaml` overlay (`databricks` on Databricks, `local` elsewhere)
# MAGIC - `config`: an extra YAML file, optional
# MAGIC - `overrides`: `key=value` pairs separated by `;`, for example `ingest.source=/Volumes/main/raw/reviews;ingest.format=csv`
# MAGIC
# MAGIC The notebook calls the library (`spark_jobs.notebook.run_in_notebook("run", ...)`), the same code as
# MAGIC `lakebert run`. On Databricks, install the lakebert wheel on the cluster first (see docs/deploy.md).
# MAGIC Locally: `python notebooks/00_end_to_end.py`.

# COMMAND ----------

import json

from spark_jobs.notebook import notebook_params, run_in_notebook

params = notebook_params(globals().get("dbutils"))
print(params)

# COMMAND ----------

summary = run_in_notebook("run", params, globals().get("spark"))

# COMMAND ----------

# MAGIC %md
# MAGIC ## Summary
# MAGIC The same JSON that `lakebert run` prints last; the run record is under `<lakehouse.root>/_runs/run/`.

# COMMAND ----------

print(json.dumps(summary, indent=2, default=str))
