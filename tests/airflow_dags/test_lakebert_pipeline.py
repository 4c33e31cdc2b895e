"""The Airflow 3 DAG, with real Airflow: it parses cleanly and lightly, its structure and
policies are as documented, and `dag.test()` runs every stage for real with spark-submit.

Airflow runs in subprocesses with their own AIRFLOW_HOME (a sqlite metadata DB), so its
configuration never leaks into the other tests.
"""

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from spark_jobs.sample_data import write_sample
from spark_jobs.session import delta_package

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "airflow_dags"
PAT = "ghp_AirflowRenderedSecret0123456789"
HEAVY = ("pyspark", "torch", "transformers", "mlflow", "spark_jobs", "training")
SCRIPTS = {"ingest": "ingest.py", "clean": "clean.py", "tokenize": "tokenize_silver.py", "train": "train.py",
           "score": "score.py", "tune": "tune.py", "audit": "audit.py"}

INSPECT = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
dag = bag.dags.get("lakebert_pipeline")
tasks = {t.task_id: {"retries": t.retries, "backoff": t.retry_exponential_backoff,
                     "retry_delay": t.retry_delay.total_seconds(),
                     "timeout": t.execution_timeout.total_seconds() if t.execution_timeout else None,
                     "downstream": sorted(t.downstream_task_ids), "conn_id": getattr(t, "_conn_id", None),
                     "application": getattr(t, "application", None), "packages": getattr(t, "packages", None),
                     "operator": type(t).__name__}
         for t in (dag.tasks if dag else [])}
print(json.dumps({"errors": {k: str(v) for k, v in bag.import_errors.items()}, "dag_ids": list(bag.dag_ids),
                  "heavy": [m for m in sys.argv[2:] if m in sys.modules], "tasks": tasks,
                  "max_active_runs": dag.max_active_runs if dag else None, "doc_md": bool(dag and dag.doc_md),
                  "params": sorted(dag.params.keys()) if dag else []}))
"""

RUN = """
import json, sys
from datetime import datetime, timezone
from airflow.dag_processing.dagbag import DagBag
conf = json.loads(sys.argv[2])
dag = DagBag(dag_folder=sys.argv[1]).dags["lakebert_pipeline"]
run = dag.test(logical_date=datetime(2026, 11, 20, tzinfo=timezone.utc), run_conf=conf)
print(json.dumps({"state": str(run.state), "tasks": {ti.task_id: str(ti.state) for ti in run.get_task_instances()}}))
"""


def _airflow_env(home: Path) -> dict:
    bin_dir = str(Path(sys.executable).parent)  # spark-submit comes with pyspark, beside this python
    return {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS), "PATH": bin_dir + os.pathsep + os.environ["PATH"],
            "PYSPARK_PYTHON": sys.executable}


def _python(code: str, *args, env, timeout=900, output: list | None = None) -> dict:
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    if output is not None:
        output.append(proc.stdout + proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _files_containing(secret: str, *folders: Path) -> list[str]:
    return [str(p) for folder in folders for p in folder.rglob("*")
            if p.is_file() and secret.encode() in p.read_bytes()]


@pytest.fixture(scope="module")
def parsed(tmp_path_factory):
    return _python(INSPECT, str(DAGS), *HEAVY, env=_airflow_env(tmp_path_factory.mktemp("airflow")))


def test_dagbag_has_no_import_errors_and_parsing_imports_nothing_heavy(parsed):
    assert parsed["errors"] == {}
    assert parsed["dag_ids"] == ["lakebert_pipeline"]
    assert parsed["heavy"] == []


def test_dag_runs_the_four_stages_in_order_then_score_when_asked_and_audit_and_tune_beside_train_when_asked(parsed):
    tasks = parsed["tasks"]
    assert list(tasks) == ["ingest", "clean", "tokenize", "train", "audit_requested", "audit", "score_requested",
                           "score", "tune_requested", "tune"]
    assert [tasks[t]["downstream"] for t in tasks] == [["clean"], ["tokenize"],
                                                       ["audit_requested", "train", "tune_requested"],
                                                       ["score_requested"], ["audit"], [], ["score"], [], ["tune"], []]
    requested = ("audit_requested", "score_requested", "tune_requested")
    assert {tasks[t]["operator"] for t in requested} == {"ShortCircuitOperator"}
    for name, task in tasks.items():
        if name in requested:
            continue
        assert task["operator"] == "LakebertSubmitOperator"  # a SparkSubmitOperator, overrides in its environment
        assert task["retries"] == 2 and task["backoff"] is True and task["retry_delay"] == 120
        assert task["timeout"] == {"train": 12, "score": 4, "tune": 48, "audit": 48}.get(name, 2) * 3600
        assert task["conn_id"] == "lakebert_spark"
        assert Path(task["application"]) == REPO / "spark_jobs" / SCRIPTS[name]
        assert task["packages"] == delta_package()  # the DAG's constant matches the installed pair
    assert parsed["max_active_runs"] == 1 and parsed["doc_md"] is True
    assert parsed["params"] == ["audit", "env", "overrides", "score", "source", "tune"]


def test_lakebert_args_macro_registers_override_secrets_with_airflows_masker(tmp_path):
    code = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk.execution_time.secrets_masker import redact
dag = DagBag(dag_folder=sys.argv[1]).dags["lakebert_pipeline"]
args = [sys.argv[2], "clean.min_chars=20"]
same = dag.user_defined_macros["lakebert_args"](args)
print(json.dumps({"same": same == args, "rendered": redact(same)}))
"""
    out = _python(code, str(DAGS), f"spark.conf.spark.executorEnv.GITHUB_PAT={PAT}",
                  env=_airflow_env(tmp_path / "airflow"))
    assert out["same"] is True
    assert PAT not in json.dumps(out["rendered"]) and "clean.min_chars=20" in out["rendered"]


