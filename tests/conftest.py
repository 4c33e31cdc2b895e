"""One real local SparkSession with Delta for the whole test run (never a mock)."""

from __future__ import annotations

import os
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
