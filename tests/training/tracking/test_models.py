"""training.tracking.models: the model to score with, resolved from MLflow in one line or one error."""

import pytest

from training.tracking.models import resolve_version
from training.tracking.store import TrackingError


class _Version:
    def __init__(self, name, version, run_id):
        self.name, self.version, self.run_id = name, version, run_id


class _Client:
    """The few MlflowClient calls resolve_version makes, over one registered version."""

    def get_model_version(self, name, version):
        if (name, version) != ("clf", "3"):
            raise RuntimeError(f"RESOURCE_DOES_NOT_EXIST: {name} v{version}\nmore of the trace")
        return _Version(name, 3, "r3")

    def get_model_version_by_alias(self, name, alias):
        if alias != "champion":
            raise RuntimeError("no alias")
        return self.get_model_version(name, "3")

    def get_run(self, run_id):
        return object()


def test_a_model_uri_resolves_to_its_name_version_and_run():
    client = _Client()
    assert resolve_version(client, "models:/clf/3") == ("clf", "3", "r3")
    assert resolve_version(client, "models:/clf@champion") == ("clf", "3", "r3")
    assert resolve_version(client, "runs:/r9/model") == ("run-r9", "0", "r9")


def test_a_model_that_does_not_exist_is_one_line_naming_the_key():
    with pytest.raises(TrackingError, match=r"^score.model=models:/clf/4: no such model \(RESOURCE_DOES_NOT_EXIST: "
                                         r"clf v4\)$"):
        resolve_version(_Client(), "models:/clf/4")
    with pytest.raises(TrackingError, match="not an MLflow model URI"):
        resolve_version(_Client(), "s3://bucket/model")
