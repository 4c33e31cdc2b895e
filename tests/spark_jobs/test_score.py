"""lakebert score: the registered model over new documents, on the executors (real Spark, Delta, MLflow).

The sample pipeline is trained once for the test run (conftest's `sample_run`); every test scores
with its registered model, into its own predictions table. Scoring on a cluster's executors is
the standalone-cluster test's (tests/spark_jobs/test_cluster.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient
from pyspark.sql import SparkSession

from spark_jobs.filters import DropReason
from spark_jobs.ingest import IngestReason
from spark_jobs.score import main, score
from spark_jobs.scoring.registry import load_model
from spark_jobs.stage import StageError
from spark_jobs.tables import PREDICTIONS, SILVER, resolve_table
from tests.conftest import TEST_SPARK, make_config
from training.export import EXPORT_DIR, FILES, ONNX, ONNX_INT8, ExportRecord
from training.tracking.tags import TAG_SCORE_ENGINE, TAG_SCORED_VERSION, TAG_STAGE
from training.tracking.store import tracking_uri


@pytest.fixture(scope="module")
def trained(sample_run):
    """A lakehouse with silver and a registered model (the sample pipeline's run), and its config."""
    assert sample_run["summary"]["registered_model"]["version"] == "1"
    return sample_run["cfg"]


def scoring(cfg, *overrides: str):
    """A scoring config on the fixture's lakehouse (ids of external sources from their `id` field)."""
    return make_config(cfg.lakehouse.root, "ingest.id_column=id", *overrides)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def predictions_of(spark, cfg, run_id: str | None = None) -> pd.DataFrame:
    rows = resolve_table(cfg, PREDICTIONS).read(spark)
    if run_id:
        rows = rows.where(rows.stage_run_id == run_id)
    return rows.toPandas().set_index("doc_id")


def test_predictions_equal_pyfunc_on_the_same_texts_then_a_rerun_scores_nothing(spark, trained, monkeypatch, capsys):
    import mlflow

    cfg = scoring(trained, "score.split=test", "score.model=models:/lakebert-classifier/1", "score.engine=torch")
    first = score(spark, cfg, "s1")
    printed = capsys.readouterr().out
    assert first["read"] == first["scored"] > 50 and first["skipped"] == 0 and first["already_scored"] == 0
    assert first["model_version"] == "1" and first["normalization"].startswith("silver") and first["engine"] == "torch"
    ours = predictions_of(spark, cfg, "s1")
    silver = resolve_table(cfg, SILVER).read(spark).where("split = 'test'").toPandas()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri(cfg))  # pyfunc's store, for this test only
    theirs = mlflow.pyfunc.load_model("models:/lakebert-classifier/1").predict(silver[["text"]])
    theirs.index = silver.doc_id
    assert (ours.loc[theirs.index, "label"] == theirs["label"]).all()
    assert (ours.loc[theirs.index, "probability"] - theirs["score"]).abs().max() < 1e-4
    for _, row in ours.iterrows():  # every class's probability, and they sum to 1
        assert len(row.probabilities) == len(row.labels) and abs(sum(row.probabilities) - 1) < 1e-4
        assert row.label == row.labels[row.label_id] and row.probability == max(row.probabilities)

    # labelled input: an evaluation and a drift report, logged to an MLflow run tagged with the version
    assert set(first["evaluation"]) >= {"accuracy", "f1_macro", "ece", "examples"}
    assert first["evaluation"]["examples"] == first["scored"]
    assert set(first["drift_psi"]) == {"length", "truncation", "unk", "predicted_class"}
    client = MlflowClient(tracking_uri(cfg))
    run = client.get_run(first["mlflow_run_id"])
    assert run.data.tags[TAG_STAGE] == "score" and run.data.tags[TAG_SCORED_VERSION] == "1"
    assert run.data.metrics["eval/accuracy"] == pytest.approx(first["evaluation"]["accuracy"], abs=1e-4)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"evaluation.json", "reliability_diagram.png", "drift.json", "drift.png"} <= artifacts
    report = json.loads(Path(client.download_artifacts(run.info.run_id, "evaluation.json")).read_text())
    assert sum(map(sum, report["confusion_matrix"])) == first["scored"]
    assert all(m["true"] != m["predicted"] for m in report["most_confident_mistakes"])
    # the training run's linear baseline on the same rows and token ids, beside the model's figures
    assert first["baseline"]["examples"] == first["evaluation"]["examples"] and first["baseline"]["f1_macro"] > 0.9
    assert run.data.metrics["baseline/eval/f1_macro"] == pytest.approx(first["baseline"]["f1_macro"], abs=1e-4)
    assert run.data.metrics["baseline/eval/examples"] == first["scored"]
    assert (f"score: model vs linear baseline on {first['scored']:,} labelled rows: macro F1 "
            f"{run.data.metrics['eval/f1_macro']:.3f} vs {run.data.metrics['baseline/eval/f1_macro']:.3f}") in printed

    again = score(spark, cfg, "s2")
    assert again["status"] == "up_to_date" and again["scored"] == 0 and again["skipped"] == 0
    assert again["already_scored"] == again["read"] == first["read"]
    assert len(predictions_of(spark, cfg)) == first["scored"]


