"""One real local SparkSession with Delta for the whole test run (never a mock)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conf import load_config

TEST_SPARK = [
    "spark.master=local[2]",
    "spark.conf.spark.sql.shuffle.partitions=2",
    "spark.conf.spark.default.parallelism=2",
    "spark.conf.spark.ui.enabled=false",
]


def make_config(root, *overrides: str):
    """A config rooted at `root` with the test Spark settings and `overrides` on top."""
    return load_config(env="local", overrides=[*TEST_SPARK, f"lakehouse.root={root}", *overrides])


# Fixtures that start a real component (Spark, an S3 server) or build on one: a test that uses
# any of them is an integration test (`pytest -m integration`); `make check` runs the others.
INTEGRATION_FIXTURES = frozenset({"spark", "sample_run", "s3_server", "s3_bucket"})


def pytest_collection_modifyitems(config, items):
    for item in items:
        if INTEGRATION_FIXTURES.intersection(getattr(item, "fixturenames", ())) or item.get_closest_marker("cluster"):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def _mlflow_uris_stay_in_their_test():
    """A test that trains in this process sets MLflow's process-wide tracking and registry URIs
    (the tracker's `set_*_uri`, which also export MLFLOW_*_URI). A later test's client that names
    only its tracking store would then read another store's registry: reset them after each
    test, so the result does not depend on which tests ran before in this process."""
    yield
    if "mlflow" in sys.modules:
        import mlflow

        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
        os.environ.pop("MLFLOW_REGISTRY_URI", None)


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    os.environ["PYSPARK_PYTHON"] = sys.executable
    from spark_jobs.session import get_spark

    warehouse = tmp_path_factory.mktemp("warehouse")
    cfg = load_config(env="local", overrides=[*TEST_SPARK, f"spark.conf.spark.sql.warehouse.dir={warehouse}"])
    session = get_spark(cfg)
    yield session
    session.stop()


def tokenized_sample(spark, root, n_docs: int, seed: int, *overrides: str):
    """The sample corpus (`n_docs` documents) through ingest, clean and tokenize under `root`."""
    from spark_jobs.clean import clean
    from spark_jobs.ingest import ingest
    from spark_jobs.sample_data import write_sample
    from spark_jobs.tokenize_silver import tokenize

    src = write_sample(root.parent / "data", n_docs=n_docs, seed=seed)
    cfg = make_config(root, f"ingest.source={src}", "ingest.id_column=id", *overrides)
    ingest(spark, cfg, "i")
    clean(spark, cfg, "c")
    tokenize(spark, cfg, "t")
    return root


# The sample pipeline's settings for a model that learns in seconds: 3 epochs of a small vocabulary.
SAMPLE_TRAINING = ("tokenize.vocab_size=1500", "tokenize.max_length=64", "train.batch_size=16", "train.epochs=3",
                   "mlflow.system_metrics=false")


@pytest.fixture(scope="session")
def sample_run(spark, tmp_path_factory):
    """`lakebert run`'s pipeline on the sample (1,200 documents) once for the whole test run, in a
    lakehouse with its own MLflow store: its config, the first run's summary (run id "r1") and
    what it printed. The pipeline tests check that run and rerun it; the score tests score with
    its registered model (into their own predictions tables)."""
    import contextlib
    import io

    from spark_jobs.pipeline import pipeline
    from spark_jobs.sample_data import write_sample

    folder = tmp_path_factory.mktemp("sample-run")
    src = write_sample(folder / "data", n_docs=1200, seed=8)
    cfg = make_config(folder / "lh", f"ingest.source={src}", "ingest.id_column=id", *SAMPLE_TRAINING)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        summary = pipeline(spark, cfg, "r1")
    return {"cfg": cfg, "summary": summary, "shown": out.getvalue(), "errors": err.getvalue()}


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3-compatible server (moto's) on 127.0.0.1 for the whole run: its endpoint URL."""
    from tests.servers import free_port, start, stop, wait_for_url

    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    proc = start([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], log, os.environ)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_url(f"{url}/moto-api/", lambda body: True, [(proc, log)], "the S3 server", timeout=60)
        yield url
    finally:
        stop([(proc, log)])


S3_TEST_KEYS = {"AWS_ACCESS_KEY_ID": "lakebert-test-key", "AWS_SECRET_ACCESS_KEY": "lakebert-test-secret-value",
                "AWS_REGION": "us-east-1"}


@pytest.fixture
def s3_bucket(s3_server, monkeypatch, request):
    """A new bucket on the S3 server, with only the AWS variables set (as a user would): its name."""
    import hashlib
    import re

    from pyarrow import fs

    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {**S3_TEST_KEYS, "AWS_ENDPOINT_URL": s3_server}.items():
        monkeypatch.setenv(name, value)
    digest = hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:8]
    bucket = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-") + f"-{digest}-{os.getpid()}"
    fs.S3FileSystem(endpoint_override=s3_server.split("://")[1], scheme="http", region="us-east-1",
                    access_key=S3_TEST_KEYS["AWS_ACCESS_KEY_ID"], secret_key=S3_TEST_KEYS["AWS_SECRET_ACCESS_KEY"],
                    allow_bucket_creation=True).create_dir(bucket)
    return bucket


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MB tmpfs: a disk that fills up during a write (mounting it needs root; else the test
    that uses it is skipped, with the reason)."""
    folder = tmp_path / "small-disk"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.decode().strip()[:200]}")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)
