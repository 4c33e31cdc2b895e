"""spark_jobs.session: the S3A connector's coordinates and the settings the AWS variables imply.

Delta on s3a end to end (the jars resolved from Maven Central, a real S3-compatible server,
only the AWS variables) is tests/spark_jobs/test_cluster.py's `lakebert run` on a standalone cluster:
a new driver, since jars cannot be added to the shared test session's running JVM.
"""

import json

from conf import load_config
from spark_jobs.session import S3_JAR_EXCLUDES, hadoop_version, s3_packages, s3a_settings, uses_s3


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



def test_remote_flag_sets_spark_remote_and_spark_remote_variable_is_the_fallback(monkeypatch):
    from conf import load_config
    from spark_jobs.session import remote_url
    from spark_jobs.stage import build_parser, config_overrides

    args = build_parser("ingest").parse_args(["--set", "spark.remote=sc://other:1", "--remote", "sc://host:15002"])
    assert load_config(overrides=config_overrides(args)).spark.remote == "sc://host:15002"  # the flag wins
    monkeypatch.setenv("SPARK_REMOTE", "sc://from-env:15002")
    assert remote_url(load_config()) == "sc://from-env:15002"
    assert remote_url(load_config(overrides=["spark.remote=sc://host:15002"])) == "sc://host:15002"
    monkeypatch.delenv("SPARK_REMOTE")
    assert remote_url(load_config()) is None


def test_a_classic_session_is_not_a_connect_session(spark):
    from spark_jobs.session import is_connect

    assert not is_connect(spark)
