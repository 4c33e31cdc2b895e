"""A linear baseline in every training run: TF-IDF + logistic regression on the model's own tokens.

    check = check_against_baseline(data.splits, data.names, data.vocab_size, final, cfg.train)  # rank 0
    check.summary           # {"validation": {...}, "test": {...}, "train_rows": 976, "seconds": 0.8, "below": True}
    check.warnings          # a line when the model is below it by more than train.baseline_margin
    check.blocks_champion   # why the model may not take @champion (train.require_beat_baseline), or None
    comparison_line(final["validation"], check.summary)   # "model vs linear baseline on validation: macro F1 ..."

    baseline = LinearBaseline.from_bytes(data)               # what `lakebert score` runs beside the model
    probabilities = baseline.predict_proba(ids, offsets)     # flat token ids and row offsets (tokenization.Encoder)

Why: a model that learned something, but less than a bag of words, finishes like any other
run, and the collapse guard (training.guards) only compares it with the majority class. On a
real news file (issue 31) the from-scratch default reached validation macro F1 0.59 where
TF-IDF + logistic regression reached 0.74, and it became `@champion` without a word.

What it sees: exactly what the model sees. It is fitted on the tokenized train split's own rows
and labels (the ids after truncation to `tokenize.max_length`) and scored on the same
validation and test rows, so a gap is the model's, not the data's. Features: each token id
and each pair of neighbouring ids in a row (unigrams and bigrams) that occurs in at least
MIN_DF train rows, with sublinear term frequency, smoothed idf and L2-normalized rows: what
scikit-learn's `TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)` computes,
done on the ids in numpy (the vectorizer's Python tokenizing took most of the time).
Logistic regression with C=10, as docs/benchmarks.md's peer, solved by SAGA (seeded; stopped at a
tolerance of 1e-3 or 100 epochs): its cost grows with the matrix's non-zeros, where L-BFGS's grew
with the features times the labels (on 10,000 real-text rows, 169,000 n-grams: 26 s against
2.6 s, the same predictions).

Cost: rank 0 fits it once, after the final evaluation, while the other ranks wait; its
seconds are logged (`baseline/seconds`). A train split over `train.baseline_max_rows` rows is
sampled down to that many (uniformly, seeded by `train.seed`; each row group is read at most
once, outside the loader's read counts); validation and test are scored whole. A baseline
that cannot be fitted (one label in train) is a warning, never a failed training.

No torch and no Spark: numpy, scipy and scikit-learn.
"""

from __future__ import annotations

import dataclasses
import io
import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from conf.schema import TEST, TRAIN, VALIDATION
from training.confusion import LOWER_IS_BETTER, metrics_from

KIND = "TF-IDF + logistic regression"
MIN_DF = 2  # an n-gram in fewer train rows than this is left out (scikit-learn's min_df)
C = 10.0  # inverse regularization strength: docs/benchmarks.md's peer
SOLVER = {"solver": "saga", "tol": 1e-3, "max_iter": 100, "random_state": 0}  # a reference, not a product
PREFIX = "baseline"  # its metrics in the run: baseline/validation/f1_macro, baseline/test/..., baseline/seconds
ARTIFACT_DIR = "baseline"  # in the training run's artifacts: the fitted baseline and its metrics
ARTIFACT = "linear_baseline.npz"
METRICS_ARTIFACT = "metrics.json"
REMEDIES = ("a pretrained train.model (a local save_pretrained folder)", "more train.epochs",
            "a longer tokenize.max_length (then tokenize again)")


class BaselineError(ValueError):
    """The baseline cannot be fitted on this data."""


def ngrams(ids: np.ndarray, offsets: np.ndarray, vocab: int) -> tuple[np.ndarray, np.ndarray]:
    """(row, code) of every token id (its code: the id) and every pair of neighbouring ids in
    a row (its code: vocab + first * vocab + second)."""
    ids = np.asarray(ids, dtype=np.int64)
    rows = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    pair = rows[1:] == rows[:-1]
    pairs = vocab + ids[:-1][pair] * vocab + ids[1:][pair]
    return np.concatenate([rows, rows[:-1][pair]]), np.concatenate([ids, pairs])


