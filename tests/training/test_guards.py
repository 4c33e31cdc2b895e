"""training/guards.py: the majority-class baseline, collapsed models and class imbalance."""

import numpy as np

from training.guards import degenerate_check, imbalance_warning, majority_baseline


def test_a_constant_model_is_degenerate_and_the_warning_names_likely_causes():
    # 5 balanced classes, every prediction is class 3 (the BBC run of the issue)
    confusion = np.zeros((5, 5), dtype=int)
    confusion[:, 3] = [25, 26, 27, 28, 27]
    check = degenerate_check(confusion, majority_label=0)
    assert check.degenerate and check.top_prediction_share == 1.0
    assert len(check.reasons) == 2
    warning = check.warning()
    assert "learning rate" in warning and "class_weights=balanced" in warning and "epochs" in warning


def test_majority_class_f1_on_imbalanced_binary_data_is_degenerate():
    # 87% majority, the model predicts the majority for all but 2 rows: accuracy 0.876, macro F1 ~0.47
    confusion = np.array([[870, 0], [128, 2]])
    check = degenerate_check(confusion, majority_label=0)
    assert check.degenerate
    assert round(check.baseline_accuracy, 2) == 0.87 and 0.46 < check.baseline_f1_macro < 0.47


def test_a_model_clearly_above_the_baseline_is_not_degenerate():
    confusion = np.array([[80, 10, 10], [5, 90, 5], [10, 10, 80]])
    check = degenerate_check(confusion, majority_label=1)
    assert not check.degenerate and check.reasons == []
    assert check.f1_macro > check.baseline_f1_macro + 0.05


def test_predicting_one_class_that_really_is_that_common_is_judged_on_f1_only():
    confusion = np.array([[970, 0], [5, 25]])
    check = degenerate_check(confusion, majority_label=0, max_share=0.95)
    assert not check.degenerate  # 97.5% predictions are class 0, which is 97% of rows; F1 is high


def test_majority_baseline_predicts_the_train_majority_for_every_row():
    baseline = majority_baseline(np.array([[3, 1], [2, 4]]), majority_label=1)
    assert baseline.tolist() == [[0, 4], [0, 6]]


def test_imbalance_is_reported_with_the_class_weights_hint_only_when_they_are_off():
    counts = {"ham": 4300, "spam": 650}
    line = imbalance_warning(counts)
    assert "'ham'" in line and "'spam'" in line and "6.6:1" in line and "class_weights=balanced" in line
    assert "class_weights" not in imbalance_warning(counts, class_weights="balanced")
    assert imbalance_warning({"a": 100, "b": 60}) is None
    assert imbalance_warning({"a": 100}) is None