def pyfunc_labels(cfg, model_uri: str, monkeypatch) -> pd.Series:
    import mlflow

    silver = resolve_table(cfg, SILVER).read(SparkSession.getActiveSession()).where("split = 'test'").toPandas()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri(cfg))  # pyfunc's store, for this test only
    return pd.Series(mlflow.pyfunc.load_model(model_uri).predict(silver[["text"]])["label"].values, index=silver.doc_id)


def test_every_engine_gives_the_pyfunc_models_labels_and_records_itself(spark, trained, monkeypatch):
    theirs = pyfunc_labels(trained, "models:/lakebert-classifier/1", monkeypatch)
    record = ExportRecord.read(Path(load_model(scoring(trained, "score.model=models:/lakebert-classifier/1")).local_dir)
                               / EXPORT_DIR)
    assert record is not None and record.check(ONNX).agreement == 1.0  # training logged the exports with the model
    client = MlflowClient(tracking_uri(trained))
    run = client.get_run(client.get_model_version("lakebert-classifier", "1").run_id)
    assert run.data.metrics["export/onnx-int8/agreement"] == record.check(ONNX_INT8).agreement
    for engine in (ONNX, ONNX_INT8):
        cfg = scoring(trained, "score.split=test", "score.model=models:/lakebert-classifier/1",
                      f"score.engine={engine}", f"tables.predictions=pred_{engine.replace('-', '_')}")
        out = score(spark, cfg, f"e-{engine}")
        ours = predictions_of(spark, cfg)
        assert out["engine"] == engine and set(ours.engine) == {engine} and "engine_warnings" not in out
        assert MlflowClient(tracking_uri(cfg)).get_run(out["mlflow_run_id"]).data.tags[TAG_SCORE_ENGINE] == engine
        same = (ours.loc[theirs.index, "label"] == theirs).mean()
        # fp32 is PyTorch's function; int8 is held to the agreement bound its export passed
        assert same == 1.0 if engine == ONNX else same >= cfg.score.int8_min_agreement - 1 / len(theirs)


