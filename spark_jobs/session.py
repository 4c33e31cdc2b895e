"""The Spark session every stage uses: local[*] with Delta by default, the existing one under
spark-submit or Databricks.

    python -m spark_jobs.session      # starts a session once, so Delta's jars are resolved and cached

Delta's JVM jars come from Maven Central through Spark's own package resolution
(`configure_spark_with_delta_pip` sets `spark.jars.packages`); Ivy caches them under
~/.ivy2.5.2, so only the first start needs the network. Under spark-submit the JVM is already
running, so the jars must be given there: `spark-submit --packages` with `DELTA_PACKAGE`.
"""

from __future__ import annotations

import contextlib
import os
import sys

from conf import Config
from spark_jobs.console import running

DELTA_SQL_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}
# Defaults under the user's `spark.conf`. Spark 4 accepts only seven charsets for the CSV/JSON
# `encoding` option unless this is set; real files come as latin1 and windows-1252 too.
SPARK_DEFAULTS = {"spark.sql.legacy.javaCharsets": "true"}


def delta_package() -> str:
    """Maven coordinates of the Delta jar that matches the installed pyspark and delta-spark."""
    from importlib.metadata import version

    import pyspark

    spark_minor = ".".join(pyspark.__version__.split(".")[:2])
    return f"io.delta:delta-spark_{spark_minor}_2.13:{version('delta-spark')}"


def under_spark_submit() -> bool:
    """spark-submit (and Databricks) start the JVM first and hand Python its gateway port."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def get_spark(cfg: Config):
    """Return the active session if there is one, else build one from `cfg.spark`."""
    # Python workers must run this interpreter, or they miss the packages installed with it.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active

    builder = SparkSession.builder.appName(cfg.spark.app_name)
    settings = {**SPARK_DEFAULTS, **cfg.spark.conf, **DELTA_SQL_CONF}
    for key, value in settings.items():
        builder = builder.config(key, value)
    if under_spark_submit():
        # spark-submit chose the master and loaded --packages already.
        spark = builder.getOrCreate()
        _require_delta_jars(spark)
        return spark
    if cfg.spark.master:
        builder = builder.master(cfg.spark.master)
    from delta import configure_spark_with_delta_pip

    spark = configure_spark_with_delta_pip(builder).getOrCreate()
    # A command's run log keeps Spark's warnings (the console never shows them unless --verbose);
    # a notebook or a library caller would see them inline, so it gets errors only.
    spark.sparkContext.setLogLevel("WARN" if running() else "ERROR")
    return spark


ARROW_BATCH_ROWS = "spark.sql.execution.arrow.maxRecordsPerBatch"


@contextlib.contextmanager
def arrow_batch_rows(spark, rows: int):
    """Rows per Arrow batch handed to `mapInArrow` while the block runs (a session setting,
    read when the job runs), restored after it: the session may be shared."""
    previous = spark.conf.get(ARROW_BATCH_ROWS)
    spark.conf.set(ARROW_BATCH_ROWS, str(rows))
    try:
        yield
    finally:
        spark.conf.set(ARROW_BATCH_ROWS, previous)


def _require_delta_jars(spark) -> None:
    from py4j.java_gateway import JavaClass

    if not isinstance(spark.sparkContext._jvm.io.delta.tables.DeltaTable, JavaClass):
        from spark_jobs.stage import StageError

        raise StageError(f"Delta Lake's jars are not on the classpath: add --packages {delta_package()} "
                         "to spark-submit")


def main() -> int:
    from conf import load_config

    spark = get_spark(load_config())
    spark.range(1).count()
    print(f"spark {spark.version} with {delta_package()} ready")
    return 0


if __name__ == "__main__":
    sys.exit(main())
