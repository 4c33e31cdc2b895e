import json
from pathlib import Path

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from spark_jobs.clean import SILVER_SCHEMA, STATE_PROPERTY, assign_split, clean
from spark_jobs.data_report import CLEAN_FILES, clean_report_dir
from spark_jobs.dedup import EXACT, NEAR
from spark_jobs.filters import DropReason
from spark_jobs.ingest import ingest
from spark_jobs.sample_data import make_document, write_sample
from spark_jobs.stage import StageError
from spark_jobs.tables import BRONZE, LABEL_MAP, QUARANTINE, SILVER, resolve_table
from tests.conftest import make_config

DOC = "Analysts noted that the central bank questioned bond yields after months of debate."


def _adds_up(s):
    return s["input"] == s["output"] + s["duplicates"] + sum(s["quarantined"].values())


def _jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def _pipeline(spark, root, source, *overrides):
    cfg = make_config(root, f"ingest.source={source}", "ingest.id_column=id", *overrides)
    ingested = ingest(spark, cfg, "ingest-run")
    return ingested, clean(spark, cfg, "clean-run"), cfg


def _silver(spark, cfg):
    return resolve_table(cfg, SILVER).read(spark)


@pytest.fixture(scope="module")
def sample_run(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("sample")
    src = write_sample(root / "data", n_docs=1500, seed=3)
    ingested, cleaned, cfg = _pipeline(spark, root / "lh", src)
    return ingested, cleaned, cfg


def test_clean_sample_counts_add_up_and_cover_all_bronze_rows(spark, sample_run):
    ingested, cleaned, cfg = sample_run
    assert cleaned["status"] == "done"
    assert cleaned["input"] == ingested["inserted"] == resolve_table(cfg, BRONZE).read(spark).count()
    assert _adds_up(cleaned)
    assert cleaned["output"] == _silver(spark, cfg).count()
    assert cleaned["duplicates_by_kind"][EXACT] >= 1
    assert {DropReason.LABEL_CONFLICT, DropReason.TOO_SHORT}.issubset(cleaned["quarantined"])
    clean_quarantine = resolve_table(cfg, QUARANTINE).read(spark).where("stage = 'clean'")
    assert clean_quarantine.count() == sum(cleaned["quarantined"].values())


def test_silver_has_schema_label_ids_and_all_three_splits(spark, sample_run):
    _, cleaned, cfg = sample_run
    silver = _silver(spark, cfg)
    assert [f.name for f in silver.schema.fields] == [f.name for f in SILVER_SCHEMA.fields]
    label_map = {r.label: r.label_id for r in resolve_table(cfg, LABEL_MAP).read(spark).collect()}
    assert label_map == {"business": 0, "health": 1, "sports": 2, "technology": 3}
    assert silver.where(F.col("label_id") != F.udf(label_map.get, "int")("label")).count() == 0
    splits = {r.split: r["count"] for r in silver.groupBy("split").count().collect()}
    assert set(splits) == {"train", "validation", "test"}
    assert 0.7 < splits["train"] / cleaned["output"] < 0.9


def test_quality_report_is_saved_and_matches_silver(spark, sample_run):
    _, cleaned, cfg = sample_run
    report = json.loads(open(cleaned["report"]).read())
    assert report["silver_rows"] == cleaned["output"]
    assert report["quarantined_by_reason"] == cleaned["quarantined"]
    assert sum(sum(v.values()) for v in report["labels_per_split"].values()) == cleaned["output"]
    lengths = report["text_length_chars"]
    assert lengths["min"] <= lengths["p5"] <= lengths["p50"] <= lengths["p95"] <= lengths["max"]
    histogram = report["text_length_histogram"]
    assert sum(histogram["counts"]) == cleaned["output"]
    assert len(histogram["edges"]) == len(histogram["counts"]) + 1
    assert histogram["edges"][0] <= lengths["min"] and lengths["max"] < histogram["edges"][-1]
    # the whole quarantine table, ingest's rejects included: they never reach clean's batch
    ingested = sample_run[0]
    assert report["quarantine_table"] == {"clean": cleaned["quarantined"], "ingest": ingested["quarantined"]}


def test_the_report_images_are_saved_beside_the_report_and_silvers_version_names_their_folder(spark, sample_run):
    _, cleaned, cfg = sample_run
    folder = Path(cleaned["report"]).parent
    assert sorted(p.name for p in folder.iterdir() if p.name in CLEAN_FILES) == sorted(CLEAN_FILES)
    assert all((folder / name).read_bytes().startswith(b"\x89PNG") for name in CLEAN_FILES if name.endswith(".png"))
    silver = resolve_table(cfg, SILVER)
    assert clean_report_dir(spark, silver, silver.version(spark)) == str(folder)
    assert clean_report_dir(spark, silver, 0) is None  # the empty table clean created: no run ended there


def test_clean_twice_changes_nothing_and_says_up_to_date(spark, sample_run):
    _, _, cfg = sample_run
    silver = resolve_table(cfg, SILVER)
    before, version = silver.read(spark).collect(), silver.version(spark)
    again = clean(spark, cfg, "clean-again")
    assert again["status"] == "up_to_date" and again["input"] == 0
    assert silver.version(spark) == version
    assertDataFrameEqual(silver.read(spark), before)


def test_clean_is_incremental_keeps_splits_and_appends_new_labels(spark, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    _jsonl(src / "a.jsonl", [{"id": f"a{i}", "text": f"{DOC} number {i}", "label": ["x", "y"][i % 2]} for i in range(40)])
    _, first, cfg = _pipeline(spark, tmp_path / "lh", src)
    before = {r.doc_id: (r.split, r.label_id) for r in _silver(spark, cfg).collect()}
    _jsonl(src / "b.jsonl", [{"id": f"b{i}", "text": f"{DOC} other {i}", "label": ["a", "z", "x"][i % 3]} for i in range(9)])
    ingested, second, _ = _pipeline(spark, tmp_path / "lh", src)
    assert ingested["inserted"] == 9
    assert second["input"] == 9 and second["output"] == 9  # only the new bronze rows
    after = {r.doc_id: (r.split, r.label_id) for r in _silver(spark, cfg).collect()}
    assert {k: after[k] for k in before} == before  # old rows keep split and label id
    labels = {r.label: r.label_id for r in resolve_table(cfg, LABEL_MAP).read(spark).collect()}
    assert labels == {"x": 0, "y": 1, "a": 2, "z": 3}  # appended, never renumbered
    assert resolve_table(cfg, SILVER).properties(spark)[STATE_PROPERTY] == str(resolve_table(cfg, BRONZE).version(spark))


def test_a_document_ingest_updated_flows_to_silver_keeping_its_split_or_leaves_silver_when_dropped(spark, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    _jsonl(src / "a.jsonl", [{"id": f"d{i}", "text": f"{DOC} number {i}", "label": "x"} for i in range(6)])
    _, first, cfg = _pipeline(spark, tmp_path / "lh", src)
    splits = {r.doc_id: r.split for r in _silver(spark, cfg).collect()}
    _jsonl(src / "b.jsonl", [{"id": "d0", "text": f"{DOC} number 0, corrected", "label": "x"},  # new text
                             {"id": "d1", "text": f"{DOC} number 1", "label": "y"},  # relabelled
                             {"id": "d2", "text": "too short", "label": "x"},  # now dropped by clean
                             {"id": "d3", "text": f"{DOC} number 4", "label": "x"}])  # now a duplicate of d4
    ingested, second, _ = _pipeline(spark, tmp_path / "lh", src)
    assert ingested["changed"] == 4 and ingested["on_changed_text"] == "update" and ingested["inserted"] == 0
    assert second["input"] == 4 and _adds_up(second)
    assert (second["output"], second["updated"], second["removed"]) == (2, 2, 2)
    assert second["quarantined"] == {DropReason.TOO_SHORT: 1} and second["duplicates_by_kind"] == {EXACT: 1}
    silver = {r.doc_id: (r.text, r.label, r.split) for r in _silver(spark, cfg).collect()}
    assert silver["d0"] == (f"{DOC} number 0, corrected", "x", splits["d0"])
    assert silver["d1"] == (f"{DOC} number 1", "y", splits["d1"])
    assert sorted(silver) == ["d0", "d1", "d4", "d5"]
    _, third, _ = _pipeline(spark, tmp_path / "lh", src)  # the same files again: nothing changes
    assert third["status"] == "up_to_date" and _silver(spark, cfg).count() == 4


def test_duplicate_of_existing_silver_row_in_a_later_batch_is_dropped(spark, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    _jsonl(src / "a.jsonl", [{"id": "first", "text": DOC, "label": "x"}])
    _pipeline(spark, tmp_path / "lh", src)
    _jsonl(src / "b.jsonl", [{"id": "later", "text": f"<p>{DOC}  </p>", "label": "x"}])
    _, second, cfg = _pipeline(spark, tmp_path / "lh", src)
    assert second["duplicates_by_kind"] == {EXACT: 1} and second["output"] == 0
    _jsonl(src / "c.jsonl", [{"id": "conflict", "text": f" {DOC}", "label": "y"}])
    _, third, _ = _pipeline(spark, tmp_path / "lh", src)
    assert third["quarantined"] == {DropReason.LABEL_CONFLICT: 1}
    assert [(r.doc_id, r.label) for r in _silver(spark, cfg).collect()] == [("first", "x")]  # silver rows stay


def test_clean_works_on_metastore_tables(spark, tmp_path):
    src = _jsonl(tmp_path / "a.jsonl", [{"id": f"m{i}", "text": f"{DOC} metastore {i}", "label": "x"} for i in range(5)])
    names = [f"tables.{role}=default.cm_{role}" for role in ("bronze", "silver", "quarantine", "label_map")]
    _, cleaned, _ = _pipeline(spark, tmp_path / "lh", src, *names)
    assert cleaned["output"] == 5 and cleaned["tables"]["silver"] == "default.cm_silver"
    assert spark.table("default.cm_silver").count() == 5
    _, again, _ = _pipeline(spark, tmp_path / "lh", src, *names)
    assert again["status"] == "up_to_date"


def test_clean_without_bronze_is_an_error(spark, tmp_path):
    with pytest.raises(StageError, match="run `lakebert ingest` first"):
        clean(spark, make_config(tmp_path / "lh"), "r")


# --------------------------------------------------------------------------- pure transforms

def test_near_dedup_switch_runs_in_the_stage(spark, tmp_path):
    rng = __import__("random").Random(9)
    text = make_document(rng, "health") + " " + make_document(rng, "health")
    src = _jsonl(tmp_path / "a.jsonl", [{"id": "p", "text": text, "label": "h"},
                                        {"id": "q", "text": text.replace(" the ", " a ", 1), "label": "h"}])
    _, cleaned, _ = _pipeline(spark, tmp_path / "lh", src, "clean.near_dedup.enabled=true")
    assert cleaned["duplicates_by_kind"] == {NEAR: 1} and cleaned["output"] == 1


def test_split_depends_only_on_doc_id_and_follows_fractions(spark):
    from conf import load_config

    split_cfg = load_config().clean.split
    ids = spark.range(20_000).select(F.concat(F.lit("doc-"), F.col("id").cast("string")).alias("doc_id"))
    a = ids.select("doc_id", assign_split(F.col("doc_id"), split_cfg).alias("split"))
    b = ids.orderBy(F.desc("doc_id")).repartition(3).select("doc_id", assign_split(F.col("doc_id"), split_cfg).alias("split"))
    assertDataFrameEqual(a, b)
    counts = {r.split: r["count"] for r in a.groupBy("split").count().collect()}
    assert abs(counts["train"] / 20_000 - 0.8) < 0.02 and abs(counts["test"] / 20_000 - 0.1) < 0.02


def test_case_and_whitespace_variants_leave_one_row_when_the_tokenizer_lowercases(spark, tmp_path):
    variants = [DOC, DOC.upper(), DOC.lower(), "  " + DOC.replace(" ", "   ") + " ", DOC.swapcase(), DOC.title(),
                DOC.upper().replace(" ", "\t")]
    rows = [{"id": f"v{i}", "text": t, "label": "economy"} for i, t in enumerate(variants)]
    rows += [{"id": f"u{i}", "text": DOC.upper(), "label": "economy"} for i in range(10)]  # 10 upper-cased copies
    ingested, cleaned, cfg = _pipeline(spark, tmp_path / "lh", _jsonl(tmp_path / "v.jsonl", rows))
    assert cleaned["dedup_key"] == "casefold"  # the default tokenizer lowercases
    assert cleaned["output"] == 1 and _silver(spark, cfg).count() == 1
    assert cleaned["duplicates_by_kind"] == {EXACT: len(rows) - 1} and _adds_up(cleaned)


def test_exact_dedup_key_keeps_case_variants_apart(spark, tmp_path):
    rows = [{"id": "a", "text": DOC, "label": "economy"}, {"id": "b", "text": DOC.upper(), "label": "economy"}]
    _, cleaned, _ = _pipeline(spark, tmp_path / "lh", _jsonl(tmp_path / "v.jsonl", rows), "clean.dedup_key=exact")
    assert cleaned["dedup_key"] == "exact" and cleaned["output"] == 2


def test_a_case_variant_of_an_existing_silver_row_is_a_duplicate_in_a_later_run(spark, tmp_path):
    first = _jsonl(tmp_path / "a.jsonl", [{"id": "a", "text": DOC, "label": "economy"}])
    _, cleaned, cfg = _pipeline(spark, tmp_path / "lh", first)
    later = _jsonl(tmp_path / "b.jsonl", [{"id": "b", "text": DOC.upper(), "label": "economy"}])
    _, again, _ = _pipeline(spark, tmp_path / "lh", later)
    assert again["output"] == 0 and again["duplicates_by_kind"] == {EXACT: 1}
    assert [r["doc_id"] for r in _silver(spark, cfg).collect()] == ["a"]


# Spellings of two labels, as people type and paste them: case, a trailing space, full-width
# letters, a zero-width space, a ligature.
LABEL_VARIANTS = ["Sport", "sport ", "ＳＰＯＲＴ", "Spor\u200bt", "ﬁnance", "finance"]


def _label_map(spark, cfg):
    return {r.label: (r.label_id, r.spellings) for r in resolve_table(cfg, LABEL_MAP).read(spark).collect()}


def test_labels_are_normalized_like_text_and_labels_differing_only_by_case_are_a_warning(spark, tmp_path, capsys):
    rows = [{"id": f"l{i}", "text": f"{DOC} number {i}", "label": label} for i, label in enumerate(LABEL_VARIANTS * 2)]
    _, cleaned, cfg = _pipeline(spark, tmp_path / "lh", _jsonl(tmp_path / "l.jsonl", rows))
    assert _label_map(spark, cfg) == {"SPORT": (0, ["ＳＰＯＲＴ"]), "Sport": (1, sorted(["Spor\u200bt", "Sport"])),
                                      "finance": (2, sorted(["finance", "ﬁnance"])), "sport": (3, ["sport"])}
    assert sorted(r.label for r in _silver(spark, cfg).collect()) == sorted(["Sport", "sport", "SPORT", "Sport",
                                                                             "finance", "finance"] * 2)
    warning = ("labels 'Sport', 'SPORT', 'sport' differ only by case and are separate classes; set "
               "clean.label_case=fold to merge them")
    assert warning in cleaned["warnings"] and f"clean: warning: {warning}" in capsys.readouterr().out


def test_label_case_fold_merges_case_variants_into_the_label_maps_spelling_and_records_every_spelling(spark, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    rows = [{"id": f"l{i}", "text": f"{DOC} number {i}", "label": label} for i, label in enumerate(LABEL_VARIANTS * 2)]
    _jsonl(src / "a.jsonl", rows)
    _, cleaned, cfg = _pipeline(spark, tmp_path / "lh", src, "clean.label_case=fold")
    spellings = ["Spor\u200bt", "Sport", "sport", "ＳＰＯＲＴ"]  # the trailing space was trimmed at ingest
    assert _label_map(spark, cfg) == {"Sport": (0, sorted(spellings)), "finance": (1, sorted(["finance", "ﬁnance"]))}
    assert cleaned["labels"] == 2 and _adds_up(cleaned)
    _jsonl(src / "b.jsonl", [{"id": "later", "text": f"{DOC} later", "label": "SPORT"}])
    _, again, _ = _pipeline(spark, tmp_path / "lh", src, "clean.label_case=fold")
    assert again["output"] == 1 and _label_map(spark, cfg)["Sport"] == (0, sorted([*spellings, "SPORT"]))
    assert [r.label for r in _silver(spark, cfg).where("doc_id = 'later'").collect()] == ["Sport"]


def test_clean_reports_the_number_of_labels(sample_run):
    _, cleaned, _ = sample_run
    assert cleaned["labels"] == 4


@pytest.mark.parametrize("labels, overrides, message", [
    # issue 11 as reported: 1,250 distinct labels in 1,250 rows (the label column held ids)
    ([f"user-{i}" for i in range(1250)], [], r"1,250 distinct labels, more than clean.max_labels=1,000"),
    # fewer labels than the limit, but most of them seen once
    ([f"user-{i}" for i in range(30)] + ["pos"] * 10, [], r"30 of 31 labels occur only once"),
])
def test_clean_stops_with_one_line_when_the_label_column_looks_wrong(spark, tmp_path, labels, overrides, message):
    rows = [{"id": f"d{i}", "text": f"{DOC} Number {i} in the series.", "label": label} for i, label in enumerate(labels)]
    src = _jsonl(tmp_path / "in.jsonl", rows)
    cfg = make_config(tmp_path / "lh", f"ingest.source={src}", "ingest.id_column=id", *overrides)
    ingest(spark, cfg, "i")
    with pytest.raises(StageError, match=message) as err:
        clean(spark, cfg, "c")
    assert "ingest.label_column='label' may name the wrong column" in str(err.value)
    assert "\n" not in str(err.value)
    assert _silver(spark, cfg).count() == 0 and resolve_table(cfg, LABEL_MAP).read(spark).count() == 0
