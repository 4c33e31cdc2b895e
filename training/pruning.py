"""Pruning a `lakebert tune` trial from inside the training processes.

    reporter = open_reporter(trial_spec, env)   # a no-op without a trial
    reporter.report(value, examples_seen)       # every rank calls it after each evaluation;
                                                # raises Pruned on every rank together

`lakebert tune` (spark_jobs/tune.py) hands each trial's training processes a `TrialSpec`
(training.trial): the Optuna storage URL, the study's name, the trial's id, the validation
metric it optimizes and the pruner (`make_pruner`: a study's pruner is not stored with it, so
rank 0 builds the same one). Rank 0 opens the trial in that storage, reports each evaluation's
value and asks the study's pruner whether to stop; the answer is broadcast, so every rank
raises `Pruned` at the same point and none waits on a collective the others left.

The step reported is the number of training rows seen (`epoch * train rows + rows of this
epoch`), not the optimizer step: trials with different batch sizes then report their epoch
ends at the same step, which is what the median pruner compares.
"""

from __future__ import annotations

from training.distributed import DistEnv, broadcast
from training.trial import TrialSpec


def make_pruner(kind: str | None, startup_trials: int):
    """`tune.pruner` as an Optuna pruner: the study's driver and rank 0 must use the same one."""
    import optuna

    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=startup_trials)
    if kind == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    return optuna.pruners.NopPruner()


class Pruned(Exception):
    """The study's pruner stopped this trial (not a failure)."""


class NullReporter:
    metric: str | None = None  # the validation metric reported; None = not a trial

    def report(self, value: float, examples_seen: int) -> None:
        pass


class TrialReporter(NullReporter):
    def __init__(self, spec: TrialSpec, env: DistEnv):
        self.env, self.metric, self.trial = env, spec.metric, None
        if env.is_main:
            import optuna

            optuna.logging.set_verbosity(optuna.logging.WARNING)
            study = optuna.load_study(study_name=spec.study, storage=spec.storage,
                                      pruner=make_pruner(spec.pruner, spec.pruner_startup_trials))
            self.trial = optuna.trial.Trial(study, spec.trial_id)

    def report(self, value: float, examples_seen: int) -> None:
        prune = None
        if self.env.is_main:
            try:
                self.trial.report(float(value), examples_seen)
                prune = self.trial.should_prune()
            except Exception as exc:  # every rank must learn of it, or they wait for rank 0 forever
                prune = exc
        if broadcast(self.env, prune):
            raise Pruned(f"pruned after {examples_seen:,} training rows: validation {self.metric} {value:.4f}")


def open_reporter(spec: TrialSpec | None, env: DistEnv) -> NullReporter:
    return TrialReporter(spec, env) if spec else NullReporter()