def test_a_model_whose_int8_export_is_below_the_bound_is_scored_with_the_next_engine_and_a_warning(
        spark, trained, tmp_path, capsys):
    """The registered model's files with a faulty int8 export (of the model with two classes
    swapped), checked against the real model as training checks it, logged as a new run's model."""
    import shutil

    import torch
    from transformers import AutoModelForSequenceClassification

    from tokenization import Encoder
    from training.export import check_exports, quantize_int8, write_fp32
    from training.inference import ModelBundle

    folder = tmp_path / "model"
    shutil.copytree(load_model(scoring(trained, "score.model=models:/lakebert-classifier/1")).local_dir, folder)
    bundle = ModelBundle.read(folder)
    model = AutoModelForSequenceClassification.from_pretrained(bundle.model_dir).eval()
    swapped = AutoModelForSequenceClassification.from_pretrained(bundle.model_dir).eval()
    with torch.no_grad():
        swapped.classifier.weight[[0, 1]] = swapped.classifier.weight[[1, 0]].clone()
        swapped.classifier.bias[[0, 1]] = swapped.classifier.bias[[1, 0]].clone()
    write_fp32(swapped, tmp_path / "swapped.onnx")
    quantize_int8(tmp_path / "swapped.onnx", folder / EXPORT_DIR / FILES[ONNX_INT8])
    texts = [r.text for r in resolve_table(trained, SILVER).read(spark).where("split = 'validation'").collect()]
    ids, offsets, _, _ = Encoder(bundle.tokenizer_json, bundle.max_length, bundle.truncation_side).encode(texts)
    record = check_exports(model, folder / EXPORT_DIR, [ids[offsets[i]:offsets[i + 1]] for i in range(len(texts))],
                           bundle.pad_id)
    figure = f"{record.check(ONNX_INT8).agreement:.2%}"
    assert record.check(ONNX_INT8).agreement < 0.995 and record.check(ONNX).agreement == 1.0
    client = MlflowClient(tracking_uri(trained))
    run = client.create_run(client.get_experiment_by_name(trained.mlflow.experiment).experiment_id)
    client.log_artifacts(run.info.run_id, str(folder), "model")
    client.set_terminated(run.info.run_id)

    cfg = scoring(trained, "score.split=test", f"score.model=runs:/{run.info.run_id}/model",
                  "score.engine=onnx-int8", "tables.predictions=pred_int8_below")
    out = score(spark, cfg, "below")
    warning = (f"WARNING (score): score.engine=onnx-int8: its onnx-int8 export agrees with PyTorch on {figure} of "
               f"{len(texts):,} validation rows, below score.int8_min_agreement=99.50%; scoring with onnx")
    assert out["engine"] == "onnx" and out["engine_warnings"] == [warning]
    assert warning in capsys.readouterr().out.splitlines()
    assert set(predictions_of(spark, cfg).engine) == {"onnx"}


def test_only_new_source_rows_are_scored(spark, trained, tmp_path):
    folder = tmp_path / "new"
    texts = [f"the striker scored twice as fans cheered the coach, match report number {i}" for i in range(6)]
    write_jsonl(folder / "a.jsonl", [{"id": f"a{i}", "text": t} for i, t in enumerate(texts[:4])])
    cfg = scoring(trained, f"score.source={folder}", "score.format=jsonl", "tables.predictions=pred_new")
    first = score(spark, cfg, "n1")
    assert (first["read"], first["scored"], first["already_scored"]) == (4, 4, 0)
    assert "evaluation" not in first  # no labels: nothing to evaluate, drift still reported
    assert "drift_psi" in first
    write_jsonl(folder / "b.jsonl", [{"id": f"b{i}", "text": t} for i, t in enumerate(texts[4:])])
    second = score(spark, cfg, "n2")
    assert (second["read"], second["scored"], second["already_scored"]) == (6, 2, 4)
    assert set(predictions_of(spark, cfg, "n2").index) == {"b0", "b1"}


def test_a_document_whose_text_changed_since_it_was_scored_is_scored_again_and_replaced(spark, trained, tmp_path):
    folder = tmp_path / "changing"
    texts = [f"the striker scored twice as fans cheered the coach, match report number {i}" for i in range(3)]
    write_jsonl(folder / "a.jsonl", [{"id": f"c{i}", "text": t} for i, t in enumerate(texts)])
    cfg = scoring(trained, f"score.source={folder}", "score.format=jsonl", "tables.predictions=pred_changing")
    first = score(spark, cfg, "c1")
    before = predictions_of(spark, cfg)
    corrected = "the central bank raised interest rates as inflation and bond yields climbed this quarter"
    write_jsonl(folder / "a.jsonl", [{"id": "c0", "text": corrected}, *({"id": f"c{i}", "text": texts[i]} for i in (1, 2))])
    second = score(spark, cfg, "c2")
    assert (second["read"], second["scored"], second["rescored"], second["already_scored"]) == (3, 1, 1, 2)
    after = predictions_of(spark, cfg)
    assert len(after) == 3 and after.loc["c0", "stage_run_id"] == "c2"  # replaced, one row per key still
    assert after.loc["c0", "text_hash"] != before.loc["c0", "text_hash"]
    assert (after.loc[["c1", "c2"]].stage_run_id == "c1").all() and first["scored"] == 3
    assert score(spark, cfg, "c3")["status"] == "up_to_date"


