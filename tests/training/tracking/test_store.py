"""training.tracking.store: the default store under a local lakehouse, and what lives beside it."""

import pytest

from conf import load_config
from training.tracking.store import TrackingError, beside_local_store, registry_uri, tracking_uri


def test_the_default_store_is_sqlite_under_the_lakehouse_and_the_registry_is_the_same_store(tmp_path):
    cfg = load_config(overrides=[f"lakehouse.root={tmp_path}"])
    assert tracking_uri(cfg) == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}" == registry_uri(cfg)
    assert beside_local_store(tracking_uri(cfg), "optuna.db") == f"sqlite:///{tmp_path.resolve() / 'optuna.db'}"
    assert beside_local_store("http://mlflow:5000", "optuna.db") is None


def test_an_object_store_lakehouse_needs_a_tracking_server():
    with pytest.raises(TrackingError, match="set mlflow.tracking_uri"):
        tracking_uri(load_config(overrides=["lakehouse.root=s3a://bucket/lakehouse"]))
