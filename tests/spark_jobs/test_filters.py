from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from conf import load_config
from spark_jobs.filters import DROP_REASON, DropReason, apply_filters, has_char_run, quality_filters, symbol_ratio

SCHEMA = "text string, drop_reason string"


def _flag(spark, texts, *overrides):
    clean_cfg = load_config(overrides=list(overrides)).clean
    df = spark.createDataFrame([(t,) for t in texts], "text string")
    return apply_filters(df, quality_filters(F.col("text"), clean_cfg))


def test_filters_name_the_reason_for_each_dropped_text(spark):
    good = "A perfectly ordinary sentence about markets."
    got = _flag(spark, ["", None, "tiny", "x" * 60, "ab!!!!!!!!!!!!!!!!!!!!!!!!!!!!!", "#$%&*@ ^^ ~~ ++ == {}", good],
                "clean.min_chars=10", "clean.max_chars=50", "clean.max_char_run=20")
    want = spark.createDataFrame([
        ("", DropReason.EMPTY_AFTER_CLEANING),
        (None, DropReason.EMPTY_AFTER_CLEANING),
        ("tiny", DropReason.TOO_SHORT),
        ("x" * 60, DropReason.TOO_LONG),
        ("ab!!!!!!!!!!!!!!!!!!!!!!!!!!!!!", DropReason.REPEATED_CHARACTERS),
        ("#$%&*@ ^^ ~~ ++ == {}", DropReason.TOO_MANY_SYMBOLS),
        (good, None),
    ], SCHEMA)
    assertDataFrameEqual(got, want)


def test_first_failing_filter_wins(spark):
    # too short AND all symbols: the earlier filter (too_short) is the reason
    got = _flag(spark, ["!?"], "clean.min_chars=10")
    assertDataFrameEqual(got, spark.createDataFrame([("!?", DropReason.TOO_SHORT)], SCHEMA))


def test_symbol_ratio_counts_non_alphanumeric_non_space(spark):
    df = spark.createDataFrame([("ab!!",), ("a b",), ("",)], "text string")
    got = df.select(symbol_ratio(F.col("text")).alias("r"))
    assertDataFrameEqual(got, spark.createDataFrame([(0.5,), (0.0,), (0.0,)], "r double"), checkRowOrder=True)


def test_char_run_threshold_is_inclusive(spark):
    df = spark.createDataFrame([("aaaa",), ("aaa",)], "text string")
    got = df.select("text", has_char_run(F.col("text"), 4).alias("run"))
    assertDataFrameEqual(got, spark.createDataFrame([("aaaa", True), ("aaa", False)], "text string, run boolean"))


def test_apply_filters_keeps_every_row(spark):
    df = spark.createDataFrame([("",), ("fine text here",)], "text string")
    out = apply_filters(df, [("empty", F.length("text") == 0)])
    assert out.count() == 2 and DROP_REASON in out.columns
