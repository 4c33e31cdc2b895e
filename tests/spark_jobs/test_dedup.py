from datetime import datetime

from pyspark.testing import assertDataFrameEqual

from spark_jobs.dedup import DUPLICATE, EXACT, NEAR, mark_exact_duplicates, mark_near_duplicates
from spark_jobs.filters import DROP_REASON, DropReason
from spark_jobs.sample_data import make_document

DOCS_SCHEMA = "doc_id string, text string, label string, ingested_at timestamp, text_hash string, drop_reason string"
T0, T1 = datetime(2026, 1, 1), datetime(2026, 1, 2)


def test_exact_duplicates_keep_the_earliest_row_and_quarantine_label_conflicts(spark):
    docs = spark.createDataFrame([
        ("d2", "same", "x", T1, "h1", None),
        ("d1", "same", "x", T1, "h1", None),   # same time: the smaller doc_id is earlier
        ("d0", "same", "x", T0, "h1", None),   # earliest
        ("c1", "clash", "x", T0, "h2", None),
        ("c2", "clash", "y", T1, "h2", None),
        ("s1", "old", "x", T1, "h3", None),    # duplicate of an existing silver row
        ("q1", "", "x", T0, "h4", DropReason.EMPTY_AFTER_CLEANING),
    ], DOCS_SCHEMA)
    existing = spark.createDataFrame([("old1", "old", "x", T1, "h3", None)], DOCS_SCHEMA)
    got = mark_exact_duplicates(docs, existing).select("doc_id", DROP_REASON, DUPLICATE)
    want = spark.createDataFrame([
        ("d0", None, None), ("d1", None, EXACT), ("d2", None, EXACT),
        ("c1", DropReason.LABEL_CONFLICT, None), ("c2", DropReason.LABEL_CONFLICT, None),
        ("s1", None, EXACT), ("q1", DropReason.EMPTY_AFTER_CLEANING, None),
    ], "doc_id string, drop_reason string, duplicate string")
    assertDataFrameEqual(got, want)


def test_near_duplicates_found_by_minhash_lsh_above_threshold(spark):
    import random

    from conf import load_config

    rng = random.Random(5)
    base = make_document(rng, "sports") + " " + make_document(rng, "sports")
    words = base.split()
    one_word_changed = " ".join(words[:-1] + ["differently"])
    unrelated = make_document(rng, "technology") + " " + make_document(rng, "health")
    docs = spark.createDataFrame([
        ("n1", base, "x", T0, "a", None, None),
        ("n2", one_word_changed, "x", T1, "b", None, None),
        ("n3", unrelated, "x", T1, "c", None, None),
    ], DOCS_SCHEMA + ", duplicate string")
    existing = spark.createDataFrame([], DOCS_SCHEMA)
    nd = load_config(overrides=["clean.near_dedup.enabled=true", "clean.near_dedup.threshold=0.8"]).clean.near_dedup
    got = mark_near_duplicates(docs, existing, nd).select("doc_id", DUPLICATE)
    want = spark.createDataFrame([("n1", None), ("n2", NEAR), ("n3", None)], "doc_id string, duplicate string")
    assertDataFrameEqual(got, want)
