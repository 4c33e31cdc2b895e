# Databricks notebook source
# MAGIC %md
# MAGIC # lakebert · Train: tokenized Parquet → registered model
# MAGIC
# MAGIC Launches DDP training with TorchDistributor, logs the run to MLflow and registers the model. A finished job is up to date; a crashed one resumes.
# MAGIC
# MAGIC **Parameters** — text widgets on Databricks; elsewhere the environment variables
# MAGIC `LAKEBERT_NOTEBOOK_ENV`, `LAKEBERT_NOTEBOOK_CONFIG` and `LAKEBERT_NOTEBOOK_OVERRIDES`, or the defaults:
# MAGIC - `env`: the `conf/env/<env>.yaml` overlay (`databricks` on Databricks, `local` elsewhere)
# MAGIC - `config`: an extra YAML file, optional
# MAGIC - `overrides`: `key=value` pairs separated by `;`, for example `train.num_processes=2;mlflow.registered_model=lakebert-classifier`
# MAGIC
# MAGIC The notebook calls the library (`spark_jobs.notebook.run_in_notebook("train", ...)`), the same code as
# MAGIC `lakebert train`. On Databricks, install the lakebert wheel on the cluster first (see docs/deploy.md).
# MAGIC Locally: `python notebooks/04_train.py`.

# COMMAND ----------

import json

from spark_jobs.notebook import notebook_params, run_in_notebook

params = notebook_params(globals().get("dbutils"))
print(params)

# COMMAND ----------

summary = run_in_notebook("train", params, globals().get("spark"))

# COMMAND ----------

# MAGIC %md
# MAGIC ## Summary
# MAGIC The same JSON that `lakebert train` prints last; the run record is under `<lakehouse.root>/_runs/train/`.

# COMMAND ----------

print(json.dumps(summary, indent=2, default=str))
