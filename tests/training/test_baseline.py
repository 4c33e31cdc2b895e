"""training.baseline: TF-IDF + logistic regression on the tokenized rows, and how a model compares with it."""

import numpy as np
import pytest

from conf import load_config
from training.baseline import (BaselineError, LinearBaseline, check_against_baseline, comparison_line, evaluate,
                               is_below, read_split)
from training.data import TokenizedSplit

NAMES = ["business", "health", "sports", "technology"]
VOCAB = 600  # tests/training/conftest.py's tokenizer


@pytest.fixture(scope="module")
def splits(tokenized_root):
    return {s: TokenizedSplit.open(tokenized_root / "tokenized", s) for s in ("train", "validation", "test")}


def _texts(ids, offsets):
    return [" ".join(map(str, ids[offsets[i]:offsets[i + 1]])) for i in range(len(offsets) - 1)]


def test_baseline_is_scikit_learns_tfidf_bigrams_and_logistic_regression_on_the_token_ids(splits):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from training.baseline import C, SOLVER

    ids, offsets, labels = read_split(splits["train"])
    baseline = LinearBaseline.fit(ids, offsets, labels, VOCAB, NAMES)
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2, token_pattern=r"\S+",
                                 lowercase=False)
    reference = LogisticRegression(C=C, **SOLVER).fit(vectorizer.fit_transform(_texts(ids, offsets)), labels)
    assert len(baseline.features) == len(vectorizer.vocabulary_)
    v_ids, v_offsets, v_labels = read_split(splits["validation"])
    expected = reference.predict_proba(vectorizer.transform(_texts(v_ids, v_offsets)))
    assert np.allclose(baseline.predict_proba(v_ids, v_offsets), expected, atol=1e-6)  # columns in another order
    metrics = evaluate(baseline, v_ids, v_offsets, v_labels)
    assert metrics["examples"] == 120 and metrics["f1_macro"] > 0.9  # the sample's topics are easy for it
    assert {"loss", "accuracy", "precision_macro", "recall_macro", "confusion_matrix"} <= set(metrics)


def test_a_train_split_over_the_cap_is_a_seeded_uniform_sample_and_the_baseline_keeps_no_pickle(splits):
    ids, offsets, labels = read_split(splits["train"])
    rows = {tuple(ids[offsets[i]:offsets[i + 1]]) for i in range(len(labels))}
    sample = read_split(splits["train"], max_rows=100, seed=1)
    assert len(sample[2]) == 100 and sample[1][-1] == len(sample[0])
    assert {tuple(sample[0][sample[1][i]:sample[1][i + 1]]) for i in range(100)} <= rows
    assert np.array_equal(read_split(splits["train"], max_rows=100, seed=1)[0], sample[0])  # the seed decides
    assert not np.array_equal(read_split(splits["train"], max_rows=100, seed=2)[0], sample[0])
    assert len(read_split(splits["train"], max_rows=10_000)[2]) == len(labels) == splits["train"].num_rows
    assert splits["train"].reads.bytes == 0  # outside the loader's count of what training read

    baseline = LinearBaseline.fit(*sample, VOCAB, NAMES)
    stored = LinearBaseline.from_bytes(baseline.to_bytes())  # np.load with allow_pickle=False
    assert stored.labels == tuple(NAMES) and stored.vocab == VOCAB
    assert np.array_equal(stored.predict_proba(ids, offsets), baseline.predict_proba(ids, offsets))


def test_one_label_in_train_cannot_be_fitted():
    ids, offsets = np.array([2, 5, 3, 2, 5, 3]), np.array([0, 3, 6])
    with pytest.raises(BaselineError, match="1 label"):
        LinearBaseline.fit(ids, offsets, np.array([1, 1]), VOCAB, NAMES)


@pytest.mark.parametrize("metric, model, baseline, margin, below", [
    ("f1_macro", 0.59, 0.74, 0.02, True),
    ("f1_macro", 0.73, 0.74, 0.02, False),  # within the margin
    ("f1_macro", 0.80, 0.74, 0.02, False),
    ("loss", 0.90, 0.40, 0.02, True),  # lower is better
    ("loss", 0.30, 0.40, 0.02, False),
    ("roc_auc", float("nan"), 0.9, 0.02, False),  # not comparable
])
def test_a_model_is_below_the_baseline_only_by_more_than_the_margin(metric, model, baseline, margin, below):
    assert is_below(metric, model, baseline, margin) is below


def _train_config(*overrides):
    return load_config(overrides=list(overrides)).train


def test_a_model_below_the_baseline_is_warned_and_kept_from_champion_unless_the_user_allows_it(splits):
    model = {"validation": {"f1_macro": 0.5, "accuracy": 0.6}, "test": {"f1_macro": 0.5}}
    check = check_against_baseline(splits, NAMES, VOCAB, model, _train_config())
    assert check.below is True and check.summary["validation"]["f1_macro"] > 0.9
    (warning,) = check.warnings
    assert "below the linear baseline" in warning and "train.model" in warning and "train.epochs" in warning
    assert "tokenize.max_length" in warning and "does not take @champion" in warning
    assert "below the linear baseline" in check.blocks_champion
    assert check.summary["train_rows"] == 480 and check.summary["seconds"] > 0
    logged = check.logged_metrics()
    assert logged["baseline/validation/f1_macro"] == check.summary["validation"]["f1_macro"]
    assert {"baseline/test/accuracy", "baseline/seconds", "baseline/train_rows"} <= set(logged)

    allowed = check_against_baseline(splits, NAMES, VOCAB, model, _train_config("train.require_beat_baseline=false",
                                                                                 "train.baseline_max_rows=200"))
    assert allowed.below is True and allowed.blocks_champion is None
    assert "may still take @champion" in allowed.warnings[0]
    assert (allowed.summary["train_rows"], allowed.summary["train_split_rows"]) == (200, 480)

    good = {"validation": {"f1_macro": 1.0}, "test": {"f1_macro": 1.0}}
    assert check_against_baseline(splits, NAMES, VOCAB, good, _train_config()).warnings == []
    off = check_against_baseline(splits, NAMES, VOCAB, model, _train_config("train.baseline_max_rows=0"))
    assert off.summary is None and off.warnings == [] and off.blocks_champion is None


def test_the_summary_line_gives_both_macro_f1s_and_what_the_baseline_cost():
    baseline = {"kind": "TF-IDF + logistic regression", "validation": {"f1_macro": 0.7412, "accuracy": 0.8},
                "train_rows": 464, "train_split_rows": 464, "seconds": 1.234, "metric": "f1_macro"}
    assert comparison_line({"f1_macro": 0.5912}, baseline) == (
        "model vs linear baseline on validation: macro F1 0.591 vs 0.741 "
        "(TF-IDF + logistic regression on 464 train rows, 1.2 s)")
    sampled = {**baseline, "train_rows": 50_000, "train_split_rows": 200_000, "metric": "accuracy"}
    assert comparison_line({"f1_macro": 0.5, "accuracy": 0.75}, sampled) == (
        "model vs linear baseline on validation: macro F1 0.500 vs 0.741, accuracy 0.750 vs 0.800 "
        "(TF-IDF + logistic regression on 50,000 of 200,000 train rows, 1.2 s)")
    assert comparison_line({"f1_macro": 0.5}, None) is None
    assert comparison_line({"f1_macro": 0.5}, {"kind": "x", "error": "ValueError: ..."}) is None
