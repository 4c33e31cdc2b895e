"""The Spark session every stage uses: local[*] with Delta by default, the existing one under
spark-submit or Databricks, or a Spark Connect session.

    python -m spark_jobs.session      # starts a session once, so Delta's jars are resolved and cached
    lakebert run --remote sc://host:15002                   # any stage, against a Spark Connect server

Spark Connect (`spark.remote`, `--remote`, or `SPARK_REMOTE`): lakebert is a client of a server
that already has Delta's jars and its two SQL settings (`DELTA_SQL_CONF`); the server owns the
master, the packages and the storage settings, so only `spark.sql.*` keys of `spark.conf` are
sent (the others go to the run's log as ignored). Every stage runs the same code on both kinds
of session; the few places that differ ask `is_connect(spark)`.

Delta's JVM jars come from Maven Central through Spark's own package resolution
(`configure_spark_with_delta_pip` sets `spark.jars.packages`); Ivy caches them under
~/.ivy2.5.2, so only the first start needs the network. Under spark-submit the JVM is already
running, so the jars must be given there: `spark-submit --packages` with `DELTA_PACKAGE`.

A config with an `s3a://` (or `s3://`) location also gets Hadoop's S3A connector the same way
(`s3_packages`), and the S3A settings the AWS variables imply (`s3a_settings`: endpoint,
path-style access, region). Credentials stay in the environment, where S3A's default chain
reads them; they never enter Spark's conf.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time

from conf import Config, config_dict, load_config
from conf.errors import StageError
import storage
from spark_jobs.console import Console, detail, is_running, running

DELTA_SQL_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}
# Defaults under the user's `spark.conf`. Spark 4 accepts only seven charsets for the CSV/JSON
# `encoding` option unless this is set; real files come as latin1 and windows-1252 too.
SPARK_DEFAULTS = {"spark.sql.legacy.javaCharsets": "true"}
SPARK_REMOTE_ENV = "SPARK_REMOTE"
CONNECT_SETTABLE = "spark.sql."  # the settings a Spark Connect client may set on its session
# A Spark job shorter than this shows no progress line at all.
SPARK_PROGRESS_AFTER_S = 2.0
TASK_GPU_AMOUNT = "spark.task.resource.gpu.amount"  # GPUs per task: train's ranks, score's executors
SPARK_POLL_S = 0.5


# Hadoop's S3A connector, resolved like Delta's jars, only when a location is s3a:// (or s3://).
# hadoop-aws depends on the AWS SDK v2 `bundle` (686 MB); the three SDK modules S3A uses, at the
# bundle's version, are a few tens of MB. Measured: Delta 4.4.0 on Spark 4.2 (Hadoop 3.5.0)
# created, appended to and read a Delta table on s3a with exactly these.
AWS_SDK_FOR_HADOOP = {"3.5.0": "2.35.4"}
AWS_SDK_MODULES = ("s3", "s3-transfer-manager", "sts")
S3_JAR_EXCLUDES = "software.amazon.awssdk:bundle,software.amazon.encryption.s3:amazon-s3-encryption-client-java"
S3A_FILESYSTEM = "org.apache.hadoop.fs.s3a.S3AFileSystem"


def hadoop_version() -> str:
    """The Hadoop version of pyspark's own jars (hadoop-aws must match it)."""
    from pathlib import Path

    import pyspark

    jars = sorted((Path(pyspark.__file__).parent / "jars").glob("hadoop-client-api-*.jar"))
    if not jars:
        raise RuntimeError("pyspark ships no hadoop-client-api jar: cannot pick a matching hadoop-aws")
    return jars[-1].name[len("hadoop-client-api-"):-len(".jar")]


def s3_packages() -> tuple[list[str], str | None]:
    """(Maven coordinates, spark.jars.excludes) of the S3A connector for pyspark's Hadoop."""
    hadoop = hadoop_version()
    sdk = AWS_SDK_FOR_HADOOP.get(hadoop)
    if sdk is None:  # not measured here: hadoop-aws with its whole SDK bundle, which also works
        return [f"org.apache.hadoop:hadoop-aws:{hadoop}"], None
    return ([f"org.apache.hadoop:hadoop-aws:{hadoop}", *(f"software.amazon.awssdk:{m}:{sdk}" for m in AWS_SDK_MODULES)],
            S3_JAR_EXCLUDES)


