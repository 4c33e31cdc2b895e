"""training.tracking.runs: a run is found by its tags, or created once with them."""

from training.tracking.runs import find_or_create_run, log_params
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
