"""Airflow 3 DAG: ingest >> clean >> tokenize >> train [>> score], [tokenize >> tune]; one SparkSubmitOperator each.

    ln -s "$PWD/airflow_dags/lakebert_pipeline.py" "$AIRFLOW_HOME/dags/"    # then trigger `lakebert_pipeline`


Put this folder on Airflow's `dags_folder` (or symlink the file), install lakebert with its
`airflow` extra where the scheduler's workers run (`pip install "lakebert[airflow]"`), and make
`spark-submit` (from pyspark or $SPARK_HOME/bin) reachable on the workers' PATH.

- Spark connection: the `spark_conn_id` below (env `LAKEBERT_SPARK_CONN_ID`, default
  `lakebert_spark`). When that connection does not exist, it is read from
  `AIRFLOW_CONN_LAKEBERT_SPARK`, which this file defaults to a local master (`local[*]`), so a
  fresh Airflow runs the pipeline on the worker itself. Point it at a cluster with
  `airflow connections add lakebert_spark --conn-uri 'spark://spark-master:7077'` (or
  `--conn-type spark --conn-host yarn`).
- Params (trigger with `--conf` or the UI): `env` (a conf/env overlay), `source` (ingest.source;
  `{ds}` is replaced by the run's logical date, so each scheduled run reads its own slice)
  `overrides` (a list of `key=value`), `score` (true: `lakebert score` after train) and `tune`
  (true: `lakebert tune` after tokenize, beside train; its `tune.space` from the overrides or config).
- Idempotent per logical date: ingest gets `ingest.batch_id=<ds>` and MERGEs on doc_id, so a
  retried or re-run date inserts nothing new; clean, tokenize and train say up to date.
- The overrides (and ingest's source and batch id) reach the stage in spark-submit's
  environment, `$LAKEBERT_OVERRIDES` (a JSON list the stage reads below its `--set`), never in
  its argv, which `ps` shows to every user of the worker; spark-submit's argv holds only
  `--env`. That needs the driver on the worker (client deploy mode, the default): with a
  cluster-mode connection, overrides are refused rather than lost.
- Every secret in them (each value of a repeated key; secret key names and values as
  `conf.redact` knows them: `*.key.*`, `password`, `Authorization`, URL credentials, ...) is
  registered with Airflow's secrets masker when the task is rendered (`lakebert_args`), so the
  rendered fields in the UI and the task log show `***`.
- Parsing imports only Airflow and the standard library (no pyspark, torch or mlflow): the
  tasks come from the stages' records (`spark_jobs/registry.py`: the pipeline steps in order,
  the on-demand stages, each one's script and timeout), read as a file, not imported as part of
  lakebert; the registry reads the stage modules' source without importing them.
- Each task's log ends with the stage's JSON summary (`--json`), also saved as
  `_runs/<stage>/<stage_run_id>/summary.json`.
"""

from __future__ import annotations

import json
import os
import runpy
import sys
from datetime import datetime, timedelta
from pathlib import Path

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.providers.standard.operators.python import ShortCircuitOperator
from airflow.sdk import DAG, Param
from airflow.sdk.exceptions import AirflowFailException

LAKEBERT_HOME = Path(os.environ.get("LAKEBERT_HOME", Path(__file__).resolve().parents[1]))
SPARK_CONN_ID = os.environ.get("LAKEBERT_SPARK_CONN_ID", "lakebert_spark")
# A local default for the connection, used only when Airflow has no `lakebert_spark` connection.
os.environ.setdefault("AIRFLOW_CONN_LAKEBERT_SPARK", '{"conn_type": "spark", "host": "local[*]"}')
# Must match spark_jobs.session.delta_package() (tested); not imported, to keep parsing light.
DELTA_PACKAGE = "io.delta:delta-spark_4.2_2.13:4.4.0"
DELTA_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}
PYTHON = os.environ.get("PYSPARK_PYTHON", sys.executable)
# The stages' records, read without importing lakebert: the pipeline steps in order (ingest,
# clean, tokenize, train), then the on-demand stages (score after train, tune after tokenize),
# each with its script under LAKEBERT_HOME (tokenize: spark_jobs/tokenize_silver.py) and timeout.
REGISTRY = runpy.run_path(str(LAKEBERT_HOME / "spark_jobs" / "registry.py"))
STEPS = REGISTRY["steps"]()
ON_DEMAND = REGISTRY["on_demand"]()
OVERRIDES_ENV = REGISTRY["OVERRIDES_ENV"]  # how a stage is handed its overrides: spark-submit's environment
INGEST = "ingest"  # the step that reads the run's slice (`params.source`) as its batch
# Every stage gets --env in argv and the overrides in its environment; ingest also gets its
# slice and batch id (after the overrides: they win). `--json`: the task's log ends with the summary.
ARGS = "{{ ['--env', params.env, '--json'] }}"
OVERRIDES = "{{ lakebert_args(params.overrides) }}"
INGEST_OVERRIDES = ("{{ lakebert_args(params.overrides + ['ingest.source=' ~ (params.source | replace('{ds}', ds)), "
                    "'ingest.batch_id=' ~ ds]) }}")


