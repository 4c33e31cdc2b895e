"""Loud checks on what training learned: class imbalance and collapsed (degenerate) models.

    from training.guards import imbalance_warning, degenerate_check
    imbalance_warning({"ham": 4300, "spam": 650}, class_weights=None)   # -> a warning line, or None
    check = degenerate_check(confusion, majority_label=0)             # on the validation confusion matrix
    check.degenerate, check.reasons, check.baseline_f1_macro

Pure Python and numpy (`training.confusion`): the tokenize stage (Spark's driver) and the training processes both
use them. A model that predicts one class for nearly everything, or whose macro F1 is not
clearly above the majority-class baseline's, finishes like any other run, so nothing else
would say it learned nothing. The run gets `TAG_DEGENERATE`, the summary a warning line naming
the likely causes, and the model never takes the `@champion` alias.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from training.confusion import class_scores

IMBALANCE_RATIO = 3.0
"""Majority/minority row ratio in train from which imbalance is reported."""
LIKELY_CAUSES = ("a learning rate too high for the model (train.lr)", "class imbalance (train.class_weights=balanced)",
                 "too few optimizer steps (train.epochs, train.batch_size)")


def imbalance_warning(label_counts: dict[str, int], class_weights: str | None = None) -> str | None:
    """A warning line when the train split's largest class outnumbers its smallest by
    IMBALANCE_RATIO or more, suggesting balanced class weights when they are not on."""
    counts = {label: n for label, n in label_counts.items() if n > 0}
    if len(counts) < 2:
        return None
    (big, n_big), (small, n_small) = max(counts.items(), key=lambda kv: kv[1]), min(counts.items(), key=lambda kv: kv[1])
    ratio = n_big / n_small
    if ratio < IMBALANCE_RATIO:
        return None
    line = (f"class imbalance in train: {big!r} has {n_big:,} rows, {small!r} {n_small:,} ({ratio:.1f}:1, "
            f"{n_small / sum(counts.values()):.1%} of rows)")
    if class_weights is None:
        line += "; consider train.class_weights=balanced"
    return line


@dataclass(frozen=True)
class DegenerateCheck:
    degenerate: bool
    reasons: list[str] = field(default_factory=list)
    f1_macro: float = 0.0
    baseline_f1_macro: float = 0.0
    baseline_accuracy: float = 0.0
    top_prediction_share: float = 0.0

    def metrics(self) -> dict[str, float]:
        return {"baseline_f1_macro": self.baseline_f1_macro, "baseline_accuracy": self.baseline_accuracy,
                "top_prediction_share": self.top_prediction_share}

    def warning(self) -> str:
        return ("the model looks degenerate: " + "; ".join(self.reasons)
                + ". Likely causes: " + ", ".join(LIKELY_CAUSES))


def majority_baseline(confusion: np.ndarray, majority_label: int) -> np.ndarray:
    """The confusion matrix of a model that always predicts `majority_label` (train's largest class)."""
    baseline = np.zeros_like(confusion)
    baseline[:, majority_label] = confusion.sum(axis=1)
    return baseline


def degenerate_check(confusion, majority_label: int, margin: float = 0.05, max_share: float = 0.95) -> DegenerateCheck:
    """Compare the (validation) confusion matrix with the majority-class baseline's."""
    confusion = np.asarray(confusion, dtype=np.int64)
    total = int(confusion.sum())
    if total == 0:
        return DegenerateCheck(True, ["the validation split is empty, so nothing shows the model learned"])
    baseline = majority_baseline(confusion, majority_label)
    f1, base_f1 = float(class_scores(confusion)[2].mean()), float(class_scores(baseline)[2].mean())
    base_accuracy = float(np.trace(baseline) / total)
    predicted = confusion.sum(axis=0)
    top = int(predicted.argmax())
    share = float(predicted[top] / total)
    true_share = float(confusion.sum(axis=1)[top] / total)
    reasons = []
    if share > max_share and true_share <= max_share:
        reasons.append(f"it predicts one class for {share:.1%} of validation rows (that class is {true_share:.1%} "
                       "of them)")
    if f1 < base_f1 + margin:
        reasons.append(f"its validation macro F1 {f1:.3f} is not above the majority-class baseline's {base_f1:.3f} "
                       f"by {margin:g}")
    return DegenerateCheck(bool(reasons), reasons, f1, base_f1, base_accuracy, share)
