import csv
import gzip
import hashlib
import json

import pytest
from pyspark.testing import assertDataFrameEqual

from spark_jobs.ingest import IngestReason as R
from spark_jobs.ingest import ingest
from spark_jobs.stage import StageError
from spark_jobs.tables import BRONZE, QUARANTINE, resolve_table
from tests.conftest import make_config

DOC = "A document long enough to be a real document about markets and chips."


def _run(spark, root, *overrides):
    cfg = make_config(root, *overrides)
    return ingest(spark, cfg, "run-test"), cfg


def _bronze(spark, cfg):
    return resolve_table(cfg, BRONZE).read(spark)


def _quarantine(spark, cfg):
    return resolve_table(cfg, QUARANTINE).read(spark)


def _adds_up(summary):
    return summary["read"] == (summary["inserted"] + summary["changed"] + summary["duplicates"]
                               + sum(summary["quarantined"].values()))


def _jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


# --------------------------------------------------------------------------- formats

def test_ingest_jsonl_directory_writes_bronze_schema_with_id_column(spark, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    _jsonl(src / "a.jsonl", [{"id": "a1", "text": DOC, "label": "x"}, {"id": "a2", "text": DOC + " 2", "label": "y"}])
    _jsonl(src / "b.jsonl", [{"id": "b1", "text": DOC + " 3", "label": "x"}])
    summary, cfg = _run(spark, tmp_path / "lh", f"ingest.source={src}", "ingest.id_column=id")
    assert summary["read"] == 3 and summary["inserted"] == 3 and summary["quarantined"] == {}
    bronze = _bronze(spark, cfg)
    assert bronze.columns == ["doc_id", "text", "label", "source", "ingested_at", "batch_id"]
    assertDataFrameEqual(bronze.select("doc_id", "label", "batch_id"), spark.createDataFrame(
        [("a1", "x", "run-test"), ("a2", "y", "run-test"), ("b1", "x", "run-test")], "doc_id string, label string, batch_id string"))


def test_doc_id_without_id_column_is_sha256_of_source_and_text(spark, tmp_path):
    src = _jsonl(tmp_path / "a.jsonl", [{"text": DOC, "label": "x"}])
    summary, cfg = _run(spark, tmp_path / "lh", f"ingest.source={src}")
    row = _bronze(spark, cfg).first()
    assert row.source.endswith("/a.jsonl")
    assert row.doc_id == hashlib.sha256(f"{row.source}\u0000{DOC}".encode()).hexdigest()


def test_ingest_csv_passes_reader_options_through(spark, tmp_path):
    # semicolon-delimited, single-quoted, backslash-escaped, multi-line, Latin-1
    text = "id;body;cls\n1;'caf\xe9 au lait, with a \\'quote\\'';pos\n2;'two\nlines here';neg\n"
    src = tmp_path / "in.csv"
    src.write_bytes(text.encode("latin-1"))
    summary, cfg = _run(spark, tmp_path / "lh", f"ingest.source={src}", "ingest.format=csv",
                        "ingest.text_column=body", "ingest.label_column=cls", "ingest.id_column=id",
                        "ingest.options.sep=;", "ingest.options.quote='", "ingest.options.escape=\\",
                        "ingest.options.multiLine=true", "ingest.options.encoding=latin1")
    assert summary["inserted"] == 2, summary
    assertDataFrameEqual(_bronze(spark, cfg).select("doc_id", "text", "label"), spark.createDataFrame(
        [("1", "café au lait, with a 'quote'", "pos"), ("2", "two\nlines here", "neg")],
        "doc_id string, text string, label string"))


def test_ingest_parquet_glob_casts_numeric_labels_to_strings(spark, tmp_path):
    df = spark.createDataFrame([(DOC, 1), (DOC + " b", 0)], "content string, target int")
    df.write.parquet(str(tmp_path / "p1"))
    summary, cfg = _run(spark, tmp_path / "lh", f"ingest.source={tmp_path}/p*", "ingest.format=parquet",
                        "ingest.text_column=content", "ingest.label_column=target")
    assert summary["inserted"] == 2
    assert sorted(r.label for r in _bronze(spark, cfg).collect()) == ["0", "1"]


def test_ingest_text_one_document_per_line_is_unlabelled(spark, tmp_path):
    src = tmp_path / "docs.txt"
    src.write_text(f"{DOC} one\n\n{DOC} two\n")
    summary, cfg = _run(spark, tmp_path / "lh", f"ingest.source={src}", "ingest.format=text")
    assert summary["read"] == 2 and summary["inserted"] == 2  # the blank line separates, it is no record
    assert [r.label for r in _bronze(spark, cfg).collect()] == [None, None]


def test_ingest_text_one_document_per_file_with_label_from_directory(spark, tmp_path):
    for label in ("pos", "neg"):
        (tmp_path / "in" / label).mkdir(parents=True)
        (tmp_path / "in" / label / "1.txt").write_text(f"{DOC}\nsecond line of {label}\n")
    summary, cfg = _run(spark, tmp_path / "lh", f"ingest.source={tmp_path}/in/*/*.txt", "ingest.format=text",
                        "ingest.text_mode=file", "ingest.label_from_dir=true")
    assert summary["inserted"] == 2
    assertDataFrameEqual(_bronze(spark, cfg).select("text", "label"), spark.createDataFrame(
        [(f"{DOC}\nsecond line of pos\n", "pos"), (f"{DOC}\nsecond line of neg\n", "neg")], "text string, label string"))


def test_ingest_from_delta_path_and_metastore_table(spark, tmp_path):
    df = spark.createDataFrame([("d1", DOC, "x"), ("d2", DOC + "!", "y")], "id string, text string, label string")
    df.write.format("delta").save(str(tmp_path / "src_delta"))
    df.write.format("delta").saveAsTable("default.ingest_source_tbl")
    by_path, cfg = _run(spark, tmp_path / "lh1", f"ingest.source={tmp_path}/src_delta", "ingest.format=delta",
                        "ingest.id_column=id")
    by_name, cfg2 = _run(spark, tmp_path / "lh2", "ingest.source=default.ingest_source_tbl", "ingest.format=delta",
                         "ingest.id_column=id")
    assert by_path["inserted"] == by_name["inserted"] == 2
    assertDataFrameEqual(_bronze(spark, cfg).select("doc_id", "text", "label"),
                         _bronze(spark, cfg2).select("doc_id", "text", "label"))
    assert {r.source for r in _bronze(spark, cfg2).collect()} == {"default.ingest_source_tbl"}


def test_bronze_and_quarantine_can_be_metastore_tables(spark, tmp_path):
    src = _jsonl(tmp_path / "a.jsonl", [{"text": DOC, "label": "x"}, {"text": "", "label": "x"}])
    summary, cfg = _run(spark, tmp_path / "lh", f"ingest.source={src}", "tables.bronze=spark_catalog.default.mt_bronze",
                        "tables.quarantine=default.mt_quarantine")
    assert summary["tables"] == {"bronze": "spark_catalog.default.mt_bronze", "quarantine": "default.mt_quarantine"}
    assert spark.table("spark_catalog.default.mt_bronze").count() == 1
    assert spark.table("default.mt_quarantine").count() == 1


# --------------------------------------------------------------------------- changed documents

@pytest.mark.parametrize("policy", ["keep_first", "quarantine"])
def test_an_existing_id_with_other_text_is_counted_changed_and_kept_or_quarantined_never_dropped(spark, tmp_path,
                                                                                                 policy):
    src = tmp_path / "in"
    src.mkdir()
    _jsonl(src / "a.jsonl", [{"id": "d1", "text": DOC, "label": "x"}, {"id": "d2", "text": DOC + " 2", "label": "x"}])
    _run(spark, tmp_path / "lh", f"ingest.source={src}", "ingest.id_column=id")
    _jsonl(src / "b.jsonl", [{"id": "d1", "text": DOC + " corrected", "label": "x"},  # new text
                             {"id": "d2", "text": DOC + " 2", "label": "y"}])  # same text, another label
    summary, cfg = _run(spark, tmp_path / "lh", f"ingest.source={src}", "ingest.id_column=id",
                        f"ingest.on_changed_text={policy}")
    assert _adds_up(summary) and summary["read"] == 4 and summary["inserted"] == 0
    assert summary["duplicates"] == 2  # a.jsonl's records, read again
    assert {(r.doc_id, r.text, r.label) for r in _bronze(spark, cfg).collect()} == {("d1", DOC, "x"),
                                                                                  ("d2", DOC + " 2", "x")}
    if policy == "keep_first":
        assert summary["changed"] == 2 and summary["quarantined"] == {}
    else:
        assert summary["changed"] == 0 and summary["quarantined"] == {R.CHANGED_TEXT: 2}
        rows = _quarantine(spark, cfg).where(f"reason = '{R.CHANGED_TEXT}'").collect()
        assert sorted(r.doc_id for r in rows) == ["d1", "d2"] and any("corrected" in r.raw_record for r in rows)
        again, _ = _run(spark, tmp_path / "lh", f"ingest.source={src}", "ingest.id_column=id",
                        f"ingest.on_changed_text={policy}")
        assert _quarantine(spark, cfg).count() == 2  # a rerun quarantines nothing twice


def test_a_text_that_is_not_a_string_is_quarantined_from_json_and_an_error_from_a_typed_column(spark, tmp_path):
    src = _jsonl(tmp_path / "a.jsonl", [{"id": "s", "text": {"body": DOC}, "label": "x"},
                                        {"id": "n", "text": 12345, "label": "x"}, {"id": "ok", "text": DOC, "label": "x"}])
    summary, _ = _run(spark, tmp_path / "lh", f"ingest.source={src}", "ingest.id_column=id")
    assert summary["quarantined"] == {R.TEXT_NOT_STRING: 2} and summary["inserted"] == 1
    spark.createDataFrame([(1, 7, "x")], "id int, text int, label string").write.parquet(str(tmp_path / "p"))
    with pytest.raises(StageError, match=r"^ingest.text_column='text' has type int; the text must be a string column$"):
        _run(spark, tmp_path / "lh2", f"ingest.source={tmp_path / 'p'}", "ingest.format=parquet")


# --------------------------------------------------------------------------- bad input

@pytest.fixture
def bad_jsonl(tmp_path):
    lines = [
        json.dumps({"id": "ok1", "text": DOC, "label": "x"}).encode(),
        json.dumps({"id": "ok2", "text": DOC + " again", "label": 3}).encode(),  # non-string scalar label
        json.dumps({"id": "ok1", "text": DOC, "label": "x"}).encode(),  # duplicate id
        b'{"id": "broken", "text": "no closing brace"',  # malformed JSON
        b'[1, 2, 3]',  # valid JSON, not a record
        json.dumps({"id": "e1", "text": "", "label": "x"}).encode(),
        json.dumps({"id": "e2", "text": None, "label": "x"}).encode(),
        json.dumps({"id": "e3", "text": "   ", "label": "x"}).encode(),
        json.dumps({"id": "nul", "text": "a\u0000b", "label": "x"}).encode(),
        b'{"id": "latin", "text": "caf\xe9", "label": "x"}',  # invalid UTF-8 byte
        json.dumps({"id": "big", "text": "y" * (5 * 1024 * 1024), "label": "x"}).encode(),  # a 5 MB line
        json.dumps({"id": "nolabel", "text": DOC + " unlabelled"}).encode(),
        json.dumps({"id": "nulllabel", "text": DOC + " null label", "label": None}).encode(),
        json.dumps({"id": "objlabel", "text": DOC + " object", "label": {"a": 1}}).encode(),
        json.dumps({"text": DOC + " no id", "label": "x"}).encode(),
    ]
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_bad_jsonl_quarantines_each_record_with_its_reason_and_counts_add_up(spark, tmp_path, bad_jsonl):
    summary, cfg = _run(spark, tmp_path / "lh", f"ingest.source={bad_jsonl}", "ingest.id_column=id",
                        "ingest.max_text_chars=1000000")
    assert summary["read"] == 15
    assert _adds_up(summary)
    assert summary["inserted"] == 2 and summary["duplicates"] == 1
    assert summary["quarantined"] == {
        R.UNPARSEABLE: 2, R.EMPTY_TEXT: 3, R.NUL_BYTE: 1, R.INVALID_UTF8: 1, R.TEXT_TOO_LONG: 1,
        R.MISSING_LABEL: 2, R.INVALID_LABEL: 1, R.MISSING_ID: 1,
    }
    assert {(r.doc_id, r.label) for r in _bronze(spark, cfg).collect()} == {("ok1", "x"), ("ok2", "3")}
    quarantine = _quarantine(spark, cfg)
    assert quarantine.count() == 12
    broken = quarantine.where(f"reason = '{R.UNPARSEABLE}'").orderBy("raw_record").collect()
    assert broken[0].raw_record == '[1, 2, 3]' and broken[1].raw_record.startswith('{"id": "broken"')
    assert all(r.stage == "ingest" and r.source.endswith("bad.jsonl") for r in quarantine.collect())
    latin = quarantine.where(f"reason = '{R.INVALID_UTF8}'").first().raw_record
    assert latin == '{"id": "latin", "text": "caf\ufffd", "label": "x"}'


def test_csv_by_default_reads_doubled_quotes_embedded_newlines_and_commas_as_rfc_4180(spark, tmp_path):
    # As Python's csv module, pandas and spreadsheets write it; Spark's own default escape is a backslash
    rows = [("1", 'He said "hi", then left', "x"), ("2", "two\nlines, and a comma", "y"),
            ("3", 'ends with a quote "', "x"), ("4", "a comma, inside", "y"), ("5", "no quotes at all", "x")]
    src = tmp_path / "in.csv"
    with src.open("w", newline="") as f:
        csv.writer(f).writerows([("id", "text", "label"), *rows])
    assert '""hi""' in src.read_text() and "two\nlines" in src.read_text()
    summary, cfg = _run(spark, tmp_path / "lh", f"ingest.source={src}", "ingest.format=csv", "ingest.id_column=id")
    assert (summary["read"], summary["inserted"], summary["quarantined"]) == (5, 5, {})
    assert "warnings" not in summary and "unparseable_rows" not in summary
    assertDataFrameEqual(_bronze(spark, cfg).select("doc_id", "text", "label"),
                         spark.createDataFrame(rows, "doc_id string, text string, label string"))


def test_broken_csv_records_are_quarantined_with_their_line_byte_offset_and_first_characters(spark, tmp_path):
    content = (f'text,label\n"{DOC}\nits second line",x\ntoo,many,fields,y\n"{DOC} b",y\n,x\n'
               '"a quote left open, x\nto the end,z\n')
    src = tmp_path / "in.csv"
    src.write_text(content)
    summary, cfg = _run(spark, tmp_path / "lh", f"ingest.source={src}", "ingest.format=csv")
    assert _adds_up(summary)
    assert summary["quarantined"] == {R.UNPARSEABLE: 2, R.EMPTY_TEXT: 1} and summary["inserted"] == 2
    located = {(row["line"], row["byte_offset"], row["start"]) for row in summary["unparseable_rows"]}
    assert located == {(4, content.index("too,many"), "too,many,fields,y"),
                       (7, content.index('"a quote'), '"a quote left open, x\nto the end,z')}
    assert all(row["source"].endswith("/in.csv") for row in summary["unparseable_rows"])
    (warning,) = summary["warnings"]
    assert "2 CSV record(s) could not be parsed" in warning and "line 4 (byte" in warning
    assert "quote='\"' escape='\"' multiLine='true'" in warning and "ingest.options" in warning


def test_unlabelled_rows_are_kept_when_labels_are_not_required(spark, tmp_path):
    src = _jsonl(tmp_path / "a.jsonl", [{"text": DOC}, {"text": DOC + " 2", "label": "x"}])
    summary, _ = _run(spark, tmp_path / "lh", f"ingest.source={src}", "ingest.require_label=false")
    assert summary["inserted"] == 2 and summary["quarantined"] == {}


# --------------------------------------------------------------------------- idempotency

def test_ingest_twice_leaves_bronze_and_quarantine_unchanged(spark, tmp_path, bad_jsonl):
    args = (f"ingest.source={bad_jsonl}", "ingest.id_column=id")
    first, cfg = _run(spark, tmp_path / "lh", *args)
    bronze_before = _bronze(spark, cfg).collect()
    versions = (resolve_table(cfg, BRONZE).version(spark), resolve_table(cfg, QUARANTINE).version(spark))
    second, _ = _run(spark, tmp_path / "lh", *args)
    assert second["inserted"] == 0 and second["duplicates"] == first["inserted"] + first["duplicates"]
    assert _adds_up(second)
    assertDataFrameEqual(_bronze(spark, cfg), bronze_before)
    assert (resolve_table(cfg, BRONZE).version(spark), resolve_table(cfg, QUARANTINE).version(spark)) == versions
    assert _quarantine(spark, cfg).count() == sum(first["quarantined"].values())


def test_new_file_adds_only_its_own_rows(spark, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    _jsonl(src / "a.jsonl", [{"text": DOC, "label": "x"}, {"text": DOC + " 2", "label": "y"}])
    first, cfg = _run(spark, tmp_path / "lh", f"ingest.source={src}")
    _jsonl(src / "b.jsonl", [{"text": DOC + " 3", "label": "x"}])
    second, _ = _run(spark, tmp_path / "lh", f"ingest.source={src}")
    assert (first["inserted"], second["inserted"], second["duplicates"]) == (2, 1, 2)
    assert _bronze(spark, cfg).count() == 3


# --------------------------------------------------------------------------- errors before writing

def test_missing_source_path_is_an_error_and_writes_nothing(spark, tmp_path):
    with pytest.raises(StageError, match="does not exist"):
        _run(spark, tmp_path / "lh", f"ingest.source={tmp_path}/nope/*.jsonl")
    assert not (tmp_path / "lh").exists()


def test_missing_text_column_is_an_error_naming_the_columns(spark, tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("body,label\nhello,x\n")
    with pytest.raises(StageError, match=r"ingest.text_column='text' is not a column .*columns: body, label"):
        _run(spark, tmp_path / "lh", f"ingest.source={src}", "ingest.format=csv")
    assert not (tmp_path / "lh").exists()


def test_jsonl_field_that_no_record_has_is_an_error(spark, tmp_path):
    src = _jsonl(tmp_path / "a.jsonl", [{"body": DOC, "label": "x"}, {"body": DOC, "label": "y"}])
    with pytest.raises(StageError, match="ingest.text_column='text' is not a field of any record"):
        _run(spark, tmp_path / "lh", f"ingest.source={src}")
    with pytest.raises(StageError, match="ingest.label_column='cls' is not a field of any record"):
        _run(spark, tmp_path / "lh", f"ingest.source={src}", "ingest.text_column=body", "ingest.label_column=cls")
    assert not (tmp_path / "lh").exists()


def test_missing_label_column_in_parquet_is_an_error(spark, tmp_path):
    spark.createDataFrame([(DOC,)], "text string").write.parquet(str(tmp_path / "p"))
    with pytest.raises(StageError, match="ingest.label_column='label' is not a column"):
        _run(spark, tmp_path / "lh", f"ingest.source={tmp_path}/p", "ingest.format=parquet")
    assert not (tmp_path / "lh").exists()


def test_unreadable_file_is_an_error_and_writes_nothing(spark, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    _jsonl(src / "a.jsonl", [{"text": DOC, "label": "x"}])
    good = gzip.compress(b'{"text": "x", "label": "y"}\n' * 1000)
    (src / "b.jsonl.gz").write_bytes(good[: len(good) // 2])  # truncated gzip
    with pytest.raises(StageError, match="could not read ingest.source"):
        _run(spark, tmp_path / "lh", f"ingest.source={src}")
    assert not (tmp_path / "lh").exists()


# --------------------------------------------------------------------------- issue 11: hostile input

def test_json_line_too_long_to_parse_is_quarantined_as_text_too_long(spark, tmp_path):
    # 40 MB in one record is past what Spark parses as a Variant; the record is long, not malformed.
    src = tmp_path / "big.jsonl"
    with src.open("w") as fh:
        fh.write(json.dumps({"text": "x" * (40 << 20), "label": "a"}) + "\n")
        fh.write(json.dumps({"text": DOC, "label": "a"}) + "\n")
    summary, cfg = _run(spark, tmp_path / "lh", f"ingest.source={src}")
    assert summary["quarantined"] == {R.TEXT_TOO_LONG: 1} and summary["inserted"] == 1 and _adds_up(summary)


def test_label_column_with_a_quote_in_its_name_is_read(spark, tmp_path):
    src = _jsonl(tmp_path / "a.jsonl", [{"text": DOC, "reviewer's label": "pos"}])
    summary, cfg = _run(spark, tmp_path / "lh", f"ingest.source={src}", "ingest.label_column=reviewer's label")
    assert summary["inserted"] == 1 and _bronze(spark, cfg).first().label == "pos"


def test_unreadable_or_missing_label_column_is_named_in_the_error(spark, tmp_path):
    src = _jsonl(tmp_path / "a.jsonl", [{"text": DOC, "label": "pos"}])
    with pytest.raises(StageError, match=r"^ingest.label_column=.*both ' and \""):
        _run(spark, tmp_path / "lh", f"ingest.source={src}", "ingest.label_column=it's \"x\"")
    with pytest.raises(StageError, match=r"^ingest.label_column=\"reviewer's label\" is not a field"):
        _run(spark, tmp_path / "lh", f"ingest.source={src}", "ingest.label_column=reviewer's label")


def test_injection_table_names_are_config_errors_and_create_no_table(spark, tmp_path):
    from conf import ConfigError
    from tests.conf.test_identifiers import INJECTIONS

    before = {t.name for t in spark.catalog.listTables("default")}
    src = _jsonl(tmp_path / "a.jsonl", [{"text": DOC, "label": "x"}])
    for value in INJECTIONS:
        for role in ("bronze", "quarantine"):
            with pytest.raises(ConfigError, match=f"tables.{role}="):
                _run(spark, tmp_path / "lh", f"ingest.source={src}", f"tables.{role}={value}")
    assert {t.name for t in spark.catalog.listTables("default")} == before
    assert not (tmp_path / "lh").exists()


def test_back_quoted_metastore_names_are_quoted_in_every_statement(spark, tmp_path):
    src = _jsonl(tmp_path / "a.jsonl", [{"text": DOC, "label": "x"}, {"text": "", "label": "x"}])
    summary, cfg = _run(spark, tmp_path / "lh", f"ingest.source={src}", "tables.bronze=`default`.`lb_quoted_bronze`",
                        "tables.quarantine=`default`.lb_quoted_quarantine")
    again, _ = _run(spark, tmp_path / "lh", f"ingest.source={src}", "tables.bronze=`default`.`lb_quoted_bronze`",
                    "tables.quarantine=`default`.lb_quoted_quarantine")
    assert summary["inserted"] == 1 and again["inserted"] == 0
    assert spark.table("default.lb_quoted_bronze").count() == 1
    assert spark.table("default.lb_quoted_quarantine").count() == 1


# --------------------------------------------------------------------------- label names

AG_NEWS = [  # the AG News layout: no header, class index, title, description
    ("3", "Wall St. Bears Claw Back Into the Black", "Short-sellers, Wall Street's dwindling band of ultra-cynics."),
    ("2", "Phelps wins again", "Michael Phelps won his fifth gold medal of the Games on Tuesday night."),
    (" 4 ", "New chip design", "A new chip design promises faster phones and longer battery life."),
    ("7", "Odd one", "A record whose class index the mapping does not know."),
    ("", "No class", "A record without a class index at all, which a labelled corpus cannot keep."),
]


def _headerless_csv(path):
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(AG_NEWS)
    return path


def test_a_headerless_csv_is_read_by_position_and_numbered_labels_get_their_names(spark, tmp_path):
    src = _headerless_csv(tmp_path / "train.csv")
    summary, cfg = _run(spark, tmp_path / "lh", f"ingest.source={src}", "ingest.format=csv",
                        "ingest.options.header=false", "ingest.text_column=_c2", "ingest.label_column=_c0",
                        "ingest.label_names.1=World", "ingest.label_names.2=Sports", "ingest.label_names.3=Business",
                        "ingest.label_names.4=Sci/Tech")
    assert _adds_up(summary), summary
    assert summary["inserted"] == 3
    assert summary["quarantined"] == {R.MISSING_LABEL: 1, R.UNKNOWN_LABEL: 1}
    assert summary["label_names"]["3"] == "Business"
    assert sorted(r["label"] for r in _bronze(spark, cfg).collect()) == ["Business", "Sci/Tech", "Sports"]
    unknown = _quarantine(spark, cfg).where(f"reason = '{R.UNKNOWN_LABEL}'").collect()
    assert len(unknown) == 1 and "Odd one" in unknown[0]["raw_record"]  # the raw record, with its code


def test_label_names_come_from_a_yaml_file_and_a_file_without_a_mapping_is_a_one_line_error(spark, tmp_path):
    src = _headerless_csv(tmp_path / "train.csv")
    names = tmp_path / "classes.yaml"
    names.write_text("1: World\n2: Sports\n3: Business\n4: Sci/Tech\n7: Other\n")
    common = [f"ingest.source={src}", "ingest.format=csv", "ingest.options.header=false", "ingest.text_column=_c2",
              "ingest.label_column=_c0"]
    summary, cfg = _run(spark, tmp_path / "lh", *common, f"ingest.label_names={names}")
    assert summary["inserted"] == 4 and summary["quarantined"] == {R.MISSING_LABEL: 1}
    assert "Other" in {r["label"] for r in _bronze(spark, cfg).collect()}
    names.write_text("- World\n- Sports\n")
    with pytest.raises(StageError, match="must hold a mapping of label values to names"):
        _run(spark, tmp_path / "lh2", *common, f"ingest.label_names={names}")
    names.write_text("1: World\n2: World\n")
    with pytest.raises(StageError, match="'World' is given to 2 values"):
        _run(spark, tmp_path / "lh3", *common, f"ingest.label_names={names}")
