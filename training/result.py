"""A training job's result: `TrainResult`, what `train(cfg)` returns, and the one writer and
reader of `<output_dir>/result.json`.

    result = train(cfg)                                      # training.train: every rank gets rank 0's
    result.status, result.validation_metrics, result.registered_model
    result.to_dict()                                         # result.json's content (training.trainer, rank 0)
    result = TrainResult.from_json(storage.read_text(path))  # a reader of the file

A result is one of three kinds, by `status`:
- `done`: the job trained. Every field but `reason`; `history` is dropped before the result
  crosses to the launcher (`without_history`: TorchDistributor pickles it), and from the run's
  `result.json` artifact.
- `up_to_date`: the job's MLflow run had FINISHED (training.tracking.runs.finished_result): its
  final metrics, registered model and linear baseline, read back from the run.
- `pruned`: a tune trial that its study's pruner stopped (training.train.pruned): the steps,
  why, the output folder and the processes.

The file's keys are a contract with its users (and the tests): `to_dict` writes each kind's
keys in the order `KEYS` gives, and `from_dict` reads exactly those back. The values inside
(metrics, baseline, registered model, champion decision, data, throughput) stay the dicts
their own modules make. Nothing else reads a result by key.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from conf.schema import TEST, VALIDATION

DONE, UP_TO_DATE, PRUNED = "done", "up_to_date", "pruned"
# Each kind's keys, in result.json's order.
KEYS = {
    DONE: ("status", "run_id", "tracking_uri", "registered_model", "champion", "degenerate", "warnings", "baseline",
           "defaults", "metrics", "steps", "epochs", "world_size", "best_checkpoint", "select_metric", "output_dir",
           "data", "throughput", "history", "seconds"),
    UP_TO_DATE: ("status", "run_id", "tracking_uri", "metrics", "registered_model", "baseline"),
    PRUNED: ("status", "run_id", "tracking_uri", "steps", "reason", "output_dir", "world_size"),
}
# Keys left out, not written as null, when their value is None: the history once dropped, and
# the baseline of a finished run that logged none.
OMITTED_WHEN_NONE = {DONE: ("history",), UP_TO_DATE: ("baseline",), PRUNED: ()}


@dataclass(frozen=True)
class TrainResult:
    """One training job's outcome (see the module docstring for which kind has which fields)."""

    status: str
    """`done`, `up_to_date` or `pruned`."""
    run_id: str
    """The job's MLflow run."""
    tracking_uri: str
    registered_model: dict | None = None
    """{name, version} (training.tracking.registry), or None when nothing was registered."""
    champion: dict | None = None
    """The champion alias decision {moved, version, alias, reason, ...} (training.tracking.models), or None."""
    degenerate: bool | None = None
    """The collapse guard's verdict on the best checkpoint (training.guards)."""
    warnings: list[str] = field(default_factory=list)
    baseline: dict | None = None
    """The linear baseline's summary (training.baseline.BaselineCheck.summary)."""
    defaults: dict | None = None
    """The `train` defaults in force: {kind, lr, epochs, warmup_ratio, weight_decay}."""
    metrics: dict[str, dict] = field(default_factory=dict)
    """split (validation, test) -> metric name -> value: the best checkpoint's."""
    steps: int | None = None
    epochs: int | None = None
    world_size: int | None = None
    best_checkpoint: str | None = None
    select_metric: str | None = None
    output_dir: str | None = None
    data: dict | None = None
    """The data trained on: manifest, rows, source, content hash, tokenizer, bytes read per rank."""
    throughput: dict | None = None
    """training.meter's throughput summary (its `intervals` are the per-interval timings)."""
    history: dict | None = None
    """The per-step history (loss, lr, grad_norm, eval); None once dropped (`without_history`)."""
    seconds: float | None = None
    reason: str | None = None
    """Why a pruned trial stopped."""

    def __post_init__(self):
        if self.status not in KEYS:
            raise ValueError(f"a train result's status is one of {', '.join(KEYS)}, not {self.status!r}")

    @property
    def pruned(self) -> bool:
        """A tune trial that its study's pruner stopped (`reason` says why)."""
        return self.status == PRUNED

    @property
    def validation_metrics(self) -> dict:
        return self.metrics.get(VALIDATION, {})

    @property
    def test_metrics(self) -> dict:
        return self.metrics.get(TEST, {})

    @property
    def champion_reason(self) -> str | None:
        """What became of the champion alias, in words (None: no decision was made)."""
        return self.champion["reason"] if self.champion else None

    def without_history(self) -> TrainResult:
        """The result as it crosses to the launcher and into the run's artifact (the per-step
        history is in result.json)."""
        return dataclasses.replace(self, history=None)

    def to_dict(self) -> dict:
        """result.json's content: this kind's keys, in the file's order."""
        return {key: getattr(self, key) for key in KEYS[self.status]
                if not (key in OMITTED_WHEN_NONE[self.status] and getattr(self, key) is None)}

    def to_summary(self) -> dict:
        """What `python -m training` prints: no per-step history and no throughput intervals
        (both are in result.json)."""
        summary = self.without_history().to_dict()
        if self.throughput is not None:
            summary["throughput"] = {k: v for k, v in self.throughput.items() if k != "intervals"}
        return summary

    @classmethod
    def from_dict(cls, data: dict) -> TrainResult:
        """A result from `to_dict`'s form; a key its kind does not have is an error."""
        status = data.get("status")
        if status not in KEYS:
            raise ValueError(f"not a train result: status {status!r} is not one of {', '.join(KEYS)}")
        unknown = sorted(set(data) - set(KEYS[status]))
        if unknown:
            raise ValueError(f"not a {status} train result: unknown key(s) {', '.join(unknown)}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> TrainResult:
        """A result from result.json's text."""
        return cls.from_dict(json.loads(text))
