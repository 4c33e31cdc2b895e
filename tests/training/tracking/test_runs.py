"""training.tracking.runs: a run is found by its tags, or created once with them; a finished one reports its result."""

from training.baseline import KIND
from training.result import UP_TO_DATE, TrainResult
from training.tracking.registry import set_registration_tags
from training.tracking.runs import UP_TO_DATE as PLAN_UP_TO_DATE
from training.tracking.runs import RunPlan, finished_result, find_or_create_run, log_params
from training.tracking.store import store_client


def test_a_run_is_created_once_and_then_found_by_its_key_tags(tmp_path):
    client = store_client(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("lakebert", artifact_location=(tmp_path / "mlartifacts").as_uri())
    run, created = find_or_create_run(client, experiment, {"a": "1", "b": "x"}, {"note": "first"}, "one")
    again, created_again = find_or_create_run(client, experiment, {"a": "1", "b": "x"}, {"note": "second"}, "two")
    other, created_other = find_or_create_run(client, experiment, {"a": "1", "b": "y"}, {}, "three")
    assert created and not created_again and created_other
    assert again.info.run_id == run.info.run_id != other.info.run_id
    tags = client.get_run(run.info.run_id).data.tags
    assert tags["a"] == "1" and tags["b"] == "x" and tags["note"] == "first" and tags["mlflow.runName"] == "one"


def test_params_beyond_one_batch_are_all_logged(tmp_path):
    client = store_client(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.create_run(client.create_experiment("lakebert"))
    log_params(client, run.info.run_id, {f"p{i}": str(i) for i in range(250)})
    assert len(client.get_run(run.info.run_id).data.params) == 250


def test_a_finished_run_reports_an_up_to_date_result_of_its_metrics_baseline_and_registered_model(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = store_client(uri)
    run_id = client.create_run(client.create_experiment("lakebert")).info.run_id
    for key, value in {"validation/f1_macro": 0.7, "test/accuracy": 0.8, "train/loss": 0.3,
                       "baseline/validation/f1_macro": 0.6, "baseline/seconds": 1.5}.items():
        client.log_metric(run_id, key, value)
    set_registration_tags(client, run_id, "lakebert-classifier", 2)
    client.set_terminated(run_id, "FINISHED")
    result = finished_result(RunPlan(uri, run_id, PLAN_UP_TO_DATE, "job"))
    assert result == TrainResult(UP_TO_DATE, run_id, uri, metrics={"validation": {"f1_macro": 0.7},
                                                                   "test": {"accuracy": 0.8}},
                                 registered_model={"name": "lakebert-classifier", "version": "2"},
                                 baseline={"kind": KIND, "validation": {"f1_macro": 0.6}, "seconds": 1.5})
    assert list(result.to_dict()) == ["status", "run_id", "tracking_uri", "metrics", "registered_model", "baseline"]