RENDER = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk.execution_time.secrets_masker import redact
dag = DagBag(dag_folder=sys.argv[1]).dags["lakebert_pipeline"]
params = {"env": "local", "source": "/data/raw/{ds}", "overrides": json.loads(sys.argv[2]), "score": True, "tune": True}
out = {}
for task_id in ("ingest", "train", "score", "tune"):
    task = dag.get_task(task_id)
    task.render_template_fields({"params": params, "ds": "2026-11-20"})  # as the task runner renders it
    out[task_id] = {"stored": {f: redact(getattr(task, f)) for f in task.template_fields},  # what the UI shows
                    "argv": task._get_hook()._build_spark_submit_command(task.application),
                    "handed": getattr(task, "overrides", None)}
print(json.dumps(out))
"""
# (key, value, the secret in it): a key given twice, and key names that were not known as secrets
REPEATED_SECRETS = [
    ("spark.conf.spark.executorEnv.GITHUB_PAT", "ghp_FirstRenderedSecret0123456789", "ghp_FirstRenderedSecret0123456789"),
    ("spark.conf.spark.executorEnv.GITHUB_PAT", "ghp_SecondRenderedSecret012345678", "ghp_SecondRenderedSecret012345678"),
    ("ingest.options.Authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.dag", "eyJhbGciOiJIUzI1NiJ9.dag"),
    ("ingest.options.auth", "AuthValue-31337", "AuthValue-31337"),
    ("ingest.options.passphrase", "Correct-Horse-Battery", "Correct-Horse-Battery"),
    ("ingest.options.sslpassword", "SslPassw0rd-9", "SslPassw0rd-9"),
    ("mlflow.tracking_uri", "http://alice:Url-Passw0rd@mlflow:5000", "Url-Passw0rd"),
]


def test_rendered_tasks_mask_every_secret_and_hand_the_overrides_over_outside_spark_submits_argv(tmp_path):
    overrides = [f"{key}={value}" for key, value, _ in REPEATED_SECRETS] + ["clean.min_chars=20"]
    out = _python(RENDER, str(DAGS), json.dumps(overrides), env=_airflow_env(tmp_path / "airflow"))
    for task, rendered in out.items():
        stored, argv = json.dumps(rendered["stored"]), rendered["argv"]
        for _, _, secret in REPEATED_SECRETS:
            assert secret not in stored, (task, secret)  # every value of the repeated key, every name
        assert "clean.min_chars=20" in stored  # what is no secret stays readable
        # spark-submit's argv (what `ps` shows every user of the worker) holds no override at all
        # (`--json`: the task's log ends with the stage's JSON summary)
        assert argv[-4:] == [str(REPO / "spark_jobs" / SCRIPTS[task]), "--env", "local", "--json"] \
            and "--set" not in argv
        expected = overrides + (["ingest.source=/data/raw/2026-11-20", "ingest.batch_id=2026-11-20"]
                                if task == "ingest" else [])
        assert rendered["handed"] == expected  # in spark-submit's environment, unmasked, for the stage


@pytest.mark.integration
def test_dag_test_runs_every_stage_with_spark_submit_on_the_sample(tmp_path):
    env = _airflow_env(tmp_path / "airflow")
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True,
                   timeout=300)
    src = write_sample(tmp_path / "raw" / "2026-11-20", n_docs=600, seed=21)
    root = tmp_path / "lh"
    conf = {"source": str(tmp_path / "raw" / "{ds}"),  # the logical date picks the slice
            "overrides": [f"lakehouse.root={root}", "ingest.id_column=id", "tokenize.vocab_size=1500",
                          "tokenize.max_length=64", "train.batch_size=16", "train.epochs=2",
                          "mlflow.system_metrics=false",
                          f"spark.conf.spark.executorEnv.GITHUB_PAT={PAT}"]}
    output: list[str] = []
    result = _python(RUN, str(DAGS), json.dumps(conf), env=env, timeout=1500, output=output)
    assert result["tasks"] == {"ingest": "success", "clean": "success", "tokenize": "success", "train": "success",
                               "audit_requested": "success", "audit": "skipped",  # audit, score, tune: only when asked
                               "score_requested": "success", "score": "skipped",
                               "tune_requested": "success", "tune": "skipped"}
    assert result["state"] == "success"
    assert src.is_dir()
    summaries = {p.parent.parent.name: json.loads(p.read_text()) for p in root.glob("_runs/*/*/summary.json")}
    assert summaries["ingest"]["batch_id"] == "2026-11-20" and summaries["ingest"]["inserted"] > 500
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    version = client.get_model_version("lakebert-classifier", "1")
    assert client.get_run(version.run_id).info.status == "FINISHED"
    # The secret reached the stages, but no log, rendered command, run record or MLflow entry.
    # (Airflow itself keeps the trigger's conf verbatim in dag_run.conf: that is its input.)
    # The overrides reached them in spark-submit's environment: its command line (what `ps`
    # shows) holds none of them.
    assert _files_containing(PAT, tmp_path / "airflow" / "logs", root) == []
    stages = {"ingest", "clean", "tokenize", "train"}
    commands = [line for line in output[0].splitlines() if "Spark-Submit cmd:" in line]
    assert {name for name in SCRIPTS.values() if any(f"/spark_jobs/{name} " in line for line in commands)} \
        == {SCRIPTS[stage] for stage in stages}
    assert not any(PAT in line or "--set" in line or "lakehouse.root" in line for line in commands)
    with sqlite3.connect(tmp_path / "airflow" / "airflow.db") as db:
        rendered = db.execute("SELECT task_id, rendered_fields FROM rendered_task_instance_fields").fetchall()
    assert {task for task, _ in rendered} >= stages
    assert all(PAT not in fields for _, fields in rendered)
    assert all("GITHUB_PAT=***" in fields for task, fields in rendered if task in stages)