@dataclass(frozen=True)
class LinearBaseline:
    """A fitted baseline: the n-grams it knows, their idf, and the logistic regression."""

    vocab: int
    """Token ids are below this (bigram codes depend on it)."""
    features: np.ndarray
    """int64 n-gram codes, sorted: the columns."""
    idf: np.ndarray
    coef: np.ndarray
    """[classes, features]; one row for two classes (the second's logit)."""
    intercept: np.ndarray
    classes: np.ndarray
    """The label ids the train rows had, in coef's order."""
    labels: tuple[str, ...]
    """Every label name, by label id."""

    @classmethod
    def fit(cls, ids: np.ndarray, offsets: np.ndarray, labels: np.ndarray, vocab: int,
            names: list[str]) -> LinearBaseline:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression

        present = np.unique(labels)
        if len(present) < 2:
            raise BaselineError(f"the train rows have {len(present)} label(s); it needs two or more")
        rows, codes = ngrams(ids, offsets, vocab)
        every = cls(vocab, np.unique(codes), np.zeros(0), np.zeros((0, 0)), np.zeros(0), present, tuple(names))
        counts = every._counts(rows, codes, len(offsets) - 1)
        in_rows = np.bincount(counts.indices, minlength=counts.shape[1])  # rows holding each n-gram
        kept = in_rows >= MIN_DF
        if not kept.any():
            raise BaselineError(f"no token occurs in {MIN_DF} train rows")
        idf = np.log((1 + counts.shape[0]) / (1 + in_rows[kept])) + 1  # scikit-learn's smoothed idf
        unfitted = dataclasses.replace(every, features=every.features[kept], idf=idf)
        with warnings.catch_warnings():  # 100 epochs without reaching the tolerance still make a fair reference
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = LogisticRegression(C=C, **SOLVER).fit(unfitted._weigh(counts[:, kept]), labels)
        return dataclasses.replace(unfitted, coef=model.coef_, intercept=model.intercept_, classes=model.classes_)

    def _counts(self, rows: np.ndarray, codes: np.ndarray, n: int):
        """[n, features] counts of the known n-grams (a CSR matrix)."""
        from scipy import sparse

        at = np.minimum(np.searchsorted(self.features, codes), len(self.features) - 1)
        known = self.features[at] == codes
        counts = sparse.csr_matrix((np.ones(int(known.sum())), (rows[known], at[known])),
                                   shape=(n, len(self.features)))
        counts.sum_duplicates()
        return counts

    def _weigh(self, counts):
        """Sublinear tf times idf, rows L2-normalized."""
        from scipy import sparse
        from sklearn.preprocessing import normalize

        counts = counts.copy()
        counts.data = 1.0 + np.log(counts.data)
        return normalize(counts @ sparse.diags(self.idf), copy=False)

    def predict_proba(self, ids: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """[rows, labels] probabilities, 0 for a label the train rows lacked."""
        from scipy.special import expit, softmax

        n = len(offsets) - 1
        features = self._weigh(self._counts(*ngrams(ids, offsets, self.vocab), n))
        logits = np.asarray(features @ self.coef.T) + self.intercept
        if self.coef.shape[0] == 1:
            second = expit(logits[:, 0])
            present = np.stack([1 - second, second], axis=1)
        else:
            present = softmax(logits, axis=1)
        out = np.zeros((n, len(self.labels)))
        out[:, self.classes] = present
        return out

    def to_bytes(self) -> bytes:
        """A numpy archive (no pickle): what the training run keeps for `lakebert score`."""
        buffer = io.BytesIO()
        np.savez_compressed(buffer, vocab=np.int64(self.vocab), features=self.features, idf=self.idf,
                            coef=self.coef, intercept=self.intercept, classes=self.classes,
                            labels=np.array(self.labels, dtype=str))
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> LinearBaseline:
        with np.load(io.BytesIO(data), allow_pickle=False) as saved:
            return cls(int(saved["vocab"]), saved["features"], saved["idf"], saved["coef"], saved["intercept"],
                       saved["classes"], tuple(str(label) for label in saved["labels"]))


def read_split(split, max_rows: int | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A `training.data.TokenizedSplit`'s rows as (flat token ids, row offsets, label ids): all
    of them, or a uniform sample of `max_rows` (seeded), in file order."""
    import pyarrow as pa

    total = split.num_rows
    sample = None
    if max_rows is not None and total > max_rows:
        sample = np.sort(np.random.default_rng(seed).choice(total, max_rows, replace=False))
    parts, labels, first = [], [], 0
    for g, group in enumerate(split.row_groups):
        take = None
        if sample is not None:
            low, high = np.searchsorted(sample, [first, first + group.rows])
            take = sample[low:high] - first
        first += group.rows
        if take is not None and not len(take):
            continue  # not one sampled row: not read
        table = split.read_row_group(g)
        ids, label = table.column("input_ids").combine_chunks(), table.column("label").to_numpy(zero_copy_only=False)
        if take is not None:
            ids, label = ids.take(pa.array(take)), label[take]
        parts.append(ids)
        labels.append(np.asarray(label, dtype=np.int64))
    if not parts:
        return np.zeros(0, np.int64), np.zeros(1, np.int64), np.zeros(0, np.int64)
    joined = pa.concat_arrays(parts)
    offsets = joined.offsets.to_numpy().astype(np.int64)
    values = joined.values.to_numpy()[offsets[0]:offsets[-1]]
    return values, offsets - offsets[0], np.concatenate(labels)


def evaluate(baseline: LinearBaseline, ids: np.ndarray, offsets: np.ndarray, labels: np.ndarray) -> dict:
    """The model's metrics (training.confusion.metrics_from) for the baseline on these rows."""
    k = len(baseline.labels)
    probabilities = baseline.predict_proba(ids, offsets)
    confusion = np.bincount(labels * k + probabilities.argmax(axis=1), minlength=k * k).reshape(k, k)
    picked = probabilities[np.arange(len(labels)), labels]
    loss_sum = float(-np.log(np.clip(picked, 1e-15, 1.0)).sum())
    binary = k == 2 and len(labels) > 0
    return metrics_from(confusion, loss_sum, probabilities[:, 1] if binary else np.zeros(0),
                        labels if binary else np.zeros(0))


def is_below(metric: str, model: float | None, baseline: float | None, margin: float) -> bool:
    """Is the model worse than the baseline on `metric` by more than `margin`? (False when
    either is unknown.)"""
    if model is None or baseline is None or math.isnan(model) or math.isnan(baseline):
        return False
    return model > baseline + margin if metric in LOWER_IS_BETTER else model < baseline - margin


def _scalars(metrics: dict) -> dict[str, float]:
    """The numbers among `metrics` (not the confusion matrix)."""
    return {k: v if isinstance(v, int) else float(v) for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


@dataclass
class BaselineCheck:
    """The baseline of one run and how the model compares with it."""

    summary: dict | None = None
    """What the result, the summary line and the score report show; None: no baseline."""
    metrics: dict[str, dict] = field(default_factory=dict)
    """split -> the baseline's metrics, confusion matrix included."""
    baseline: LinearBaseline | None = None
    below: bool | None = None
    """The model is below the baseline by more than the margin (None: not compared)."""
    warnings: list[str] = field(default_factory=list)
    blocks_champion: str | None = None
    """Why the new version may not take @champion, or None."""

    def logged_metrics(self) -> dict[str, float]:
        """The run's `baseline/<split>/<metric>`, and `baseline/seconds`, `.../train_rows` (fitted
        on), `.../train_split_rows` (in the split) and `.../features`."""
        if not self.metrics:
            return {}
        values = {f"{PREFIX}/{split}/{k}": v for split, m in self.metrics.items() for k, v in _scalars(m).items()}
        return {**values, **{f"{PREFIX}/{k}": float(self.summary[k])
                             for k in ("seconds", "train_rows", "train_split_rows", "features")}}


def check_against_baseline(splits: dict, names: list[str], vocab: int, final: dict[str, dict], tc) -> BaselineCheck:
    """Fit the baseline on `splits[TRAIN]` (at most `tc.baseline_max_rows` rows), score it on
    validation and test, and compare it with the model's `final` metrics on `tc.select_metric`."""
    if tc.baseline_max_rows == 0:
        return BaselineCheck()
    started = time.perf_counter()
    try:
        ids, offsets, labels = read_split(splits[TRAIN], tc.baseline_max_rows, tc.seed)
        baseline = LinearBaseline.fit(ids, offsets, labels, vocab, names)
        metrics = {split: evaluate(baseline, *read_split(splits[split])) for split in (VALIDATION, TEST)}
    except Exception as exc:  # noqa: BLE001 - a baseline is never worth a failed training
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
        return BaselineCheck({"kind": KIND, "error": reason},
                             warnings=[f"the linear baseline ({KIND}) could not be fitted, so the model was not "
                                       f"compared with it: {reason}"])
    metric, margin = tc.select_metric, tc.baseline_margin
    model_value, baseline_value = final[VALIDATION].get(metric), metrics[VALIDATION].get(metric)
    below = is_below(metric, model_value, baseline_value, margin)
    summary = {"kind": KIND, **{split: _scalars(m) for split, m in metrics.items()}, "train_rows": int(len(labels)),
               "train_split_rows": int(splits[TRAIN].num_rows), "features": int(len(baseline.features)),
               "seconds": round(time.perf_counter() - started, 3), "metric": metric, "margin": margin, "below": below}
    check = BaselineCheck(summary, metrics, baseline, below)
    if below:
        gap = f"validation {metric} {model_value:.4f} vs {baseline_value:.4f}"
        allowed = ("It does not take @champion (train.require_beat_baseline=false lets it)" if tc.require_beat_baseline
                   else "It may still take @champion (train.require_beat_baseline=false)")
        check.warnings.append(f"the model is below the linear baseline ({KIND} on the same tokens): {gap}, more "
                              f"than train.baseline_margin={margin:g} below. What usually helps: "
                              f"{', '.join(REMEDIES)}. {allowed}")
        if tc.require_beat_baseline:
            check.blocks_champion = (f"is below the linear baseline ({gap}, train.baseline_margin={margin:g}; "
                                     "train.require_beat_baseline=false lets it)")
    return check


def comparison_line(model_validation: dict | None, baseline: dict | None) -> str | None:
    """`model vs linear baseline on validation: macro F1 0.911 vs 0.951 (...)`, or None
    without both figures."""
    if not model_validation or not baseline or VALIDATION not in baseline:
        return None
    ours, theirs = model_validation.get("f1_macro"), baseline[VALIDATION].get("f1_macro")
    if ours is None or theirs is None:
        return None
    line = f"model vs linear baseline on validation: macro F1 {ours:.3f} vs {theirs:.3f}"
    metric = baseline.get("metric")
    if metric and metric != "f1_macro" and metric in model_validation and metric in baseline[VALIDATION]:
        line += f", {metric} {model_validation[metric]:.3f} vs {baseline[VALIDATION][metric]:.3f}"
    rows, split_rows, seconds = (baseline.get(k) for k in ("train_rows", "train_split_rows", "seconds"))
    if rows is None or seconds is None:
        return line
    sampled = f" of {int(split_rows):,}" if split_rows is not None and split_rows != rows else ""
    return line + f" ({baseline.get('kind', KIND)} on {int(rows):,}{sampled} train rows, {seconds:.1f} s)"
