"""conf.errors: the first cause of an error, named, for every one-line error."""

import errno

from conf.errors import describe, first_cause

JAVA_TRACE = """An error occurred while calling o805.parquet.
: org.apache.spark.SparkException: Job aborted due to stage failure
\tat org.apache.spark.scheduler.DAGScheduler.failJobAndIndependentStages(DAGScheduler.scala:2898)
Caused by: org.apache.hadoop.fs.s3a.AWSClientIOException: PUT 0-byte object on tokenized/x: Unable to execute HTTP request
\tat org.apache.hadoop.fs.s3a.S3AUtils.translateException(S3AUtils.java:215)
Caused by: java.net.ConnectException: Connection refused
\tat java.base/sun.nio.ch.Net.pollConnect(Native Method)
"""


class Py4JJavaError(Exception):
    """Stands for py4j's class: a first line that says nothing, the Java trace after it."""


def test_a_java_errors_root_cause_is_named_not_its_wrapper():
    assert first_cause(Py4JJavaError(JAVA_TRACE)) == "java.net.ConnectException: Connection refused"
    assert describe(Py4JJavaError(JAVA_TRACE)) == ("Py4JJavaError: An error occurred while calling o805.parquet. "
                                                   "(cause: java.net.ConnectException: Connection refused)")


def test_an_os_error_under_a_wrapper_is_named_by_its_errno():
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:671] . unexpected pos 704 vs 598")  # noqa: B904 - the implicit __context__ is what is tested
    except RuntimeError as exc:
        assert describe(exc).endswith("unexpected pos 704 vs 598 (cause: ENOSPC (No space left on device))")


def test_an_os_error_quoted_in_a_libraries_message_gets_its_name():
    exc = ValueError("Error while serializing: I/O error: No space left on device (os error 28)")
    assert describe(exc) == f"ValueError: {exc} (ENOSPC)"


def test_an_error_without_a_further_cause_is_its_first_line_only():
    assert describe(ValueError("bad label\nmore detail")) == "ValueError: bad label"


def test_a_message_raised_from_none_is_not_extended_by_what_it_hides():
    try:
        try:
            raise OSError(errno.ECONNREFUSED, "Connection refused")
        except OSError:
            raise KeyError("the store is down: try later") from None
    except KeyError as exc:
        assert first_cause(exc) is None
