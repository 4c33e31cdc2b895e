"""training.trial: the spec a tune trial's training processes get, through TorchDistributor."""

import pickle

import torch

from training.distributed import DistEnv
from training.pruning import NullReporter, TrialReporter, open_reporter
from training.trial import TrialSpec

SPEC = TrialSpec("sqlite:///optuna.db", "lakebert-1a2b", 3, "loss", "median", 2)


def test_a_trial_spec_crosses_torchdistributor_by_pickle_unchanged():
    assert pickle.loads(pickle.dumps(SPEC)) == SPEC


def test_a_trial_spec_opens_a_reporter_of_its_metric_and_no_spec_opens_the_null_one():
    worker = DistEnv(1, 2, 1, torch.device("cpu"))  # not rank 0: it opens no study, it only learns the answer
    reporter = open_reporter(SPEC, worker)
    assert isinstance(reporter, TrialReporter) and reporter.metric == "loss"
    assert type(open_reporter(None, worker)) is NullReporter
