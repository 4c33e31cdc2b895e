"""Train one job: `train(cfg)` for a single process, torchrun and TorchDistributor alike.

    python -m training --set lakehouse.root=./lakehouse                 # one process
    torchrun --nproc_per_node=2 -m training --set lakehouse.root=...     # DDP: gloo on CPU, NCCL on CUDA
    lakebert train                                                      # TorchDistributor (spark_jobs/train.py)

Finds the tokenized data and the job (`training.job`), the job's one MLflow run
(`training.tracking.runs`: rank 0 decides, every rank learns), and runs the `Trainer`
(`training.trainer`): AdamW with linear warmup and decay, gradient accumulation and clipping,
validation at each epoch end (and every `train.eval_every` steps), the best checkpoint by
`train.select_metric` evaluated on validation and test at the end, the model logged and
registered by rank 0.

The job trains on one dataset: rank 0 resolves the tokenized data once and every rank reads
that manifest (the launcher pins it in `train.data`, and its run plan names the content hash
each process checks), so a `lakebert tokenize` that moves `LATEST` meanwhile changes nothing.
Without a launcher, rank 0 claims the output folder (`training.job.claim_output_dir`).

A failing rank prints its error (first cause named) and writes
`<output_dir>/failures/rank-<r>.json` for the launcher to report, and rank 0 ends the MLflow run
FAILED.

A `lakebert tune` trial (`trial`: its `TrialSpec`, training.trial) reports each evaluation to
the study's pruner. A pruned trial stops on every rank together: its run ends FINISHED, tagged
`lakebert.tune.trial_state=pruned`, its checkpoints are removed (on disk and in the run), and
the result's status is `pruned`.
"""

from __future__ import annotations

from conf import Config
from conf.loader import validate
import storage
from tokenization.dataset import DataError, Manifest, TokenizedDataset
from training import job
from training.checkpoint import CheckpointManager
from training.distributed import barrier, broadcast, init_distributed, teardown
from training.meter import PROGRESS_PREFIX
from training.pruning import Pruned, open_reporter
from training.result import PRUNED, TrainResult
from training.tracking.runs import UP_TO_DATE, RunPlan, finished_result, prepare_run
from training.tracking.tags import TAG_TRIAL_STATE, TRIAL_PRUNED
from training.tracking.tracker import NullTracker, open_tracker
from training.trainer import TrainData, Trainer
from training.trial import TrialSpec


def train(cfg: Config, plan: RunPlan | None = None, stop_after_steps: int | None = None,
          trial: TrialSpec | None = None) -> TrainResult:
    """Train, evaluate, log to MLflow and return the result (rank 0's, on every rank).

    `plan`: the job's MLflow run, as the launcher prepared it; None = rank 0 finds or creates
    it. `stop_after_steps` ends the run abruptly, as a crash would (tests). `trial`: the tune
    trial this job is (`training.pruning`), None for a plain job."""
    env = init_distributed(cfg.train.use_gpu)
    out_dir = None
    tracker = NullTracker()
    try:
        data = open_data(cfg, env, plan)
        out_dir = job.output_dir(cfg, data.manifest)
        if plan is None:
            plan = on_every_rank(env, lambda: prepare(cfg, data.manifest, str(data.manifest_path), out_dir))
        if plan.status == UP_TO_DATE:
            return finished_result(plan)
        try:
            tracker, opened = open_tracker(cfg, plan, env.is_main), None
        except Exception as exc:
            opened = exc
        broadcast(env, opened)  # a rank 0 that cannot log stops every rank, not only itself
        trainer = Trainer(cfg, env, plan, tracker, TrainData.open(data), out_dir,
                          open_reporter(trial, env))
        try:
            result = trainer.train(stop_after_steps)
        except Pruned as exc:
            result = pruned(env, plan, tracker, out_dir, trainer.state.step, str(exc))
        tracker.finish("FINISHED")
        return result
    except BaseException as exc:
        if not isinstance(exc, KeyboardInterrupt):
            job.report_failure(out_dir, env.rank, env.local_rank, exc)
        tracker.finish("FAILED")  # never left RUNNING, never FINISHED
        raise
    finally:
        teardown(env)


def on_every_rank(env, make):
    """Rank 0's `make()` on every rank; its exception too, so no rank waits for one that gave up."""
    try:
        value = make() if env.is_main else None
    except Exception as exc:  # every rank must learn of it, not only rank 0
        value = exc
    return broadcast(env, value)


def open_data(cfg: Config, env, plan: RunPlan | None) -> TokenizedDataset:
    """The one tokenized dataset this job trains on. Rank 0 resolves the location once (a
    `LATEST` that moves meanwhile is not followed) and every rank reads that manifest; data whose
    content hash is not the one the job was planned on stops the job."""
    path = on_every_rank(env, lambda: job.open_dataset(cfg).manifest_path)
    data = TokenizedDataset.open(path)
    if plan is not None and plan.data_hash and data.manifest.content_hash != plan.data_hash:
        raise DataError(f"{path} holds data {data.manifest.content_hash}, not the data {plan.data_hash} that job "
                        f"{plan.job_key} was started on: the job stops rather than train on other data")
    return data


def prepare(cfg: Config, manifest: Manifest, manifest_path: str, out_dir: str) -> RunPlan:
    """Rank 0 without a launcher: claim the output folder, then find or create the job's run."""
    job.claim_output_dir(cfg, out_dir, job.job_key(cfg, manifest))
    return prepare_run(cfg, manifest, manifest_path)


def pruned(env, plan: RunPlan, tracker, out_dir, step: int, reason: str) -> TrainResult:
    """A pruned trial: tagged, its checkpoints gone (they would never be resumed)."""
    barrier(env)  # no rank still reads a checkpoint
    if env.is_main:
        tracker.set_tags({TAG_TRIAL_STATE: TRIAL_PRUNED})
        for folder in (job.CHECKPOINTS, job.BEST):
            try:
                CheckpointManager(storage.join(out_dir, folder)).clear()
            except storage.StorageError as exc:  # a leftover never fails the trial
                print(f"{PROGRESS_PREFIX} warning: {exc}", flush=True)
        tracker.delete_checkpoints()
        print(f"{PROGRESS_PREFIX} {reason}", flush=True)
    return TrainResult(PRUNED, plan.run_id, plan.tracking_uri, steps=step, reason=reason, output_dir=str(out_dir),
                       world_size=env.world_size)


def train_job(config: dict, plan: dict | None = None, trial: TrialSpec | None = None) -> TrainResult:
    """What TorchDistributor runs in every process: plain data in, rank 0's result out (without
    the per-step history, which is in `<output_dir>/result.json`)."""
    # this process did not load the config: `validate` hides its secrets here too
    cfg = validate(config)
    storage.configure(cfg.spark.conf)
    return train(cfg, RunPlan(**plan) if plan else None, trial=trial).without_history()
