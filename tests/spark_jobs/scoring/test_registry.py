"""spark_jobs.scoring.registry: the model to score with, normalized as its training run recorded."""

from spark_jobs.scoring.registry import recorded_clean


def test_the_normalization_is_what_the_training_run_recorded_and_defaults_otherwise():
    clean = recorded_clean({"clean.lowercase": "true", "clean.max_chars": "500", "clean.min_chars": "9"})
    assert clean.lowercase is True and clean.max_chars == 500
    assert clean.min_chars == recorded_clean({}).min_chars  # which rows it saw: not recorded, not used


def test_a_model_that_does_not_exist_is_a_stage_error_of_one_line(monkeypatch):
    import pytest

    from conf import load_config
    from spark_jobs.scoring import registry
    from spark_jobs.stage import StageError
    from training.tracking.store import TrackingError

    def missing(cfg):
        raise TrackingError("score.model=models:/clf/4: no such model (RESOURCE_DOES_NOT_EXIST: clf v4)")

    monkeypatch.setattr(registry, "resolve_model", missing)
    with pytest.raises(StageError, match=r"^score.model=models:/clf/4: no such model \(RESOURCE_DOES_NOT_EXIST: "
                                         r"clf v4\)$"):
        registry.load_model(load_config(overrides=["score.model=models:/clf/4"]))
