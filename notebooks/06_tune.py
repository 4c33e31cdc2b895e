# Databricks notebook source
# MAGIC %md
# MAGIC # lakebert · Tune: an Optuna study of train jobs
# MAGIC
# MAGIC Runs a study over the tokenized data: each trial is a `lakebert train` job through TorchDistributor with values drawn from `tune.space`, a nested MLflow run under the study's parent run. Trials that lag are pruned; the best trial's model is registered with the alias `@tuned`. Rerunning the notebook continues the same study.
# MAGIC
# MAGIC **Parameters** — text widgets on Databricks; elsewhere the environment variables
# MAGIC `LAKEBERT_NOTEBOOK_ENV`, `LAKEBERT_NOTEBOOK_CONFIG` and `LAKEBERT_NOTEBOOK_OVERRIDES`, or the defaults:
# MAGIC - `env`: the `conf/env/<env>.yaml` overlay (`databricks` on Databricks, `local` elsewhere)
# MAGIC - `config`: an extra YAML file, optional; the natural home of `tune.space` (see the README)
# MAGIC - `overrides`: `key=value` pairs separated by `;`, for example
# MAGIC   `tune.trials=8;tune.space.lr={type: loguniform, low: 1.0e-5, high: 1.0e-3}`
# MAGIC
# MAGIC The notebook calls the library (`spark_jobs.notebook.run_in_notebook("tune", ...)`), the same code as
# MAGIC `lakebert tune`. On Databricks, install the lakebert wheel on the cluster first (see docs/deploy.md).
# MAGIC Locally: `python notebooks/06_tune.py`.

# COMMAND ----------

import json

from spark_jobs.notebook import notebook_params, run_in_notebook

params = notebook_params(globals().get("dbutils"))
print(params)

# COMMAND ----------

summary = run_in_notebook("tune", params, globals().get("spark"))

# COMMAND ----------

# MAGIC %md
# MAGIC ## Summary
# MAGIC The same JSON that `lakebert tune` prints last: the best trial, its values and metric, the registered
# MAGIC `@tuned` version, and the trial counts. The plots are in the study's parent MLflow run under `tune/`.

# COMMAND ----------

print(json.dumps(summary, indent=2, default=str))
