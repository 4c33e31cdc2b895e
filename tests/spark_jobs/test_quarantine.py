from spark_jobs.quarantine import QUARANTINE_SCHEMA, to_quarantine

ROWS = [("unparseable", None, "{bad", "f.jsonl"), ("unparseable", None, "{bad", "f.jsonl"), ("empty_text", None, "{}", "f.jsonl")]


def test_identical_bad_records_are_all_kept_with_stable_ids(spark):
    rows = spark.createDataFrame(ROWS, "reason string, doc_id string, raw_record string, source string")
    first = to_quarantine(rows, "ingest", "b1")
    again = to_quarantine(rows.orderBy("raw_record"), "ingest", "b2")
    assert first.schema.fieldNames() == QUARANTINE_SCHEMA.fieldNames()
    ids = [r.quarantine_id for r in first.collect()]
    assert len(set(ids)) == 3  # the two identical lines are two quarantine rows
    assert set(ids) == {r.quarantine_id for r in again.collect()}  # the same input gives the same ids


def test_quarantine_id_depends_on_stage(spark):
    rows = spark.createDataFrame(ROWS[:1], "reason string, doc_id string, raw_record string, source string")
    assert to_quarantine(rows, "ingest", "b").first().quarantine_id != to_quarantine(rows, "clean", "b").first().quarantine_id
