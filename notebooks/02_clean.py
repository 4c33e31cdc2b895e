# Databricks notebook source
# MAGIC %md
# MAGIC # lakebert · Clean: bronze → silver
# MAGIC
# MAGIC Normalizes text, applies the quality filters, removes exact (and optionally near) duplicates, assigns label ids and splits, and writes a data-quality report. Incremental through bronze's change data feed.
# MAGIC
# MAGIC **Parameters** — text widgets on Databricks; elsewhere the environment variables
# MAGIC `LAKEBERT_NOTEBOOK_ENV`, `LAKEBERT_NOTEBOOK_CONFIG` and `LAKEBERT_NOTEBOOK_OVERRIDES`, or the defaults:
# MAGIC - `env`: the `conf/env/<env>.yaml` overlay (`databricks` on Databricks, `local` elsewhere)
# MAGIC - `config`: an extra YAML file, optional
# MAGIC - `overrides`: `key=value` pairs separated by `;`, for example `clean.near_dedup.enabled=true`
# MAGIC
# MAGIC The notebook calls the library (`spark_jobs.notebook.run_in_notebook("clean", ...)`), the same code as
# MAGIC `lakebert clean`. On Databricks, install the lakebert wheel on the cluster first (see docs/deploy.md).
# MAGIC Locally: `python notebooks/02_clean.py`.

# COMMAND ----------

import json

from spark_jobs.notebook import notebook_params, run_in_notebook

params = notebook_params(globals().get("dbutils"))
print(params)

# COMMAND ----------

summary = run_in_notebook("clean", params, globals().get("spark"))

# COMMAND ----------

# MAGIC %md
# MAGIC ## Summary
# MAGIC The same JSON that `lakebert clean` prints last; the run record is under `<lakehouse.root>/_runs/clean/`.

# COMMAND ----------

print(json.dumps(summary, indent=2, default=str))