def test_a_text_that_is_not_a_string_is_skipped_with_its_reason_or_a_one_line_error(spark, trained, tmp_path):
    folder = tmp_path / "typed"
    write_jsonl(folder / "a.jsonl", [{"id": "struct", "text": {"body": "a match report"}}, {"id": "int", "text": 42},
                                     {"id": "ok", "text": "the striker scored twice as fans cheered the coach"}])
    out = score(spark, scoring(trained, f"score.source={folder}", "score.format=jsonl", "tables.predictions=pred_typed"),
                "t1")
    assert out["skipped_by_reason"] == {IngestReason.TEXT_NOT_STRING: 2} and out["scored"] == 1
    spark.createDataFrame([("x", 7, "sport")], "id string, text int, label string").write.parquet(str(tmp_path / "ints"))
    with pytest.raises(StageError, match=r"^ingest.text_column='text' has type int; the text must be a string column$"):
        score(spark, scoring(trained, f"score.source={tmp_path / 'ints'}", "score.format=parquet",
                             "tables.predictions=pred_typed"), "t2")


def test_hostile_rows_get_a_null_prediction_and_a_reason_and_the_counts_add_up(spark, trained, tmp_path):
    good = "the hospital said patients waited longer for the vaccine trial this week"
    folder = tmp_path / "hostile"
    write_jsonl(folder / "a.jsonl", [
        {"id": "ok", "text": good},
        {"id": "null", "text": None},
        {"id": "empty", "text": ""},
        {"id": "html-only", "text": "<p>  </p><br/>"},
        {"id": "long", "text": "word " * 30_000},  # 150k characters: over the clean.max_chars it was trained with
        {"id": "nul", "text": "bad \u0000 byte"},
        {"id": "ok", "text": good + " again"},  # a duplicate id
    ])
    (folder / "b.jsonl").write_text('{"id": "broken", "text": \n')
    cfg = scoring(trained, f"score.source={folder}", "score.format=jsonl", "tables.predictions=pred_hostile")
    out = score(spark, cfg, "h1")
    assert out["read"] == out["scored"] + out["skipped"] + out["already_scored"] + out["duplicate_ids"]
    assert (out["read"], out["scored"], out["duplicate_ids"]) == (8, 1, 1)
    assert out["skipped_by_reason"] == {IngestReason.EMPTY_TEXT: 2, DropReason.EMPTY_AFTER_CLEANING: 1,
                                        DropReason.TOO_LONG: 1, IngestReason.NUL_BYTE: 1, IngestReason.UNPARSEABLE: 1}
    rows = predictions_of(spark, cfg)
    skipped = rows[rows.skip_reason.notna()]
    assert skipped.label.isna().all() and skipped.probabilities.isna().all()
    assert rows.loc["ok", "label"] is not None and pd.isna(rows.loc["ok", "skip_reason"])


def test_text_that_cleaning_changes_gets_the_prediction_of_its_cleaned_form(spark, trained, tmp_path):
    folder = tmp_path / "dirty"
    write_jsonl(folder / "a.jsonl", [
        {"id": "html", "text": "<div><b>The striker</b> scored &amp; the coach smiled at the stadium</div>"},
        {"id": "html-clean", "text": "The striker scored & the coach smiled at the stadium"},
        {"id": "moji", "text": "The cafÃ© chain reported quarterly earnings â€” investors welcomed the merger"},
        {"id": "moji-clean", "text": "The café chain reported quarterly earnings — investors welcomed the merger"},
    ])
    cfg = scoring(trained, f"score.source={folder}", "score.format=jsonl", "tables.predictions=pred_dirty")
    out = score(spark, cfg, "d1")
    assert out["scored"] == 4 and out["normalization"].startswith("clean:")
    rows = predictions_of(spark, cfg)
    for dirty in ("html", "moji"):
        assert rows.loc[dirty, "label"] == rows.loc[f"{dirty}-clean", "label"]
        assert list(rows.loc[dirty, "probabilities"]) == pytest.approx(list(rows.loc[f"{dirty}-clean", "probabilities"]),
                                                                       abs=1e-6)
        assert rows.loc[dirty, "tokens"] == rows.loc[f"{dirty}-clean", "tokens"]


