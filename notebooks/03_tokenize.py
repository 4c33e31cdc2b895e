# Databricks notebook source
# MAGIC %md
# MAGIC # lakebert · Tokenize: silver → Parquet for training
# MAGIC
# MAGIC Pins silver to a Delta version, trains or loads the tokenizer, and writes tokenized Parquet with a manifest. Up to date when nothing changed.
# MAGIC
# MAGIC **Parameters** — text widgets on Databricks; elsewhere the environment variables
# MAGIC `LAKEBERT_NOTEBOOK_ENV`, `LAKEBERT_NOTEBOOK_CONFIG` and `LAKEBERT_NOTEBOOK_OVERRIDES`, or the defaults:
# MAGIC - `env`: the `conf/env/<env>.yaml` overlay (`databricks` on Databricks, `local` elsewhere)
# MAGIC - `config`: an extra YAML file, optional
# MAGIC - `overrides`: `key=value` pairs separated by `;`, for example `tokenize.max_length=256`
# MAGIC
# MAGIC The notebook calls the library (`spark_jobs.notebook.run_in_notebook("tokenize", ...)`), the same code as
# MAGIC `lakebert tokenize`. On Databricks, install the lakebert wheel on the cluster first (see docs/deploy.md).
# MAGIC Locally: `python notebooks/03_tokenize.py`.

# COMMAND ----------

import json

from spark_jobs.notebook import notebook_params, run_in_notebook

params = notebook_params(globals().get("dbutils"))
print(params)

# COMMAND ----------

summary = run_in_notebook("tokenize", params, globals().get("spark"))

# COMMAND ----------

# MAGIC %md
# MAGIC ## Summary
# MAGIC The same JSON that `lakebert tokenize` prints last; the run record is under `<lakehouse.root>/_runs/tokenize/`.

# COMMAND ----------

print(json.dumps(summary, indent=2, default=str))
