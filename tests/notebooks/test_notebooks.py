"""Every notebook runs end to end as a plain Python file on the sample data, with parameters
from the environment; the widget path takes them from a dbutils-shaped object.

00_end_to_end is `lakebert run` (`run_in_notebook("run")`, the same `pipeline` as conftest's
`sample_run`): here it runs after the stage notebooks and finds nothing to do, and the Connect
test runs it on a Connect session."""

import runpy
from pathlib import Path

from spark_jobs.notebook import notebook_params, split_overrides
from spark_jobs.sample_data import write_sample
from tests.conftest import TEST_SPARK

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
HEADER = "# Databricks notebook source"


def _overrides(root, src):
    return ";".join([*TEST_SPARK, f"lakehouse.root={root}", f"ingest.source={src}", "ingest.id_column=id",
                     "tokenize.vocab_size=1500", "tokenize.max_length=64", "train.batch_size=16",
                     "train.epochs=2", "mlflow.system_metrics=false"])  # not the from-scratch default's 20


def _run(name, monkeypatch, overrides):
    monkeypatch.setenv("LAKEBERT_NOTEBOOK_OVERRIDES", overrides)
    return runpy.run_path(str(NOTEBOOKS / f"{name}.py"), run_name="__main__")["summary"]


def test_notebooks_are_in_databricks_source_format():
    for path in NOTEBOOKS.glob("*.py"):
        text = path.read_text()
        assert text.startswith(HEADER + "\n"), path
        assert "# COMMAND ----------" in text and "# MAGIC %md" in text, path


def test_stage_notebooks_run_in_order_then_the_end_to_end_one_finds_nothing_to_do(spark, tmp_path, monkeypatch):
    src = write_sample(tmp_path / "data", n_docs=600, seed=11)
    overrides = _overrides(tmp_path / "lh", src)
    ingest = _run("01_ingest", monkeypatch, overrides)
    assert ingest["stage"] == "ingest" and ingest["inserted"] > 500
    clean = _run("02_clean", monkeypatch, overrides)
    assert clean["status"] == "done" and clean["input"] == ingest["inserted"]
    tokenize = _run("03_tokenize", monkeypatch, overrides)
    assert tokenize["rows"] == clean["output"]
    train = _run("04_train", monkeypatch, overrides)
    assert train["status"] == "done" and train["registered_model"]["version"] == "1"
    everything = _run("00_end_to_end", monkeypatch, overrides)
    assert everything["status"] == "up_to_date" and everything["mlflow_run_id"] == train["run_id"]
    scored = _run("05_score", monkeypatch, overrides + ";score.split=test")
    assert scored["stage"] == "score" and scored["scored"] == scored["read"] > 0
    assert scored["model_version"] == "1" and scored["evaluation"]["examples"] == scored["scored"]
    # two trials at once, one process each (train.num_processes=2 split in two)
    tuned = _run("06_tune", monkeypatch, overrides + ";tune.trials=2;tune.parallel_trials=2;train.epochs=1;"
                 "tune.pruner=none;tune.space.lr={type: loguniform, low: 1.0e-4, high: 1.0e-2}")
    assert tuned["status"] == "done" and tuned["trials"] == {"complete": 2, "pruned": 0, "failed": 0, "total": 2}
    from mlflow import MlflowClient

    client = MlflowClient(tuned["tracking_uri"])
    children = client.search_runs([client.get_run(tuned["parent_run_id"]).info.experiment_id],
                                  filter_string=f"tags.`mlflow.parentRunId` = '{tuned['parent_run_id']}'")
    assert [run.data.params["train.num_processes"] for run in children] == ["1", "1"]
    assert tuned["registered_model"] == {"name": "lakebert-classifier", "version": "2", "alias": "tuned"}


class _Widgets:
    """The two calls the notebooks make on Databricks' dbutils.widgets."""

    def __init__(self, values):
        self.values, self.created = values, {}

    def text(self, name, default):
        self.created[name] = default

    def get(self, name):
        return self.values.get(name, self.created[name])


class _DbUtils:
    def __init__(self, values):
        self.widgets = _Widgets(values)


def test_parameters_come_from_widgets_when_dbutils_is_present():
    dbutils = _DbUtils({"overrides": "ingest.format=csv; ingest.text_column=body"})
    params = notebook_params(dbutils)
    assert dbutils.widgets.created == {"env": "databricks", "config": "", "overrides": ""}
    assert params["env"] == "databricks"
    assert split_overrides(params["overrides"]) == ["ingest.format=csv", "ingest.text_column=body"]


def test_parameters_default_without_dbutils(monkeypatch):
    monkeypatch.delenv("LAKEBERT_NOTEBOOK_ENV", raising=False)
    monkeypatch.setenv("LAKEBERT_NOTEBOOK_OVERRIDES", "a.b=1\nc.d=2")
    params = notebook_params(None)
    assert params["env"] == "" and split_overrides(params["overrides"]) == ["a.b=1", "c.d=2"]
