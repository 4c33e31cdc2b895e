"""A `lakebert tune` trial as its training processes get it: `TrialSpec`.

    spec = TrialSpec(storage_url, study, trial._trial_id, "f1_macro", "median", 2)  # spark_jobs.tune
    launch(cfg, plan, data, spec)                # through TorchDistributor to training.train.train_job
    reporter = open_reporter(spec, env)          # training.pruning: rank 0 reports to the study

Light on purpose (no torch, no Spark, no Optuna): the launcher builds it, TorchDistributor
pickles it, and every training process reads it. The search-space values are not in it: they
are in the trial's `train` config (spark_jobs.tune.trial_config), which is the job's identity.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrialSpec:
    """Where rank 0 reports a trial's evaluations, and the pruner that judges them."""

    storage: str
    """The Optuna storage URL of the study (`tune.storage`, or the default beside the MLflow store)."""
    study: str
    """The study's name."""
    trial_id: int
    """Optuna's id of the trial in that storage (not its number in the study)."""
    metric: str
    """The validation metric reported (`tune.metric`, else `train.select_metric`)."""
    pruner: str | None
    """`tune.pruner`: a study's pruner is not stored with it, so rank 0 builds the same one."""
    pruner_startup_trials: int
    """`tune.pruner_startup_trials`."""
