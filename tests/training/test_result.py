"""training.result: `TrainResult`, result.json's one writer (`to_dict`) and one reader (`from_dict`)."""

import dataclasses
import json
import pickle

import pytest

from training.result import DONE, PRUNED, UP_TO_DATE, TrainResult

# result.json's keys, in the file's order: users, the bench and the tests read the file by them.
DONE_KEYS = ["status", "run_id", "tracking_uri", "registered_model", "champion", "degenerate", "warnings", "baseline",
             "defaults", "metrics", "steps", "epochs", "world_size", "best_checkpoint", "select_metric", "output_dir",
             "data", "throughput", "history", "seconds"]


def _done(**changes) -> TrainResult:
    result = TrainResult(
        DONE, "run-1", "sqlite:///mlflow.db", registered_model={"name": "lakebert-classifier", "version": "2"},
        champion={"moved": False, "version": None, "alias": "champion", "reason": "champion stays on version 1"},
        degenerate=False, warnings=["the model is below the linear baseline"],
        baseline={"kind": "tfidf_logreg", "validation": {"f1_macro": 0.8}, "below": True},
        defaults={"kind": "scratch", "lr": 5e-4, "epochs": 2, "warmup_ratio": 0.1, "weight_decay": 0.01},
        metrics={"validation": {"f1_macro": 0.7, "confusion_matrix": [[3, 1], [0, 4]]}, "test": {"f1_macro": 0.6}},
        steps=60, epochs=2, world_size=2, best_checkpoint="/out/best/step-000000060", select_metric="f1_macro",
        output_dir="/out", data={"manifest": "/tok/k/manifest.json", "rows": 480, "train_bytes_read_per_rank": [1, 2]},
        throughput={"tokens_per_s": 10.0, "intervals": [{"steps": 10, "tokens": 100}]},
        history={"loss": [1.0, 0.5], "lr": [1e-4, 2e-4], "grad_norm": [1.0, 1.0], "eval": []}, seconds=12.5)
    return dataclasses.replace(result, **changes)


def test_a_done_results_json_keys_and_their_order_are_unchanged():
    assert list(_done().to_dict()) == DONE_KEYS
    assert list(_done(registered_model=None, champion=None, baseline=None).to_dict()) == DONE_KEYS  # written as null


def test_a_done_result_round_trips_through_result_json():
    result = _done()
    assert TrainResult.from_json(json.dumps(result.to_dict(), indent=2)) == result
    assert TrainResult.from_dict(result.without_history().to_dict()) == result.without_history()


def test_an_up_to_date_result_has_the_finished_runs_keys_and_no_baseline_key_without_one():
    result = TrainResult(UP_TO_DATE, "run-1", "sqlite:///mlflow.db", metrics={"validation": {"f1_macro": 0.7}},
                         registered_model=None, baseline={"kind": "tfidf_logreg", "seconds": 1.0})
    assert list(result.to_dict()) == ["status", "run_id", "tracking_uri", "metrics", "registered_model", "baseline"]
    bare = dataclasses.replace(result, baseline=None)
    assert bare.to_dict() == {"status": UP_TO_DATE, "run_id": "run-1", "tracking_uri": "sqlite:///mlflow.db",
                              "metrics": {"validation": {"f1_macro": 0.7}}, "registered_model": None}
    assert TrainResult.from_dict(bare.to_dict()) == bare and TrainResult.from_dict(result.to_dict()) == result


def test_a_pruned_result_says_why_and_has_only_its_keys():
    result = TrainResult(PRUNED, "run-1", "sqlite:///mlflow.db", steps=8, reason="pruned after 960 training rows",
                         output_dir="/out", world_size=2)
    assert result.pruned and not _done().pruned
    assert result.to_dict() == {"status": PRUNED, "run_id": "run-1", "tracking_uri": "sqlite:///mlflow.db",
                                "steps": 8, "reason": "pruned after 960 training rows", "output_dir": "/out",
                                "world_size": 2}


def test_the_launchers_copy_has_no_history_and_everything_else():
    result = _done()
    copy = result.without_history()
    assert copy.history is None and "history" not in copy.to_dict()
    assert copy.to_dict() == {k: v for k, v in result.to_dict().items() if k != "history"}  # the run's artifact


def test_the_printed_summary_has_no_history_and_no_throughput_intervals():
    summary = _done().to_summary()
    assert "history" not in summary and summary["throughput"] == {"tokens_per_s": 10.0}
    assert _done().throughput["intervals"]  # the result itself keeps them (result.json has them)


def test_a_result_crosses_torchdistributor_by_pickle_unchanged():
    result = _done().without_history()
    assert pickle.loads(pickle.dumps(result)) == result


def test_typed_accessors_read_the_metrics_and_the_champion_decision():
    result = _done()
    assert result.validation_metrics["f1_macro"] == 0.7 and result.test_metrics == {"f1_macro": 0.6}
    assert result.champion_reason == "champion stays on version 1"
    assert _done(champion=None).champion_reason is None
    assert TrainResult(PRUNED, "r", "u").validation_metrics == {}


def test_a_file_that_is_not_a_train_result_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown key.*mine"):
        TrainResult.from_dict({**_done().to_dict(), "mine": True})
    with pytest.raises(ValueError, match="status 'finished' is not one of done, up_to_date, pruned"):
        TrainResult.from_dict({"status": "finished", "run_id": "r", "tracking_uri": "u"})
    with pytest.raises(ValueError, match="unknown key.*best_checkpoint"):  # a key of another kind
        TrainResult.from_dict({"status": PRUNED, "run_id": "r", "tracking_uri": "u", "best_checkpoint": "/x"})
