"""lakebert run: every stage with one config, a human summary, then nothing to do on a rerun."""

from pathlib import Path

import pytest

from spark_jobs.data_report import CLEAN_FILES, TOKENIZE_FILES
from spark_jobs.pipeline import pipeline
from spark_jobs.registry import steps
from spark_jobs.stage import StageError
from tests.conftest import make_config
from tokenization.dataset import MANIFEST
from training.tracking.store import store_client
from training.tracking.tags import DATA_REPORT_ARTIFACTS

STAGES = tuple(step.name for step in steps())


def test_run_trains_a_registered_model_then_a_rerun_does_no_new_work(spark, sample_run, capsys):
    cfg, first, shown, errors = (sample_run[k] for k in ("cfg", "summary", "shown", "errors"))
    root = Path(cfg.lakehouse.root)
    assert first["status"] == "done" and first["up_to_date"] == []
    ingest, clean, tokenize, train = (first["stages"][s] for s in STAGES)
    assert ingest["read"] == ingest["inserted"] + ingest["duplicates"] + sum(ingest["quarantined"].values())
    assert clean["input"] == ingest["inserted"]
    assert clean["input"] == clean["output"] + clean["duplicates"] + sum(clean["quarantined"].values())
    # every silver row is tokenized, or removed because its ids equal an earlier row's in another split
    assert tokenize["rows"] + sum(tokenize["cross_split_duplicates"].values()) == clean["output"]
    assert first["registered_model"] == {"name": "lakebert-classifier", "version": "1"}
    assert set(first["metrics"]) == {"validation", "test"}
    assert f"MLflow run {train['run_id']}" in shown
    assert f"mlflow ui --backend-store-uri {train['tracking_uri']}" in shown
    assert "registered model lakebert-classifier version 1" in shown
    assert "quarantined by reason:" in shown and "model on test" in shown
    assert "# data-quality report" not in shown  # the report is in files, named on one line each

    # The data report: images under _runs/, the same files in the training run's MLflow artifacts.
    runs = root / "_runs"
    for stage, files in (("clean", CLEAN_FILES), ("tokenize", TOKENIZE_FILES)):
        assert all((runs / stage / f"r1-{stage}" / name).is_file() for name in files)
        assert f"{stage}: data report in {runs / stage / f'r1-{stage}'}: " in shown
    client = store_client(train["tracking_uri"])
    logged = {a.path for stage in ("clean", "tokenize")
              for a in client.list_artifacts(train["run_id"], f"{DATA_REPORT_ARTIFACTS}/{stage}")}
    assert logged == {f"{DATA_REPORT_ARTIFACTS}/clean/{name}" for name in CLEAN_FILES} | {
        f"{DATA_REPORT_ARTIFACTS}/tokenize/{name}" for name in (*TOKENIZE_FILES, MANIFEST)}
    # The sample's 3 epochs leave the model below the linear baseline (validation macro F1 0.83 against 1.00
    # when written): the summary gives both figures, warns, and the model does not take @champion.
    baseline, model = train["baseline"], first["metrics"]["validation"]
    assert "model vs linear baseline on validation: macro F1" in shown
    assert baseline["below"] is (baseline["validation"]["f1_macro"] - model["f1_macro"] > 0.02)
    if baseline["below"]:
        assert "WARNING (train): the model is below the linear baseline" in shown and not train["champion"]["moved"]
    assert [w for w in train["warnings"] if "below the linear baseline" not in w] == []  # nothing missing
    # The registered model carries its card and license, so MLflow looked up nothing on the hub.
    version = client.get_model_version("lakebert-classifier", "1")
    model_files = {a.path for a in client.list_logged_model_artifacts(version.source.removeprefix("models:/"))}
    assert {"model_card.md", "model_card_data.yaml", "LICENSE.txt"} <= model_files
    assert "model card could not be retrieved" not in shown + errors and "Unable to find license" not in shown + errors

    again = pipeline(spark, cfg, "r2")
    assert again["status"] == "up_to_date" and again["up_to_date"] == list(STAGES)
    assert again["mlflow_run_id"] == first["mlflow_run_id"]
    assert again["registered_model"] == first["registered_model"]
    assert again["metrics"]["test"]["accuracy"] == pytest.approx(first["metrics"]["test"]["accuracy"])
    shown = capsys.readouterr().out
    assert "tokenize  up to date, nothing to do" in shown and "train     up to date, nothing to do" in shown
    assert "model vs linear baseline on validation: macro F1" in shown  # the finished run's figures


def test_run_without_a_source_is_a_clear_error(spark, tmp_path):
    with pytest.raises(StageError, match="ingest.source is not set"):
        pipeline(spark, make_config(tmp_path / "lh"), "r")
