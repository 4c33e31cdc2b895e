"""training.tracking.registry: the registration tags' one writer and one reader."""

from training.tracking.registry import registered_model, set_registration_tags
from training.tracking.store import store_client
from training.tracking.tags import TAG_REGISTERED_NAME, TAG_REGISTERED_VERSION


def test_the_registration_tags_written_are_read_back_as_name_and_version(tmp_path):
    client = store_client(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.create_run(client.create_experiment("lakebert"))
    assert registered_model(client.get_run(run.info.run_id).data.tags) is None
    set_registration_tags(client, run.info.run_id, "lakebert-classifier", 7)
    tags = client.get_run(run.info.run_id).data.tags
    assert tags[TAG_REGISTERED_NAME] == "lakebert-classifier" and tags[TAG_REGISTERED_VERSION] == "7"
    assert registered_model(tags) == {"name": "lakebert-classifier", "version": "7"}
    assert registered_model({TAG_REGISTERED_NAME: "lakebert-classifier"}) is None  # no version: none registered
