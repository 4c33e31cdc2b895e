# Databricks notebook source
# MAGIC %md
# MAGIC # lakebert · Score: the registered model over new documents
# MAGIC
# MAGIC Scores silver (or `score.source`) with `models:/<name>@champion` (or `score.model`) on the executors, into the `predictions` Delta table. Only rows that model version has not scored are scored; labelled input gets an evaluation and a drift report in MLflow.
# MAGIC
# MAGIC **Parameters** — text widgets on Databricks; elsewhere the environment variables
# MAGIC `LAKEBERT_NOTEBOOK_ENV`, `LAKEBERT_NOTEBOOK_CONFIG` and `LAKEBERT_NOTEBOOK_OVERRIDES`, or the defaults:
# MAGIC - `env`: the `conf/env/<env>.yaml` overlay (`databricks` on Databricks, `local` elsewhere)
# MAGIC - `config`: an extra YAML file, optional
# MAGIC - `overrides`: `key=value` pairs separated by `;`, for example `score.source=/data/new;score.format=jsonl`
# MAGIC
# MAGIC The notebook calls the library (`spark_jobs.notebook.run_in_notebook("score", ...)`), the same code as
# MAGIC `lakebert score`. On Databricks, install the lakebert wheel on the cluster first (see docs/deploy.md).
# MAGIC Locally: `python notebooks/05_score.py`.

# COMMAND ----------

import json

from spark_jobs.notebook import notebook_params, run_in_notebook

params = notebook_params(globals().get("dbutils"))
print(params)

# COMMAND ----------

summary = run_in_notebook("score", params, globals().get("spark"))

# COMMAND ----------

# MAGIC %md
# MAGIC ## Summary
# MAGIC The same JSON that `lakebert score` prints last; the run record is under `<lakehouse.root>/_runs/score/`.

# COMMAND ----------

print(json.dumps(summary, indent=2, default=str))
