"""training.tracking.tracker: the tracker's interface."""

import dataclasses
import inspect

import pytest

from training.tracking.tracker import MlflowTracker, NullTracker


def test_the_null_tracker_has_every_method_of_the_real_one_and_no_others():
    public = {name for name, _ in inspect.getmembers(MlflowTracker, inspect.isfunction) if not name.startswith("_")}
    null = {name for name, _ in inspect.getmembers(NullTracker, inspect.isfunction) if not name.startswith("_")}
    assert public == null and {"log_step", "log_model", "promote", "finish"} <= null


def test_a_misspelled_tracker_call_is_an_error_not_a_silent_no_op():
    with pytest.raises(AttributeError):
        NullTracker().log_stpe(1, {"train/loss": 0.5})


def test_the_data_report_files_found_are_logged_and_a_missing_one_is_a_warning_not_an_error(tmp_path):
    from mlflow import MlflowClient

    from conf import load_config
    from tokenization.dataset import Manifest
    from training.tracking.runs import prepare_run
    from training.tracking.tags import DATA_REPORT_ARTIFACTS
    from training.tracking.tracker import MlflowTracker

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = load_config(overrides=[f"lakehouse.root={tmp_path}", f"mlflow.tracking_uri={store}", "mlflow.system_metrics=false"])
    (tmp_path / "token_lengths.png").write_bytes(b"\x89PNG")
    manifest = Manifest.from_dict({"content_hash": "h", "source": {"table": "/lh/silver", "delta_version": 3},
                                   "data_report": {"clean": [str(tmp_path / "gone" / "report.json")],
                                                   "tokenize": [str(tmp_path / "token_lengths.png")]}})
    plan = prepare_run(cfg, manifest, str(tmp_path / "manifest.json"))
    tracker = MlflowTracker(cfg, plan)
    try:
        warnings = tracker.log_data_report(manifest)
        without = tracker.log_data_report(Manifest.from_dict({"content_hash": "h"}))  # tokenized before reports were kept
        no_clean = tracker.log_data_report(dataclasses.replace(manifest, data_report={"clean": [], "tokenize": []}))
    finally:
        tracker.finish()
    assert warnings == [f"1 data report file(s) missing or unreadable, not in the MLflow run: {tmp_path}/gone/report.json"]
    assert len(without) == 1 and "names no data report" in without[0]
    assert no_clean == ["no data report of the clean run that wrote /lh/silver version 3 was found; "
                        "the MLflow run has tokenize's only"]
    client = MlflowClient(store)
    logged = [a.path for a in client.list_artifacts(plan.run_id, f"{DATA_REPORT_ARTIFACTS}/tokenize")]
    assert sorted(logged) == [f"{DATA_REPORT_ARTIFACTS}/tokenize/manifest.json", f"{DATA_REPORT_ARTIFACTS}/tokenize/token_lengths.png"]
