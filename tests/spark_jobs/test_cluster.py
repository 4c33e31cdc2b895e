"""The whole pipeline on a real standalone Spark cluster with no shared disk.

A master and two workers started from pyspark's own distribution (`spark-class ...Master` and
`...Worker`, each worker with one core and its own work directory), the lakehouse on `s3a://`
served by a real S3-compatible server (moto's) on 127.0.0.1, and a real `mlflow server` whose
artifacts live in a bucket on that same server. `lakebert run` trains with
`train.local_mode=false`: two barrier tasks, one on each worker. Then `lakebert score` ships
the registered model to the workers' executors and scores silver's test split.

The slowest test of the suite (a few minutes): marked `cluster`, it runs in CI and in `make
test`; `pytest -m "not cluster"` leaves it out.
"""

import json
import os
import re
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from pyspark.find_spark_home import _find_spark_home

import storage
from spark_jobs.sample_data import LABELS, write_sample
from tests.commands import lakebert_cmd, run_for_summary
from tests.conftest import S3_TEST_KEYS, TEST_SPARK
from tests.servers import free_port, start, stop, wait_for_url

SPARK_CLASS = Path(_find_spark_home()) / "bin" / "spark-class"

pytestmark = pytest.mark.cluster


@pytest.fixture
def standalone_cluster(tmp_path, s3_bucket):
    """A standalone master and two one-core workers on 127.0.0.1: the master URL and the
    workers' work directories. The workers hold the AWS variables, as every node of a real
    cluster holds its credentials (an instance profile, a Kubernetes service account)."""
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"}
    logs = tmp_path / "cluster-logs"
    logs.mkdir()
    port, ui = free_port(), free_port()
    master = (start([str(SPARK_CLASS), "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                      "--port", str(port), "--webui-port", str(ui)], logs / "master.log", env), logs / "master.log")
    procs = [master]
    url = f"spark://127.0.0.1:{port}"
    work_dirs = [tmp_path / f"worker-{i}" for i in (1, 2)]
    try:
        wait_for_url(f"http://127.0.0.1:{ui}/json/", lambda body: True, procs, "the Spark master")
        for i, work in enumerate(work_dirs, 1):
            log = logs / f"worker-{i}.log"
            procs.append((start([str(SPARK_CLASS), "org.apache.spark.deploy.worker.Worker", url, "--host",
                                  "127.0.0.1", "--cores", "1", "--memory", "2g", "--work-dir", str(work),
                                  "--webui-port", str(free_port())], log, env), log))
        wait_for_url(f"http://127.0.0.1:{ui}/json/", lambda body: json.loads(body).get("aliveworkers") == 2, procs,
                  "two Spark workers")
        yield url, work_dirs
    finally:
        stop(procs)


@pytest.fixture
def mlflow_server_on_s3(tmp_path, s3_server, s3_bucket):
    """A real `mlflow server` whose artifacts are in s3://<bucket>/mlflow-artifacts (it proxies
    them: clients talk HTTP to the server only): its URL and the artifacts' location."""
    port = free_port()
    artifacts = f"s3://{s3_bucket}/mlflow-artifacts"
    (tmp_path / "mlflow-server").mkdir()
    log = tmp_path / "cluster-logs-mlflow.log"
    env = {**os.environ, **S3_TEST_KEYS, "MLFLOW_S3_ENDPOINT_URL": s3_server}
    proc = start([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                   "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow-server' / 'server.db'}",
                   "--artifacts-destination", artifacts, "--workers", "1"], log, env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_url(f"{url}/health", lambda body: True, [(proc, log)], "mlflow server")
        yield url, artifacts
    finally:
        stop([(proc, log)])
        log.unlink(missing_ok=True)


def test_run_on_a_standalone_cluster_with_s3_and_an_mlflow_server_keeps_nothing_on_local_disk(
        tmp_path, s3_bucket, standalone_cluster, mlflow_server_on_s3):
    import mlflow
    from mlflow import MlflowClient

    master, work_dirs = standalone_cluster
    tracking, artifacts = mlflow_server_on_s3
    src = write_sample(tmp_path / "data", n_docs=600, seed=4)
    root = f"s3a://{s3_bucket}/lh"
    sets = [*TEST_SPARK, f"spark.master={master}", "spark.conf.spark.driver.host=127.0.0.1",
            "spark.conf.spark.driver.bindAddress=127.0.0.1", f"lakehouse.root={root}", f"ingest.source={src}",
            "ingest.id_column=id", "tokenize.vocab_size=800", "tokenize.max_length=48", "train.epochs=2",
            "train.batch_size=16", "train.num_processes=2", "train.local_mode=false",
            f"mlflow.tracking_uri={tracking}", "mlflow.system_metrics=false"]
    started = time.time()
    proc, summary = run_for_summary(lakebert_cmd("run", sets))
    print(f"lakebert run on the standalone cluster: {time.time() - started:.0f} s")
    assert summary["status"] == "done" and summary["registered_model"]["version"] == "1"
    train = summary["stages"]["train"]
    assert train["tracking_uri"] == tracking and train["world_size"] == 2
    assert "with 2 CPU processes (on the executors)" in proc.stdout
    assert S3_TEST_KEYS["AWS_SECRET_ACCESS_KEY"] not in proc.stdout + proc.stderr

    # two barrier tasks, one on each worker: each worker's executor log shows its task's barrier
    for work in work_dirs:
        logs = "".join(p.read_text(errors="replace") for p in work.rglob("stderr"))
        assert len(re.findall(r"BarrierTaskContext: Task \d+ .* finished global sync successfully", logs)) == 1, work

    # the lakehouse and the checkpoints are on S3, the model's files in the server's bucket
    assert {"bronze", "silver", "quarantine", "tokenized", "tokenizers", "train", "_runs"} <= set(storage.listdir(root))
    manifest = json.loads(storage.read_text(f"{root}/tokenized/{storage.read_text(f'{root}/tokenized/LATEST')}"
                                            "/manifest.json"))
    assert manifest["tokenizer_path"].startswith(f"{root}/tokenizers/wordpiece-")
    job = storage.listdir(f"{root}/train")
    assert len(job) == 1 and storage.listdir(f"{root}/train/{job[0]}/checkpoints")
    assert storage.listdir(artifacts)
    # nothing of the lakehouse on local disk: the source data, the server's database, the
    # cluster's logs and the workers' own directories (Spark's jars and executor logs)
    assert not list(tmp_path.rglob("*.parquet")) and not list(tmp_path.rglob("_delta_log"))
    assert not list(tmp_path.rglob("*.safetensors")) and not list(tmp_path.rglob("COMPLETE"))

    client = MlflowClient(tracking)
    run = client.get_run(train["run_id"])
    assert run.info.status == "FINISHED"
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) == train["steps"]
    mlflow.set_tracking_uri(tracking)  # the model's files come back through the server
    try:
        model = mlflow.pyfunc.load_model("models:/lakebert-classifier/1")
        predicted = model.predict(pd.DataFrame({"text": ["markets rallied as the central bank cut rates"]}))
        assert set(predicted["label"]) <= set(LABELS)
    finally:
        mlflow.set_tracking_uri(None)

    # lakebert score on the cluster: the model from the server (@champion, else the latest version)
    # shipped to the workers' executors, silver's test split on S3 scored into a predictions table
    # on S3, its evaluation logged to the server
    _, scored = run_for_summary(lakebert_cmd("score", [*sets, "score.split=test"]))
    champion = train["champion"]["moved"]  # two epochs may leave a degenerate model, never a champion
    assert scored["model"] == f"models:/lakebert-classifier{'@champion' if champion else '/1'}"
    assert scored["model_version"] == "1"
    assert scored["scored"] == scored["read"] == scored["evaluation"]["examples"] > 0
    assert scored["tables"]["predictions"] == f"{root}/predictions"
    assert client.get_run(scored["mlflow_run_id"]).info.status == "FINISHED"

