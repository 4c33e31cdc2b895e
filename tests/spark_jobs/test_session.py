"""spark_jobs.session: the S3A connector resolved from Maven Central and set up from the AWS variables.

The S3 test runs a new Spark driver in a subprocess (the shared test session has no S3A jars,
and jars cannot be added to a running JVM), against a real S3-compatible server.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

from conf import load_config
from spark_jobs.session import S3_JAR_EXCLUDES, hadoop_version, s3_packages, s3a_settings, uses_s3
from tests.conftest import S3_TEST_KEYS, TEST_SPARK

REPO = Path(__file__).resolve().parents[2]

DELTA_ON_S3 = """
import json, sys
from conf import load_config
from spark_jobs.session import get_spark
cfg = load_config(env="local", overrides=sys.argv[2:] + [f"lakehouse.root={sys.argv[1]}"])
spark = get_spark(cfg)
table = f"{sys.argv[1]}/bronze"
spark.range(5).write.format("delta").save(table)
spark.range(5, 8).write.format("delta").mode("append").save(table)
rows = sorted(r.id for r in spark.read.format("delta").load(table).collect())
conf = spark.sparkContext.getConf().getAll()
print(json.dumps({"rows": rows, "conf": dict(conf)}))
"""


def test_the_s3a_connector_matches_pyspark_hadoop_and_leaves_out_the_sdk_bundle():
    packages, excludes = s3_packages()
    assert packages[0] == f"org.apache.hadoop:hadoop-aws:{hadoop_version()}"
    assert excludes == S3_JAR_EXCLUDES and all(p.startswith("software.amazon.awssdk:") for p in packages[1:])


def test_only_a_config_with_an_s3_location_asks_for_the_connector(tmp_path):
    assert not uses_s3(load_config(overrides=[f"lakehouse.root={tmp_path}"]))
    assert uses_s3(load_config(overrides=["lakehouse.root=s3a://bucket/lh"]))
    assert uses_s3(load_config(overrides=[f"lakehouse.root={tmp_path}", "ingest.source=s3://bucket/raw/*.csv"]))


def test_s3a_settings_come_from_the_aws_variables_without_credentials_and_config_wins(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "never-in-spark-conf")
    derived = s3a_settings(load_config(overrides=["spark.conf.spark.hadoop.fs.s3a.endpoint.region=us-east-2"]))
    assert derived["spark.hadoop.fs.s3a.endpoint"] == "http://127.0.0.1:9000"
    assert derived["spark.hadoop.fs.s3a.path.style.access"] == "true"
    assert derived["spark.hadoop.fs.s3a.connection.ssl.enabled"] == "false"
    assert "spark.hadoop.fs.s3a.endpoint.region" not in derived  # the user's own setting stays
    assert "never-in-spark-conf" not in json.dumps(derived)


def test_delta_on_s3a_with_only_the_aws_variables(s3_bucket):
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    proc = subprocess.run([sys.executable, "-c", DELTA_ON_S3, f"s3a://{s3_bucket}/lh", *TEST_SPARK], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["rows"] == list(range(8))
    assert not any(S3_TEST_KEYS["AWS_SECRET_ACCESS_KEY"] in v for v in result["conf"].values())  # not in the Spark UI
    from conf import storage

    assert any(name.startswith("_delta_log/") for name in storage.files_under(f"s3a://{s3_bucket}/lh/bronze"))