def test_a_model_that_does_not_exist_is_one_line_before_any_spark_job(spark, trained, capsys):
    before = spark.sparkContext.statusTracker().getJobIdsForGroup(None)
    argv = ["--env", "local", *sum((["--set", s] for s in TEST_SPARK), []),
            "--set", f"lakehouse.root={trained.lakehouse.root}", "--set", "score.model=models:/lakebert-classifier/99",
            "--set", "tables.predictions=pred_missing"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("score error: score.model=models:/lakebert-classifier/99: no such model")
    assert spark.sparkContext.statusTracker().getJobIdsForGroup(None) == before
    with pytest.raises(StageError, match="no such model"):
        score(spark, scoring(trained, "score.model=models:/no-such-model@champion"), "m2")


def test_the_default_model_is_the_champion_else_the_latest_version(spark, trained):
    client = MlflowClient(tracking_uri(trained))
    champion = client.get_registered_model("lakebert-classifier").aliases.get("champion")
    cfg = scoring(trained, "score.split=validation", "tables.predictions=pred_default")
    out = score(spark, cfg, "c1")
    expected = "models:/lakebert-classifier@champion" if champion else "models:/lakebert-classifier/1"
    assert out["model"] == expected and out["model_version"] == "1"



def test_the_model_cache_is_private_per_user_and_verified_before_reuse(trained, tmp_path, monkeypatch, capsys):
    import os
    import stat
    import tempfile

    from spark_jobs.scoring.model_cache import model_workdir
    from spark_jobs.scoring.registry import load_model

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # this test's own temp directory
    cfg = scoring(trained, "score.model=models:/lakebert-classifier/1")
    version = MlflowClient(tracking_uri(cfg)).get_model_version("lakebert-classifier", "1")
    target = Path(model_workdir(tracking_uri(cfg), "lakebert-classifier", "1", version.run_id))
    # A folder at the model's place with an MLmodel file, and an archive beside it (what
    # ship_model sends to the executors), that lakebert did not download and verify.
    target.mkdir(parents=True, exist_ok=True)
    (target / "MLmodel").write_text("planted: true\n")
    (target / "planted.py").write_text("import os\n")
    Path(f"{target}.zip").write_bytes(b"PK planted")

    model = load_model(cfg)
    assert Path(model.local_dir) == target and not (target / "planted.py").exists()
    assert "flavors" in (target / "MLmodel").read_text() and not Path(f"{target}.zip").exists()
    root = os.stat(target.parent)
    assert stat.S_IMODE(root.st_mode) == 0o700 and root.st_uid == os.getuid()  # this user's, private
    assert target.parent.name == f"lakebert-score-{os.getuid()}"

    inode = os.stat(target / "MLmodel").st_ino
    assert load_model(cfg).local_dir == str(target) and os.stat(target / "MLmodel").st_ino == inode  # reused

    (target / "MLmodel").write_text((target / "MLmodel").read_text() + "# changed\n")  # a changed file
    load_model(cfg)
    assert "# changed" not in (target / "MLmodel").read_text()

    # A cache folder others may write to is not used; nor is one another user owns.
    os.chmod(target.parent, 0o777)
    elsewhere = Path(load_model(cfg).local_dir)
    assert elsewhere.parent != target.parent and stat.S_IMODE(os.stat(elsewhere.parent).st_mode) == 0o700
    assert f"not using the model cache {target.parent} (writable by group or others" in capsys.readouterr().out
    if os.getuid() == 0:
        os.chmod(target.parent, 0o700)
        os.chown(target.parent, 65534, 65534)
        assert Path(load_model(cfg).local_dir).parent != target.parent
        assert "(owned by uid 65534)" in capsys.readouterr().out