def lakebert_args(overrides: list[str]) -> list[str]:
    """The overrides unchanged, after telling Airflow's secrets masker about every secret in
    them (run at render time in the task process, before the rendered fields are stored).
    Item by item: a key given twice has two values, and both are secret."""
    from airflow.sdk.log import mask_secret

    from conf.redact import secrets_in  # lakebert itself: imported when rendering, not when parsing

    for key, _, value in (item.partition("=") for item in overrides):
        for secret in secrets_in({key.strip(): value}):
            mask_secret(secret)
    return list(overrides)


class LakebertSubmitOperator(SparkSubmitOperator):
    """spark-submit of a lakebert stage, its overrides in `$LAKEBERT_OVERRIDES`: spark-submit
    inherits the task's environment, and its driver (on the worker, in client mode) passes it
    on to the stage, which reads the variable and drops it (`spark_jobs.stage.handed_overrides`).
    A process's environment is readable by its owner only; its argv, by every user of the machine."""

    template_fields = (*SparkSubmitOperator.template_fields, "overrides")

    def __init__(self, *, overrides: str | list[str] = (), **kwargs) -> None:
        super().__init__(**kwargs)
        self.overrides = overrides

    def execute(self, context):
        overrides = self.overrides or []
        if isinstance(overrides, str):  # rendered as text, not a list (render_template_as_native_obj off)
            raise AirflowFailException(f"lakebert {self.task_id}: overrides must render to a list of key=value")
        overrides = list(overrides)
        if overrides:
            self._hook = self._hook or self._get_hook()
            if self._hook._connection.get("deploy_mode") == "cluster":
                raise AirflowFailException(
                    f"lakebert {self.task_id}: the overrides travel in spark-submit's environment, which a "
                    "cluster-mode driver does not get: use client deploy mode, or put the settings in a conf/env overlay")
        os.environ[OVERRIDES_ENV] = json.dumps(overrides)
        try:
            return super().execute(context)
        finally:
            os.environ.pop(OVERRIDES_ENV, None)


doc_md = """
### lakebert: text in, a registered classifier out

`ingest >> clean >> tokenize >> train`, each a `spark-submit` of its stage's script
(`spark_jobs/ingest.py`, `clean.py`, `tokenize_silver.py`, `train.py`) with the same config
(`--env {{ params.env }}`, and `overrides` in the environment, out of `ps`). With `score` true, `score` (`spark_jobs/score.py`)
follows: the `@champion` model over silver, or over `score.source` from the overrides. With
`tune` true, `tune` (`spark_jobs/tune.py`) runs after tokenize, beside train: an Optuna study
over `tune.space` from the overrides or the env's config, its best model registered `@tuned`. The logical date picks the ingest slice (`source`
with `{ds}`) and is the ingest batch id, so reruns are idempotent.
Results: Delta tables and tokenized data under `lakehouse.root`, the model in MLflow
(`mlflow.registered_model`). Each task's log ends with the stage's JSON summary, also saved
under `lakehouse.root` as `_runs/<stage>/<stage_run_id>/summary.json`.
"""

with DAG(
    dag_id="lakebert_pipeline",
    description="lakebert: ingest, clean, tokenize and train with one config",
    doc_md=doc_md,
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    render_template_as_native_obj=True,
    user_defined_macros={"lakebert_args": lakebert_args},
    default_args={
        "owner": "lakebert",
        "retries": 2,
        "retry_delay": timedelta(minutes=2),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=30),
    },
    params={
        "env": Param("local", type="string", description="conf/env overlay: local, cluster or databricks"),
        "source": Param("", type="string", description="ingest.source; {ds} becomes the logical date"),
        "overrides": Param([], type="array", items={"type": "string"},
                           description="config overrides, key=value each"),
        # one switch per on-demand stage: `score` after train, `tune` after tokenize, beside train
        **{stage.name: Param(False, type="boolean", description=f"after {stage.after}, run lakebert {stage.name}: "
                                                                f"{stage.description} ({stage.name}.* overrides)")
           for stage in ON_DEMAND},
    },
    tags=["lakebert"],
) as dag:
    def submit(stage, overrides: str = OVERRIDES) -> SparkSubmitOperator:
        """The task of a stage's record (`spark_jobs.registry.Stage`)."""
        return LakebertSubmitOperator(
            task_id=stage.name,
            conn_id=SPARK_CONN_ID,
            application=str(LAKEBERT_HOME / stage.script),
            application_args=ARGS,
            overrides=overrides,
            packages=DELTA_PACKAGE,
            conf=DELTA_CONF,
            name=f"lakebert-{stage.name}",
            # spark-submit's driver must run the Python that has lakebert (this one, by default)
            env_vars={"PYSPARK_PYTHON": PYTHON, "PYSPARK_DRIVER_PYTHON": PYTHON},
            execution_timeout=timedelta(hours=stage.timeout_hours),
            doc_md=f"`spark-submit {stage.script}` (see `lakebert {stage.name} --help`).",
        )

    previous = None
    for step in STEPS:
        task = submit(step, INGEST_OVERRIDES if step.name == INGEST else OVERRIDES)
        if previous is not None:
            previous >> task
        previous = task

    # The optional tasks: each skipped (not failed) unless the run's param of its name is true.
    for stage in ON_DEMAND:
        requested = ShortCircuitOperator(
            task_id=f"{stage.name}_requested", python_callable=lambda params, name=stage.name: bool(params[name]),
            doc_md=f"Goes on to `{stage.name}` only when the run's `{stage.name}` param is true.")
        dag.get_task(stage.after) >> requested >> submit(stage)
