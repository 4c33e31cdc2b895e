"""spark_jobs.scoring.transforms: what is left to score, one row per document, and the predictions' rows."""

from pyspark.testing import assertDataFrameEqual

from spark_jobs.scoring.transforms import PREDICTIONS_SCHEMA, not_scored, one_per_doc, scored_by, to_predictions

PREPARED = "doc_id string, text string, label string, skip_reason string, text_hash string"


class _Model:
    name, version, run_id = "clf", "3", "r3"


class _Source:
    location, version = "data/new", 7


def test_only_new_documents_and_changed_texts_are_left_to_score(spark):
    rows = spark.createDataFrame([("same", "t", None, None, "h1"), ("changed", "t2", None, None, "h2new"),
                                  ("new", "t3", None, None, "h3")], PREPARED)
    done = spark.createDataFrame([("same", "clf", "3", "h1"), ("changed", "clf", "3", "h2old"),
                                  ("new", "clf", "2", "h3")],  # another version's prediction does not count
                                 "doc_id string, model_name string, model_version string, text_hash string")
    left = not_scored(rows, scored_by(done, _Model))
    assertDataFrameEqual(left.select("doc_id"), spark.createDataFrame([("changed",), ("new",)], "doc_id string"))


def test_one_row_per_document_prefers_a_scoreable_one(spark):
    rows = spark.createDataFrame([("d", None, None, "empty_text", "h0"), ("d", "b text", None, None, "h1"),
                                  ("d", "a text", None, None, "h2"), ("e", None, None, "too_long", "h3")], PREPARED)
    assertDataFrameEqual(one_per_doc(rows).select("doc_id", "text", "skip_reason"),
                         spark.createDataFrame([("d", "a text", None), ("e", None, "too_long")],
                                               "doc_id string, text string, skip_reason string"))


def test_a_prediction_row_names_its_label_and_a_skipped_row_has_none(spark):
    scored = spark.createDataFrame(
        [("ok", 1, [0.25, 0.75], 9, False, 0, None, "h1"), ("skipped", None, None, None, None, None, "too_long", "h2")],
        "doc_id string, label_id int, probabilities array<float>, tokens int, truncated boolean, unk_tokens int, "
        "skip_reason string, text_hash string")
    rows = to_predictions(scored, _Model, ("health", "sports"), "clean:nfkc", _Source, "run-1", "onnx-int8")
    assert [f.name for f in rows.schema] == PREDICTIONS_SCHEMA.fieldNames()
    got = {r.doc_id: r for r in rows.collect()}
    assert (got["ok"].label, got["ok"].probability, got["ok"].labels) == ("sports", 0.75, ["health", "sports"])
    assert (got["ok"].model_version, got["ok"].source_version, got["ok"].stage_run_id) == ("3", 7, "run-1")
    assert {r.engine for r in got.values()} == {"onnx-int8"}  # what ran the model, on every row it wrote
    assert got["skipped"].label is None and got["skipped"].labels is None and got["skipped"].skip_reason == "too_long"
