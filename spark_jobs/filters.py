"""Quality filters for cleaned text: each is a named reason plus a Column that is true to drop.

    from spark_jobs.filters import apply_filters, quality_filters
    flagged = apply_filters(df, quality_filters(F.col("text"), cfg.clean))   # adds drop_reason

`apply_filters` keeps every row and sets `drop_reason` to the first filter that fires, so the
caller routes dropped rows to quarantine and nothing disappears.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F


class DropReason:
    EMPTY_AFTER_CLEANING = "empty_after_cleaning"
    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"
    TOO_MANY_SYMBOLS = "too_many_symbols"
    REPEATED_CHARACTERS = "repeated_characters"
    LABEL_CONFLICT = "label_conflict"


DROP_REASON = "drop_reason"


def is_empty(text: Column) -> Column:
    return text.isNull() | (F.length(text) == 0)


def is_too_short(text: Column, min_chars: int) -> Column:
    return F.length(text) < min_chars


def is_too_long(text: Column, max_chars: int) -> Column:
    return F.length(text) > max_chars


def symbol_ratio(text: Column) -> Column:
    """Fraction of characters that are neither letters, digits nor whitespace."""
    symbols = F.length(F.regexp_replace(text, r"[\p{L}\p{N}\s]", ""))
    return symbols / F.greatest(F.length(text), F.lit(1))


def has_too_many_symbols(text: Column, max_ratio: float) -> Column:
    return symbol_ratio(text) > max_ratio


def has_char_run(text: Column, run: int) -> Column:
    """True when one character repeats `run` times in a row (`!!!!!!`, `aaaaaa`)."""
    return text.rlike(rf"(.)\1{{{run - 1},}}")


def quality_filters(text: Column, clean_cfg) -> list[tuple[str, Column]]:
    """The configured filters, in the order they are checked."""
    R = DropReason
    return [
        (R.EMPTY_AFTER_CLEANING, is_empty(text)),
        (R.TOO_SHORT, is_too_short(text, clean_cfg.min_chars)),
        (R.TOO_LONG, is_too_long(text, clean_cfg.max_chars)),
        (R.REPEATED_CHARACTERS, has_char_run(text, clean_cfg.max_char_run)),
        (R.TOO_MANY_SYMBOLS, has_too_many_symbols(text, clean_cfg.max_symbol_ratio)),
    ]


def first_reason(checks: list[tuple[str, Column]]) -> Column:
    """The name of the first (name, condition) check whose condition holds, else null; a null
    condition does not hold. Ingest and clean both route a row by the first reason it fails."""
    reason = F.lit(None).cast("string")
    for name, failed in reversed(checks):
        reason = F.when(F.coalesce(failed, F.lit(False)), F.lit(name)).otherwise(reason)
    return reason


def apply_filters(df: DataFrame, filters: list[tuple[str, Column]]) -> DataFrame:
    """Add `drop_reason`: the first filter whose condition holds, else null."""
    return df.withColumn(DROP_REASON, first_reason(filters))
