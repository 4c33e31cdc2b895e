"""Metrics from a confusion matrix: numpy only, so the guards (and Spark's driver) use them
without torch.

    metrics = metrics_from(confusion, loss_sum, scores, targets)   # loss, accuracy, macro P/R/F1, ...
    precision, recall, f1 = class_scores(confusion)                # per class
    is_better("f1_macro", 0.91, best=0.90)                         # True
"""

from __future__ import annotations

import math

import numpy as np

LOWER_IS_BETTER = {"loss"}
# The validation metrics a run can be selected or tuned by (`metrics_from`; roc_auc: two labels only).
SELECTABLE = ("loss", "accuracy", "precision_macro", "recall_macro", "f1_macro", "roc_auc")


def class_scores(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class precision, recall and F1 (0 where undefined); rows are true labels."""
    confusion = np.asarray(confusion)
    tp = np.diag(confusion).astype(float)
    predicted, actual = confusion.sum(axis=0).astype(float), confusion.sum(axis=1).astype(float)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=(precision + recall) > 0)
    return precision, recall, f1


def is_better(metric: str, new: float, best: float | None) -> bool:
    """Is `new` an improvement on `best` (None or NaN: nothing yet) for `metric`?"""
    if best is None or math.isnan(best):
        return True
    return new < best if metric in LOWER_IS_BETTER else new > best


def metrics_from(confusion: np.ndarray, loss_sum: float, scores: np.ndarray, targets: np.ndarray) -> dict:
    """Loss, accuracy, macro precision/recall/F1, binary ROC-AUC and the confusion matrix."""
    total = int(confusion.sum())
    precision, recall, f1 = class_scores(confusion)
    out = {
        "loss": loss_sum / max(total, 1),
        "accuracy": float(np.trace(confusion) / max(total, 1)),
        "precision_macro": float(precision.mean()),
        "recall_macro": float(recall.mean()),
        "f1_macro": float(f1.mean()),
        "examples": total,
        "confusion_matrix": confusion.tolist(),
    }
    if len(confusion) == 2 and len(scores):
        out["roc_auc"] = roc_auc(scores, targets)
    return out


def roc_auc(scores: np.ndarray, targets: np.ndarray) -> float:
    """Binary ROC-AUC; NaN when the evaluation set holds one class only."""
    from sklearn.metrics import roc_auc_score

    if len(np.unique(targets)) < 2:
        return float("nan")
    return float(roc_auc_score(targets, scores))
