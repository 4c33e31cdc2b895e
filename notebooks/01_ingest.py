# Databricks notebook source
# MAGIC %md
# MAGIC # lakebert · Ingest: raw files or a table → bronze
# MAGIC
# MAGIC Reads `ingest.source` (jsonl, csv, parquet, text or a Delta table), MERGEs new documents into the bronze Delta table on `doc_id`, and puts bad records into quarantine with a reason. Rerunning on the same input inserts nothing.
# MAGIC
# MAGIC **Parameters** — text widgets on Databricks; elsewhere the environment variables
# MAGIC `LAKEBERT_NOTEBOOK_ENV`, `LAKEBERT_NOTEBOOK_CONFIG` and `LAKEBERT_NOTEBOOK_OVERRIDES`, or the defaults:
# MAGIC - `env`: the `conf/env/<env>.yaml` overlay (`databricks` on Databricks, `local` elsewhere)
# MAGIC - `config`: an extra YAML file, optional
# MAGIC - `overrides`: `key=value` pairs separated by `;`, for example `ingest.source=/Volumes/main/raw/reviews;ingest.format=csv;ingest.text_column=body`
# MAGIC
# MAGIC The notebook calls the library (`spark_jobs.notebook.run_in_notebook("ingest", ...)`), the same code as
# MAGIC `lakebert ingest`. On Databricks, install the lakebert wheel on the cluster first (see docs/deploy.md).
# MAGIC Locally: `python notebooks/01_ingest.py`.

# COMMAND ----------

import json

from spark_jobs.notebook import notebook_params, run_in_notebook

params = notebook_params(globals().get("dbutils"))
print(params)

# COMMAND ----------

summary = run_in_notebook("ingest", params, globals().get("spark"))

# COMMAND ----------

# MAGIC %md
# MAGIC ## Summary
# MAGIC The same JSON that `lakebert ingest` prints last; the run record is under `<lakehouse.root>/_runs/ingest/`.

# COMMAND ----------

print(json.dumps(summary, indent=2, default=str))
