"""training.tracking: the tracker's interface."""

import inspect

import pytest

from training.tracking import MlflowTracker, NullTracker


def test_the_null_tracker_has_every_method_of_the_real_one_and_no_others():
    public = {name for name, _ in inspect.getmembers(MlflowTracker, inspect.isfunction) if not name.startswith("_")}
    null = {name for name, _ in inspect.getmembers(NullTracker, inspect.isfunction) if not name.startswith("_")}
    assert public == null and {"log_step", "log_model", "promote", "finish"} <= null


def test_a_misspelled_tracker_call_is_an_error_not_a_silent_no_op():
    with pytest.raises(AttributeError):
        NullTracker().log_stpe(1, {"train/loss": 0.5})