def uses_s3(cfg: Config) -> bool:
    """Whether any location in the config is on S3."""

    def strings(value):
        if isinstance(value, dict):
            for v in value.values():
                yield from strings(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                yield from strings(v)
        elif isinstance(value, str):
            yield value

    return any(storage.scheme_of(v) in storage.S3_SCHEMES for v in strings(config_dict(cfg)))


def s3a_settings(cfg: Config) -> dict[str, str]:
    """The S3A settings the AWS variables imply, under the user's own `spark.conf`. Credentials
    stay in the environment (S3A's default chain reads them there), never in Spark's conf."""
    from urllib.parse import urlparse

    prefix, derived = "spark.hadoop.fs.s3a.", {"spark.hadoop.fs.s3.impl": S3A_FILESYSTEM}
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint and f"{prefix}endpoint" not in cfg.spark.conf:  # an S3-compatible server: path-style, TLS as the URL says
        parsed = urlparse(endpoint if "://" in endpoint else f"https://{endpoint}")
        derived.update({f"{prefix}endpoint": endpoint, f"{prefix}path.style.access": "true",
                        f"{prefix}connection.ssl.enabled": str(parsed.scheme == "https").lower()})
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        derived[f"{prefix}endpoint.region"] = region
    return {k: v for k, v in derived.items() if k not in cfg.spark.conf}


def delta_package() -> str:
    """Maven coordinates of the Delta jar that matches the installed pyspark and delta-spark."""
    from importlib.metadata import version

    import pyspark

    spark_minor = ".".join(pyspark.__version__.split(".")[:2])
    return f"io.delta:delta-spark_{spark_minor}_2.13:{version('delta-spark')}"


def under_spark_submit() -> bool:
    """spark-submit (and Databricks) start the JVM first and hand Python its gateway port."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def is_connect(spark) -> bool:
    """Whether `spark` is a Spark Connect session (no sparkContext, no JVM on this side)."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def remote_url(cfg: Config) -> str | None:
    """The Spark Connect server to use: `spark.remote` (or `--remote`), else $SPARK_REMOTE."""
    return cfg.spark.remote or os.environ.get(SPARK_REMOTE_ENV) or None


def get_spark(cfg: Config):
    """Return the active session if there is one, else build one from `cfg.spark`: a Spark
    Connect session when `remote_url(cfg)` is set, else a classic one with Delta's jars."""
    # Python workers must run this interpreter, or they miss the packages installed with it.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    remote = remote_url(cfg)
    if remote:
        return connect_session(cfg, remote)

    builder = SparkSession.builder.appName(cfg.spark.app_name)
    s3 = uses_s3(cfg)
    settings = {**SPARK_DEFAULTS, **(s3a_settings(cfg) if s3 else {}), **cfg.spark.conf, **DELTA_SQL_CONF}
    for key, value in settings.items():
        builder = builder.config(key, value)
    if under_spark_submit():
        # spark-submit chose the master and loaded --packages already.
        spark = builder.getOrCreate()
        if not is_connect(spark):  # spark.api.mode=connect gives a Connect session here too
            _require_delta_jars(spark)
        return spark
    if cfg.spark.master:
        builder = builder.master(cfg.spark.master)
    from delta import configure_spark_with_delta_pip

    packages, excludes = s3_packages() if s3 else ([], None)
    if excludes:  # beside the user's own, if any
        own = cfg.spark.conf.get("spark.jars.excludes")
        builder = builder.config("spark.jars.excludes", f"{own},{excludes}" if own else excludes)
    spark = configure_spark_with_delta_pip(builder, extra_packages=packages).getOrCreate()
    # A command's run log keeps Spark's warnings (the console never shows them unless --verbose);
    # a notebook or a library caller would see them inline, so it gets errors only.
    if not is_connect(spark):  # spark.api.mode=connect: the local server keeps its own log level
        spark.sparkContext.setLogLevel("WARN" if running() else "ERROR")
    return spark


def connect_session(cfg: Config, remote: str):
    """A Spark Connect session to `remote`, with the runtime (`spark.sql.*`) settings of
    `spark.conf`; the server's own settings (master, packages, storage) are the server's."""
    from pyspark.sql import SparkSession

    settings = {**SPARK_DEFAULTS, **cfg.spark.conf}
    ignored = sorted(k for k in settings if not k.startswith(CONNECT_SETTABLE))
    if ignored:
        detail(f"# lakebert: Spark Connect: these spark.conf keys are the server's, not sent: {', '.join(ignored)}")
    builder = SparkSession.builder.remote(remote)
    for key, value in settings.items():
        if key.startswith(CONNECT_SETTABLE):
            builder = builder.config(key, value)
    return builder.getOrCreate()


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
        raise StageError(f"Delta Lake's jars are not on the classpath: add --packages {delta_package()} "
                         "to spark-submit")


class SparkProgress:
    """A thread that shows the running Spark jobs' task counts as the console's live line.

    Needs the classic API's status tracker; under Spark Connect there is none and nothing is shown."""

    def __init__(self, spark, console: Console):
        self.console, self.stop_event = console, threading.Event()
        self.tracker = None if is_connect(spark) else spark.sparkContext.statusTracker()
        self.thread = threading.Thread(target=self._run, name="lakebert-spark-progress", daemon=True)

    @classmethod
    def when_running(cls, spark, console: Console):
        """Live progress for a command's run; a notebook has its own (and no run console)."""
        if not is_running(console):
            return contextlib.nullcontext()
        return cls(spark, console)

    def __enter__(self):
        if self.tracker is not None:
            self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop_event.set()
        if self.thread.is_alive():
            self.thread.join(timeout=5)
        self.console.end_progress()

    def line(self) -> str | None:
        """`<activity>: Spark tasks done/total` over the active stages, or None when idle."""
        done = total = 0
        for stage_id in self.tracker.getActiveStageIds():
            info = self.tracker.getStageInfo(stage_id)
            if info is not None:
                done, total = done + info.numCompletedTasks, total + info.numTasks
        if not total:
            return None
        return f"{self.console.activity or 'spark'}: Spark tasks {done:,}/{total:,}"

    def _run(self) -> None:
        busy_since = None
        while not self.stop_event.wait(SPARK_POLL_S):
            try:
                line = None if self.console.training else self.line()
            except Exception:  # noqa: BLE001 - the session is stopping; progress is best effort
                return
            if line is None:
                if busy_since is not None:
                    self.console.end_progress()
                busy_since = None
                continue
            busy_since = busy_since or time.monotonic()
            if time.monotonic() - busy_since >= SPARK_PROGRESS_AFTER_S and is_running(self.console):
                self.console.progress(line)


def main() -> int:
    cfg = load_config()
    storage.configure(cfg.spark.conf)
    spark = get_spark(cfg)
    spark.range(1).count()
    print(f"spark {spark.version} with {delta_package()} ready")
    return 0


if __name__ == "__main__":
    sys.exit(main())
